"""Weights that ship inside the package (trained by lverse's own commands; see
examples/train_default.sh). Nothing is ever downloaded."""

from __future__ import annotations

from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parent / "default"
DEFAULT_AUGVAE = DEFAULT_DIR / "augvae.safetensors"
DEFAULT_BIART = DEFAULT_DIR / "biart.safetensors"


def _shipped(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(
            f"this build of lverse ships no default {what} ({path} is missing); pass a checkpoint "
            "or train one with examples/train_default.sh"
        )
    return path


def default_augvae_path() -> Path:
    """The shipped AugVAE-SL for 64 px shapes scenes."""
    return _shipped(DEFAULT_AUGVAE, "AugVAE")


def default_model_dir() -> Path:
    """The shipped default model: AugVAE + BiART (with its layout and tokenizer)."""
    _shipped(DEFAULT_AUGVAE, "AugVAE")
    _shipped(DEFAULT_BIART, "BiART")
    return DEFAULT_DIR
