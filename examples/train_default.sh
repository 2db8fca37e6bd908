#!/usr/bin/env bash
# The exact commands that made the weights shipped in python/lverse/weights/default/.
# Run from the repository root inside the lverse venv (scripts/dev.sh setup).
# On 2 CPU cores: 18 min (AugVAE) + 65 min (BiART), 83 min in all.
set -euo pipefail
OUT="${1:-runs}"

# AugVAE-SL for 64 px shapes scenes: 8x8 codes from a 512-entry codebook (level 0 is 16x16),
# 0.54 M parameters. Unused codes are restarted every 25 steps until 80% of training.
python -m lverse train-vae --out "$OUT/vae-shapes" --steps 2500 --batch-size 32 \
  --sample-every 100 --checkpoint-every 100 --seed 42

# BiART, 4 layers x 256 wide x 4 heads, on shapes scenes encoded by that AugVAE: 48 pairs per
# step, each in one direction drawn 50/50; half of the image-to-text rows read their codes
# after a trip through 8-bit pixels (--reencode 0.5). A word-level BPE is trained on captions.
python -m lverse train-biart --out "$OUT/biart-shapes" --vae "$OUT/vae-shapes/augvae.safetensors" \
  --text-len 14 --n-layer 4 --n-head 4 --n-embd 256 --steps 4500 --batch-size 48 --lr 1e-3 \
  --warmup 100 --reencode 0.5 --checkpoint-every 250 --sample-every 250 --seed 42

mkdir -p python/lverse/weights/default
cp "$OUT/vae-shapes/augvae.safetensors" python/lverse/weights/default/augvae.safetensors
cp "$OUT/biart-shapes/biart.safetensors" python/lverse/weights/default/biart.safetensors
