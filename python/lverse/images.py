"""Images in and out of AugVAE.

``load`` applies SPEC §6's evaluation preprocessing natively (RGB, resize the shorter side
with an antialiased bilinear filter, center crop, scale to [-1, 1]); a list of files is
decoded in parallel. ``to_pil`` clamps and rounds a tensor back to 8-bit images.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from . import _native
from ._checks import require_positive_int, require_tensor

# Encoded files and byte strings are both bytes: which one was meant cannot be told, so
# neither is guessed (a bytes object is a Sequence of ints, and would be read as one).
BYTES_TYPES = (bytes, bytearray, memoryview)


def bytes_hint(value) -> str:
    return (f"got {type(value).__name__} (pass a path as a str or pathlib.Path; open encoded image data "
            "with PIL.Image.open(io.BytesIO(data)))")


def _as_uint8_array(image, what: str) -> np.ndarray:
    """A PIL image or numpy array (``what`` names it in errors) -> the uint8 array the
    native preprocessing reads, (H, W) or (H, W, 1 | 3 | 4)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        if image.mode.startswith("I;16"):
            # 16-bit gray: PIL's convert would clip it at 255 (nearly all white); scaled as
            # the file decoder scales it, v / 257 rounded.
            return np.round(np.asarray(image, dtype=np.float64) / 257).astype(np.uint8)
        if image.mode not in ("L", "RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        return np.asarray(image)
    if isinstance(image, BYTES_TYPES):
        raise TypeError(f"{what}: expected a path, PIL.Image or numpy array, {bytes_hint(image)}")
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{what}: expected a path, PIL.Image or numpy array, got {type(image).__name__}")
    if image.ndim not in (2, 3):
        raise ValueError(f"{what}: expected an array of shape (H, W) or (H, W, C), got {image.shape}")
    if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
        raise ValueError(f"{what}: expected 1 (gray), 3 (RGB) or 4 (RGBA) channels, got {image.shape[2]}")
    if image.dtype == np.uint8:
        return image
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"{what}: expected a uint8 or float array, got dtype {image.dtype}")
    if image.size:
        nan, inf = int(np.isnan(image).sum()), int(np.isinf(image).sum())
        if nan or inf:
            found = " and ".join(part for part in (nan and f"{nan} NaN", inf and f"{inf} infinite") if part)
            raise ValueError(f"{what}: float arrays must hold values in [0, 1], got {found} value(s)")
        low, high = float(image.min()), float(image.max())
        if low < 0 or high > 1:
            raise ValueError(f"{what}: float arrays must hold values in [0, 1], got range [{low:g}, {high:g}]")
    return np.round(image * 255).astype(np.uint8)


def load(images, size: int = 256) -> torch.Tensor:
    """One image or a list of images -> float32 tensor (B, 3, size, size) in [-1, 1].

    Accepts file paths, PIL images and numpy arrays (H, W), (H, W, 3) or (H, W, 4), uint8 or
    float in [0, 1]. Grayscale, palette, RGBA and 16-bit files become RGB (alpha dropped).
    Bytes are refused (a path goes in as a str or pathlib.Path, encoded data through
    PIL.Image.open). A bad item of a list is named by its index (``images[2]: ...``).
    """
    require_positive_int(size, "size")
    if size > _native.MAX_IMAGE_SIZE:
        raise ValueError(f"size must be at most {_native.MAX_IMAGE_SIZE}, got {size}")
    if isinstance(images, BYTES_TYPES):
        raise TypeError(f"images must be a path, PIL.Image or numpy array, or a list of them; {bytes_hint(images)}")
    if isinstance(images, (str, os.PathLike, np.ndarray)) or not isinstance(images, Sequence):
        return load_items([images], ["image"], size)
    if len(images) == 0:
        raise ValueError("no images given")
    return load_items(list(images), [f"images[{i}]" for i in range(len(images))], size)


def load_items(items: list, names: list[str], size: int) -> torch.Tensor:
    """``load`` for a non-empty list whose items are named ``names`` in errors."""
    paths = [i for i in items if isinstance(i, (str, os.PathLike))]
    if len(paths) == len(items):
        return _native.load_files([os.fspath(p) for p in paths], size)
    if paths:
        # Mixed input: keep the order, decode files one batch at a time.
        return torch.cat([load_items([item], [name], size) for item, name in zip(items, names, strict=True)])
    arrays = [_as_uint8_array(item, name) for item, name in zip(items, names, strict=True)]
    try:
        return _native.load_pixels(arrays, size)
    except ValueError as err:
        if len(arrays) == 1 and names[0] == "image":
            raise
        # The native preprocessing does not say which image it refused: find it.
        for array, name in zip(arrays, names, strict=True):
            try:
                _native.load_pixels([array], size)
            except ValueError as one:
                raise type(one)(f"{name}: {one}") from err
        raise


