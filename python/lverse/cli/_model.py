"""The ``--model`` option shared by the commands that run the whole model."""

from pathlib import Path


def add_model_option(parser) -> None:
    parser.add_argument("--model", type=Path, default=None,
                        help="model directory (augvae.safetensors + biart.safetensors); default: the shipped model")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")


def load_model(args):
    from lverse.pipeline import default_model, load

    model = load(args.model, device=args.device) if args.model else default_model()
    return model.to(args.device)
