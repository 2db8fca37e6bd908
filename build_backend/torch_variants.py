"""The torch versions lverse builds for, and the build project for each.

Each tch release binds one libtorch minor (tch 0.24: torch 2.11, 0.26: 2.13; no 0.25 was
released for 2.12), and Cargo cannot hold two versions of a `links = "tch"` crate even as
optional dependencies (rust-lang/cargo#10066). So the repository root is the project for the default torch, and
the project for another torch is made from it: the same sources (src/ symlinked, python/
mirrored by hard links), Cargo.toml with
that torch's tch pins, its own committed lock file (locks/torch-X.Y/Cargo.lock), and
pyproject.toml with its wheel version (+ptXY), its torch requirement and its module
directory (lverse/_torchXY/, which the import-time check reads; python/lverse/_torch_check.py).

Used by scripts/dev.sh (LVERSE_TORCH) and by the PEP 517 backend (build_backend/lverse_build.py):

    python build_backend/torch_variants.py project 2.11   # prints the project directory
    python build_backend/torch_variants.py relock 2.12    # after changing dependencies
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = "2.13"  # what the root Cargo.toml, Cargo.lock and pyproject.toml describe
LINKED = ("src", "README.md", "LICENSE")  # what a variant project shares with the root, as symlinks


@dataclass(frozen=True)
class Variant:
    minor: str  # "2.11"
    torch: str  # the exact torch the build links (torch-sys checks the version exactly)
    tch: str  # tch, torch-sys and pyo3-tch are released together under one version
    # torch-sys refuses any libtorch but its own; where no tch release binds this torch, the
    # nearest older one is built against it with that check off. Its C++ glue is then compiled
    # against this torch's headers, so a call that changed would fail the build, not run wrong.
    bypass_version_check: bool = False

    @property
    def tag(self) -> str:
        """'2.11' -> '211': the wheel's local version (+pt211) and module directory (_torch211)."""
        return self.minor.replace(".", "")

    @property
    def requirement(self) -> str:
        """What the built wheel needs at run time: the same torch minor (patch releases keep the ABI)."""
        major, minor = self.minor.split(".")
        return f"torch>={self.minor},<{major}.{int(minor) + 1}"


VARIANTS = {
    "2.11": Variant("2.11", "2.11.0", "0.24.0"),
    # No tch 0.25 was released (crates.io holds 0.24.0 and 0.26.0); 0.26's glue calls ops that
    # are new in 2.13, while 2.12 still has every op of 2.11 that 0.24 calls.
    "2.12": Variant("2.12", "2.12.0", "0.24.0", bypass_version_check=True),
    "2.13": Variant("2.13", "2.13.0", "0.26.0"),
}


def variant(minor: str | None) -> Variant:
    """The variant for LVERSE_TORCH's value (None or empty: the default)."""
    chosen = minor or DEFAULT
    if chosen not in VARIANTS:
        raise ValueError(f"LVERSE_TORCH={chosen!r} is not a torch lverse builds for; expected one of "
                         f"{', '.join(VARIANTS)}")
    return VARIANTS[chosen]


def _replace_once(text: str, pattern: str, replacement: str, what: str) -> str:
    new, count = re.subn(pattern, replacement, text, flags=re.M)
    if count != 1:
        raise RuntimeError(f"{what}: expected the pattern {pattern!r} once, found it {count} times")
    return new


def cargo_toml(v: Variant) -> str:
    """The root Cargo.toml with v's tch, torch-sys and pyo3-tch pins."""
    text = (ROOT / "Cargo.toml").read_text()
    old = VARIANTS[DEFAULT].tch
    for crate in ("tch", "torch-sys", "pyo3-tch"):
        text = _replace_once(text, rf'^({re.escape(crate)} = (?:\{{ version = )?)"={re.escape(old)}"',
                             rf'\g<1>"={v.tch}"', f"Cargo.toml, {crate}")
    return text


