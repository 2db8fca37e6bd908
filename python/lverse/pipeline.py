"""The whole L-Verse: AugVAE + BiART (+ its token layout and tokenizer) behind two calls,
``caption`` and ``generate``. ``lverse.caption`` / ``lverse.generate`` use the default model
that ships with the package, loaded on first use; ``lverse.load(path)`` loads another."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union, overload

import numpy as np
import torch

from . import images as image_io
from ._checks import is_transformed, require_nonnegative_int, require_positive_int
from .augvae import AugVAE
from .biart import BiART
from .errors import CheckpointError
from .progress import steps as progress_steps
from .seeds import fresh_seed, item_seed, require_seed
from .tasks import CAPTION, generate_caption_ids, generate_image_ids, rerank_captions
from .tasks import rerank as rerank_images

if TYPE_CHECKING:
    import PIL.Image


# What ``caption`` reads; one image of them (a tensor may be a batch).
SingleImage = Union[str, "os.PathLike[str]", "PIL.Image.Image", np.ndarray]
ImageInput = SingleImage | torch.Tensor
ProgressHook = Callable[[int, int], object]


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

    @overload
    def caption(self, images: SingleImage, *, candidates: int = ..., rerank: bool = ...,
                beams: int | None = ..., greedy: bool = ..., temperature: float = ..., top_k: int | None = ...,
                top_p: float | None = ..., seed: int | Sequence[int] | None = ...,
                progress: ProgressHook | None = ...,
                return_seeds: Literal[False] = ...) -> str: ...

    @overload
    def caption(self, images: torch.Tensor, *, candidates: int = ..., rerank: bool = ...,
                beams: int | None = ..., greedy: bool = ..., temperature: float = ..., top_k: int | None = ...,
                top_p: float | None = ..., seed: int | Sequence[int] | None = ...,
                progress: ProgressHook | None = ...,
                return_seeds: Literal[False] = ...) -> str | list[str]: ...

    @overload
    def caption(self, images: Sequence[ImageInput], *, candidates: int = ..., rerank: bool = ...,
                beams: int | None = ..., greedy: bool = ..., temperature: float = ..., top_k: int | None = ...,
                top_p: float | None = ..., seed: int | Sequence[int] | None = ...,
                progress: ProgressHook | None = ...,
                return_seeds: Literal[False] = ...) -> list[str]: ...

    @overload
    def caption(self, images: ImageInput | Sequence[ImageInput], *, candidates: int = ..., rerank: bool = ...,
                beams: int | None = ..., greedy: bool = ..., temperature: float = ..., top_k: int | None = ...,
                top_p: float | None = ..., seed: int | Sequence[int] | None = ...,
                progress: ProgressHook | None = ...,
                return_seeds: Literal[True]) -> tuple[Any, Any]: ...

    @torch.no_grad()
    def caption(self, images: ImageInput | Sequence[ImageInput], *, candidates: int = 16, rerank: bool = True,
                beams: int | None = None, greedy: bool = True, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, seed: int | Sequence[int] | None = None,
                progress: Callable[[int, int], object] | None = None,
                return_seeds: bool = False) -> Any:
        """Caption one image or a list of images.

        Args:
            images: a path (str or ``pathlib.Path``), PIL image, numpy array ((H, W), (H, W, 3)
                or (H, W, 4); uint8, or floats in [0, 1]) or tensor ((3, H, W) or (B, 3, H, W)
                floats in [-1, 1] at the model's resolution); or a list of them, kinds mixed.
                Bytes are refused (open encoded data with ``PIL.Image.open(io.BytesIO(data))``).
                A bad item of a list is named by its index (``images[2]: ...``).
            candidates: sampled captions (default 16) that compete with the decoded one when
                ``rerank``; 0 returns the decoded caption as it is.
            rerank: keep the candidate under which the model finds the image most likely,
                log p(image | caption) (default True).
            beams: decode by beam search with this many beams instead of greedily (default None).
            greedy: decode greedily (default True); False samples the decoded caption too.
            temperature, top_k, top_p: how captions are sampled (defaults 1.0, None, None).
            seed: an int makes sampling reproducible; each sampled caption has its own item
                seed (``lverse.seeds``), so a caption does not depend on the other images of
                the call. None: the candidates come from seed 0 (captions are deterministic
                by default) and a ``greedy=False`` caption from a fresh seed. A list of item
                seeds, one per image (as ``return_seeds`` reports them), samples exactly those
                captions again (with ``greedy=False``; no candidates).
            progress: ``progress(done, total)``, called after each decoding step.
            return_seeds: also return each caption's item seed (None for a greedy or beam
                caption).

        Returns:
            a str for one image, a list of str for a list or a (B, 3, H, W) tensor; with
            ``return_seeds``, ``(captions, seeds)`` of the same shape.
        """
        single = not isinstance(images, (list, tuple)) and not (isinstance(images, torch.Tensor) and images.dim() == 4)
        require_nonnegative_int(candidates, "candidates")
        ids = self.vae.encode(self._images(images))
        rows = len(ids)
        explicit = isinstance(seed, (list, tuple))
        if explicit:
            if greedy or len(seed) != rows:
                raise ValueError(f"seed as item seeds needs greedy=False and one seed per image ({rows}), "
                                 f"got {len(seed)} with greedy={greedy}")
            candidates = 0
        # Without a seed, the candidates still come from seed 0, so that captioning is
        # deterministic by default; only a caption sampled with greedy=False is fresh.
        base = None if explicit else (0 if seed is None else require_seed(seed))
        first = fresh_seed() if seed is None else base
        decoded_seeds = list(seed) if explicit else [item_seed(first, CAPTION, 0)] * rows
        show = rows > 1 or (rerank and candidates > 0)
        options = dict(temperature=temperature, top_k=top_k, top_p=top_p)
        with progress_steps("caption", show, progress) as hook:
            parts = generate_caption_ids(self.biart, self.layout, ids, beams=beams, greedy=greedy, **options,
                                         seed=decoded_seeds, progress=hook)
            chosen = [None if greedy or (beams or 1) > 1 else s for s in decoded_seeds]
            if rerank and candidates > 0:
                pool_seeds = [[item_seed(base, CAPTION, k + 1) for k in range(candidates)]] * rows
                sampled = generate_caption_ids(self.biart, self.layout, ids.repeat_interleave(candidates, 0),
                                               greedy=False, seed=[s for r in pool_seeds for s in r], progress=hook)
                pool = torch.cat([parts.unsqueeze(1), sampled.view(rows, candidates, -1)], 1)
                order, _ = rerank_captions(self.biart, self.layout, ids, pool)
                best = order[:, 0].tolist()
                parts = pool[torch.arange(rows, device=pool.device), order[:, 0]]
                chosen = [chosen[i] if k == 0 else pool_seeds[i][k - 1] for i, k in enumerate(best)]
        texts = self.layout.decode_captions(self.tokenizer, parts)
        result = texts[0] if single else texts
        if return_seeds:
            return result, (chosen[0] if single else chosen)
        return result

    @overload
    def generate(self, texts: str, *, n: int = ..., candidates: int = ...,
                 rerank: bool = ..., seed: int | Sequence[int] | Sequence[Sequence[int]] | None = ...,
                 temperature: float = ..., top_k: int | None = ..., top_p: float | None = ...,
                 output_type: Literal["pil"] = ..., progress: ProgressHook | None = ...,
                 return_seeds: Literal[False] = ...) -> list[PIL.Image.Image]: ...

    @overload
    def generate(self, texts: str, *, n: int = ..., candidates: int = ...,
                 rerank: bool = ..., seed: int | Sequence[int] | Sequence[Sequence[int]] | None = ...,
                 temperature: float = ..., top_k: int | None = ..., top_p: float | None = ...,
                 output_type: Literal["pt"], progress: ProgressHook | None = ...,
                 return_seeds: Literal[False] = ...) -> torch.Tensor: ...

    @overload
    def generate(self, texts: str, *, n: int = ..., candidates: int = ...,
                 rerank: bool = ..., seed: int | Sequence[int] | Sequence[Sequence[int]] | None = ...,
                 temperature: float = ..., top_k: int | None = ..., top_p: float | None = ...,
                 output_type: Literal["np"], progress: ProgressHook | None = ...,
                 return_seeds: Literal[False] = ...) -> np.ndarray: ...

    @overload
    def generate(self, texts: Sequence[str], *, n: int = ..., candidates: int = ...,
                 rerank: bool = ..., seed: int | Sequence[int] | Sequence[Sequence[int]] | None = ...,
                 temperature: float = ..., top_k: int | None = ..., top_p: float | None = ...,
                 output_type: Literal["pil"] = ..., progress: ProgressHook | None = ...,
                 return_seeds: Literal[False] = ...) -> list[list[PIL.Image.Image]]: ...

    @overload
    def generate(self, texts: Sequence[str], *, n: int = ..., candidates: int = ...,
                 rerank: bool = ..., seed: int | Sequence[int] | Sequence[Sequence[int]] | None = ...,
                 temperature: float = ..., top_k: int | None = ..., top_p: float | None = ...,
                 output_type: Literal["pt"], progress: ProgressHook | None = ...,
                 return_seeds: Literal[False] = ...) -> list[torch.Tensor]: ...

    @overload
    def generate(self, texts: Sequence[str], *, n: int = ..., candidates: int = ...,
                 rerank: bool = ..., seed: int | Sequence[int] | Sequence[Sequence[int]] | None = ...,
                 temperature: float = ..., top_k: int | None = ..., top_p: float | None = ...,
                 output_type: Literal["np"], progress: ProgressHook | None = ...,
                 return_seeds: Literal[False] = ...) -> list[np.ndarray]: ...

    @overload
    def generate(self, texts: str, *, n: int = ..., candidates: int = ...,
                 rerank: bool = ..., seed: int | Sequence[int] | Sequence[Sequence[int]] | None = ...,
                 temperature: float = ..., top_k: int | None = ..., top_p: float | None = ...,
                 output_type: str = ..., progress: ProgressHook | None = ...,
                 return_seeds: Literal[True]) -> tuple[Any, list[int]]: ...

    @overload
    def generate(self, texts: Sequence[str], *, n: int = ..., candidates: int = ...,
                 rerank: bool = ..., seed: int | Sequence[int] | Sequence[Sequence[int]] | None = ...,
                 temperature: float = ..., top_k: int | None = ..., top_p: float | None = ...,
                 output_type: str = ..., progress: ProgressHook | None = ...,
                 return_seeds: Literal[True]) -> tuple[list[Any], list[list[int]]]: ...

    @torch.no_grad()
    def generate(self, texts: str | Sequence[str], *, n: int = 1, candidates: int = 8, rerank: bool = True,
                 seed: int | Sequence[int] | Sequence[Sequence[int]] | None = None, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, output_type: str = "pil",
                 progress: Callable[[int, int], object] | None = None, return_seeds: bool = False) -> Any:
        """Images from a text or a list of texts.

        Args:
            texts: a str, or a list or tuple of str (bytes and other iterables are refused).
            n: images to return per text (default 1).
            candidates: images sampled per text in one batch (default 8, at least ``n``).
            rerank: order the candidates by log p(text | image), the model's own
                image-to-text direction, and return the best ``n`` (default True); False
                returns the first ``n`` samples.
            seed: an int makes the call reproducible. Image k of a text is sampled from its
                own item seed, derived from (seed, the text, k) alone (``lverse.seeds``): the
                same seed gives the same candidates whatever the batch size, the number of
                candidates or the other texts of the call. None draws a fresh seed. Item seeds
                as reported (``return_seeds``, ``image.info["seed"]``): a list of ints for a
                str, a list of such lists for a list of texts; one image per seed, no
                reranking.
            temperature, top_k, top_p: how image codes are sampled (defaults 1.0, None, None).
            output_type: ``"pil"`` (default): PIL images; ``"pt"``: a float32 tensor
                (n, 3, H, W) in [-1, 1] on the model's device (lverse's tensor convention,
                what ``caption`` and ``AugVAE.encode`` take); ``"np"``: a float32 array
                (n, H, W, 3) in [0, 1] (diffusers' convention).
            progress: ``progress(done, total)``, called after each sampling step.
            return_seeds: also return the item seed of every returned image.

        Returns:
            for a str, ``n`` images: a list of PIL images, a tensor or an array; for a list of
            texts, a list with one such entry per text. PIL images carry their item seed in
            ``image.info["seed"]``. With ``return_seeds``, ``(images, seeds)``: a list of ints
            per text.
        """
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {', '.join(map(repr, OUTPUT_TYPES))}, got {output_type!r}")
        single = isinstance(texts, str)
        texts = self._texts(texts)
        require_positive_int(n, "n")
        require_positive_int(candidates, "candidates")
        item_seeds = None
        if isinstance(seed, (list, tuple)):
            item_seeds = [list(seed)] if single else [list(s) if isinstance(s, (list, tuple)) else s for s in seed]
            counts = {len(s) if isinstance(s, list) else -1 for s in item_seeds}
            if len(item_seeds) != len(texts) or len(counts) != 1 or -1 in counts or 0 in counts:
                raise ValueError("seed as item seeds must be a non-empty list of ints for a str, or one such list "
                                 f"per text ({len(texts)}), all of one length")
            n = candidates = counts.pop()
            rerank = False
        candidates = max(candidates, n)
        text_parts = self.layout.encode_captions(self.tokenizer, texts).to(self.device)
        with progress_steps("generate", len(texts) * candidates > 1, progress) as hook:
            codes, item_seeds = generate_image_ids(
                self.biart, self.layout, text_parts, candidates=candidates, temperature=temperature, top_k=top_k,
                top_p=top_p, seed=item_seeds if item_seeds is not None else seed, progress=hook, return_seeds=True)
        order = torch.arange(candidates).expand(len(texts), candidates)
        if rerank:
            order, _ = rerank_images(self.biart, self.layout, text_parts, codes)
            order = order.cpu()
            codes = torch.gather(codes, 1, order.to(codes.device).unsqueeze(-1).expand_as(codes))
        chosen_seeds = [[item_seeds[t][k] for k in order[t, :n].tolist()] for t in range(len(texts))]
        # One image at a time: convolution kernels differ with the batch size (by up to
        # 2e-6 here, enough to flip an 8-bit level), and an image must not depend on its batch.
        pixels = torch.cat([self.vae.decode(row[None]) for row in codes[:, :n].reshape(len(texts) * n, -1)]).float()
        grouped = [_output(pixels[t * n : (t + 1) * n], output_type, chosen_seeds[t]) for t in range(len(texts))]
        result = grouped[0] if single else grouped
        if return_seeds:
            return result, (chosen_seeds[0] if single else chosen_seeds)
        return result

    # -- saving and moving -------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Writes a model directory that :func:`load` reads (see :func:`save_model_dir`)."""
        save_model_dir(path, self.vae, self.biart)

    def describe(self) -> dict:
        """What the model is, as ``lverse.json`` records it."""
        return describe_model(self.vae, self.biart)

    def to(self, *args, **kwargs) -> LVerse:
        """Moves or casts both parts, as ``torch.nn.Module.to`` (a device, a dtype, or both).
        A dtype casts the AugVAE and BiART weights alike; the VQ search widens half
        precision to float32 itself."""
        self.vae.to(*args, **kwargs)
        self.biart.to(*args, **kwargs)
        return self

    @property
    def dtype(self) -> torch.dtype:
        return next(self.biart.parameters()).dtype

    def __repr__(self) -> str:
        d = self.describe()
        vae, biart = d["augvae"], d["biart"]
        return (f"LVerse(augvae=AugVAE-{vae['kind']} {vae['parameters'] / 1e6:.2f}M params, "
                f"{vae['resolution']} px -> {vae['codes']} codes of {vae['codebook']}; "
                f"biart=BiART {biart['layers']}x{biart['width']}, {biart['heads']} heads, "
                f"{biart['parameters'] / 1e6:.2f}M params; tokenizer={biart['text_vocab']} tokens, "
                f"captions of up to {biart['text_tokens']}; device={self.device}, dtype={self.dtype})")


OUTPUT_TYPES = ("pil", "pt", "np")


MODEL_DIR_FORMAT = "lverse model directory, version 1"


def save_model_dir(path: str | os.PathLike, vae: AugVAE, biart: BiART, metadata: dict | None = None,
                   write_augvae: bool = True) -> None:
    """Writes a model directory: ``augvae.safetensors``, ``biart.safetensors`` (which
    carries the token layout and tokenizer, and ``metadata``), ``tokenizer.json`` (a copy,
    for reuse with ``train-biart --tokenizer``) and ``lverse.json`` (what the two are).
    Leaves the modules' train/eval mode alone, so a training loop can call it (and skip
    rewriting its frozen AugVAE, 450 MB at official size, with ``write_augvae=False``)."""
    directory = Path(os.fspath(path))
    directory.mkdir(parents=True, exist_ok=True)
    if write_augvae:
        vae.save(directory / "augvae.safetensors")
    biart.save(directory / "biart.safetensors", metadata={**biart.metadata, **(metadata or {})})
    (directory / "tokenizer.json").write_text(biart.tokenizer.to_json(), encoding="utf-8")
    (directory / "lverse.json").write_text(json.dumps(describe_model(vae, biart), indent=2) + "\n")


def describe_model(vae: AugVAE, biart: BiART) -> dict:
    v, b = vae.config, biart.config
    return {
        "format": MODEL_DIR_FORMAT,
        "augvae": {"file": "augvae.safetensors", "kind": "SL" if v.single_level is not None else "ML",
                   "resolution": v.resolution, "codes": vae.tokens_per_image,
                   "codebook": v.num_tokens, "parameters": _count(vae)},
        "biart": {"file": "biart.safetensors", "layers": b.n_layer, "width": b.n_embd,
                  "heads": b.n_head, "parameters": _count(biart),
                  "text_tokens": biart.layout.text_len, "text_vocab": biart.tokenizer.vocab_size},
        "tokenizer": {"file": "tokenizer.json", "note": "a copy; biart.safetensors carries the one used"},
    }


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _output(pixels: torch.Tensor, output_type: str, item_seeds: list[int]):
    """Decoded images (n, 3, H, W) in [-1, 1] as ``output_type``."""
    if output_type == "pt":
        return pixels
    if output_type == "np":
        return ((pixels.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().numpy()
    pictures = image_io.to_pil(pixels)
    for picture, s in zip(pictures, item_seeds, strict=True):
        picture.info["seed"] = s
    return pictures


def load(path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> LVerse:
    """A model directory -> an :class:`LVerse` on ``device`` (default CPU), cast to
    ``dtype`` when given (e.g. ``torch.bfloat16`` on CUDA; default: as stored, float32).

    The directory holds ``augvae.safetensors`` (or an official AugVAE ``.ckpt``) and
    ``biart.safetensors`` (which carries the token layout and tokenizer), as
    :meth:`LVerse.save` writes it."""
    path = Path(os.fspath(path))
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a model directory (expected augvae.safetensors and biart.safetensors)")
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype such as torch.bfloat16, got {dtype!r}")
    vae_file = path / "augvae.safetensors"
    if not vae_file.exists():
        vae_file = next(iter(sorted(path.glob("*.ckpt"))), vae_file)
    biart_file = path / "biart.safetensors"
    for f in (vae_file, biart_file):
        if not f.exists():
            raise CheckpointError(f"{path} is not a model directory: {f.name} is missing")
    model = LVerse(AugVAE.from_checkpoint(vae_file, device), BiART.from_checkpoint(biart_file, device))
    return model.to(dtype) if dtype is not None else model


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


@overload
def caption(images: SingleImage, *, model: LVerse | None = ..., candidates: int = ..., rerank: bool = ...,
            beams: int | None = ..., greedy: bool = ..., temperature: float = ..., top_k: int | None = ...,
            top_p: float | None = ..., seed: int | Sequence[int] | None = ...,
            progress: ProgressHook | None = ...,
            return_seeds: Literal[False] = ...) -> str: ...

@overload
def caption(images: torch.Tensor, *, model: LVerse | None = ..., candidates: int = ..., rerank: bool = ...,
            beams: int | None = ..., greedy: bool = ..., temperature: float = ..., top_k: int | None = ...,
            top_p: float | None = ..., seed: int | Sequence[int] | None = ...,
            progress: ProgressHook | None = ...,
            return_seeds: Literal[False] = ...) -> str | list[str]: ...

@overload
def caption(images: Sequence[ImageInput], *, model: LVerse | None = ..., candidates: int = ..., rerank: bool = ...,
            beams: int | None = ..., greedy: bool = ..., temperature: float = ..., top_k: int | None = ...,
            top_p: float | None = ..., seed: int | Sequence[int] | None = ...,
            progress: ProgressHook | None = ...,
            return_seeds: Literal[False] = ...) -> list[str]: ...

@overload
def caption(images: ImageInput | Sequence[ImageInput], *, model: LVerse | None = ..., candidates: int = ...,
            rerank: bool = ..., beams: int | None = ..., greedy: bool = ..., temperature: float = ...,
            top_k: int | None = ...,
            top_p: float | None = ..., seed: int | Sequence[int] | None = ...,
            progress: ProgressHook | None = ...,
            return_seeds: Literal[True]) -> tuple[Any, Any]: ...

def caption(images: ImageInput | Sequence[ImageInput], *, model: LVerse | None = None, candidates: int = 16,
            rerank: bool = True, beams: int | None = None, greedy: bool = True, temperature: float = 1.0,
            top_k: int | None = None, top_p: float | None = None, seed: int | Sequence[int] | None = None,
            progress: Callable[[int, int], object] | None = None, return_seeds: bool = False) -> Any:
    return (model or default_model()).caption(
        images, candidates=candidates, rerank=rerank, beams=beams, greedy=greedy, temperature=temperature,
        top_k=top_k, top_p=top_p, seed=seed, progress=progress, return_seeds=return_seeds)


@overload
def generate(texts: str, *, model: LVerse | None = ..., n: int = ..., candidates: int = ...,
             rerank: bool = ..., seed: int | Sequence[int] | Sequence[Sequence[int]] | None = ...,
             temperature: float = ..., top_k: int | None = ..., top_p: float | None = ...,
             output_type: Literal["pil"] = ..., progress: ProgressHook | None = ...,
             return_seeds: Literal[False] = ...) -> list[PIL.Image.Image]: ...

@overload
def generate(texts: str, *, model: LVerse | None = ..., n: int = ..., candidates: int = ...,
             rerank: bool = ..., seed: int | Sequence[int] | Sequence[Sequence[int]] | None = ...,
             temperature: float = ..., top_k: int | None = ..., top_p: float | None = ...,
             output_type: Literal["pt"], progress: ProgressHook | None = ...,
             return_seeds: Literal[False] = ...) -> torch.Tensor: ...

@overload
def generate(texts: str, *, model: LVerse | None = ..., n: int = ..., candidates: int = ...,
             rerank: bool = ..., seed: int | Sequence[int] | Sequence[Sequence[int]] | None = ...,
             temperature: float = ..., top_k: int | None = ..., top_p: float | None = ...,
             output_type: Literal["np"], progress: ProgressHook | None = ...,
             return_seeds: Literal[False] = ...) -> np.ndarray: ...

@overload
def generate(texts: Sequence[str], *, model: LVerse | None = ..., n: int = ..., candidates: int = ...,
             rerank: bool = ..., seed: int | Sequence[int] | Sequence[Sequence[int]] | None = ...,
             temperature: float = ..., top_k: int | None = ..., top_p: float | None = ...,
             output_type: Literal["pil"] = ..., progress: ProgressHook | None = ...,
             return_seeds: Literal[False] = ...) -> list[list[PIL.Image.Image]]: ...

@overload
def generate(texts: Sequence[str], *, model: LVerse | None = ..., n: int = ..., candidates: int = ...,
             rerank: bool = ..., seed: int | Sequence[int] | Sequence[Sequence[int]] | None = ...,
             temperature: float = ..., top_k: int | None = ..., top_p: float | None = ...,
             output_type: Literal["pt"], progress: ProgressHook | None = ...,
             return_seeds: Literal[False] = ...) -> list[torch.Tensor]: ...

@overload
def generate(texts: Sequence[str], *, model: LVerse | None = ..., n: int = ..., candidates: int = ...,
             rerank: bool = ..., seed: int | Sequence[int] | Sequence[Sequence[int]] | None = ...,
             temperature: float = ..., top_k: int | None = ..., top_p: float | None = ...,
             output_type: Literal["np"], progress: ProgressHook | None = ...,
             return_seeds: Literal[False] = ...) -> list[np.ndarray]: ...

@overload
def generate(texts: str, *, model: LVerse | None = ..., n: int = ..., candidates: int = ...,
             rerank: bool = ..., seed: int | Sequence[int] | Sequence[Sequence[int]] | None = ...,
             temperature: float = ..., top_k: int | None = ..., top_p: float | None = ...,
             output_type: str = ..., progress: ProgressHook | None = ...,
             return_seeds: Literal[True]) -> tuple[Any, list[int]]: ...

@overload
def generate(texts: Sequence[str], *, model: LVerse | None = ..., n: int = ..., candidates: int = ...,
             rerank: bool = ..., seed: int | Sequence[int] | Sequence[Sequence[int]] | None = ...,
             temperature: float = ..., top_k: int | None = ..., top_p: float | None = ...,
             output_type: str = ..., progress: ProgressHook | None = ...,
             return_seeds: Literal[True]) -> tuple[list[Any], list[list[int]]]: ...

def generate(texts: str | Sequence[str], *, model: LVerse | None = None, n: int = 1, candidates: int = 8,
             rerank: bool = True, seed: int | Sequence[int] | Sequence[Sequence[int]] | None = None,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             output_type: str = "pil", progress: Callable[[int, int], object] | None = None,
             return_seeds: bool = False) -> Any:
    return (model or default_model()).generate(
        texts, n=n, candidates=candidates, rerank=rerank, seed=seed, temperature=temperature, top_k=top_k,
        top_p=top_p, output_type=output_type, progress=progress, return_seeds=return_seeds)


_MODEL_ARG = """
            model: the :class:`LVerse` to use; default: the model shipped with lverse, loaded
                on first use (once, also when several threads ask at once).
"""
# One text for the options of the function and of the method.
caption.__doc__ = LVerse.caption.__doc__.replace("\n        Args:\n", "\n        Args:" + _MODEL_ARG, 1)
generate.__doc__ = LVerse.generate.__doc__.replace("\n        Args:\n", "\n        Args:" + _MODEL_ARG, 1)
