"""``python -m lverse generate "TEXT" -n 4 -o out.png``: images for a text, saved as one
PNG grid (and printed paths)."""

from pathlib import Path

from ._args import image_file, positive_float, positive_int
from ._model import add_model_option, load_model


def register(sub):
    p = sub.add_parser("generate", help="generate images from text with the default (or a given) model")
    p.add_argument("text")
    p.add_argument("-n", type=positive_int, default=4, help="images to keep")
    p.add_argument("--candidates", type=positive_int, default=8, help="images sampled per text before reranking")
    p.add_argument("--no-rerank", action="store_true", help="keep the first candidates instead of reranking")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--top-k", type=positive_int, default=None)
    p.add_argument("--temperature", type=positive_float, default=1.0)
    p.add_argument("-o", "--output", type=image_file, default=Path("generated.png"),
                   help="image file for the grid; its extension (.png, .jpg, ...) sets the format "
                        "(default: generated.png)")
    add_model_option(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from lverse.images import grid

    model = load_model(args)
    # generate draws its own bar (on stderr; LVERSE_PROGRESS=0 turns it off).
    pictures = model.generate(args.text, n=args.n, candidates=args.candidates, rerank=not args.no_rerank,
                              seed=args.seed, top_k=args.top_k, temperature=args.temperature)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    grid(pictures, columns=len(pictures)).save(args.output)
    print(f"{len(pictures)} image(s) for {args.text!r} -> {args.output}")
    return 0
