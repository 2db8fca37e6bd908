"""``python -m lverse reconstruct IMAGE... --ckpt PATH -o DIR``: encode and decode images
through an AugVAE, write the reconstructions and print each image's PSNR."""

from pathlib import Path


def register(sub):
    p = sub.add_parser("reconstruct", help="reconstruct images through an AugVAE checkpoint")
    p.add_argument("images", nargs="+", type=Path, help="image files")
    p.add_argument("--ckpt", type=Path, default=None,
                   help="AugVAE checkpoint: official Lightning .ckpt or lverse .safetensors "
                        "(default: the AugVAE shipped with lverse)")
    p.add_argument("-o", "--output", type=Path, default=Path("reconstructions"),
                   help="directory for the reconstructed PNGs (default: reconstructions)")
    p.add_argument("--size", type=int, default=None,
                   help="resize/crop side in pixels (default: the model's resolution)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.set_defaults(run=run)


def run(args) -> int:
    import torch
    from tqdm import tqdm

    from lverse import AugVAE, images

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    missing = [str(p) for p in args.images if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no such image file: {', '.join(missing)}")
    from lverse.weights import default_augvae_path

    model = AugVAE.from_checkpoint(args.ckpt or default_augvae_path(), map_location=args.device)
    size = args.size or model.config.resolution
    args.output.mkdir(parents=True, exist_ok=True)
    scores = []
    # disable=None: a bar on a terminal, none in logs and pipes.
    progress = tqdm(total=len(args.images), unit="img", desc="reconstruct", leave=False, disable=None)
    with torch.inference_mode():
        for start in range(0, len(args.images), args.batch_size):
            batch_paths = args.images[start : start + args.batch_size]
            x = images.load(batch_paths, size=size).to(args.device)
            recon = model.decode(model.encode(x))
            for path, image, score in zip(
                batch_paths, images.to_pil(recon), images.psnr(x, recon), strict=True
            ):
                target = args.output / f"{path.stem}.png"
                image.save(target)
                scores.append(score.item())
                progress.write(f"{path}  ->  {target}  PSNR {score.item():.2f} dB")
            progress.update(len(batch_paths))
    progress.close()
    print(f"{len(scores)} image(s), mean PSNR {sum(scores) / len(scores):.2f} dB")
    return 0
