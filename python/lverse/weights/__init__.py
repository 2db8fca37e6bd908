"""Weights that ship inside the package (trained by lverse's own commands; see
examples/train_default.sh). Nothing is ever downloaded."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_AUGVAE = HERE / "augvae-shapes.safetensors"


def default_augvae_path() -> Path:
    """The shipped AugVAE-SL for 64 px shapes scenes (16x16 codes, 512-entry codebook)."""
    if not DEFAULT_AUGVAE.is_file():
        raise FileNotFoundError(
            f"this build of lverse ships no default AugVAE ({DEFAULT_AUGVAE} is missing); "
            "pass --ckpt or train one with examples/train_default.sh"
        )
    return DEFAULT_AUGVAE
