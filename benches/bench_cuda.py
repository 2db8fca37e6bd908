"""lverse on CUDA against PyTorch references, in one run, ending in one table: parity with
the CPU and speed (scripts/gpu-check.sh runs it after the CUDA tests).

    python benches/bench_cuda.py [--device cuda] [--quick] [--json OUT.json]

- VQ, N = 8192 rows, K = 8192 codes, D = 256, fp32: lverse.vq.nearest against the reference
  expression (‖z‖² + ‖e‖² − 2 z·eᵀ).argmin(1) and the bare matmul z @ eᵀ; ids against a float64
  argmin, differences allowed only at ties.
- BiART sampler, the issue layout (8 x 512, 8 heads, 256 image ids after a 34-id prefix,
  8192 codes) at batch 1 and 16: lverse's native sampler against the cached PyTorch loop of
  benches/bench_biart.py; greedy tokens against CPU.
- AugVAE-SL at 256 px, batch 1: encode + decode against the tests' PyTorch reference with the
  same weights; ids against CPU.

Times are medians of --repeats rounds after a warm-up, each round synchronized. Targets (the
packaging issue): sampler at batch 1 at least 2x the cached loop; VQ at least 1.5x the
reference and 90% of the matmul. With --device cpu it runs the same code on the CPU (a dry
run of this script; the targets are for CUDA).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lverse  # noqa: E402
import lverse.vq  # noqa: E402
from lverse import BiART  # noqa: E402

from benches.bench_biart import cached_torch_loop  # noqa: E402
from benches.bench_vq import method as vq_method  # noqa: E402
from tests.reference_augvae import ReferenceAugVAE  # noqa: E402
from tests.reference_mingpt import ReferenceBiART  # noqa: E402


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def median_time(fns: dict, device: str, repeats: int) -> dict[str, float]:
    """Each function timed `repeats` times, interleaved round by round, after one warm-up."""
    for fn in fns.values():
        fn()
    sync(device)
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            samples[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in samples.items()}


def vq_rows(device: str, repeats: int, n: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    z_cpu, e_cpu = torch.randn(n, 256, generator=g), torch.randn(8192, 256, generator=g)
    z, e = z_cpu.to(device), e_cpu.to(device)
    fns = {name: vq_method(name) for name in ("matmul", "reference", "lverse")}
    fns = {name: (lambda f=f: f(z, e)) for name, f in fns.items()}
    t = median_time(fns, device, repeats)
    ids = lverse.vq.nearest(z, e)[0].cpu()
    d64 = torch.cdist(z_cpu.double(), e_cpu.double()).square()
    best = d64.min(1).values
    got = d64.gather(1, ids[:, None]).squeeze(1)
    exact = (got == best).double().mean().item()
    ties_only = bool(((got - best) / best.clamp_min(1e-12) < 1e-5).all())
    return [
        dict(part="VQ", setting=f"N={n} K=8192 D=256", reference="reference expr", ref_s=t["reference"],
             lverse_s=t["lverse"], ratio=t["reference"] / t["lverse"], target=">= 1.5x",
             met=t["reference"] / t["lverse"] >= 1.5),
        dict(part="VQ", setting=f"N={n} K=8192 D=256", reference="bare matmul", ref_s=t["matmul"],
             lverse_s=t["lverse"], ratio=t["matmul"] / t["lverse"], target=">= 0.90x",
             met=t["matmul"] / t["lverse"] >= 0.9),
        dict(part="VQ parity", setting="ids = float64 argmin", reference="", ref_s=None, lverse_s=None,
             ratio=None, target="all but ties", met=ties_only, note=f"{100 * exact:.3f}% exact"),
    ]


def biart_rows(device: str, repeats: int, steps: int | None) -> list[dict]:
    text_vocab, image_vocab, text_len, image_len = 1000, 8192, 32, 256
    vocab, block = text_vocab + image_vocab + 4, 2 + text_len + image_len
    torch.manual_seed(0)
    model = BiART(vocab, block, n_layer=8, n_head=8, n_embd=512).eval()
    ref = ReferenceBiART(vocab, block, 8, 8, 512).eval()
    ref.load_state_dict(model.state_dict())
    cpu_model = copy.deepcopy(model)
    model, ref = model.to(device), ref.to(device)
    lo, hi = text_vocab, text_vocab + image_vocab
    steps = steps or image_len
    rows = []
    for b in (1, 16):
        idx = torch.randint(0, text_vocab, (b, text_len + 2), generator=torch.Generator().manual_seed(b)).to(device)
        seg = torch.zeros_like(idx)
        t = median_time({
            "lverse": lambda idx=idx, seg=seg: model.generate(idx, seg, steps, seed=0, token_range=(lo, hi)),
            "cached": lambda idx=idx, seg=seg: cached_torch_loop(ref, idx, seg, steps, lo, hi, 8),
        }, device, repeats)
        target = ">= 2x" if b == 1 else ""
        rows.append(dict(part="BiART sampler", setting=f"8x512, batch {b}, {steps} tokens",
                         reference="cached PyTorch", ref_s=t["cached"], lverse_s=t["lverse"],
                         ratio=t["cached"] / t["lverse"], target=target,
                         met=t["cached"] / t["lverse"] >= 2 if b == 1 else None,
                         note=f"{b * steps / t['lverse']:.0f} tok/s"))
    idx = torch.randint(0, text_vocab, (4, text_len + 2), generator=torch.Generator().manual_seed(5))
    seg = torch.zeros_like(idx)
    greedy = model.generate(idx.to(device), seg.to(device), 32, greedy=True, token_range=(lo, hi)).cpu()
    same = torch.equal(greedy, cpu_model.generate(idx, seg, 32, greedy=True, token_range=(lo, hi)))
    rows.append(dict(part="BiART parity", setting="greedy, 4 x 32 tokens", reference="", ref_s=None,
                     lverse_s=None, ratio=None, target="= CPU", met=same))
    return rows


def augvae_rows(device: str, repeats: int) -> list[dict]:
    torch.manual_seed(0)
    model = lverse.AugVAE.sl().eval()
    with torch.no_grad():
        model.quantizers[0].embedding.weight.normal_(0, 0.05)
    reference = ReferenceAugVAE(single_level=1).eval()
    reference.load_state_dict(model.state_dict())
    x_cpu = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        cpu_ids = model.encode(x_cpu)
    model, reference, x = model.to(device), reference.to(device), x_cpu.to(device)
    with torch.inference_mode():
        t = median_time({
            "lverse": lambda: model.decode(model.encode(x)),
            "reference": lambda: reference.decode(reference.encode(x)),
        }, device, repeats)
        ids = model.encode(x).cpu()
    equal = (ids == cpu_ids).double().mean().item()
    return [
        dict(part="AugVAE-SL", setting="256 px, batch 1, encode+decode", reference="PyTorch reference",
             ref_s=t["reference"], lverse_s=t["lverse"], ratio=t["reference"] / t["lverse"], target="", met=None),
        dict(part="AugVAE parity", setting="ids against CPU", reference="", ref_s=None, lverse_s=None, ratio=None,
             target="all but ties", met=None, note=f"{100 * equal:.3f}% equal"),
    ]


def table(rows: list[dict], title: str) -> str:
    def cell(v, fmt):
        return "-" if v is None else format(v, fmt)

    lines = [title, f"{'part':<15}{'setting':<34}{'against':<19}{'ref s':>9}{'lverse s':>10}{'ratio':>8}"
                    f"{'target':>14}{'met':>5}  note"]
    for r in rows:
        met = {True: "yes", False: "NO", None: "-"}[r["met"]]
        lines.append(f"{r['part']:<15}{r['setting']:<34}{r['reference']:<19}{cell(r['ref_s'], '.4f'):>9}"
                     f"{cell(r['lverse_s'], '.4f'):>10}{cell(r['ratio'], '.2f'):>8}{r['target']:>14}{met:>5}"
                     f"  {r.get('note', '')}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer rows and tokens (a dry run)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_cuda: no CUDA device (use --device cpu for a dry run)")
    name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    rows = vq_rows(args.device, args.repeats, 1024 if args.quick else 8192)
    rows += biart_rows(args.device, args.repeats, 16 if args.quick else None)
    rows += augvae_rows(args.device, args.repeats)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(table(rows, f"\nlverse {lverse.__version__} on {name}, torch {torch.__version__}; "
                      f"median of {args.repeats} synchronized rounds"))


if __name__ == "__main__":
    main()
