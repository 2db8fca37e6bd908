"""Where train-biart's (codes, caption) pairs come from, and the held-out ones it samples.

``CodePairs`` reads shards made once by ``python -m lverse tokenize``: no AugVAE runs in
the loop. ``EncodedPairs`` encodes a data source's images at every step (the old way,
kept for quick runs and procedural data). Both hold out the last images of a finite
source from training and caption those as the run's samples; shapes scenes keep their
held-out seeds.
"""

from __future__ import annotations

import logging
import sys

import torch

from ..augvae import AugVAE
from ..data import shapes
from ..data.codes import read_codes, require_same_augvae
from ..data.sources import ShapesSource, from_spec, held_out_count, load_readable, split_held_out
from ..data.tokenizing import through_pixels

log = logging.getLogger("lverse.train")


class CodePairs:
    """Pairs from a shard directory (``codes:DIR``)."""

    def __init__(self, directory: str, vae: AugVAE, vae_name: str, held_out: int | None, reencode: float | None):
        self.data = read_codes(directory)
        require_same_augvae(self.data.manifest, directory, vae, vae_name)
        captioned = sum(1 for c in self.data.captions if c)
        if captioned < len(self.data):
            raise ValueError(f"{directory}: {len(self.data) - captioned} of {len(self.data)} images have no caption; "
                             "BiART trains on captioned images (tokenize captions:DIR or coco:JSON:IMAGE_DIR data)")
        if reencode and self.data.trip_codes is None:
            raise ValueError(f"--reencode {reencode} needs the codes after a trip through pixels, which the shards in "
                             f"{directory} lack: tokenize with --trip, or pass --reencode 0")
        self.reencode = (0.5 if self.data.trip_codes is not None else 0.0) if reencode is None else reencode
        # Held out by source entry, not by row, as eval --data counts them: the last images
        # of the entries tokenized (rows of unreadable images are simply absent).
        self.source_images = self.data.manifest["entries"]
        self.held_out = held_out_count(held_out, self.source_images, directory)
        self.data_spec = self.data.manifest["data"]
        held = self.data.entries >= self.source_images - self.held_out
        order = torch.cat([(~held).nonzero().flatten(), held.nonzero().flatten()])
        if not torch.equal(order, torch.arange(len(order))):
            raise ValueError(f"{directory}: the shards' entries are out of order; tokenize again")
        self.train_count = int((~held).sum())
        if self.train_count == 0:
            raise ValueError(f"--held-out {self.held_out} leaves nothing to train on in {directory}")

    def captions_for_tokenizer(self, limit: int, generator: torch.Generator) -> list[str]:
        picks = torch.randint(0, self.train_count, (min(self.train_count, limit),), generator=generator).tolist()
        return [caption for i in picks for caption in self.data.captions[i]]

    def batch(self, size: int, generator: torch.Generator, device) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """(codes, which rows generate the image (the others caption it), captions); a
        --reencode share of the captioning rows read their codes after the trip through pixels."""
        rows = torch.randint(0, self.train_count, (size,), generator=generator)
        choice = torch.rand(size, generator=generator).tolist()
        captions = [self.data.captions[r][int(c * len(self.data.captions[r]))]
                    for r, c in zip(rows.tolist(), choice, strict=True)]
        to_image, trip = directions(size, self.reencode, generator)
        codes = self.data.codes[rows]
        if trip.any():
            codes[trip] = self.data.trip_codes[rows[trip]]
        return codes.to(device), to_image.to(device), captions

    def held_out_pairs(self, count: int) -> tuple[torch.Tensor, list[list[str]]]:
        rows = range(self.train_count, min(len(self.data), self.train_count + count))
        return self.data.codes[list(rows)], [self.data.captions[r] for r in rows]


class EncodedPairs:
    """Pairs from a data source, encoded by ``vae`` at every step."""

    def __init__(self, spec: str, vae: AugVAE, held_out: int | None, reencode: float | None, using_default_vae: bool):
        self.vae = vae
        self.source = from_spec(spec, vae.config.resolution)
        self.reencode = 0.5 if reencode is None else reencode
        self.shapes = isinstance(self.source, ShapesSource)
        if using_default_vae and spec.split(":")[0] in ("folder", "captions", "coco"):
            print(f"note: the shipped AugVAE reads {vae.config.resolution} px images: every image of {spec} is "
                  "resized to that; pass --vae for another resolution", file=sys.stderr)
        self.held_out = 0 if self.shapes else held_out_count(held_out, self.source.image_count(), spec)
        if self.shapes:
            self.train_pairs, self.held_images = None, []
        else:
            self.train_pairs, self.held_images = split_held_out(self.source, self.held_out)
        self.train_count = len(self.source) if self.shapes else len(self.train_pairs)
        self.source_images = None if self.shapes else self.source.image_count()
        self.data_spec = spec

    def _pair(self, k: int) -> int:
        return k if self.train_pairs is None else self.train_pairs[k]

    def captions_for_tokenizer(self, limit: int, generator: torch.Generator) -> list[str]:
        picks = torch.randint(0, self.train_count, (min(self.train_count, limit),), generator=generator).tolist()
        return [c for c in (self.source.item(self._pair(i))[1] for i in picks) if c]

    @torch.no_grad()
    def batch(self, size: int, generator: torch.Generator, device) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """As :meth:`CodePairs.batch`."""
        indices = torch.randint(0, self.train_count, (size,), generator=generator).tolist()
        pictures, captions = self.source.batch(indices, pool=self.train_pairs)
        codes = self.vae.encode(pictures.to(device))
        to_image, trip = directions(size, self.reencode, generator)
        trip = trip.to(codes.device)
        if trip.any():
            codes[trip] = through_pixels(self.vae, codes[trip])
        return codes, to_image.to(device), captions

    @torch.no_grad()
    def held_out_pairs(self, count: int) -> tuple[torch.Tensor, list[list[str]]]:
        size = self.vae.config.resolution
        if self.shapes:
            scenes = [shapes.scene(shapes.HELD_OUT_SEED + i, size=size) for i in range(count)]
            pictures, references = [image for image, _ in scenes], [[caption] for _, caption in scenes]
        else:
            entries = [self.source.image_entry(i) for i in self.held_images[:count]]
            pictures, references = [image for image, _, _ in entries], [captions for _, captions, _ in entries]
        # An unreadable held-out image is left out of the samples, not fatal.
        readable, kept, unreadable = load_readable(pictures, size)
        for position, reason in unreadable:
            log.warning("held-out image %s is unreadable: %s", pictures[position], reason)
        if not kept:
            return torch.empty(0, self.vae.tokens_per_image, dtype=torch.long), []
        return self.vae.encode(readable.to(self.vae_device)), [references[k] for k in kept]

    @property
    def vae_device(self) -> torch.device:
        return next(self.vae.parameters()).device


def directions(size: int, reencode: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Each pair's direction, 50/50 (True: text to image), and which image-to-text rows
    read re-encoded codes."""
    to_image = torch.rand(size, generator=generator) < 0.5
    return to_image, ~to_image & (torch.rand(size, generator=generator) < reencode)

