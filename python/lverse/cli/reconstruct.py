"""``python -m lverse reconstruct IMAGE... --ckpt PATH -o DIR``: encode and decode images
through an AugVAE, write the reconstructions and print each image's PSNR."""

from pathlib import Path

from ._args import positive_int


def register(sub):
    p = sub.add_parser("reconstruct", help="reconstruct images through an AugVAE checkpoint")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files")
    p.add_argument("--ckpt", type=Path, default=None,
                   help="AugVAE checkpoint: official Lightning .ckpt or lverse .safetensors "
                        "(default: the AugVAE shipped with lverse)")
    p.add_argument("-o", "--output", type=Path, default=Path("reconstructions"), metavar="DIR",
                   help="directory for the reconstructed PNGs, one DIR/NAME.png per IMAGE/NAME.ext (default: "
                        "reconstructions); when two images share a NAME, every output is numbered by its "
                        "position on the command line instead (1-NAME.png, 2-NAME.png, ...) so none is overwritten")
    p.add_argument("--size", type=positive_int, default=None,
                   help="square side in pixels: each image's shorter side is resized to SIZE, then center-cropped "
                        "to SIZE x SIZE before encoding (default: the model's resolution)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="images encoded together")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.set_defaults(run=run)


def run(args) -> int:
    import torch
    from tqdm import tqdm

    from lverse import AugVAE, images
    from lverse.progress import progress_enabled

    missing = [str(p) for p in args.images if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no such image file: {', '.join(missing)}")
    from lverse.weights import default_augvae_path

    model = AugVAE.from_checkpoint(args.ckpt or default_augvae_path(), map_location=args.device)
    size = model.config.resolution if args.size is None else args.size
    args.output.mkdir(parents=True, exist_ok=True)
    targets = output_paths(args.images, args.output)
    scores = []
    # disable=None: a bar on a terminal, none in logs and pipes.
    progress = tqdm(total=len(args.images), unit="img", desc="reconstruct", leave=False,
                    disable=not progress_enabled() or None)
    with torch.inference_mode():
        for start in range(0, len(args.images), args.batch_size):
            batch_paths = args.images[start : start + args.batch_size]
            x = images.load(batch_paths, size=size).to(args.device)
            recon = model.decode(model.encode(x))
            batch_targets = targets[start : start + args.batch_size]
            for path, target, image, score in zip(
                batch_paths, batch_targets, images.to_pil(recon), images.psnr(x, recon), strict=True
            ):
                image.save(target)
                scores.append(score.item())
                progress.write(f"{path}  ->  {target}  PSNR {score.item():.2f} dB")
            progress.update(len(batch_paths))
    progress.close()
    print(f"{len(scores)} image(s), mean PSNR {sum(scores) / len(scores):.2f} dB")
    return 0


def output_paths(inputs: list[Path], directory: Path) -> list[Path]:
    """DIR/NAME.png for each input, or DIR/<position>-NAME.png for all of them when two
    inputs share a NAME (d1/x.png and d2/x.jpg), so that no reconstruction overwrites another."""
    # Compared without case: on macOS and Windows X.png and x.png are the same file.
    stems = [path.stem.casefold() for path in inputs]
    if len(set(stems)) == len(stems):
        return [directory / f"{path.stem}.png" for path in inputs]
    # Zero-padded so that the files sort in the order given.
    width = len(str(len(inputs)))
    return [directory / f"{i:0{width}d}-{path.stem}.png" for i, path in enumerate(inputs, start=1)]
