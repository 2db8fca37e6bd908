"""``tokenize`` throughput at 256 px with an official-size AugVAE-SL against a plain PyTorch
loop: a Dataset that opens each file with PIL and applies the evaluation transform (resize
the shorter side to 256, center crop, [-1, 1]), a DataLoader with one worker decoding ahead,
and the tests' reference encoder (tests/reference_augvae.py, same weights). Both write the
codes to disk; the codes are compared. Prints one table with the ratio.

    python benches/bench_tokenize.py [--images 12] [--batch-size 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lverse  # noqa: E402
from lverse.data.codes import read_codes  # noqa: E402
from lverse.data.sources import from_spec  # noqa: E402
from lverse.data.tokenizing import tokenize  # noqa: E402

from tests.reference_augvae import ReferenceAugVAE  # noqa: E402


def photo_files(folder: Path, count: int) -> list[Path]:
    """scikit-image's photos when installed (cycled to ``count``), else smooth random pictures;
    JPEGs of about 512 px, as a dataset's files would be."""
    folder.mkdir()
    try:
        import skimage.data as data

        pictures = [getattr(data, n)() for n in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")]
    except ImportError:
        rng = np.random.default_rng(0)
        pictures = [np.asarray(Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((600, 450)))
                    for _ in range(5)]
    paths = []
    for i in range(count):
        path = folder / f"{i:04d}.jpg"
        Image.fromarray(pictures[i % len(pictures)]).convert("RGB").save(path, quality=92)
        paths.append(path)
    return paths


class EvalTransformDataset(torch.utils.data.Dataset):
    def __init__(self, paths, size: int = 256):
        self.paths, self.size = paths, size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        image = Image.open(self.paths[i]).convert("RGB")
        w, h = image.size
        scale = self.size / min(w, h)
        image = image.resize((max(self.size, round(w * scale)), max(self.size, round(h * scale))), Image.BILINEAR)
        w, h = image.size
        left, top = (w - self.size) // 2, (h - self.size) // 2
        image = image.crop((left, top, left + self.size, top + self.size))
        return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 127.5 - 1


def plain_loop(reference, paths, batch_size: int, out: Path) -> float:
    loader = torch.utils.data.DataLoader(EvalTransformDataset(paths), batch_size=batch_size, num_workers=1)
    start = time.perf_counter()
    codes = []
    with torch.inference_mode():
        for batch in loader:
            codes.append(reference.encode(batch))
    torch.save(torch.cat(codes).to(torch.int16), out)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    torch.manual_seed(0)
    vae = lverse.AugVAE.sl().eval()
    with torch.no_grad():
        vae.quantizers[0].embedding.weight.normal_(0, 0.05)  # spread like trained features
    reference = ReferenceAugVAE(single_level=1).eval()
    reference.load_state_dict(vae.state_dict())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = photo_files(work / "photos", args.images)
        spec = f"folder:{work / 'photos'}"
        with torch.inference_mode():  # warm both up (allocator, oneDNN primitives)
            x = lverse.images.load(paths[:1], size=256)
            vae.encode(x)
            reference.encode(x)
        ref_s = plain_loop(reference, paths, args.batch_size, work / "reference.pt")
        start = time.perf_counter()
        tokenize(from_spec(spec, 256), vae, work / "codes", data=spec, batch_size=args.batch_size)
        ours_s = time.perf_counter() - start
        ours = read_codes(work / "codes").codes
        theirs = torch.load(work / "reference.pt").long()
    agree = (ours == theirs).double().mean().item()
    print(f"\ntokenize, {args.images} photos at 256 px, official-size AugVAE-SL, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads (same code for {100 * agree:.2f}% of the {ours.numel()} codes; the "
          "reference's PIL bilinear resize differs slightly from lverse's antialiased one)")
    print(f"{'method':<58}{'images/s':>10}{'ratio':>8}")
    print(f"{'PyTorch loop: DataLoader (1 worker) + reference encoder':<58}{args.images / ref_s:>10.3f}{1.0:>7.2f}x")
    print(f"{'lverse tokenize':<58}{args.images / ours_s:>10.3f}{ref_s / ours_s:>7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
