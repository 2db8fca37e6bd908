"""What a notebook's first cell costs: ``import lverse``, loading the default model, the
first ``caption`` and ``generate`` in a fresh process, and later calls.

    python benches/bench_startup.py [--runs 5]

Each run is a fresh interpreter (nothing cached in the process; the OS file cache is warm
after the first). ``import torch`` alone, timed the same way, is the reference for the
import: lverse imports torch. Medians over --runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = r"""
import json, time
t = [time.perf_counter()]
import {module}
t.append(time.perf_counter())
if "{module}" == "lverse":
    import numpy as np
    from lverse.data import shapes
    from lverse.pipeline import default_model
    lverse.set_progress(False)
    image = np.asarray(shapes.scene(2_000_000_000)[0])
    default_model(); t.append(time.perf_counter())
    lverse.caption(image); t.append(time.perf_counter())
    lverse.caption(image); t.append(time.perf_counter())
    lverse.generate("a large green triangle at the top", seed=0); t.append(time.perf_counter())
    lverse.generate("a large green triangle at the top", seed=0); t.append(time.perf_counter())
print(json.dumps([b - a for a, b in zip(t, t[1:])]))
"""

STEPS = ["import", "load the default model", "first caption", "second caption", "first generate",
         "second generate"]


def run(module: str) -> list[float]:
    out = subprocess.run([sys.executable, "-c", CHILD.format(module=module)], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    run("lverse")  # warm the file cache
    torch_import = statistics.median(run("torch")[0] for _ in range(args.runs))
    runs = [run("lverse") for _ in range(args.runs)]
    medians = [statistics.median(r[i] for r in runs) for i in range(len(STEPS))]
    print(f"| step (fresh process, median of {args.runs}) | seconds | note |")
    print("| --- | --- | --- |")
    for step, seconds in zip(STEPS, medians, strict=True):
        note = f"`import torch` alone: {torch_import:.2f} s ({seconds / torch_import:.2f}x)" if step == "import" else ""
        print(f"| {step} | {seconds:.3f} | {note} |")
    print(f"| first-call set-up (first caption - second) | {medians[2] - medians[3]:.3f} | |")


if __name__ == "__main__":
    main()
