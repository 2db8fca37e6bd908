"""BiART sampling speed on CPU, one run, same weights for every method:

* lverse: the native KV-cached sampler (``BiART.generate``);
* cached PyTorch: a plain PyTorch loop with a preallocated KV cache and SDPA;
* minGPT uncached: minGPT's ``sample`` (a full forward over the prefix per token);
* floor: one matrix-vector pass over every weight per token (what batch 1 must stream),
  with whichever of libtorch's two CPU linear kernels (MKL through ``F.linear``, oneDNN
  through ``mkldnn_linear``) is faster on this machine, so the floor is not a strawman.

    python benches/bench_biart.py            # issue layout + L-Verse layout
    python benches/bench_biart.py --quick    # fewer tokens, no uncached loop
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lverse import BiART  # noqa: E402

from tests.reference_mingpt import ReferenceBiART  # noqa: E402


def clock(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def mkl_linear(x, lin: torch.nn.Linear):
    """``lin(x)``: libtorch's CPU linear, an MKL sgemm."""
    return lin(x)


def onednn_linear(x, lin: torch.nn.Linear):
    """``lin(x)`` through oneDNN (reading the same dense weights), as lverse decodes."""
    return torch._C._nn.mkldnn_linear(x.contiguous().to_mkldnn(), lin.weight, lin.bias).to_dense()


@torch.inference_mode()
def cached_torch_loop(ref: ReferenceBiART, idx, seg, steps, lo, hi, n_head, linear=mkl_linear):
    """A straightforward KV-cached sampler in PyTorch (preallocated cache, SDPA); every
    Linear runs through ``linear``."""
    b, t = idx.shape
    d = ref.tok_emb.weight.shape[1]
    hs = d // n_head
    total = t + steps
    dev = idx.device
    caches = [(torch.zeros(b, n_head, total, hs, device=dev), torch.zeros(b, n_head, total, hs, device=dev))
              for _ in ref.blocks]

    def run(tokens, segs, start):
        n = tokens.shape[1]
        x = ref.tok_emb(tokens) + ref.seg_emb(segs) + ref.pos_emb[:, start : start + n]
        for block, (kc, vc) in zip(ref.blocks, caches, strict=True):
            h = block.ln1(x)
            a = block.attn

            def split(y):
                return y.view(b, n, n_head, hs).transpose(1, 2)

            kc[:, :, start : start + n] = split(linear(h, a.key))
            vc[:, :, start : start + n] = split(linear(h, a.value))
            y = F.scaled_dot_product_attention(split(linear(h, a.query)), kc[:, :, : start + n],
                                               vc[:, :, : start + n], is_causal=n > 1)
            x = x + linear(y.transpose(1, 2).reshape(b, n, d), a.proj)
            x = x + linear(F.gelu(linear(block.ln2(x), block.mlp[0])), block.mlp[2])
        return linear(ref.ln_f(x[:, -1]), ref.head)

    logits = run(idx, seg, 0)
    out = []
    gen = torch.ones(b, 1, dtype=torch.long, device=dev)
    for step in range(steps):
        probs = logits[:, lo:hi].softmax(-1)
        nxt = torch.multinomial(probs, 1) + lo
        out.append(nxt)
        if step + 1 < steps:
            logits = run(nxt, gen, t + step)
    return torch.cat(out, 1)


@torch.inference_mode()
def uncached_mingpt_loop(ref: ReferenceBiART, idx, seg, steps, lo, hi):
    gen = torch.ones(idx.shape[0], 1, dtype=torch.long)
    for _ in range(steps):
        logits = ref(idx, seg)[:, -1, lo:hi]
        nxt = torch.multinomial(logits.softmax(-1), 1) + lo
        idx = torch.cat([idx, nxt], 1)
        seg = torch.cat([seg, gen], 1)
    return idx


def weight_streaming_floor(ref: ReferenceBiART, batch: int, kernel: str):
    """A function running ``steps`` tokens' worth of one matrix-vector pass over every
    Linear weight and the head, applied to (batch, d) inputs: what batch 1 must stream.
    ``kernel`` is "mkl" (``F.linear``) or "onednn"."""
    d = ref.tok_emb.weight.shape[1]
    x = torch.randn(batch, d)
    h = torch.randn(batch, 4 * d)
    layers = []
    for block in ref.blocks:
        a = block.attn
        layers += [(a.key, x), (a.query, x), (a.value, x), (a.proj, x), (block.mlp[0], x), (block.mlp[2], h)]
    layers.append((ref.head, x))
    apply = onednn_linear if kernel == "onednn" else mkl_linear

    @torch.inference_mode()
    def run(steps: int) -> None:
        for _ in range(steps):
            for lin, inp in layers:
                apply(inp, lin)

    run(1)  # warm-up
    return run


