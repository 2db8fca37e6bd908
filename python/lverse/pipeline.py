"""The whole L-Verse: AugVAE + BiART (+ its token layout and tokenizer) behind two calls,
``caption`` and ``generate``. ``lverse.caption`` / ``lverse.generate`` use the default model
that ships with the package, loaded on first use; ``lverse.load(path)`` loads another."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from . import images as image_io
from ._checks import is_transformed, require_nonnegative_int, require_positive_int
from .augvae import AugVAE
from .biart import BiART
from .errors import CheckpointError
from .tasks import generate_caption_ids, generate_image_ids, rerank, rerank_captions


class LVerse:
    """An image tokenizer and a bidirectional transformer that share one code vocabulary."""

    def __init__(self, vae: AugVAE, biart: BiART):
        if biart.layout is None or biart.tokenizer is None:
            raise CheckpointError("the BiART checkpoint carries no token layout or tokenizer")
        if biart.layout.image_vocab != vae.config.num_tokens or biart.layout.image_len != vae.tokens_per_image:
            raise CheckpointError(
                f"BiART expects {biart.layout.image_len} codes from a {biart.layout.image_vocab}-code codebook, "
                f"the AugVAE gives {vae.tokens_per_image} from {vae.config.num_tokens}"
            )
        self.vae, self.biart = vae.eval(), biart.eval()
        self.layout, self.tokenizer = biart.layout, biart.tokenizer
        # Words seen in training captions, when the checkpoint records them.
        self.known_words: set[str] | None = set(biart.metadata.get("words", [])) or None

    @property
    def device(self) -> torch.device:
        return next(self.biart.parameters()).device

    def to(self, device) -> LVerse:
        self.vae.to(device)
        self.biart.to(device)
        return self

    # -- inputs ----------------------------------------------------------------------

    def _images(self, inputs) -> torch.Tensor:
        size = self.vae.config.resolution
        if isinstance(inputs, torch.Tensor):
            batch = self._image_tensor(inputs, None)
        elif isinstance(inputs, image_io.BYTES_TYPES):
            raise TypeError(f"images must be a path, PIL image, numpy array or tensor, or a list of them; "
                            f"{image_io.bytes_hint(inputs)}")
        elif isinstance(inputs, (list, tuple)):
            if not inputs:
                raise ValueError("no images given")
            batch = self._image_list(list(inputs), size)
        else:
            _require_image_kind(inputs, "image")
            batch = image_io.load_items([inputs], ["image"], size)
        if batch.shape[0] == 0:
            raise ValueError("no images given")
        return batch.to(self.device, self._vae_dtype())

    def _image_list(self, items: list, size: int) -> torch.Tensor:
        """A list of images, each named ``images[i]`` in errors; tensors (each one image or
        a batch) and the other kinds may be mixed, runs of the others decoding together."""
        names = [f"images[{i}]" for i in range(len(items))]
        for item, name in zip(items, names, strict=True):
            _require_image_kind(item, name)
        parts, run = [], []
        for item, name in [*zip(items, names, strict=True), (None, None)]:
            if (item is None or isinstance(item, torch.Tensor)) and run:
                parts.append(image_io.load_items([i for i, _ in run], [n for _, n in run], size))
                run = []
            if isinstance(item, torch.Tensor):
                parts.append(self._image_tensor(item, name))
            elif item is not None:
                run.append((item, name))
        return torch.cat([part.to(self.device, self._vae_dtype()) for part in parts])

    def _vae_dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def _image_tensor(self, image: torch.Tensor, name: str | None) -> torch.Tensor:
        """A float tensor (3, H, W) or (B, 3, H, W) in [-1, 1] at the model's resolution:
        anything else (uint8 pixels, 0..255 floats, another size) would caption noise.
        ``name`` is the item's name in a list (``images[2]``), None for a lone tensor."""
        what = f"{name}: expected image tensor" if name else "expected image tensor"
        size = self.vae.config.resolution
        x = image.unsqueeze(0) if image.dim() == 3 else image
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{what} of shape (3, H, W) or (B, 3, H, W), got {tuple(image.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"{what} of floats in [-1, 1], got {x.dtype} "
                            "(pass uint8 pixels as a numpy array or PIL image instead)")
        if tuple(x.shape[2:]) != (size, size):
            raise ValueError(f"{what} of {size}x{size} pixels, got {x.shape[2]}x{x.shape[3]} "
                             "(lverse.images.load resizes and crops)")
        if x.shape[0] == 0:
            raise ValueError(f"{name}: an empty batch, no images given" if name else "no images given")
        if x.is_meta:
            raise ValueError(f"{what} with values, got a tensor on the meta device (it has a shape but no data)")
        if is_transformed(x):
            raise ValueError(f"{what} with readable values, got a tensor transformed by vmap/grad")
        if x.numel():
            nan, inf = int(torch.isnan(x).sum()), int(torch.isinf(x).sum())
            if nan or inf:
                found = " and ".join(part for part in (nan and f"{nan} NaN", inf and f"{inf} infinite") if part)
                raise ValueError(f"{what} of values in [-1, 1], got {found} value(s)")
            low, high = x.min().item(), x.max().item()
            if low < -1.0 - 1e-3 or high > 1.0 + 1e-3:
                raise ValueError(f"{what} of values in [-1, 1], got [{low:g}, {high:g}]")
        return x

    def _texts(self, texts) -> list[str]:
        single = isinstance(texts, str)
        if isinstance(texts, image_io.BYTES_TYPES):
            raise TypeError(f"text must be a str or a list of str, got {type(texts).__name__} "
                            "(decode bytes first, e.g. data.decode('utf-8'))")
        if not single and not isinstance(texts, (list, tuple)):
            raise TypeError(f"text must be a str or a list of str, got {type(texts).__name__}")
        texts = [texts] if single else list(texts)
        if not texts:
            raise ValueError("no text given")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {i} must be a str, got {type(text).__name__}")
            if not text.strip():
                raise ValueError(f"text {i} is empty")
        self._check_vocabulary(texts)
        return texts

    def _check_vocabulary(self, texts: list[str]) -> None:
        """Words the tokenizer can only spell byte by byte were never seen in training;
        say so instead of generating from noise."""
        known = self.known_words
        if known is None:
            return
        for text in texts:
            unknown = sorted({w for w in text.lower().split() if w not in known})
            if unknown:
                raise ValueError(f"words outside the model's vocabulary: {', '.join(unknown)} (in {text!r})")

    # -- the two directions ----------------------------------------------------------

    @torch.no_grad()
    def caption(self, images, *, candidates: int = 16, rerank_candidates: bool = True, beams: int | None = None,
                greedy: bool = True, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, seed: int | None = None):
        """A path, PIL image, numpy array or tensor (or a list of them, kinds mixed as they
        come) -> caption(s). Bytes are refused: a path goes in as a str or pathlib.Path,
        encoded image data through ``PIL.Image.open(io.BytesIO(data))``. A bad item of a
        list is named by its index (``images[2]: ...``).

        The caption is decoded greedily by default; ``beams=k`` for beam search;
        ``greedy=False`` samples with temperature / top_k / top_p (``seed`` makes it
        reproducible). With ``rerank_candidates`` it competes with ``candidates`` sampled
        captions, and the one under which the model finds the image most likely wins
        (log p(image | caption), the text-to-image direction); ``candidates=0`` or
        ``rerank_candidates=False`` returns the decoded caption as it is."""
        single = not isinstance(images, (list, tuple)) and not (isinstance(images, torch.Tensor) and images.dim() == 4)
        require_nonnegative_int(candidates, "candidates")
        ids = self.vae.encode(self._images(images))
        parts = generate_caption_ids(self.biart, self.layout, ids, beams=beams, greedy=greedy,
                                     temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
        if rerank_candidates and candidates > 0:
            sampled = generate_caption_ids(self.biart, self.layout, ids.repeat_interleave(candidates, 0),
                                           greedy=False, seed=0 if seed is None else seed)
            pool = torch.cat([parts.unsqueeze(1), sampled.view(len(ids), candidates, -1)], 1)
            order, _ = rerank_captions(self.biart, self.layout, ids, pool)
            parts = pool[torch.arange(len(ids), device=pool.device), order[:, 0]]
        texts = self.layout.decode_captions(self.tokenizer, parts)
        return texts[0] if single else texts

    @torch.no_grad()
    def generate(self, texts, *, n: int = 1, candidates: int = 8, rerank_candidates: bool = True,
                 seed: int | None = None, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, progress: Callable[[int, int], object] | None = None):
        """Text (or a list of texts) -> ``n`` PIL images per text (a list, or a list of
        lists for a list of texts). Text is a str or a list or tuple of str: bytes and other
        iterables are refused. ``candidates`` images are sampled per text in one batch; with
        ``rerank_candidates`` the model itself ranks them by log p(text | image)."""
        single = isinstance(texts, str)
        texts = self._texts(texts)
        require_positive_int(n, "n")
        require_positive_int(candidates, "candidates")
        candidates = max(candidates, n)
        text_parts = self.layout.encode_captions(self.tokenizer, texts).to(self.device)
        codes = generate_image_ids(self.biart, self.layout, text_parts, candidates=candidates, seed=seed,
                                   temperature=temperature, top_k=top_k, top_p=top_p, progress=progress)
        if rerank_candidates:
            order, _ = rerank(self.biart, self.layout, text_parts, codes)
            codes = torch.gather(codes, 1, order.unsqueeze(-1).expand_as(codes))
        chosen = codes[:, :n].reshape(len(texts) * n, -1)
        pictures = image_io.to_pil(self.vae.decode(chosen))
        grouped = [pictures[i * n : (i + 1) * n] for i in range(len(texts))]
        return grouped[0] if single else grouped


def load(path: str | os.PathLike, map_location="cpu") -> LVerse:
    """A model directory holding ``augvae.safetensors`` (or an official ``.ckpt``) and
    ``biart.safetensors`` -> an :class:`LVerse`."""
    path = Path(os.fspath(path))
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a model directory (expected augvae.safetensors and biart.safetensors)")
    vae_file = path / "augvae.safetensors"
    if not vae_file.exists():
        vae_file = next(iter(sorted(path.glob("*.ckpt"))), vae_file)
    biart_file = path / "biart.safetensors"
    for f in (vae_file, biart_file):
        if not f.exists():
            raise CheckpointError(f"{path} is not a model directory: {f.name} is missing")
    return LVerse(AugVAE.from_checkpoint(vae_file, map_location), BiART.from_checkpoint(biart_file, map_location))


_default: LVerse | None = None
_default_lock = threading.Lock()


def default_model() -> LVerse:
    """The model shipped with lverse, loaded once, also when several threads ask at once."""
    global _default
    model = _default
    if model is None:
        with _default_lock:
            model = _default
            if model is None:
                from .weights import default_model_dir

                model = _default = load(default_model_dir())
    return model


def _require_image_kind(item, name: str) -> None:
    """``item`` is one of the kinds ``caption`` reads (a nested list is not)."""
    from PIL import Image

    if isinstance(item, image_io.BYTES_TYPES):
        raise TypeError(f"{name}: expected a path, PIL image, numpy array or tensor, {image_io.bytes_hint(item)}")
    if not isinstance(item, (str, os.PathLike, Image.Image, np.ndarray, torch.Tensor)):
        raise TypeError(f"{name}: expected a path, PIL image, numpy array or tensor, got {type(item).__name__}")


def caption(images, *, candidates: int = 16, rerank: bool = True, model: LVerse | None = None, **options):
    """Caption(s) for image(s) with ``model`` or the shipped default model (options as
    :meth:`LVerse.caption`)."""
    return (model or default_model()).caption(images, candidates=candidates, rerank_candidates=rerank, **options)


def generate(texts, *, n: int = 1, candidates: int = 8, rerank: bool = True, seed: int | None = None,
             model: LVerse | None = None, **options):
    """``n`` PIL images for a text (a list of such lists for a list of texts)."""
    return (model or default_model()).generate(texts, n=n, candidates=candidates, rerank_candidates=rerank,
                                               seed=seed, **options)
