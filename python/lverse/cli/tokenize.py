"""``python -m lverse tokenize``: encode a data source's images once with an AugVAE and
write their codes and captions to shards with a manifest, for ``train-biart --data
codes:DIR``. Killed midway, the same command resumes where the last shard ended."""

from pathlib import Path

from ._args import positive_int


def register(sub):
    p = sub.add_parser("tokenize", help="encode a data source once into code shards for train-biart")
    p.add_argument("--data", required=True,
                   help="shapes, fake, folder:DIR, captions:DIR or coco:JSON:IMAGE_DIR")
    p.add_argument("--vae", type=Path, default=None,
                   help="AugVAE checkpoint (.safetensors or official .ckpt; default: the shipped one)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output directory (shards + manifest.json)")
    p.add_argument("--count", type=positive_int, default=None,
                   help="images to tokenize (required for shapes and fake; default: all of a finite source)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images encoded at once")
    p.add_argument("--shard-size", type=positive_int, default=4096, help="images per shard")
    p.add_argument("--trip", action="store_true",
                   help="also store the codes read back after decoding to 8-bit pixels, which train-biart "
                        "--reencode trains the captioner on")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.set_defaults(run=run)


def run(args) -> int:
    import time

    from lverse.augvae import AugVAE
    from lverse.data.sources import from_spec
    from lverse.data.tokenizing import tokenize
    from lverse.weights import default_augvae_path

    vae_path = args.vae or default_augvae_path()
    vae = AugVAE.from_checkpoint(vae_path, map_location=args.device)
    source = from_spec(args.data, vae.config.resolution)
    started = time.time()
    manifest = tokenize(source, vae, args.out, data=args.data, count=args.count, batch_size=args.batch_size,
                        shard_size=args.shard_size, trip=args.trip, device=args.device, vae_file=str(vae_path))
    skipped = manifest["skipped"]
    print(f"{args.out}: {manifest['items']} images in {len(manifest['shards'])} shard(s), "
          f"{manifest['codes_per_image']} codes each, in {time.time() - started:.1f} s"
          + (f"; skipped {len(skipped)} unreadable (listed in {args.out / 'manifest.json'})" if skipped else ""))
    return 0