def median_of(repeats: int, *calls) -> list[float]:
    """Each call timed ``repeats`` times, interleaved (so drifts in machine speed hit every
    method alike); the median of each."""
    samples = [[] for _ in calls]
    for _ in range(repeats):
        for i, (fn, args, kwargs) in enumerate(calls):
            samples[i].append(clock(fn, *args, **kwargs))
    return [statistics.median(s) for s in samples]


def bench(name, n_layer, n_embd, n_head, text_len, image_len, image_vocab, text_vocab, batches, steps, uncached,
          repeats=3):
    vocab = text_vocab + image_vocab + 4
    block = 2 + text_len + image_len
    torch.manual_seed(0)
    model = BiART(vocab, block, n_layer=n_layer, n_head=n_head, n_embd=n_embd).eval()
    ref = ReferenceBiART(vocab, block, n_layer, n_head, n_embd).eval()
    ref.load_state_dict(model.state_dict())
    lo, hi = text_vocab, text_vocab + image_vocab
    steps = steps or image_len
    rows = []
    for b in batches:
        idx = torch.randint(0, text_vocab, (b, text_len + 2))
        seg = torch.zeros_like(idx)
        model.generate(idx, seg, 4, seed=0, token_range=(lo, hi))  # warm-up
        t_lv, t_cached, t_cached_onednn, t_mkl, t_onednn = median_of(
            repeats,
            (model.generate, (idx, seg, steps), dict(seed=0, token_range=(lo, hi))),
            (cached_torch_loop, (ref, idx, seg, steps, lo, hi, n_head), {}),
            (cached_torch_loop, (ref, idx, seg, steps, lo, hi, n_head), dict(linear=onednn_linear)),
            (weight_streaming_floor(ref, b, "mkl"), (steps,), {}),
            (weight_streaming_floor(ref, b, "onednn"), (steps,), {}),
        )
        t_unc = clock(uncached_mingpt_loop, ref, idx, seg, steps, lo, hi) if uncached and b == 1 else None
        floor = min((t_mkl, "mkl"), (t_onednn, "onednn"))
        rows.append((name, b, steps, t_lv, t_cached, t_unc, floor, t_mkl, t_onednn, t_cached_onednn))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rows = []
    # The shipped default model's size: 4 x 256 x 4 heads, 64 image ids after a 16-id prefix.
    rows += bench("default 4x256", 4, 256, 4, 14, 64, 256, 64, [1, 16], None, uncached=not args.quick, repeats=5)
    # The layout: 256 image ids after a 32-id caption, 8 x 512 x 8 heads, 8192 codes.
    rows += bench("issue 8x512", 8, 512, 8, 32, 256, 8192, 1000, [1, 16],
                  64 if args.quick else None, uncached=not args.quick)
    # L-Verse's own layout: 1024 image ids after 64 text ids, 12 x 512 (one round: minutes).
    rows += bench("L-Verse 12x512", 12, 512, 8, 64, 1024, 8192, 1000, [1, 16],
                  64 if args.quick else None, uncached=False, repeats=1)
    print(f"\nBiART sampling on CPU ({torch.get_num_threads()} threads); seconds for the whole continuation, "
          "median of 3 interleaved rounds (L-Verse layout: 1 round)")
    header = (f"{'model':<15}{'batch':>6}{'tokens':>7}{'lverse s':>10}{'cached s':>10}{'uncached s':>11}"
              f"{'floor s':>9}{'(kernel)':>9}{'lverse/floor':>13}{'vs cached':>10}{'vs uncached':>12}"
              f"{'lverse tok/s':>13}{'mkl pass s':>11}{'onednn pass s':>14}{'cached+onednn s':>16}{'vs it':>7}")
    print(header)
    for name, b, steps, lv, cached, unc, (floor, kernel), mkl, onednn, cached_onednn in rows:
        unc_s = f"{unc:>11.2f}" if unc else f"{'-':>11}"
        unc_r = f"{unc / lv:>11.1f}x" if unc else f"{'-':>12}"
        print(f"{name:<15}{b:>6}{steps:>7}{lv:>10.2f}{cached:>10.2f}{unc_s}{floor:>9.2f}{kernel:>9}"
              f"{100 * floor / lv:>12.0f}%{cached / lv:>9.2f}x{unc_r}{b * steps / lv:>13.1f}{mkl:>11.2f}"
              f"{onednn:>14.2f}{cached_onednn:>16.2f}{cached_onednn / lv:>6.2f}x")


if __name__ == "__main__":
    main()
