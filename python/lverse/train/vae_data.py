"""train-vae's images and its starting point.

``TrainingImages`` draws batches from any data source at the model's resolution and holds
the last images of a finite source out of training (shapes scenes keep their held-out
seeds). Training images get the official augmentation (SPEC §2.6), a random square crop of
75% to 100% of the image's area resized to the model's resolution (``random_square_crop``,
torchvision's ``RandomResizedCrop(size, scale=(0.75, 1), ratio=(1, 1))``), unless
``crop=False``; held-out images get the evaluation transform (shorter side resized, center
crop).

``initial_model`` builds the model a run starts from, including the official two-stage
recipe: an SL model fine-tuned from an ML checkpoint (``--init``), which keeps the ML
encoders, codebook and 1x1 convolutions, takes the ML's finest decoders renumbered, and
adds the connectors, the only new weights (SPEC §2.5).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch

from .. import images as image_io
from ..augvae import AugVAE, AugVAEConfig
from ..data import shapes
from ..data.sources import HELD_OUT_DEFAULT, ShapesSource, from_spec, held_out_count, load_readable
from ..errors import CheckpointError, ImageError, first_line

log = logging.getLogger("lverse.train")


class TrainingImages:
    def __init__(self, spec: str, size: int, held_out: int | None, crop: bool = True):
        self.spec, self.size, self.crop = spec, size, crop
        self.source = from_spec(spec, size)
        self.shapes = isinstance(self.source, ShapesSource)
        count = self.source.image_count()
        if self.shapes:  # held-out seeds, apart from the training ones
            self.held_out = HELD_OUT_DEFAULT if held_out is None else held_out
        else:
            self.held_out = held_out_count(held_out, count, spec)
        self.train_count = count if self.shapes else count - self.held_out
        self.skipped = 0

    def batch(self, rng: torch.Generator, batch_size: int) -> torch.Tensor:
        """(B, 3, size, size) in [-1, 1]; an unreadable image is replaced by the next one."""
        indices = torch.randint(0, self.train_count, (batch_size,), generator=rng).tolist()
        if self.shapes:
            return image_io.load([shapes.scene(i, size=self.size)[0] for i in indices], size=self.size)
        return torch.cat([self._readable(i, rng) for i in indices])

    def _readable(self, index: int, rng: torch.Generator) -> torch.Tensor:
        for attempt in range(self.train_count):
            image, _, name = self.source.image_entry((index + attempt) % self.train_count)
            try:
                if self.crop:
                    image = random_square_crop(_as_pil(image), rng)
                return image_io.load(image, size=self.size)
            except (ImageError, OSError) as err:
                self.skipped += 1
                log.warning("skipping unreadable image %s (%d so far): %s", name, self.skipped, first_line(err))
        raise ImageError(f"no readable image among the {self.train_count} training images of {self.spec}")

    def held_out_images(self) -> torch.Tensor:
        if self.shapes:
            return image_io.load([shapes.scene(shapes.HELD_OUT_SEED + i, size=self.size)[0]
                                  for i in range(self.held_out)], size=self.size)
        entries = [self.source.image_entry(i) for i in range(self.train_count, self.train_count + self.held_out)]
        pixels, _, unreadable = load_readable([image for image, _, _ in entries], self.size)
        for position, reason in unreadable:
            log.warning("held-out image %s is unreadable: %s", entries[position][2], reason)
        return pixels


def _as_pil(image):
    from PIL import Image

    if isinstance(image, Image.Image):
        return image
    if isinstance(image, np.ndarray):
        return Image.fromarray(image)
    with Image.open(image) as opened:  # a path; OSError (UnidentifiedImageError) when unreadable
        opened.load()
        return opened.copy()


def random_square_crop(image, rng: torch.Generator, scale=(0.75, 1.0), tries: int = 10):
    """A square crop of ``scale`` of the image's area at a random place, as torchvision's
    ``RandomResizedCrop`` with ratio (1, 1): up to ``tries`` draws of an area that fits,
    else the largest centered square."""
    width, height = image.size
    for _ in range(tries):
        area = width * height * (scale[0] + (scale[1] - scale[0]) * torch.rand(1, generator=rng).item())
        side = round(area ** 0.5)
        if 0 < side <= min(width, height):
            left = int(torch.randint(0, width - side + 1, (1,), generator=rng))
            top = int(torch.randint(0, height - side + 1, (1,), generator=rng))
            return image.crop((left, top, left + side, top + side))
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


def initial_model(config: AugVAEConfig | None, init, default: AugVAEConfig) -> AugVAE:
    """A fresh model, or one started from checkpoint ``init``: the same architecture loads
    as it is; an SL config (default: the ML's with ``single_level=1``) from an ML
    checkpoint is the official fine-tuning."""
    if init is None:
        return AugVAE(config or default)
    start = AugVAE.from_checkpoint(init)
    if config is None:
        config = (dataclasses.replace(start.config, single_level=1) if start.config.single_level is None
                  else start.config)
    if config == start.config:
        return start
    if start.config.single_level is not None or config.single_level is None:
        differences = config_differences(config, start.config, "checkpoint")
        raise ValueError(f"--init {init}: an {'SL' if start.config.single_level is not None else 'ML'} checkpoint "
                         f"cannot start a model of another architecture ({differences}); "
                         "--init takes the same architecture, or an ML checkpoint for an SL config")
    if dataclasses.replace(config, single_level=None) != start.config:
        differences = config_differences(dataclasses.replace(config, single_level=None), start.config, "checkpoint")
        raise ValueError(f"--init {init}: the SL config must be the ML checkpoint's with single_level set; "
                         f"it differs in {differences}")
    return fine_tune_from(start, config)


def fine_tune_from(ml: AugVAE, config: AugVAEConfig) -> AugVAE:
    """An SL model holding ``ml``'s weights where SL keeps them; connectors as initialised."""
    sl = AugVAE(config)
    first_decoder = config.levels - 1 - config.single_level
    ml_state, state = ml.state_dict(), sl.state_dict()
    for key in state:
        if key.startswith("connectors."):
            continue
        source = key
        if key.startswith("decoders."):
            number, rest = key[len("decoders."):].split(".", 1)
            source = f"decoders.{int(number) + first_decoder}.{rest}"
        if source not in ml_state or ml_state[source].shape != state[key].shape:
            raise CheckpointError(f"the ML checkpoint has no {source} of shape {tuple(state[key].shape)} "
                                  f"for SL's {key}")
        state[key] = ml_state[source]
    sl.load_state_dict(state)
    return sl


def config_differences(a: AugVAEConfig, b: AugVAEConfig, label: str) -> str:
    """``key=a's (label: b's)`` for each field where the configs differ."""
    ours, theirs = a.to_dict(), b.to_dict()
    return ", ".join(f"{k}={ours[k]!r} ({label}: {theirs[k]!r})" for k in ours if ours[k] != theirs[k])
