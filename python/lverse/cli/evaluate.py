"""``python -m lverse eval``: a model's quality on held-out data.

With ``--data SPEC`` (captions:DIR, coco:JSON:IMAGE_DIR, folder:DIR), the paper's measures on
the last ``--held-out`` images of the user's data (``lverse.evaluation``): captions by BLEU,
METEOR, ROUGE-L and CIDEr; FID (and blurred FID-k) of images generated from their captions;
AugVAE reconstruction PSNR and rFID.

Without it, on held-out shapes scenes (the default model's data): caption exact match
(split by object count; also plain greedy decoding without reranking), round trip
(generate from a held-out caption, caption the result through 8-bit pixels) and AugVAE PSNR.

Held-out means unseen seeds, not unseen captions: the grammar has 9,648 captions (432 with
one object, 9,216 with two), and a training run draws each of them many times. One-object
scenes are fully fixed by their caption; two-object captions fix the relation, not where
the pair sits, so those pictures vary."""

import json
import time

from ._args import nonnegative_int, positive_int
from ._model import add_model_option, load_model
from .fid import blur_radii


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
    own = p.add_argument_group("on your own data (--data)")
    own.add_argument("--data", default=None,
                     help="captions:DIR, coco:JSON:IMAGE_DIR or folder:DIR: score the model on its held-out images")
    own.add_argument("--held-out", type=positive_int, default=None,
                     help="the last images of --data to score (default: those the model's training held out of "
                          "--data, else 64; more than training held out is refused)")
    own.add_argument("--blur", type=blur_radii, default=(0,), metavar="RADII",
                     help="blur radii for FID of generated images, e.g. 0,1,2,4,8 (default: 0, plain FID)")
    own.add_argument("--no-fid", action="store_true", help="skip FID and rFID (the Inception is slow on CPU)")
    own.add_argument("--no-meteor", action="store_true", help="skip METEOR (it starts Java)")
    add_model_option(p)
    p.set_defaults(run=run)


def run(args) -> int:
    if args.data is not None:
        return run_on_data(args)
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


def run_on_data(args) -> int:
    from lverse.evaluation import evaluate_on_data

    model = load_model(args)
    started = time.time()
    result = evaluate_on_data(model, args.data, held_out=args.held_out, blur=args.blur,
                              candidates=args.candidates, caption_candidates=args.caption_candidates,
                              seed=args.seed, fid=not args.no_fid, meteor=False if args.no_meteor else None)
    result["seconds"] = time.time() - started
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.data}: {result['held_out_images']} held-out images ({result['captioned_images']} captioned)")
    for name, value in (result.get("captions") or {}).items():
        shown = f"{value:.4f}" if value is not None else f"unavailable: {result.get('METEOR_unavailable')}"
        print(f"  {name:<22}{shown}")
    if "caption_exact_match" in result:
        print(f"  {'exact match':<22}{100 * result['caption_exact_match']:.1f}%  (tokenizer: "
              f"{result['caption_tokenizer']})")
    if result.get("fid"):
        for radius, value in result["fid"].items():
            label = "FID" if float(radius) == 0 else f"FID-{radius}"
            print(f"  {label:<22}{value:.2f}  ({result['generated_prompts']} generated from held-out captions, "
                  f"{result['prompts_with_unknown_words']} left out for unseen words)")
    elif result.get("fid_unavailable"):
        print(f"  {'FID':<22}unavailable: {result['fid_unavailable']}")
    print(f"  {'AugVAE PSNR':<22}{result['augvae_psnr_db']:.2f} dB")
    if result.get("rfid") is not None:
        print(f"  {'AugVAE rFID':<22}{result['rfid']:.2f}")
    for example in result.get("examples", []):
        print(f"  {example['image']}: {example['predicted']!r} (reference: {example['references'][0]!r})")
    return 0
