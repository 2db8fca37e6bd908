"""lverse's PEP 517 backend: maturin's, for the torch LVERSE_TORCH chooses.

lverse's native module links the torch of the environment it is built in (torch-sys reads
the installed torch's libtorch). So this backend
- asks pip's isolated build environment for that exact torch besides maturin, so that
  `pip install .` works as typed;
- builds from that torch's project (build_backend/torch_variants.py): the root for the
  default, a generated one with the matching tch pins and lock file for the others;
- stops before compiling anything, with the command to run, where the environment it runs
  in cannot build (`--no-build-isolation` without maturin, without torch, or with a torch
  other than the chosen one), instead of failing minutes later inside torch-sys's build script.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from torch_variants import DEFAULT, Variant, project, variant

MATURIN = "maturin>=1.5,<2"


def _chosen() -> Variant:
    try:
        return variant(os.environ.get("LVERSE_TORCH"))
    except ValueError as e:
        sys.exit(f"lverse: {e}")


def _maturin() -> Any:
    try:
        import maturin
    except ImportError:
        sys.exit(f"lverse: maturin is not installed in the build environment. Install it first "
                 f"(pip install '{MATURIN}'), or let pip make the build environment (pip install . "
                 f"without --no-build-isolation).")
    return maturin


def _check_build_torch(v: Variant) -> None:
    """The build environment's torch must be the chosen one: torch-sys links what it finds."""
    chosen = f"LVERSE_TORCH={v.minor}" + ("" if os.environ.get("LVERSE_TORCH") else " (the default)")
    try:
        import torch
    except ImportError:
        sys.exit(f"lverse: the build links the installed torch, and this build environment has none "
                 f"(building for torch {v.minor}, {chosen}). Either let pip make the build environment "
                 f"(pip install . without --no-build-isolation installs torch=={v.torch} into it), or install "
                 f"the torch first: pip install torch=={v.torch} '{MATURIN}' && pip install --no-build-isolation .")
    found = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    if found != v.minor:
        sys.exit(f"lverse: this build environment holds torch {torch.__version__}, but the build is for torch "
                 f"{v.minor} ({chosen}). To build for the torch you have, choose it: "
                 f"LVERSE_TORCH={found} pip install --no-build-isolation . (lverse builds for torch "
                 f"2.11, 2.12 and 2.13).")


@contextlib.contextmanager
def _in_project(v: Variant) -> Iterator[None]:
    """maturin's backend reads pyproject.toml and Cargo.toml from the working directory."""
    previous = os.getcwd()
    saved_args = os.environ.get("MATURIN_PEP517_ARGS")
    args = shlex.split(saved_args or "")
    if "--locked" not in args and "--frozen" not in args:
        # Each torch's lock file is part of the release: never resolve anew at install time.
        os.environ["MATURIN_PEP517_ARGS"] = shlex.join([*args, "--locked"])
    os.chdir(project(v))
    try:
        yield
    finally:
        os.chdir(previous)
        if saved_args is None:
            os.environ.pop("MATURIN_PEP517_ARGS", None)
        else:
            os.environ["MATURIN_PEP517_ARGS"] = saved_args


def get_requires_for_build_wheel(config_settings: Mapping[str, Any] | None = None) -> list[str]:
    v = _chosen()
    if v.minor != DEFAULT:
        print(f"lverse: building for torch {v.minor} (LVERSE_TORCH)", file=sys.stderr)
    return [MATURIN, f"torch=={v.torch}"]


get_requires_for_build_editable = get_requires_for_build_wheel


def prepare_metadata_for_build_wheel(metadata_directory: str, config_settings: Mapping[str, Any] | None = None) -> str:
    v = _chosen()
    maturin = _maturin()
    _check_build_torch(v)
    with _in_project(v):
        return maturin.prepare_metadata_for_build_wheel(os.path.abspath(metadata_directory), config_settings)


prepare_metadata_for_build_editable = prepare_metadata_for_build_wheel


def build_wheel(wheel_directory: str, config_settings: Mapping[str, Any] | None = None,
                metadata_directory: str | None = None) -> str:
    return _build(wheel_directory, config_settings, metadata_directory, editable=False)


def build_editable(wheel_directory: str, config_settings: Mapping[str, Any] | None = None,
                   metadata_directory: str | None = None) -> str:
    return _build(wheel_directory, config_settings, metadata_directory, editable=True)


def _build(wheel_directory: str, config_settings: Mapping[str, Any] | None, metadata_directory: str | None,
           editable: bool) -> str:
    v = _chosen()
    maturin = _maturin()
    _check_build_torch(v)
    wheel_directory = os.path.abspath(wheel_directory)
    metadata_directory = metadata_directory and os.path.abspath(metadata_directory)
    with _in_project(v):
        build = maturin.build_editable if editable else maturin.build_wheel
        return build(wheel_directory, config_settings, metadata_directory)


def get_requires_for_build_sdist(config_settings: Mapping[str, Any] | None = None) -> list[str]:
    return [MATURIN]


def build_sdist(sdist_directory: str, config_settings: Mapping[str, Any] | None = None) -> str:
    # The source distribution is the root's: it carries every torch's lock file and this backend.
    return _maturin().build_sdist(sdist_directory, config_settings)
