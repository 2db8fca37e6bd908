"""The wheel that plain `maturin build` makes ([tool.maturin] in pyproject.toml): small,
no bundled libtorch or CUDA library, the default weights inside, and working from outside
the source tree against the installed torch."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
MAX_MB = 40
# What auditwheel's repair would copy in: a second libtorch aborts the process at import.
BUNDLED = ("libtorch", "libc10", "libcu", "libnv", "libgomp", ".libs/")

maturin = shutil.which("maturin") or str(Path(sys.executable).with_name("maturin"))
pytestmark = pytest.mark.skipif(not Path(maturin).exists(), reason="maturin is not installed")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # The release build is the one the suite already made (same target directory), so
    # this only packs it.
    done = subprocess.run([maturin, "build", "--release", "--quiet", "-o", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    (found,) = out.glob("lverse-*.whl")
    return found


def test_the_wheel_is_small_and_bundles_no_libtorch(wheel):
    assert wheel.stat().st_size < MAX_MB * 2**20, f"{wheel.name}: {wheel.stat().st_size / 2**20:.1f} MB"
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if any(b in n for b in BUNDLED)]
    assert "lverse/weights/default/augvae.safetensors" in names
    assert "lverse/weights/default/biart.safetensors" in names
    assert [n for n in names if n.startswith("lverse/_native") and n.endswith(".so")]


def test_the_wheel_works_outside_the_source_tree(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                    str(wheel)], check=True, timeout=600)
    env = {**os.environ, "PYTHONPATH": str(site), "LVERSE_PROGRESS": "0"}
    code = (f"import lverse, numpy as np; assert lverse.__file__.startswith({str(site)!r}), lverse.__file__; "
            "print(lverse.caption(np.zeros((64, 64, 3), np.uint8)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    image = ROOT / "examples" / "images" / "scene_0.png"
    cli = subprocess.run([sys.executable, "-m", "lverse", "caption", str(image)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0 and cli.stdout.strip(), cli.stderr[-3000:]
