"""Where training pairs come from: lverse's shapes scenes, what users have on disk (an
ImageFolder-style tree, image + same-name .txt captions, a COCO captions JSON), and random
fake data for smoke runs (as the original repository's ``--fake_data``).

Every source draws ``(image, caption)`` pairs by index; an image that cannot be read is
skipped (another one is drawn) and counted in ``source.skipped``, never a crash.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from .. import images as image_io
from ..errors import ImageError, first_line
from . import shapes

log = logging.getLogger("lverse.data")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class Source:
    """A finite or procedural collection of captioned images."""

    size: int = 256
    skipped: int = 0

    def __len__(self) -> int:
        raise NotImplementedError

    def item(self, index: int):
        """(image: path | PIL image, caption: str | None) of one entry."""
        raise NotImplementedError

    # Tokenizing reads images, not pairs: an image with five captions is encoded once.
    procedural = False  # endless (or random) data: tokenize needs --count

    def image_count(self) -> int:
        return len(self)

    def image_entry(self, index: int) -> tuple[object, list[str], str]:
        """(image, its captions, a name for it) of distinct image ``index``."""
        image, caption = self.item(index)
        name = str(image) if isinstance(image, Path) else f"{type(self).__name__}[{index}]"
        return image, [caption] if caption else [], name

    def batch(self, indices, pool: list[int] | None = None) -> tuple[torch.Tensor, list[str | None]]:
        """Images (B, 3, size, size) in [-1, 1] and captions; unreadable images are
        replaced by the next readable entry and counted. With ``pool``, ``indices`` are
        positions in it and replacements come from it too (so that held-out pairs stay out)."""
        tensors, captions = [], []
        count = len(self) if pool is None else len(pool)
        for index in indices:
            for attempt in range(count):
                position = (index + attempt) % count
                image, caption = self.item(position if pool is None else pool[position])
                try:
                    tensors.append(image_io.load(image, size=self.size))
                    captions.append(caption)
                    break
                except (ImageError, FileNotFoundError, OSError) as err:
                    self.skipped += 1
                    log.warning("skipping unreadable image (%d so far): %s", self.skipped, err)
            else:
                raise ImageError("no readable image in the data source")
        return torch.cat(tensors), captions


class ShapesSource(Source):
    """Procedural scenes; indices map to seeds below the held-out range."""

    def __init__(self, size: int = shapes.IMAGE_SIZE, held_out: bool = False):
        self.size = size
        self.base = shapes.HELD_OUT_SEED if held_out else 0

    def __len__(self) -> int:
        return shapes.HELD_OUT_SEED

    def item(self, index: int):
        return shapes.scene(self.base + index, size=self.size)

    procedural = True

    def image_entry(self, index: int) -> tuple[object, list[str], str]:
        image, caption = self.item(index)
        return image, [caption], f"scene {self.base + index}"


def _images_under(root: Path) -> list[Path]:
    if not root.is_dir():
        raise FileNotFoundError(f"data directory not found: {root}")
    found = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not found:
        raise ValueError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    return found


class ImageFolderSource(Source):
    """Every image under a directory tree (ImageNet layout works); no captions."""

    def __init__(self, root, size: int = 256):
        self.paths = _images_under(Path(root))
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def item(self, index: int):
        return self.paths[index], None


class PairsSource(Source):
    """A fixed list of (image path, caption) pairs, set by the subclass as ``self.pairs``."""

    pairs: list[tuple[Path, str]]

    def __len__(self) -> int:
        return len(self.pairs)

    def item(self, index: int):
        return self.pairs[index]

    def _images(self) -> list[tuple[Path, list[str]]]:
        # Built on first use: training draws pairs and never needs it.
        if getattr(self, "_grouped", None) is None:
            grouped: dict[Path, list[str]] = {}
            for path, caption in self.pairs:
                grouped.setdefault(path, []).append(caption)
            self._grouped = list(grouped.items())
        return self._grouped

    def image_count(self) -> int:
        return len(self._images())

    def image_entry(self, index: int) -> tuple[object, list[str], str]:
        path, captions = self._images()[index]
        return path, list(captions), str(path)


class CaptionFolderSource(PairsSource):
    """Images with a same-name ``.txt`` caption beside them (``a.jpg`` + ``a.txt``); a
    file with several lines gives one caption per line, drawn in turn."""

    def __init__(self, root, size: int = 256):
        self.pairs = []
        for path in _images_under(Path(root)):
            text = path.with_suffix(".txt")
            if text.is_file():
                for line in text.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        self.pairs.append((path, line.strip()))
        if not self.pairs:
            raise ValueError(f"no image under {root} has a same-name .txt caption")
        self.size = size


class CocoSource(PairsSource):
    """A COCO captions annotation file (``captions_train2017.json``) and its image
    folder: one entry per caption."""

    def __init__(self, annotations, image_dir, size: int = 256):
        annotations, image_dir = Path(annotations), Path(image_dir)
        if not annotations.is_file():
            raise FileNotFoundError(f"COCO annotation file not found: {annotations}")
        try:
            data = json.loads(annotations.read_text(encoding="utf-8"))
            files = {img["id"]: img["file_name"] for img in data["images"]}
            self.pairs = [(image_dir / files[a["image_id"]], a["caption"].strip()) for a in data["annotations"]]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{annotations} is not a COCO captions file: {err}") from err
        if not self.pairs:
            raise ValueError(f"{annotations} holds no captions")
        self.size = size


class FakeSource(Source):
    """Random images and captions of random words, deterministic per index."""

    WORDS = ("a", "red", "blue", "cat", "dog", "on", "the", "grass", "small", "big", "tree", "sky")

    def __init__(self, size: int = 64, length: int = 10_000):
        self.size, self.length = size, length

    def __len__(self) -> int:
        return self.length

    def item(self, index: int):
        rng = np.random.default_rng(index)
        pixels = rng.integers(0, 256, (self.size, self.size, 3), dtype=np.uint8)
        words = rng.choice(self.WORDS, size=int(rng.integers(3, 8)))
        return pixels, " ".join(words)

    procedural = True


# Held-out images by default: up to this many, and at most a tenth of the data.
HELD_OUT_DEFAULT = 64


def held_out_count(requested: int | None, available: int, what: str) -> int:
    """The images kept out of training: as asked, or the default rule above."""
    if requested is None:
        return min(HELD_OUT_DEFAULT, available // 10)
    if requested >= available:
        raise ValueError(f"--held-out {requested} leaves nothing to train on: {what} has {available} images")
    return requested


def load_readable(images: list, size: int) -> tuple[torch.Tensor, list[int], list[tuple[int, str]]]:
    """(pixels of the readable ``images``, their positions in the list, (position, reason) of
    the unreadable ones). The list is decoded as one batch; only when that fails is each
    image tried alone, to find which. An empty list gives an empty batch."""
    try:
        return image_io.load(images, size=size), list(range(len(images))), []
    except (ValueError, OSError):  # ImageError is a ValueError
        pass
    tensors, kept, skipped = [], [], []
    for position, image in enumerate(images):
        try:
            tensors.append(image_io.load(image, size=size))
            kept.append(position)
        except (ValueError, OSError) as err:
            skipped.append((position, first_line(err)))
    return (torch.cat(tensors) if tensors else torch.empty(0, 3, size, size)), kept, skipped


def split_held_out(source: Source, held_out: int, images: int | None = None) -> tuple[list[int], list[int]]:
    """(pair indices to train on, image indices held out): the last ``held_out`` of the
    first ``images`` (default: all) distinct images are held out with all their captions,
    as ``tokenize`` orders them, so training (on the fly or from codes) and ``eval --data``
    agree on which images are unseen."""
    images = source.image_count() if images is None else images
    held = list(range(images - held_out, images))
    if isinstance(source, PairsSource):
        held_paths = {source.image_entry(i)[0] for i in held}
        kept = {source.image_entry(i)[0] for i in range(images - held_out)}
        return [i for i, (path, _) in enumerate(source.pairs) if path in kept and path not in held_paths], held
    return list(range(images - held_out)), held


def from_spec(spec: str, size: int) -> Source:
    """``shapes``, ``fake``, ``folder:DIR``, ``captions:DIR`` or ``coco:ANNOTATIONS.json:IMAGE_DIR``."""
    kind, _, rest = spec.partition(":")
    if kind == "shapes":
        return ShapesSource(size)
    if kind == "fake":
        return FakeSource(size)
    if kind == "folder" and rest:
        return ImageFolderSource(rest, size)
    if kind == "captions" and rest:
        return CaptionFolderSource(rest, size)
    if kind == "coco" and ":" in rest:
        annotations, _, image_dir = rest.rpartition(":")
        return CocoSource(annotations, image_dir, size)
    raise ValueError(
        f"unknown data source {spec!r}; expected shapes, fake, folder:DIR, captions:DIR or coco:JSON:IMAGE_DIR"
    )
