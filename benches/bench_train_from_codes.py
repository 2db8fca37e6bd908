"""train-biart's step time with codes read from shards (``--data codes:DIR``) against
encoding every batch with the frozen AugVAE at every step (the old loop), at the same
settings, for the shipped 64 px AugVAE and an official-size AugVAE-SL at 256 px. Prints
one table with ratios.

    python benches/bench_train_from_codes.py [--steps 4] [--quick]

The 256 px rows use random official-size weights (what matters is the cost, not the codes)
and a small BiART (4 layers x 256), so the AugVAE's share is what an on-the-fly loop pays
on top of any transformer.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lverse
import numpy as np
import torch
from lverse.data.sources import from_spec
from lverse.data.tokenizing import tokenize
from lverse.layout import TokenLayout
from lverse.tokenizer import Tokenizer
from lverse.train.biart import make_optimizer, train_step
from lverse.train.common import grad_scaler
from lverse.train.pairs import CodePairs, EncodedPairs
from lverse.weights import default_augvae_path
from PIL import Image


def photos(folder: Path, count: int, size: int) -> str:
    """Smooth random pictures with captions, as a captions:DIR source."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((size + size // 4, size), Image.BICUBIC).save(folder / f"{i}.jpg", quality=90)
        (folder / f"{i}.txt").write_text(f"a picture numbered {i}\n")
    return f"captions:{folder}"


def step_times(pairs, layout, tokenizer, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model = lverse.BiART.for_layout(layout, tokenizer, n_layer=4, n_head=4, n_embd=256).train()
    optimizer, scaler = make_optimizer(model, 1e-3), grad_scaler(torch.device("cpu"), None)
    g = torch.Generator().manual_seed(0)
    samples = []
    for k in range(steps + 1):
        start = time.perf_counter()
        train_step(model, model, optimizer, scaler, pairs.batch(batch, g, torch.device("cpu")), layout,
                   tokenizer, None)
        if k:  # the first step warms allocators up
            samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def bench(name: str, vae: lverse.AugVAE, spec: str, count: int, batch: int, text_len: int, steps: int,
          work: Path) -> tuple:
    vae_file = work / f"{name}.safetensors"
    vae.save(vae_file)
    started = time.perf_counter()
    tokenize(from_spec(spec, vae.config.resolution), vae, work / f"codes-{name}", data=spec, count=count,
             batch_size=8, trip=True)
    tokenize_s = time.perf_counter() - started
    codes = CodePairs(str(work / f"codes-{name}"), vae, name, held_out=0, reencode=0.5)
    encoded = EncodedPairs(spec, vae, held_out=0, reencode=0.5, using_default_vae=False)
    tokenizer = Tokenizer.train([c for cs in codes.data.captions for c in cs], 600)
    layout = TokenLayout(text_vocab=tokenizer.vocab_size, image_vocab=vae.config.num_tokens, text_len=text_len,
                         image_len=vae.tokens_per_image)
    on_the_fly = step_times(encoded, layout, tokenizer, batch, steps)
    from_codes = step_times(codes, layout, tokenizer, batch, steps)
    return name, batch, vae.tokens_per_image, on_the_fly, from_codes, tokenize_s / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per row (median)")
    parser.add_argument("--quick", action="store_true", help="the 64 px row only")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shipped = lverse.AugVAE.from_checkpoint(default_augvae_path())
        rows.append(bench("shipped 64 px SL", shipped, "shapes", 2000, 48, 14, args.steps, work))
        if not args.quick:
            torch.manual_seed(0)
            official = lverse.AugVAE.sl().eval()
            with torch.no_grad():
                official.quantizers[0].embedding.weight.normal_(0, 0.05)
            spec = photos(work / "photos", 8, 256)
            rows.append(bench("official-size 256 px SL", official, spec, 8, 4, 16, args.steps, work))
    print(f"\ntrain-biart step time, BiART 4x256, {torch.get_num_threads()} threads, median of {args.steps} steps")
    print(f"{'AugVAE':<26}{'batch':>6}{'codes':>7}{'encoded each step':>19}{'from shards':>13}{'ratio':>8}"
          f"{'tokenize once':>16}")
    for name, batch, length, fly, shards, per_image in rows:
        print(f"{name:<26}{batch:>6}{length:>7}{fly:>17.3f} s{shards:>11.3f} s{fly / shards:>7.1f}x"
              f"{per_image:>11.3f} s/img")
    return 0


if __name__ == "__main__":
    sys.exit(main())