def pyproject_toml(v: Variant) -> str:
    """The root pyproject.toml with v's wheel version, torch requirement and module directory."""
    text = (ROOT / "pyproject.toml").read_text()
    d = VARIANTS[DEFAULT]
    text = _replace_once(text, rf'^(version = "[^"+]+)\+pt{d.tag}"', rf'\g<1>+pt{v.tag}"', "pyproject.toml version")
    text = _replace_once(text, rf'"{re.escape(d.requirement)}"', f'"{v.requirement}"', "pyproject.toml torch")
    text = _replace_once(text, rf'^module-name = "lverse\._torch{d.tag}\._native"',
                         f'module-name = "lverse._torch{v.tag}._native"', "pyproject.toml module-name")
    return text


def lock_file(v: Variant) -> Path:
    return ROOT / "Cargo.lock" if v.minor == DEFAULT else ROOT / "locks" / f"torch-{v.minor}" / "Cargo.lock"


def project(v: Variant) -> Path:
    """The directory to build v from: the root for the default, else a generated project.

    It lives under target/ (ignored by git) inside the root, so that cargo still finds the
    root's .cargo/config.toml. Rewritten on every call, so it follows the root's files."""
    if v.minor == DEFAULT:
        return ROOT
    out = ROOT / "target" / f"torch-{v.minor}"
    out.mkdir(parents=True, exist_ok=True)
    _mirror(ROOT / "python", out / "python")
    for name in LINKED:
        link = out / name
        if not link.is_symlink():
            if link.exists():
                shutil.rmtree(link) if link.is_dir() else link.unlink()
            link.symlink_to(ROOT / name)
    _write_if_changed(out / "Cargo.toml", cargo_toml(v))
    # cargo reads .cargo/config.toml from the working directory upwards: here, then the root's.
    config = out / ".cargo" / "config.toml"
    config.parent.mkdir(exist_ok=True)
    _write_if_changed(config, '[env]\nLIBTORCH_BYPASS_VERSION_CHECK = "1"\n' if v.bypass_version_check else "")
    _write_if_changed(out / "pyproject.toml", pyproject_toml(v))
    if lock_file(v).exists():
        _write_if_changed(out / "Cargo.lock", lock_file(v).read_text())
    return out


def _mirror(source: Path, target: Path) -> None:
    """target/ holds hard links to source/'s files (Python sources, weights), so that it has the
    package itself: maturin neither follows a symlinked python/ directory nor takes a
    python-source outside the project (either gave a wheel without lverse/*.py). A file edited
    in place shows through the link; one replaced by rename shows after the next call (every
    scripts/dev.sh command makes one). Built modules and caches in target/ are left alone."""
    if target.is_symlink():  # an earlier version of this script linked the directory
        target.unlink()

    def derived(path: Path) -> bool:
        return "__pycache__" in path.parts or path.suffix in (".so", ".pyc")

    wanted = {p.relative_to(source) for p in source.rglob("*") if p.is_file() and not derived(p)}
    for rel in wanted:
        src, dst = source / rel, target / rel
        if dst.exists() and dst.stat().st_ino == src.stat().st_ino:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.unlink(missing_ok=True)
        try:
            os.link(src, dst)
        except OSError:  # another file system: a copy, refreshed by the next call
            shutil.copy2(src, dst)
    for p in sorted(target.rglob("*"), reverse=True):
        if p.is_file() and not derived(p) and p.relative_to(target) not in wanted:
            p.unlink()


def _write_if_changed(path: Path, text: str) -> None:
    # An unchanged manifest keeps its mtime, so cargo's incremental build stays incremental.
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def relock(v: Variant) -> Path:
    """Re-resolve v's lock file from the root's, changing only what v's pins require."""
    out = project(v)
    if v.minor != DEFAULT:
        shutil.copyfile(ROOT / "Cargo.lock", out / "Cargo.lock")
    subprocess.run(["cargo", "metadata", "--format-version", "1", "--manifest-path", str(out / "Cargo.toml")],
                   check=True, stdout=subprocess.DEVNULL)
    if v.minor != DEFAULT:
        lock_file(v).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "Cargo.lock", lock_file(v))
    return lock_file(v)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("project", "relock", "torch"):
        print("usage: torch_variants.py {project|relock|torch} MINOR", file=sys.stderr)
        return 2
    try:
        v = variant(argv[1])
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    if argv[0] == "project":
        print(project(v))
    elif argv[0] == "relock":
        print(relock(v))
    else:
        print(v.torch)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
