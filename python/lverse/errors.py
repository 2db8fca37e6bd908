"""lverse's exceptions. Each also subclasses the built-in that fits, so callers can catch
either ``lverse.LverseError`` or the usual ``ValueError``."""


import re


def first_line(err: BaseException) -> str:
    """An exception's message cut to its first line, without terminal colour codes:
    libtorch's messages go on with C++ frames. The exception's type name if it is empty."""
    text = str(err).strip()
    return re.sub(r"\x1b\[[0-9;]*m", "", text.splitlines()[0]) if text else type(err).__name__


class LverseError(Exception):
    """Base class of every error lverse raises on its own account."""


class CheckpointError(LverseError, ValueError):
    """A file that is not a checkpoint, or whose keys or shapes do not fit the model."""


class ImageError(LverseError, ValueError):
    """An image that cannot be decoded (corrupt, truncated, unsupported)."""


class NativePathError(LverseError, RuntimeError):
    """A native inference path (sampler, beam search, encode/decode) was asked to run a module
    it cannot represent as it now is: an adapter, a hook, a parametrization, a replaced layer.
    The native code would compute the stock architecture and silently ignore the change, so
    it refuses; the module's PyTorch ``forward`` honours it."""
