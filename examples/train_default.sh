#!/usr/bin/env bash
# The exact commands that made the weights shipped in python/lverse/weights/default/: the path
# a user takes on their own data (train-vae, tokenize once, train-biart from the codes).
# Run from the repository root inside the lverse venv (scripts/dev.sh setup).
# On 2 CPU cores: 12 min (AugVAE) + 5 min (tokenize) + 60 min (BiART), 77 min in all.
set -euo pipefail
OUT="${1:-runs}"

# AugVAE-SL for 64 px shapes scenes: 8x8 codes from a 512-entry codebook (level 0 is 16x16),
# 0.54 M parameters, trained from scratch on L2 with the objects' pixels weighted 4x (no LPIPS
# weights are at hand here). Unused codes are restarted every 25 steps until 80% of training.
python -m lverse train-vae --data shapes --out "$OUT/vae-shapes" --steps 2500 --batch-size 32 \
  --sample-every 100 --checkpoint-every 100 --seed 42

# Every scene encoded once, and its codes read back after a trip through 8-bit pixels
# (--trip): what captioning a generated image sees.
python -m lverse tokenize --data shapes --count 40000 --vae "$OUT/vae-shapes/augvae.safetensors" \
  --trip --batch-size 256 --shard-size 10000 -o "$OUT/codes-shapes"

# BiART, 4 layers x 256 wide x 4 heads, from the codes alone: 48 pairs per step, each in one
# direction drawn 50/50; half of the image-to-text rows read their trip codes (--reencode 0.5).
# A caption token weighs 4 image tokens in the loss (--caption-weight 4): a caption is about
# 10 tokens against an image's 64, so captioning would otherwise get under a fifth of the
# gradient. A word-level BPE is trained on the captions. Writes a model directory.
python -m lverse train-biart --data "codes:$OUT/codes-shapes" --vae "$OUT/vae-shapes/augvae.safetensors" \
  --out "$OUT/model-shapes" --text-len 14 --n-layer 4 --n-head 4 --n-embd 256 --steps 6000 \
  --batch-size 48 --lr 1e-3 --warmup 100 --reencode 0.5 --caption-weight 4 \
  --checkpoint-every 250 --sample-every 250 --seed 42

mkdir -p python/lverse/weights/default
cp "$OUT/model-shapes/augvae.safetensors" "$OUT/model-shapes/biart.safetensors" python/lverse/weights/default/
