"""``python -m lverse eval``: the default model's quality on held-out shapes scenes:
caption exact match (split by object count; also plain greedy decoding without reranking),
round trip (generate from a held-out caption, caption the result through 8-bit pixels)
and AugVAE PSNR.

Held-out means unseen seeds, not unseen captions: the grammar has 9,648 captions (432 with
one object, 9,216 with two), and a training run draws each of them many times. One-object
scenes are fully fixed by their caption; two-object captions fix the relation, not where
the pair sits, so those pictures vary."""

import json
import time

from ._args import nonnegative_int, positive_int
from ._model import add_model_option, load_model


def register(sub):
    p = sub.add_parser("eval", help="measure caption accuracy, round trip and reconstruction on held-out scenes")
    p.add_argument("--scenes", type=positive_int, default=500, help="held-out scenes to caption")
    p.add_argument("--round-trip", type=nonnegative_int, default=200,
                   help="held-out captions to generate and re-caption (0: skip the round trip)")
    p.add_argument("--candidates", type=positive_int, default=16, help="images sampled per prompt for self-reranking")
    p.add_argument("--caption-candidates", type=nonnegative_int, default=16,
                   help="captions sampled per image to compete with the greedy one")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    add_model_option(p)
    p.set_defaults(run=run)


def run(args) -> int:
    import torch

    from lverse import images
    from lverse.data import shapes

    model = load_model(args)
    size = model.vae.config.resolution
    started = time.time()
    scenes = [shapes.scene(shapes.HELD_OUT_SEED + i, size=size) for i in range(args.scenes)]
    x = images.load([im for im, _ in scenes], size=size)
    with torch.inference_mode():
        recon = torch.cat([model.vae.decode(model.vae.encode(b)) for b in x.split(64)])
    psnr = images.psnr(x, recon).mean().item()
    predicted, greedy = [], []
    for start in range(0, len(scenes), 64):
        batch = [im for im, _ in scenes[start : start + 64]]
        predicted += model.caption(batch, candidates=args.caption_candidates)
        greedy += model.caption(batch, candidates=0)
    hits = [p == c for p, (_, c) in zip(predicted, scenes, strict=True)]
    greedy_hits = [p == c for p, (_, c) in zip(greedy, scenes, strict=True)]
    counts = [len(shapes.layout(shapes.HELD_OUT_SEED + i)) for i in range(len(scenes))]
    one = [h for h, n in zip(hits, counts, strict=True) if n == 1]
    two = [h for h, n in zip(hits, counts, strict=True) if n == 2]
    trips = []
    prompts = [text for _, text in scenes[: args.round_trip]]
    for chunk, start in enumerate(range(0, len(prompts), 25)):
        texts = prompts[start : start + 25]
        pictures = [p[0] for p in model.generate(texts, n=1, candidates=args.candidates, seed=args.seed + chunk)]
        read_back = model.caption(pictures, candidates=args.caption_candidates)
        trips += [r == t for r, t in zip(read_back, texts, strict=True)]

    def rate(xs):
        # None, not NaN, for an empty split: --json must stay valid JSON.
        return sum(xs) / len(xs) if xs else None

    def percent(key):
        value = result[key]
        return "n/a" if value is None else f"{100 * value:.1f}%"

    result = {
        "caption_exact_match": rate(hits), "caption_one_object": rate(one), "caption_two_objects": rate(two),
        "caption_greedy_exact_match": rate(greedy_hits), "scenes": len(hits), "two_object_scenes": len(two),
        "round_trip_exact_match": rate(trips), "round_trips": len(trips),
        "augvae_psnr_db": psnr, "seconds": time.time() - started,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"caption exact match   {percent('caption_exact_match')}  ({len(hits)} held-out scenes, "
          f"best of greedy + {args.caption_candidates} sampled by self-reranking)")
    print(f"  one object          {percent('caption_one_object')}  ({len(one)})")
    print(f"  two objects         {percent('caption_two_objects')}  ({len(two)})")
    print(f"  greedy alone        {percent('caption_greedy_exact_match')}")
    print(f"round trip            {percent('round_trip_exact_match')}  ({len(trips)} captions, "
          f"best of {args.candidates} images, read back with {args.caption_candidates} caption candidates)")
    print(f"AugVAE PSNR           {psnr:.2f} dB")
    return 0
