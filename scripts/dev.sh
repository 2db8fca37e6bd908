#!/usr/bin/env bash
# One entry point for people and CI:
#   scripts/dev.sh setup   create/refresh the venv and build the native module
#   scripts/dev.sh demo    setup, then the main job
#   scripts/dev.sh wheel   setup, then a wheel in dist/ (links the installed torch, bundles none)
#   scripts/dev.sh test    setup, then lints, every test (Rust and Python) and the fuzzers
#                          (LVERSE_FUZZ_SECONDS per target, default 60)
# The venv and the cargo target directory live outside the clone (~/.cache/lverse by
# default) so that a second run on the same machine is incremental.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${LVERSE_CACHE:-$HOME/.cache/lverse}"
VENV="${LVERSE_VENV:-$CACHE/venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
PYTHON_BIN="${PYTHON:-python3.11}"
command -v "$PYTHON_BIN" >/dev/null || PYTHON_BIN=python3

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating venv $VENV"
    "$PYTHON_BIN" -m venv "$VENV"
  fi
  # shellcheck disable=SC1091
  source "$VENV/bin/activate"
  echo "== python packages (requirements-dev.txt)"
  pip install --quiet --disable-pip-version-check -r "$ROOT/requirements-dev.txt"
  echo "== building the native module (cold: about 5 minutes, then incremental)"
  cd "$ROOT"
  maturin develop --release --quiet
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
  cargo clippy --release --all-targets --features python --quiet -- -D warnings
  ruff check python tests benches examples fuzz
  echo "== Rust tests"
  LD_LIBRARY_PATH="$(torch_lib)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" cargo test --release
  echo "== Python tests"
  python -m pytest -q
  echo "== fuzzing"
  "$ROOT/scripts/fuzz.sh" "${LVERSE_FUZZ_SECONDS:-60}"
}

wheel() {
  setup
  cd "$ROOT"
  maturin build --release -o "$ROOT/dist"
}

case "${1:-}" in
  setup) setup ;;
  wheel) wheel ;;
  demo) demo ;;
  test) test_all ;;
  *) echo "usage: $0 {setup|demo|test|wheel}" >&2; exit 2 ;;
esac
