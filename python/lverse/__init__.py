"""lverse: L-Verse (CVPR 2022) with a native libtorch core.

AugVAE turns images into discrete codes and back; BiART turns text into image codes and
image codes into text with one set of weights.
"""

# torch must be imported before the native module: the extension links libtorch_python,
# which only torch's own import makes loadable.
import torch  # noqa: F401

# The native module built for the running torch, checked before it loads: a libtorch of
# another minor version could crash it. Afterwards it is lverse._native.
from ._torch_check import load_native, wheel_version

_native = load_native()

# _fork, imported for its effect: one torch thread in forked children, so no deadlock there.
from . import _fork, images, layout, tasks, vq  # noqa: F401
from .augvae import AugVAE, AugVAEConfig
from .biart import BiART, BiARTConfig
from .errors import CheckpointError, ImageError, LverseError, NativePathError
from .pipeline import LVerse, caption, generate, load
from .progress import set_progress
from .tokenizer import Tokenizer

__version__ = wheel_version(_native)

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
