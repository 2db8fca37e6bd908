"""Benchmark of lverse.vq.nearest against the reference expression and torch.cdist (CPU).

    python benches/bench_vq.py                 # N = 1024 (one image) and 8192 (batch 8)
    python benches/bench_vq.py --sizes 8192 --repeats 9 --threads 1

For each N (K = 8192 codes, D = 256, float32) it times, interleaved round by round in one
process so that machine noise hits every method alike (median of --repeats rounds after a
warm-up):

- matmul:    z @ codebook.T alone, the practical limit (same FLOPs, no argmin);
- reference: (‖z‖² + ‖e‖² − 2 z·eᵀ).argmin(1), the official expression;
- cdist:     torch.cdist(z, codebook).argmin(1);
- lverse:    lverse.vq.nearest(z, codebook).

GFLOP/s counts 2·N·K·D for every method. Peak extra memory is the rise of VmHWM (peak
resident set, /proc/self/status) over one cold call in a fresh subprocess per method,
after the inputs exist, so torch's allocations count (tracemalloc would not see them).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

K_DEFAULT = 8192
D_DEFAULT = 256
METHODS = ("matmul", "reference", "cdist", "lverse")


def make_inputs(n: int, k: int, d: int):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, d, generator=g), torch.randn(k, d, generator=g)


def method(name: str):
    if name == "matmul":
        return lambda z, e: z @ e.t()
    if name == "reference":
        return lambda z, e: (
            z.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * torch.einsum("bd,nd->bn", z, e)
        ).argmin(1)
    if name == "cdist":
        return lambda z, e: torch.cdist(z, e).argmin(1)
    if name == "lverse":
        import lverse.vq

        return lambda z, e: lverse.vq.nearest(z, e)[0]
    raise ValueError(name)


def vm_hwm_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(name: str, n: int, k: int, d: int, threads: int) -> None:
    torch.set_num_threads(threads)
    fn = method(name)
    z, e = make_inputs(n, k, d)
    before = vm_hwm_kib()
    out = fn(z, e)
    after = vm_hwm_kib()
    del out
    print(json.dumps({"extra_mib": (after - before) / 1024}))


def peak_extra_mib(name: str, n: int, k: int, d: int) -> float:
    cmd = [sys.executable, __file__, "--child", name, str(n), str(k), str(d), str(torch.get_num_threads())]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["extra_mib"]


def time_methods(n: int, k: int, d: int, repeats: int) -> dict[str, float]:
    z, e = make_inputs(n, k, d)
    fns = {name: method(name) for name in METHODS}
    for fn in fns.values():  # warm-up: thread pools, allocator caches
        fn(z, e)
    times: dict[str, list[float]] = {name: [] for name in METHODS}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            out = fn(z, e)
            times[name].append(time.perf_counter() - start)
            del out
    return {name: statistics.median(t) for name, t in times.items()}


def agreement(n: int, k: int, d: int) -> float:
    import lverse.vq

    z, e = make_inputs(n, k, d)
    ids = lverse.vq.nearest(z, e)[0]
    exact = torch.cdist(z.double(), e.double()).argmin(1)
    return (ids == exact).double().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 8192])
    parser.add_argument("-k", type=int, default=K_DEFAULT)
    parser.add_argument("-d", type=int, default=D_DEFAULT)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (lverse follows it); default: torch's"
    )
    parser.add_argument("--child", nargs=5, metavar=("METHOD", "N", "K", "D", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, n, k, d, threads = args.child
        child(name, int(n), int(k), int(d), int(threads))
        return
    if args.threads:
        torch.set_num_threads(args.threads)

    k, d = args.k, args.d
    print(
        f"lverse.vq.nearest, CPU float32, K = {k}, D = {d}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs; median of "
        f"{args.repeats} interleaved rounds"
    )
    header = (
        f"{'N':>6} {'method':<10} {'time ms':>9} {'GFLOP/s':>8} {'% matmul':>9} "
        f"{'vs ref':>7} {'extra MiB':>10} {'% ref mem':>10}"
    )
    print(header)
    print("-" * len(header))
    checks = []
    for n in args.sizes:
        flops = 2.0 * n * k * d
        times = time_methods(n, k, d, args.repeats)
        memory = {name: peak_extra_mib(name, n, k, d) for name in METHODS}
        for name in METHODS:
            t = times[name]
            print(
                f"{n:>6} {name:<10} {t * 1e3:>9.1f} {flops / t / 1e9:>8.1f} "
                f"{100 * times['matmul'] / t:>8.1f}% {times['reference'] / t:>6.2f}x "
                f"{memory[name]:>10.1f} {100 * memory[name] / memory['reference']:>9.1f}%"
            )
        speedup = times["reference"] / times["lverse"]
        of_matmul = times["matmul"] / times["lverse"]
        mem = memory["lverse"] / memory["reference"]
        checks.append(
            f"N={n}: {speedup:.2f}x the reference (target 1.5x: "
            f"{'met' if speedup >= 1.5 else 'NOT met'}), {100 * of_matmul:.0f}% of matmul's "
            f"rate (target 85%: {'met' if of_matmul >= 0.85 else 'NOT met'}), extra memory "
            f"{100 * mem:.2f}% of the reference's (target < 25%: "
            f"{'met' if mem < 0.25 else 'NOT met'}), float64-argmin agreement "
            f"{100 * agreement(n, k, d):.2f}%"
        )
        print("-" * len(header))
    for line in checks:
        print(line)


if __name__ == "__main__":
    main()
