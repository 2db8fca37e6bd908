"""The torch that lverse's native module was built against, checked before it loads.

The module links libtorch through tch, and each tch release binds one libtorch minor
version (tch 0.24: 2.11, 0.25: 2.12, 0.26: 2.13). Loading it into another torch does not
fail cleanly: missing symbols at best, and at worst a crash, since the in-memory layout of
tensors passed between the two (THPVariable) differs between minor versions. So the
running torch's version is compared first, and a mismatch is an ImportError that says
what to do.
"""

from __future__ import annotations

import torch

# The libtorch of the tch pin in Cargo.toml (tests/test_torch_check.py keeps the two equal).
BUILT_FOR = "2.13"
TCH_FOR_TORCH = {"2.11": "0.24", "2.12": "0.25", "2.13": "0.26"}


def minor_version(version: str) -> str:
    """'2.13.0+cu130' -> '2.13'."""
    return ".".join(version.split("+")[0].split(".")[:2])


def require_matching_torch(version: str | None = None) -> None:
    running = torch.__version__ if version is None else version
    if minor_version(running) != BUILT_FOR:
        raise ImportError(
            f"lverse's native module was built for torch {BUILT_FOR}, but torch {running} is installed; "
            f"loading it there could crash the process. Install the torch it was built for "
            f"(pip install 'torch=={BUILT_FOR}.*'), or rebuild lverse against this torch from its source tree "
            f"(scripts/dev.sh setup, or maturin develop --release in an environment holding torch {BUILT_FOR})"
        )