def to_uint8(tensor: torch.Tensor) -> torch.Tensor:
    """Values in [-1, 1] -> uint8 pixels, clamped and rounded to the nearest 8-bit value
    (what saving an image keeps; ``load`` maps them back as v / 127.5 - 1)."""
    return ((tensor.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_pil(tensor: torch.Tensor):
    """(3, H, W) or (B, 3, H, W) in [-1, 1] -> PIL image or list of PIL images (clamped,
    rounded to the nearest 8-bit value)."""
    from PIL import Image

    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(tensor).__name__}")
    single = tensor.dim() == 3
    batch = tensor.unsqueeze(0) if single else tensor
    if batch.dim() != 4 or batch.shape[1] != 3:
        raise ValueError(f"expected a (3, H, W) or (B, 3, H, W) tensor, got {tuple(tensor.shape)}")
    if not torch.isfinite(batch).all():
        # clamp() keeps NaN, and NaN cast to uint8 is an arbitrary (usually black) pixel.
        raise ValueError("the image tensor holds NaN or infinite values")
    arrays = to_uint8(batch).permute(0, 2, 3, 1).cpu().numpy()
    out = [Image.fromarray(a, mode="RGB") for a in arrays]
    return out[0] if single else out


def grid(pictures, columns: int):
    """Images of one size tiled row by row, ``columns`` per row, into one PIL image.

    Takes what ``lverse.generate`` returns, of any ``output_type``: a list of PIL images, a
    (B, 3, H, W) tensor in [-1, 1], a (B, H, W, 3) float array in [0, 1] (or uint8), or a
    list of these (one per text), tiled in order."""
    from PIL import Image

    pictures = _pictures(pictures)
    if not pictures:
        raise ValueError("no images to tile")
    require_positive_int(columns, "columns")
    w, h = pictures[0].size
    for i, picture in enumerate(pictures):
        if picture.size != (w, h):
            raise ValueError(f"image {i} is {picture.size[0]}x{picture.size[1]}, not {w}x{h} like image 0; "
                             "grid tiles images of one size")
    rows = -(-len(pictures) // columns)
    sheet = Image.new("RGB", (w * min(columns, len(pictures)), h * rows))
    for i, picture in enumerate(pictures):
        sheet.paste(picture, ((i % columns) * w, (i // columns) * h))
    return sheet


def _pictures(images) -> list:
    """PIL images from ``generate``'s outputs (see ``grid``)."""
    from PIL import Image

    if isinstance(images, Image.Image):
        return [images]
    if isinstance(images, torch.Tensor):
        return to_pil(images.detach()) if images.dim() == 4 else [to_pil(images.detach())]
    if isinstance(images, np.ndarray):
        batch = images[None] if images.ndim == 3 else images
        if batch.ndim != 4 or batch.shape[-1] != 3:
            raise ValueError(f"expected a (B, H, W, 3) array, got {images.shape}")
        if batch.dtype != np.uint8:
            if not np.isfinite(batch).all():
                raise ValueError("the array holds NaN or infinite values")
            batch = (np.clip(batch, 0.0, 1.0) * 255).round().astype(np.uint8)
        return [Image.fromarray(picture) for picture in batch]
    if isinstance(images, (list, tuple)):
        return [picture for item in images for picture in _pictures(item)]
    raise TypeError(f"expected PIL images, a tensor, an array or a list of them, got {type(images).__name__}")


def psnr(reference: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of tensors in [-1, 1], measured on [0, 1] after clamping."""
    require_tensor(reference, "reference")
    require_tensor(reconstruction, "reconstruction")
    if reference.shape != reconstruction.shape or reference.dim() < 2:
        raise ValueError(f"expected two (B, ...) tensors of one shape, got {tuple(reference.shape)} "
                         f"and {tuple(reconstruction.shape)}")
    a = (reference.detach().float().clamp(-1, 1) + 1) / 2
    b = (reconstruction.detach().float().clamp(-1, 1) + 1) / 2
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(1.0 / mse)


__all__ = ["load", "to_pil", "grid", "psnr"]

