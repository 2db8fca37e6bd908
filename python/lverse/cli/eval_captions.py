"""``python -m lverse eval-captions``: BLEU-1..4, METEOR, ROUGE-L and CIDEr of predicted
captions (a COCO results file) against COCO reference captions, computed offline as the
COCO caption evaluation (pycocoevalcap) computes them. The captions are tokenized by
Stanford's PTBTokenizer, the jar in an installed pycocoevalcap, where Java and pycocoevalcap
are here, else by lverse's approximation of it, and the output says which. METEOR needs
Java and pycocoevalcap's jar too; without them it is reported unavailable and the others
are still computed."""

import json


def register(sub):
    p = sub.add_parser(
        "eval-captions",
        help="score predicted captions against COCO references (BLEU, METEOR, ROUGE-L, CIDEr)",
        description="Score predicted captions against COCO references as pycocoevalcap does. "
        "Tokenizes with Stanford's PTBTokenizer (the jar in pycocoevalcap>=1.2) where "
        "Java and pycocoevalcap are installed, else with lverse's approximation of it "
        "(the output says which); METEOR needs both too.",
    )
    p.add_argument(
        "--references",
        required=True,
        metavar="COCO_JSON",
        help='COCO captions annotations: {"images": [...], "annotations": [{"image_id", "caption"}, ...]}',
    )
    p.add_argument(
        "--predictions",
        required=True,
        metavar="RESULTS_JSON",
        help='COCO results: [{"image_id", "caption"}, ...], one per image; only these images are scored',
    )
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (it starts Java and loads 60 MB of tables)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(run=run)


def run(args) -> int:
    from lverse.metrics import captions
    from lverse.metrics.meteor import MeteorError

    references = captions.load_coco_references(args.references)
    predictions = captions.load_coco_results(args.predictions)
    unavailable = "skipped (--no-meteor)" if args.no_meteor else captions.meteor_unavailable_reason()
    captions.check_predictions(
        references, predictions, references_name=args.references, predictions_name=args.predictions
    )
    try:
        scores = captions.score_captions(references, predictions, meteor=unavailable is None)
    except MeteorError as err:
        raise RuntimeError(f"{err} (--no-meteor skips METEOR)") from None
    if args.json:
        result: dict[str, object] = {name: scores.get(name) for name in captions.METRICS}
        if unavailable is not None:
            result["METEOR_unavailable"] = unavailable
        result["images"] = len(predictions)
        result["tokenizer"] = scores.tokenizer
        result["exact_tokenization"] = scores.exact_tokenization
        print(json.dumps(result))
        return 0
    width = max(map(len, captions.METRICS))
    print(f"{'metric':<{width}}  value")
    for name in captions.METRICS:
        value = f"{scores[name]:.6f}" if name in scores else f"unavailable: {unavailable}"
        print(f"{name:<{width}}  {value}")
    print(f"({len(predictions)} predicted images scored; {len(references)} images have references)")
    print(f"tokenizer: {scores.tokenizer}")
    return 0
