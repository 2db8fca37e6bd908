"""A torch other than the one lverse was built for is an ImportError at import, before the
native module loads (it could crash there), naming both versions and the way out."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lverse._torch_check import BUILT_FOR, TCH_FOR_TORCH, minor_version, require_matching_torch

ROOT = Path(__file__).parents[1]


def test_the_check_matches_the_tch_pin():
    pin = re.search(r'^tch = "=(\d+\.\d+)\.\d+"', (ROOT / "Cargo.toml").read_text(), re.M)
    assert pin, "Cargo.toml pins tch exactly"
    assert TCH_FOR_TORCH[BUILT_FOR] == pin.group(1)
    assert minor_version(torch.__version__) == BUILT_FOR


@pytest.mark.parametrize("version", ["2.11.0+cu130", "2.12.1", "3.0.0"])
def test_another_torch_is_refused(version):
    with pytest.raises(ImportError, match=rf"built for torch {BUILT_FOR}, but torch {re.escape(version)} is "
                                          r"installed.*pip install 'torch==.*scripts/dev.sh setup"):
        require_matching_torch(version)
    require_matching_torch(f"{BUILT_FOR}.0+cpu")


def test_import_refuses_before_loading_the_native_module():
    # A torch that reports 2.11: the import stops with ImportError and the native module
    # is never loaded.
    code = ("import sys, torch; torch.__version__ = '2.11.0+cu130'\n"
            "try:\n    import lverse\nexcept ImportError as e:\n    print('ImportError:', e)\n"
            "print('native loaded:', 'lverse._native' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert f"ImportError: lverse's native module was built for torch {BUILT_FOR}, but torch 2.11.0+cu130" in out
    assert "native loaded: False" in out
