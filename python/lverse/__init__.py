"""lverse: L-Verse (CVPR 2022) with a native libtorch core.

AugVAE turns images into discrete codes and back; BiART turns text into image codes and
image codes into text with one set of weights.
"""

# torch must be imported before the native module: the extension links libtorch_python,
# which only torch's own import makes loadable.
import torch  # noqa: F401

# Before the native module loads: a libtorch of another minor version could crash it.
from ._torch_check import require_matching_torch

require_matching_torch()

# _fork, imported for its effect: one torch thread in forked children, so no deadlock there.
from . import _fork, _native, images, layout, tasks, vq  # noqa: F401
from .augvae import AugVAE, AugVAEConfig
from .biart import BiART, BiARTConfig
from .errors import CheckpointError, ImageError, LverseError, NativePathError
from .pipeline import LVerse, caption, generate, load
from .progress import set_progress
from .tokenizer import Tokenizer

__version__ = _native.__version__

__all__ = [
    "AugVAE",
    "AugVAEConfig",
    "BiART",
    "BiARTConfig",
    "CheckpointError",
    "ImageError",
    "LVerse",
    "LverseError",
    "NativePathError",
    "Tokenizer",
    "caption",
    "generate",
    "load",
    "set_progress",
    "images",
    "layout",
    "tasks",
    "vq",
    "__version__",
]
