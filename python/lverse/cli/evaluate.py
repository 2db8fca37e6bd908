"""``python -m lverse eval``: the default model's quality on held-out shapes scenes:
caption exact match (split into captions seen and unseen in training), round trip
(generate from a held-out caption, caption the result through pixels) and AugVAE PSNR."""

import json
import time

from ._model import add_model_option, load_model

SEEN_SEEDS = 200_000  # captions of this many training seeds count as "seen"


def register(sub):
    p = sub.add_parser("eval", help="measure caption accuracy, round trip and reconstruction on held-out scenes")
    p.add_argument("--scenes", type=int, default=500, help="held-out scenes to caption")
    p.add_argument("--round-trip", type=int, default=100, help="held-out captions to generate and re-caption")
    p.add_argument("--candidates", type=int, default=8)
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
    seen_captions = {shapes.caption_of(shapes.layout(s)) for s in range(SEEN_SEEDS)}
    scenes = [shapes.scene(shapes.HELD_OUT_SEED + i, size=size) for i in range(args.scenes)]
    x = images.load([im for im, _ in scenes], size=size)
    with torch.inference_mode():
        recon = torch.cat([model.vae.decode(model.vae.encode(b)) for b in x.split(64)])
    psnr = images.psnr(x, recon).mean().item()
    predicted = []
    for start in range(0, len(scenes), 64):
        predicted += model.caption([im for im, _ in scenes[start : start + 64]])
    hits = [p == c for p, (_, c) in zip(predicted, scenes, strict=True)]
    seen = [h for h, (_, c) in zip(hits, scenes, strict=True) if c in seen_captions]
    unseen = [h for h, (_, c) in zip(hits, scenes, strict=True) if c not in seen_captions]
    trips = []
    for i, (_, text) in enumerate(scenes[: args.round_trip]):
        picture = model.generate(text, n=1, candidates=args.candidates, seed=args.seed + i)[0]
        trips.append(model.caption(picture) == text)

    def rate(xs):
        return sum(xs) / len(xs) if xs else float("nan")

    result = {
        "caption_exact_match": rate(hits), "caption_seen": rate(seen), "caption_unseen": rate(unseen),
        "scenes": len(hits), "seen_scenes": len(seen), "round_trip_exact_match": rate(trips),
        "round_trips": len(trips), "augvae_psnr_db": psnr, "seconds": time.time() - started,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"caption exact match   {100 * result['caption_exact_match']:.1f}%  ({len(hits)} held-out scenes)")
    print(f"  seen captions       {100 * result['caption_seen']:.1f}%  ({len(seen)})")
    print(f"  unseen captions     {100 * result['caption_unseen']:.1f}%  ({len(unseen)})")
    print(f"round trip            {100 * result['round_trip_exact_match']:.1f}%  ({len(trips)} captions, "
          f"best of {args.candidates} by self-reranking)")
    print(f"AugVAE PSNR           {psnr:.2f} dB")
    return 0
