#!/usr/bin/env bash
# One entry point for people and CI:
#   scripts/dev.sh setup   create/refresh the venv and build the native module
#   scripts/dev.sh demo    setup, then the main job
#   scripts/dev.sh wheel   setup, then a wheel in dist/ (links the installed torch, bundles none)
#   scripts/dev.sh test    setup, then lints, every test (Rust and Python) and the fuzzers
#                          (LVERSE_FUZZ_SECONDS per target, default 60)
# LVERSE_TORCH=2.11|2.12|2.13 (default 2.13) chooses the torch to build and test against:
# each has its own tch pins and lock file (build_backend/torch_variants.py), venv and target
# directory. The venvs and cargo target directories live outside the clone (~/.cache/lverse
# by default) so that a second run on the same machine is incremental.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${LVERSE_CACHE:-$HOME/.cache/lverse}"
PYTHON_BIN="${PYTHON:-python3.11}"
command -v "$PYTHON_BIN" >/dev/null || PYTHON_BIN=python3
VARIANTS="$ROOT/build_backend/torch_variants.py"
TORCH_MINOR="${LVERSE_TORCH:-2.13}"
TORCH_PIN="$("$PYTHON_BIN" "$VARIANTS" torch "$TORCH_MINOR")"  # refuses an unknown LVERSE_TORCH
PYTHON_MINOR="$("$PYTHON_BIN" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
# One venv and target directory per torch and Python: the default keeps the plain names.
SUFFIX=""
if [ "$TORCH_MINOR" != 2.13 ]; then SUFFIX="-torch$TORCH_MINOR"; fi
if [ "$PYTHON_MINOR" != 3.11 ]; then SUFFIX="$SUFFIX-py$PYTHON_MINOR"; fi
VENV="${LVERSE_VENV:-$CACHE/venv$SUFFIX}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target$SUFFIX}"
# The project to build: the root for 2.13, a generated one under target/ for the others.
PROJECT="$("$PYTHON_BIN" "$VARIANTS" project "$TORCH_MINOR")"

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating venv $VENV"
    "$PYTHON_BIN" -m venv "$VENV"
  fi
  # shellcheck disable=SC1091
  source "$VENV/bin/activate"
  echo "== python packages (torch==$TORCH_PIN, requirements-dev.txt)"
  pip install --quiet --disable-pip-version-check "torch==$TORCH_PIN" -r "$ROOT/requirements-dev.txt"
  echo "== building the native module for torch $TORCH_MINOR (cold: about 6 minutes, then incremental)"
  cd "$PROJECT"
  maturin develop --release --locked --quiet
}

torch_lib() {
  python -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))'
}

demo() {
  setup
  cd "$ROOT"
  python -m lverse info
  python -m lverse reconstruct examples/images/*.png -o out/reconstructions
  python -m lverse caption examples/images/*.png
  python -m lverse generate "a large green triangle at the top" -n 4 --seed 0 -o out/generated.png
}

test_all() {
  setup
  cd "$ROOT"
  echo "== lints"
  cargo fmt --check
  ruff check python tests benches examples fuzz build_backend
  # cargo runs in the project directory: a variant's .cargo/config.toml applies there only.
  (cd "$PROJECT" && cargo clippy --locked --release --all-targets --features python --quiet -- -D warnings)
  echo "== Rust tests"
  (cd "$PROJECT" && LD_LIBRARY_PATH="$(torch_lib)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" cargo test --locked --release)
  echo "== Python tests"
  python -m pytest -q
  echo "== fuzzing"
  "$ROOT/scripts/fuzz.sh" "${LVERSE_FUZZ_SECONDS:-60}"
}

wheel() {
  setup
  cd "$ROOT"
  cd "$PROJECT"
  maturin build --release --locked -o "$ROOT/dist"
}

case "${1:-}" in
  setup) setup ;;
  wheel) wheel ;;
  demo) demo ;;
  test) test_all ;;
  *) echo "usage: $0 {setup|demo|test|wheel}" >&2; exit 2 ;;
esac
