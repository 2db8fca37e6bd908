"""The wheel that plain `maturin build` makes ([tool.maturin] in pyproject.toml), from the
project of the running torch (build_backend/torch_variants.py): small, no bundled libtorch or
CUDA library, the default weights inside, its version and requirement naming its torch, and
working in a fresh venv that holds only that torch, from outside the source tree."""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "build_backend"))
import torch_variants  # noqa: E402

VARIANT = torch_variants.variant(".".join(torch.__version__.split("+")[0].split(".")[:2]))
MAX_MB = 40
# What auditwheel's repair would copy in: a second libtorch aborts the process at import.
BUNDLED = ("libtorch", "libc10", "libcu", "libnv", "libgomp", ".libs/")

# The build needs maturin beside this Python (whose torch it links) and cargo; an environment
# holding only a built lverse (scripts/gpu-check.sh's) has neither.
maturin = str(Path(sys.executable).with_name("maturin"))
pytestmark = pytest.mark.skipif(not Path(maturin).exists() or shutil.which("cargo") is None,
                                reason="no maturin beside this Python, or no cargo")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # The release build is the one the suite already made (same target directory), so
    # this only packs it.
    done = subprocess.run([maturin, "build", "--release", "--locked", "--quiet", "-o", str(out)],
                          cwd=torch_variants.project(VARIANT),
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
    # Exactly one native module, in the directory of its torch, for this Python only: the
    # module is not abi3 (Cargo.toml says why).
    abi = sysconfig.get_config_var("SOABI")
    assert [n for n in names if n.endswith(".so")] == [f"lverse/_torch{VARIANT.tag}/_native.{abi}.so"]
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert wheel.name.startswith(f"lverse-0.1.0+pt{VARIANT.tag}-{tag}-{tag}-"), wheel.name


def test_the_wheel_requires_its_torch_minor(wheel):
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert f"Version: 0.1.0+pt{VARIANT.tag}\n" in meta
    torch_req = [r for r in re.findall(r"^Requires-Dist: (.*)$", meta, re.M) if r.startswith("torch")]
    assert [Requirement(r).specifier for r in torch_req] == [Requirement(VARIANT.requirement).specifier]


def torch_only(into: Path) -> Path:
    """A directory holding only torch and what it needs, linked from this environment: the
    'fresh venv holding only torch' without copying its 4.8 GB each run."""
    into.mkdir()
    todo, seen = ["torch"], set()
    while todo:
        dist = metadata.distribution(todo.pop())
        if dist.name.lower() in seen:
            continue
        seen.add(dist.name.lower())
        for top in {Path(str(f)).parts[0] for f in dist.files or []} - {".."}:
            source = Path(dist.locate_file(top))
            if source.exists() and not (into / top).exists():
                (into / top).symlink_to(source)
        for r in map(Requirement, dist.requires or []):
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(r.name)
    return into


def test_the_wheel_works_in_a_fresh_venv_holding_only_torch(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    site = next((venv / "lib").glob("python3.*/site-packages"))
    (site / "torch_only.pth").write_text(str(torch_only(tmp_path / "torch_only")) + "\n")
    python = str(venv / "bin" / "python")
    # pip takes the wheel's other requirements (numpy, pillow, ...) from its cache or index,
    # and finds its torch requirement met.
    install = subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
                             capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["LVERSE_PROGRESS"] = "0"
    code = (f"import lverse, numpy as np; assert lverse.__file__.startswith({str(site)!r}), lverse.__file__; "
            "print(lverse.__version__, lverse.caption(np.zeros((64, 64, 3), np.uint8)))")
    done = subprocess.run([python, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith(f"0.1.0+pt{VARIANT.tag} ")
    image = ROOT / "examples" / "images" / "scene_0.png"
    cli = subprocess.run([python, "-m", "lverse", "caption", str(image)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0 and cli.stdout.strip(), cli.stderr[-3000:]
    console = subprocess.run([str(venv / "bin" / "lverse"), "--help"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=600)
    assert console.returncode == 0 and "caption" in console.stdout, console.stderr[-3000:]
