"""Which torch lverse's native module was built for, checked before it loads.

The module links libtorch through tch, and each tch release binds one libtorch minor
version. Loading it into another torch does not fail cleanly: missing symbols at best, and
at worst a crash, since the in-memory layout of tensors passed between the two (THPVariable)
differs between minor versions.

So the build puts the module in a directory named after its torch: lverse/_torch213/ holds
the module built for torch 2.13 (pyproject.toml's module-name; build_backend/torch_variants.py
for the others). The name cannot disagree with the module's content, and builds for several
torch versions can sit side by side in one source tree. The running torch picks its own; if
it has none, the import is an ImportError that names both versions and what to run.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from types import ModuleType

import torch

PACKAGE_DIR = Path(__file__).parent
# The torch versions the source tree builds for (build_backend/torch_variants.py; a test keeps them equal).
SUPPORTED = ("2.11", "2.12", "2.13")
_BUILD_DIR = re.compile(r"_torch(\d)(\d+)$")


def minor_version(version: str) -> str:
    """'2.13.0+cu130' -> '2.13'."""
    return ".".join(version.split("+")[0].split(".")[:2])


def built_for(package_dir: Path = PACKAGE_DIR) -> list[str]:
    """The torch minor versions this installation holds a native module for, e.g. ['2.13']."""
    found = []
    for d in package_dir.glob("_torch*"):
        m = _BUILD_DIR.match(d.name)
        if m and d.is_dir() and (any(d.glob("_native*.so")) or any(d.glob("_native*.pyd"))):
            found.append(f"{m.group(1)}.{m.group(2)}")
    return sorted(found, key=lambda v: tuple(map(int, v.split("."))))


def require_matching_torch(version: str | None = None, package_dir: Path = PACKAGE_DIR) -> str:
    """The module name for the running torch; ImportError where none was built for it."""
    running = torch.__version__ if version is None else version
    minor = minor_version(running)
    built = built_for(package_dir)
    if minor in built:
        return f"lverse._torch{minor.replace('.', '')}._native"
    if minor in SUPPORTED:
        rebuild = (f"rebuild lverse for this torch from its source tree: LVERSE_TORCH={minor} scripts/dev.sh setup, "
                   f"or LVERSE_TORCH={minor} pip install --no-build-isolation . in an environment holding it")
    else:
        rebuild = f"use a torch lverse builds for ({', '.join(SUPPORTED)}) and build lverse for it"
    if not built:
        raise ImportError(f"lverse's native module is not built (no lverse/_torch*/_native module in {package_dir}); "
                          f"torch {running} is installed: {rebuild}")
    names = " and ".join(built)
    raise ImportError(
        f"lverse's native module was built for torch {names}, but torch {running} is installed; "
        f"loading it there could crash the process. Install the torch it was built for "
        f"(pip install 'torch=={built[-1]}.*'), or {rebuild}"
    )


def wheel_version(native: ModuleType) -> str:
    """'0.1.0' from the module built for torch 2.13 -> '0.1.0+pt213', the wheel's version."""
    return f"{native.__version__}+pt{native.__name__.split('.')[1].removeprefix('_torch')}"


def load_native() -> ModuleType:
    """Import the native module built for the running torch, under its one name lverse._native."""
    module = importlib.import_module(require_matching_torch())
    sys.modules["lverse._native"] = module
    return module
