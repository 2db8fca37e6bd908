"""One source tree builds for torch 2.11, 2.12 and 2.13 (build_backend/torch_variants.py):
each variant's project has that torch's tch pins, lock file, wheel version, torch requirement
and module directory; an unknown LVERSE_TORCH is refused at once; and the PEP 517 backend
asks for the matching torch and stops before compiling where the environment cannot build."""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "build_backend"))
import torch_variants  # noqa: E402
from torch_variants import VARIANTS  # noqa: E402

TCH_CRATES = ("tch", "torch-sys", "pyo3-tch")


def locked(lock: Path) -> dict[str, str]:
    return {p["name"]: p["version"] for p in tomllib.loads(lock.read_text())["package"]}


@pytest.mark.parametrize("minor", sorted(VARIANTS))
def test_each_variant_project_pins_its_torch(minor):
    v = VARIANTS[minor]
    out = torch_variants.project(v)
    cargo = tomllib.loads((out / "Cargo.toml").read_text())
    assert [cargo["dependencies"][c] if c != "pyo3-tch" else cargo["dependencies"][c]["version"]
            for c in TCH_CRATES] == [f"={v.tch}"] * 3
    py = tomllib.loads((out / "pyproject.toml").read_text())
    assert py["project"]["version"] == f"0.1.0+pt{v.tag}"
    assert f"torch>={minor},<2.{int(minor.split('.')[1]) + 1}" in py["project"]["dependencies"]
    assert py["tool"]["maturin"]["module-name"] == f"lverse._torch{v.tag}._native"
    # Its lock file holds exactly those crates, and otherwise the root's versions.
    lock, root = locked(out / "Cargo.lock"), locked(ROOT / "Cargo.lock")
    assert [lock[c] for c in TCH_CRATES] == [v.tch] * 3
    assert {k: x for k, x in lock.items() if k not in TCH_CRATES} == {k: x for k, x in root.items()
                                                                      if k not in TCH_CRATES}
    # Everything but the manifests is the root's own files: linked, and the package mirrored
    # by hard links (maturin packs no python/ outside the project or behind a symlink).
    assert all((out / name).resolve() == ROOT / name for name in torch_variants.LINKED)
    for rel in ("lverse/__init__.py", "lverse/weights/default/biart.safetensors"):
        assert (out / "python" / rel).stat().st_ino == (ROOT / "python" / rel).stat().st_ino
    bypass = (out / ".cargo" / "config.toml").read_text() if out != ROOT else ""
    assert ("LIBTORCH_BYPASS_VERSION_CHECK" in bypass) == v.bypass_version_check


def test_torch_sys_of_each_pin_is_built_for_that_torch_or_bypassed():
    # torch-sys's build script names the one libtorch it accepts.
    for v in VARIANTS.values():
        src = next(Path.home().glob(f".cargo/registry/src/*/torch-sys-{v.tch}/build.rs"), None)
        if src is None:
            pytest.skip(f"torch-sys {v.tch} is not downloaded")
        accepted = re.search(r'const TORCH_VERSION: &str = "([\d.]+)"', src.read_text()).group(1)
        assert (accepted == v.torch) != v.bypass_version_check, (v, accepted)


def test_an_unknown_torch_is_refused_at_once():
    done = subprocess.run(["bash", str(ROOT / "scripts" / "dev.sh"), "setup"],
                          env={**os.environ, "LVERSE_TORCH": "2.10"}, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "LVERSE_TORCH='2.10' is not a torch lverse builds for; expected one of 2.11, 2.12, 2.13" in done.stderr


def backend(hook: str, env: dict[str, str], python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'build_backend')!r}); import lverse_build; "
            f"print(lverse_build.{hook})")
    return subprocess.run([python, "-c", code], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("minor", [None, "2.11", "2.12"])
def test_the_build_requirements_name_the_chosen_torch(minor):
    env = {"LVERSE_TORCH": minor} if minor else {}
    done = backend("get_requires_for_build_wheel()", {**{"LVERSE_TORCH": ""}, **env})
    torch = VARIANTS[minor or torch_variants.DEFAULT].torch
    assert done.stdout.strip() == repr(["maturin>=1.5,<2", f"torch=={torch}"]), done.stderr


def test_building_for_another_torch_than_the_installed_one_stops_at_once(tmp_path):
    pytest.importorskip("maturin")  # without it the backend stops earlier, at maturin
    import torch

    running = ".".join(torch.__version__.split(".")[:2])
    other = next(m for m in VARIANTS if m != running)
    done = backend(f"build_wheel({str(tmp_path)!r})", {"LVERSE_TORCH": other})
    assert done.returncode != 0
    assert (f"this build environment holds torch {torch.__version__}, but the build is for torch {other} "
            f"(LVERSE_TORCH={other}). To build for the torch you have, choose it: "
            f"LVERSE_TORCH={running} pip install --no-build-isolation .") in done.stderr
    assert not list(tmp_path.iterdir())


def test_building_without_torch_stops_at_once(tmp_path):
    # A Python without torch (and possibly without maturin): either is named with what to run.
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    done = backend(f"build_wheel({str(tmp_path)!r})", {"LVERSE_TORCH": ""}, python=str(bare / "bin" / "python"))
    assert done.returncode != 0
    assert "maturin is not installed in the build environment. Install it first (pip install 'maturin>=1.5,<2')" \
        in done.stderr
    # With maturin but no torch.
    maturin = pytest.importorskip("maturin")
    only_maturin = tmp_path / "only_maturin"
    only_maturin.mkdir()

    (only_maturin / "maturin").symlink_to(Path(maturin.__file__).parent)
    done = backend(f"build_wheel({str(tmp_path)!r})", {"LVERSE_TORCH": "", "PYTHONPATH": str(only_maturin)},
                   python=str(bare / "bin" / "python"))
    assert done.returncode != 0
    assert ("the build links the installed torch, and this build environment has none (building for torch 2.13, "
            "LVERSE_TORCH=2.13 (the default)). Either let pip make the build environment") in done.stderr
    assert "pip install torch==2.13.0 'maturin>=1.5,<2' && pip install --no-build-isolation ." in done.stderr
