#!/usr/bin/env bash
# The exact commands that made the weights shipped in python/lverse/weights/.
# Run from the repository root inside the lverse venv (scripts/dev.sh setup).
set -euo pipefail
OUT="${1:-runs}"

# AugVAE-SL for 64 px shapes scenes: 16x16 codes from a 512-entry codebook, 0.47 M parameters.
python -m lverse train-vae --out "$OUT/vae-shapes" --steps 3000 --batch-size 32 \
  --sample-every 250 --checkpoint-every 250 --seed 42
mkdir -p python/lverse/weights/default
cp "$OUT/vae-shapes/augvae.safetensors" python/lverse/weights/default/augvae.safetensors
