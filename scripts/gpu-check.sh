#!/usr/bin/env bash
# The CUDA check, in one call, on a GPU machine with torch 2.11 under Python 3.12, no Rust and
# no network: lverse comes from the bundle that scripts/gpu-bundle.sh made on a CPU machine
# (dist/gpu-bundle, carried along), the tests and benches from this tree.
#   scripts/gpu-check.sh [BUNDLE]    # default dist/gpu-bundle
# It installs the bundle's wheels that this Python lacks into a scratch directory, checks
# that lverse imports from there on CUDA, runs every CUDA test (pytest -m cuda), then
# benches/bench_cuda.py (parity and speed against the PyTorch references, measured in the same
# run), whose table is printed last. Results also go to $OUT (or dist/gpu-check) as JSON.
# LVERSE_GPU_CHECK=cpu runs the whole CPU suite with the bundle instead (gpu-bundle.sh does).
# Environment: PYTHON (default python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUNDLE="$(cd "${1:-$ROOT/dist/gpu-bundle}" && pwd)"
PY="${PYTHON:-python3}"
MODE="${LVERSE_GPU_CHECK:-cuda}"
RESULTS="${OUT:-$ROOT/dist/gpu-check}"
mkdir -p "$RESULTS"
SCRATCH="$(mktemp -d)"
SITE="$SCRATCH/site"
trap 'rm -rf "$SCRATCH"' EXIT
start=$(date +%s)

echo "== installing from $BUNDLE what $PY lacks (into $SITE)"
# A wheel is a zip laid out as site-packages; unpacking needs no pip and no network.
"$PY" - "$BUNDLE/wheels" "$SITE" <<'PYCODE'
import sys, zipfile
from importlib import metadata
from pathlib import Path

wheels, site = Path(sys.argv[1]), Path(sys.argv[2])
for wheel in sorted(wheels.glob("*.whl")):
    dist = wheel.name.split("-")[0]
    if dist != "lverse":
        try:
            print(f"   {dist}: {metadata.version(dist)} is installed")
            continue
        except metadata.PackageNotFoundError:
            pass
    zipfile.ZipFile(wheel).extractall(site)
    print(f"   {dist}: from {wheel.name}")
PYCODE
export PYTHONPATH="$SITE" LVERSE_PROGRESS=0
cd "$ROOT"
"$PY" - "$SITE" "$MODE" <<'PYCODE'
import sys
import torch
import lverse

assert lverse.__file__.startswith(sys.argv[1]), f"lverse imported from {lverse.__file__}, not the bundle"
print(f"== lverse {lverse.__version__} from the bundle; torch {torch.__version__}, Python {sys.version.split()[0]}")
if sys.argv[2] == "cuda":
    assert torch.cuda.is_available(), "no CUDA device visible to torch"
    print(f"   CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}")
PYCODE

if [ "$MODE" = cpu ]; then
  echo "== the CPU suite with the bundle (soak excluded: it is the same code; CI runs it)"
  "$PY" -m pytest -q -p no:cacheprovider -m "not soak" tests --junitxml "$RESULTS/cpu-suite.xml"
  echo "== done in $(( $(date +%s) - start )) s"
  exit 0
fi
echo "== CUDA tests"
"$PY" -m pytest -q -p no:cacheprovider -m cuda -rs tests --junitxml "$RESULTS/cuda-tests.xml" || tests_failed=1
echo "== CUDA tests done after $(( $(date +%s) - start )) s${tests_failed:+: SOME FAILED (above)}; CUDA benches"
"$PY" benches/bench_cuda.py --json "$RESULTS/bench-cuda.json"
[ -z "${tests_failed:-}" ]
