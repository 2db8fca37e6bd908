"""Training-step speed on CPU: lverse's modules against the independent plain-PyTorch
references of tests/ (the module a user would otherwise write), same weights, one run.

A step is forward + loss + backward + AdamW. BiART: next-token cross-entropy; AugVAE-SL:
L2 reconstruction + commitment, EMA codebook update on. Each row reports the median of
several interleaved steps after warm-up, and, with ``--compile``, lverse's module under
``torch.compile`` (inductor; its compile time is excluded and printed apart).

    python benches/bench_train.py                # every row, eager
    python benches/bench_train.py --compile      # plus torch.compile rows
    python benches/bench_train.py --quick        # small rows only
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lverse  # noqa: E402

from tests.conftest import reference_for  # noqa: E402
from tests.reference_mingpt import ReferenceBiART  # noqa: E402


def biart_pair(layers: int, width: int, block: int):
    torch.manual_seed(0)
    model = lverse.BiART(1000, block, n_layer=layers, n_head=8, n_embd=width,
                         embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0)
    reference = ReferenceBiART(1000, block, layers, 8, width)
    reference.load_state_dict(model.state_dict())
    return model, reference


def augvae_pair(config: lverse.AugVAEConfig):
    torch.manual_seed(0)
    model = lverse.AugVAE(config)
    reference = reference_for(config)
    reference.load_state_dict(model.state_dict())
    return model, reference


def biart_step(batch: int, tokens: int) -> Callable:
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, 1000, (batch, tokens), generator=g)
    seg = (torch.arange(tokens) >= tokens // 2).long().expand(batch, tokens).contiguous()

    def loss(model):
        logits = model(idx[:, :-1], seg[:, :-1])
        return F.cross_entropy(logits.flatten(0, 1), idx[:, 1:].flatten())

    return loss


def augvae_step(batch: int, size: int) -> Callable:
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1

    def loss(model):
        recon, commitment = model(x)
        return F.mse_loss(recon, x) + commitment

    return loss


def stepper(model, loss_fn) -> Callable[[], None]:
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model).backward()
        opt.step()

    return step


def interleaved_medians(steps: int, *fns: Callable[[], None]) -> list[float]:
    """Each step function once as warm-up, then ``steps`` rounds calling each in turn (so a
    drift in the machine's speed hits every method alike); the median time of each."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(steps):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the small rows")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(lverse module)")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()

    small_vae = lverse.AugVAEConfig(hidden_dim=64, ch_mult=(1, 2, 2), inner_ch_mult=(2, 4), num_res_blocks=1,
                                    z_channels=64, codebook_dim=64, num_tokens=256, resolution=64, levels=3,
                                    single_level=1)
    rows = [
        ("BiART 4x256, batch 48 x 80", lambda: biart_pair(4, 256, 128), biart_step(48, 81), args.steps),
        ("BiART 8x512, batch 8 x 288", lambda: biart_pair(8, 512, 288), biart_step(8, 289), args.steps),
        ("AugVAE-SL small, 64 px, batch 8", lambda: augvae_pair(small_vae), augvae_step(8, 64), args.steps),
    ]
    if not args.quick:
        rows.append(("AugVAE-SL official, 256 px, batch 1", lambda: augvae_pair(lverse.AugVAEConfig(single_level=1)),
                     augvae_step(1, 256), max(2, args.steps // 2)))
    else:
        rows = rows[:1] + rows[2:3]

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of the steps after one warm-up")
    header = f"| {'training step':36} | reference ms | lverse ms | lverse / ref speed |"
    if args.compile:
        header += " compiled ms | compiled / ref speed | compile s |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, build, loss_fn, steps in rows:
        model, reference = build()
        fns = [stepper(reference, loss_fn), stepper(model, loss_fn)]
        if args.compile:
            compiled_model, _ = build()
            fns.append(stepper(torch.compile(compiled_model, fullgraph=True), loss_fn))
            start = time.perf_counter()
            fns[-1]()  # compiles
            compile_s = time.perf_counter() - start
        ref_s, ours_s, *compiled = interleaved_medians(steps, *fns)
        line = f"| {name:36} | {ref_s * 1e3:12.1f} | {ours_s * 1e3:9.1f} | {ref_s / ours_s:17.2f}x |"
        if compiled:
            line += f" {compiled[0] * 1e3:11.1f} | {ref_s / compiled[0]:19.2f}x | {compile_s:9.1f} |"
        print(line, flush=True)


if __name__ == "__main__":
    main()
