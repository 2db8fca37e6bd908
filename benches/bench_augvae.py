"""AugVAE encode + decode on CPU: lverse against the tests' plain-PyTorch reference with
the same weights, measured in one run. Prints one table with ratios.

    python benches/bench_augvae.py [--batch 1] [--repeats 3] [--ml]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lverse  # noqa: E402

from tests.reference_augvae import ReferenceAugVAE  # noqa: E402


def timed(fn, repeats: int) -> float:
    fn()  # warm-up: allocator, oneDNN primitive caches
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def bench(kind: str, batch: int, repeats: int) -> list[tuple]:
    torch.manual_seed(0)
    model = lverse.AugVAE.sl() if kind == "SL" else lverse.AugVAE.ml()
    model.eval()
    with torch.no_grad():  # codebook spread like trained features
        model.quantizers[0].embedding.weight.normal_(0, 0.05)
    reference = ReferenceAugVAE(single_level=1 if kind == "SL" else None).eval()
    reference.load_state_dict(model.state_dict())
    x = torch.rand(batch, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        ids = reference.encode(x)
        agree = (model.encode(x) == ids).double().mean().item()
    print(f"{kind}: lverse and the reference give the same id for {100 * agree:.2f}% of codes")
    rows = []
    with torch.inference_mode():
        enc_ref = timed(lambda: reference.encode(x), repeats)
        enc_lv = timed(lambda: model.encode(x), repeats)
        dec_ref = timed(lambda: reference.decode(ids), repeats)
        dec_lv = timed(lambda: model.decode(ids), repeats)
    rows.append((kind, "encode", enc_ref, enc_lv))
    rows.append((kind, "decode", dec_ref, dec_lv))
    rows.append((kind, "encode+decode", enc_ref + dec_ref, enc_lv + dec_lv))
    return rows


STAGES = {
    "convolution": ("aten::mkldnn_convolution", "aten::_convolution", "aten::convolution", "aten::conv2d",
                    "aten::_slow_conv2d_forward", "aten::thnn_conv2d"),
    "group norm": ("aten::native_group_norm", "aten::group_norm"),
    "swish": ("aten::silu",),
    "nearest search": ("aten::einsum", "aten::bmm", "aten::mm", "aten::argmin", "aten::pow", "aten::sum"),
}


def profile(kind: str) -> list[tuple]:
    """Share of self CPU time per stage in lverse's encode and decode (libtorch's profiler
    sees the ops the native core dispatches)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.manual_seed(0)
    model = (lverse.AugVAE.sl() if kind == "SL" else lverse.AugVAE.ml()).eval()
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    rows = []
    with torch.inference_mode():
        ids = model.encode(x)
        for stage, fn in (("encode", lambda: model.encode(x)), ("decode", lambda: model.decode(ids))):
            with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                fn()
            totals = {}
            for event in prof.key_averages():
                group = next((g for g, names in STAGES.items() if event.key in names), "other")
                totals[group] = totals.get(group, 0.0) + event.self_cpu_time_total
            whole = sum(totals.values())
            for group, t in sorted(totals.items(), key=lambda kv: -kv[1]):
                rows.append((kind, stage, group, t / 1e6, 100 * t / whole))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ml", action="store_true", help="also the official-size ML model")
    parser.add_argument("--profile", action="store_true", help="also the per-stage profile of lverse")
    args = parser.parse_args()
    kinds = ["SL", "ML"] if args.ml else ["SL"]
    rows = [row for kind in kinds for row in bench(kind, args.batch, args.repeats)]
    print(f"\nAugVAE 256x256, batch {args.batch}, CPU, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}")
    print(f"{'model':<6}{'stage':<15}{'reference s':>13}{'lverse s':>11}{'speed-up':>10}")
    for kind, stage, ref, lv in rows:
        print(f"{kind:<6}{stage:<15}{ref:>13.3f}{lv:>11.3f}{ref / lv:>9.2f}x")
    if args.profile:
        print("\nlverse per-stage profile (self CPU time)")
        print(f"{'model':<6}{'call':<8}{'stage':<16}{'seconds':>9}{'share':>8}")
        for kind, call, group, seconds, share in [r for k in kinds for r in profile(k)]:
            print(f"{kind:<6}{call:<8}{group:<16}{seconds:>9.3f}{share:>7.1f}%")


if __name__ == "__main__":
    main()
