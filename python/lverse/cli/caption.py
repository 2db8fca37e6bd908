"""``python -m lverse caption IMAGE...``: one caption per line, in the order given."""

from pathlib import Path

from ._args import nonnegative_int, positive_int
from ._model import add_model_option, load_model


def register(sub):
    p = sub.add_parser("caption", help="caption images with the default (or a given) model")
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument("--beams", type=positive_int, default=None, help="beam search width (default: greedy)")
    p.add_argument("--candidates", type=nonnegative_int, default=16,
                   help="sampled captions that compete with the decoded one; the model keeps the caption "
                        "under which the image is most likely (0: the decoded caption as it is)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="images captioned together")
    add_model_option(p)
    p.set_defaults(run=run)


def run(args) -> int:
    missing = [str(p) for p in args.images if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no such image file: {', '.join(missing)}")
    model = load_model(args)
    for start in range(0, len(args.images), args.batch_size):
        batch = args.images[start : start + args.batch_size]
        for caption in model.caption(list(batch), beams=args.beams, candidates=args.candidates):
            # One line per image, whatever characters an (untrained) model emits.
            print("".join(ch if ch.isprintable() else " " for ch in caption))
    return 0
