"""lverse's exceptions. Each also subclasses the built-in that fits, so callers can catch
either ``lverse.LverseError`` or the usual ``ValueError``."""


class LverseError(Exception):
    """Base class of every error lverse raises on its own account."""


class CheckpointError(LverseError, ValueError):
    """A file that is not a checkpoint, or whose keys or shapes do not fit the model."""


class ImageError(LverseError, ValueError):
    """An image that cannot be decoded (corrupt, truncated, unsupported)."""
