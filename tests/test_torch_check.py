"""A torch other than the one lverse was built for is an ImportError at import, before the
native module loads (it could crash there), naming both versions and the way out. The torch a
module was built for is the name of its directory, which the build chose
(python/lverse/_torch_check.py)."""

import re
import subprocess
import sys
from pathlib import Path

import lverse
import pytest
import torch
from lverse._torch_check import PACKAGE_DIR, SUPPORTED, built_for, minor_version, require_matching_torch

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "build_backend"))
import torch_variants  # noqa: E402


def fake_build(tmp_path: Path, *minors: str) -> Path:
    for minor in minors:
        d = tmp_path / f"_torch{minor.replace('.', '')}"
        d.mkdir()
        (d / "_native.abi3.so").write_bytes(b"")
    return tmp_path


def test_the_loaded_module_is_the_one_built_for_the_running_torch():
    running = minor_version(torch.__version__)
    assert running in built_for()
    assert lverse._native.__name__ == f"lverse._torch{running.replace('.', '')}._native"
    assert sys.modules["lverse._native"] is lverse._native
    # The wheel's version names the same torch.
    assert lverse.__version__.endswith(f"+pt{running.replace('.', '')}")


def test_the_supported_torch_versions_are_the_buildable_ones():
    assert SUPPORTED == tuple(sorted(torch_variants.VARIANTS))


def test_the_root_project_is_the_default_torch():
    # The root Cargo.toml pins the default variant's tch, and pyproject.toml names its module.
    default = torch_variants.VARIANTS[torch_variants.DEFAULT]
    pin = re.search(r'^tch = "=([\d.]+)"', (ROOT / "Cargo.toml").read_text(), re.M)
    assert pin and pin.group(1) == default.tch
    assert f'module-name = "lverse._torch{default.tag}._native"' in (ROOT / "pyproject.toml").read_text()


@pytest.mark.parametrize("version", ["2.11.0+cu130", "2.12.1"])
def test_another_torch_is_refused(tmp_path, version):
    package = fake_build(tmp_path, "2.13")
    minor = minor_version(version)
    expected = (rf"built for torch 2\.13, but torch {re.escape(version)} is installed.*"
                rf"pip install 'torch==2\.13\.\*'.*LVERSE_TORCH={minor} scripts/dev.sh setup")
    with pytest.raises(ImportError, match=expected):
        require_matching_torch(version, package)
    assert require_matching_torch("2.13.0+cpu", package) == "lverse._torch213._native"


def test_several_builds_side_by_side_each_torch_takes_its_own(tmp_path):
    package = fake_build(tmp_path, "2.11", "2.13")
    assert built_for(package) == ["2.11", "2.13"]
    assert require_matching_torch("2.11.0+cu130", package) == "lverse._torch211._native"
    with pytest.raises(ImportError, match=r"built for torch 2\.11 and 2\.13, but torch 2\.12\.0 is installed"):
        require_matching_torch("2.12.0", package)


def test_no_build_at_all_says_how_to_build(tmp_path):
    (tmp_path / "_torch213").mkdir()  # a directory without a module is no build
    with pytest.raises(ImportError, match=r"native module is not built.*LVERSE_TORCH=2\.13 scripts/dev.sh setup"):
        require_matching_torch("2.13.0", tmp_path)


def test_import_refuses_before_loading_the_native_module():
    # A torch that reports a minor no module was built for: the import stops with ImportError
    # and no native module is loaded.
    assert "2.10" not in built_for(PACKAGE_DIR)
    code = ("import sys, torch; torch.__version__ = '2.10.0+cu130'\n"
            "try:\n    import lverse\nexcept ImportError as e:\n    print('ImportError:', e)\n"
            "print('native loaded:', [m for m in sys.modules if m.startswith('lverse') and m.endswith('_native')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert "but torch 2.10.0+cu130 is installed" in out
    assert "use a torch lverse builds for (2.11, 2.12, 2.13)" in out
    assert "native loaded: []" in out
