#!/usr/bin/env bash
# Prepares, on a CPU machine with Rust, what scripts/gpu-check.sh needs on a GPU machine that
# has torch 2.11 under Python 3.12 and no Rust and no network: dist/gpu-bundle/wheels holds
# lverse built for exactly that (LVERSE_TORCH=2.11, Python 3.12) and the wheels of what lverse
# and pytest need besides torch. Then it runs the whole CPU test suite with that very bundle,
# through gpu-check.sh, on a Python here that holds only torch 2.11 (as the GPU machine
# does), so that the GPU run tests only what needs a GPU.
#   scripts/gpu-bundle.sh            # build, bundle, CPU suite
#   scripts/gpu-bundle.sh --no-test  # build and bundle only
# Environment: PYTHON312 (default: pyenv's 3.12.1, else python3.12), LVERSE_CACHE.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${LVERSE_CACHE:-$HOME/.cache/lverse}"
PY312="${PYTHON312:-$HOME/.pyenv/versions/3.12.1/bin/python3.12}"
[ -x "$PY312" ] || PY312="$(command -v python3.12)"
BUNDLE="$ROOT/dist/gpu-bundle"
MAX_MIB=64

echo "== lverse for torch 2.11, Python 3.12"
rm -f "$ROOT"/dist/lverse-*+pt211-cp312-*.whl
LVERSE_TORCH=2.11 PYTHON="$PY312" "$ROOT/scripts/dev.sh" wheel
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/wheels"
cp "$ROOT"/dist/lverse-*+pt211-cp312-*.whl "$BUNDLE/wheels/"

echo "== what lverse and the tests need besides torch (binary wheels for CPython 3.12)"
"$CACHE/venv-torch2.11-py3.12/bin/pip" download --quiet --disable-pip-version-check --only-binary=:all: \
  --dest "$BUNDLE/wheels" "numpy>=1.24" "pillow>=10" "safetensors>=0.4" "tqdm>=4.60" "pytest>=8"
size_mib=$(( $(du -sb "$BUNDLE" | cut -f1) / 1048576 ))
ls -1 "$BUNDLE/wheels"
echo "== bundle: $BUNDLE, $size_mib MiB (limit $MAX_MIB)"
[ "$size_mib" -lt "$MAX_MIB" ] || { echo "the bundle is over $MAX_MIB MiB" >&2; exit 1; }

[ "${1:-}" = "--no-test" ] && exit 0
echo "== the CPU suite with this bundle, on a Python 3.12 that holds only torch 2.11"
SIM="$CACHE/venv-gpu-sim"
if [ ! -x "$SIM/bin/python" ]; then
  "$PY312" -m venv "$SIM"
  "$SIM/bin/pip" install --quiet --disable-pip-version-check torch==2.11.0
fi
PYTHON="$SIM/bin/python" LVERSE_GPU_CHECK=cpu "$ROOT/scripts/gpu-check.sh" "$BUNDLE"
