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


def _as_uint8_array(image, index: int) -> np.ndarray:
    from PIL import Image

    if isinstance(image, Image.Image):
        if image.mode not in ("L", "RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        return np.asarray(image)
    if isinstance(image, np.ndarray):
        if image.dtype == np.uint8:
            return image
        if np.issubdtype(image.dtype, np.floating):
            if image.size and (np.nanmin(image) < 0 or np.nanmax(image) > 1 or np.isnan(image).any()):
                raise ValueError(
                    f"image {index}: float arrays must hold values in [0, 1], got range "
                    f"[{np.nanmin(image)}, {np.nanmax(image)}]"
                )
            return np.round(image * 255).astype(np.uint8)
        raise TypeError(f"image {index}: expected a uint8 or float array, got dtype {image.dtype}")
    raise TypeError(
        f"image {index}: expected a path, PIL.Image or numpy array, got {type(image).__name__}"
    )


def load(images, size: int = 256) -> torch.Tensor:
    """One image or a list of images -> float32 tensor (B, 3, size, size) in [-1, 1].

    Accepts file paths, PIL images and numpy arrays (H, W), (H, W, 3) or (H, W, 4), uint8 or
    float in [0, 1]. Grayscale, palette, RGBA and 16-bit files become RGB (alpha dropped).
    """
    require_positive_int(size, "size")
    if size > _native.MAX_IMAGE_SIZE:
        raise ValueError(f"size must be at most {_native.MAX_IMAGE_SIZE}, got {size}")
    if isinstance(images, (str, os.PathLike, np.ndarray)) or not isinstance(images, Sequence):
        images = [images]
    if len(images) == 0:
        raise ValueError("no images given")
    paths = [i for i in images if isinstance(i, (str, os.PathLike))]
    if len(paths) == len(images):
        return _native.load_files([os.fspath(p) for p in paths], size)
    if paths:
        # Mixed input: keep the order, decode files one batch at a time.
        parts = [load([i], size) for i in images]
        return torch.cat(parts)
    arrays = [_as_uint8_array(image, i) for i, image in enumerate(images)]
    return _native.load_pixels(arrays, size)


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
    """PIL images of one size tiled row by row, ``columns`` per row, into one image."""
    from PIL import Image

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

