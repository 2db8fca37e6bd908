"""python -m lverse: the subcommands run, and mistakes give one line and a non-zero exit."""

import json
import subprocess
import sys

import lverse
import pytest
import torch
from PIL import Image

from .conftest import SMALL, cuda


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lverse", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_info():
    out = run("info")
    assert out.returncode == 0, out.stderr
    assert f"lverse              {lverse.__version__}" in out.stdout
    assert f"torch               {torch.__version__}" in out.stdout
    assert "rayon threads" in out.stdout


def test_reconstruct_writes_images_and_psnr(tmp_path):
    torch.manual_seed(0)
    model = lverse.AugVAE(lverse.AugVAEConfig(**SMALL, single_level=1))
    ckpt = tmp_path / "vae.safetensors"
    model.save(ckpt)
    paths = []
    for i in range(3):
        p = tmp_path / f"img{i}.png"
        Image.new("RGB", (40, 32), (40 * i, 100, 200)).save(p)
        paths.append(p)
    out = run("reconstruct", *paths, "--ckpt", ckpt, "-o", tmp_path / "out", "--batch-size", 2)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img0.png", "img1.png", "img2.png"]
    assert Image.open(tmp_path / "out" / "img0.png").size == (32, 32)
    assert out.stdout.count("PSNR") == 4 and "3 image(s), mean PSNR" in out.stdout


def test_errors_are_one_line(tmp_path):
    missing = run("reconstruct", tmp_path / "nope.png", "--ckpt", tmp_path / "x.ckpt")
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"lverse reconstruct: error: no such image file: {tmp_path / 'nope.png'}"
    img = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(img)
    text = tmp_path / "notes.ckpt"
    text.write_text("hello")
    bad = run("reconstruct", img, "--ckpt", text)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "is not a checkpoint" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_train_vae_and_resume(tmp_path):
    config = json.dumps({**SMALL, "ch_mult": list(SMALL["ch_mult"]), "inner_ch_mult": list(SMALL["inner_ch_mult"]),
                         "resolution": 64, "single_level": 1})
    out_dir = tmp_path / "run"
    first = run("train-vae", "--out", out_dir, "--config", config, "--steps", 2, "--batch-size", 2,
                "--checkpoint-every", 1, "--sample-every", 2)
    assert first.returncode == 0, first.stderr
    assert "held-out PSNR" in first.stdout + first.stderr
    model = lverse.AugVAE.from_checkpoint(out_dir / "augvae.safetensors")
    assert model.config.resolution == 64
    second = run("train-vae", "--out", out_dir, "--config", config, "--steps", 3, "--batch-size", 2, "--resume")
    assert second.returncode == 0, second.stderr
    state = torch.load(out_dir / "train_state.pt", weights_only=False)
    assert state["step"] == 3


def test_train_biart_on_fake_data_and_resume(tmp_path):
    torch.manual_seed(0)
    vae = lverse.AugVAE(lverse.AugVAEConfig(**SMALL, single_level=1))
    vae_path = tmp_path / "vae.safetensors"
    vae.save(vae_path)
    out_dir = tmp_path / "biart"
    common = ["--out", out_dir, "--data", "fake", "--vae", vae_path, "--batch-size", 4, "--n-layer", 1,
              "--n-head", 2, "--n-embd", 32, "--text-len", 8, "--vocab-size", 520, "--checkpoint-every", 2,
              "--sample-every", 100]
    first = run("train-biart", "--steps", 2, *common)
    assert first.returncode == 0, first.stderr
    model = lverse.BiART.from_checkpoint(out_dir / "biart.safetensors")
    assert model.layout.image_len == 64 and model.layout.text_len == 8
    assert model.metadata["step"] == 2
    second = run("train-biart", "--steps", 4, "--resume", *common)
    assert second.returncode == 0, second.stderr
    assert lverse.BiART.from_checkpoint(out_dir / "biart.safetensors").metadata["step"] == 4
    bad = run("train-biart", "--out", out_dir, "--data", "nowhere", "--vae", vae_path, "--steps", 1)
    assert bad.returncode == 1 and "unknown data source 'nowhere'" in bad.stderr


@cuda
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_training_commands_on_cuda_with_autocast(tmp_path, amp):
    config = json.dumps({**SMALL, "ch_mult": list(SMALL["ch_mult"]), "inner_ch_mult": list(SMALL["inner_ch_mult"]),
                         "resolution": 64, "single_level": 1})
    vae_dir = tmp_path / "vae"
    done = run("train-vae", "--out", vae_dir, "--config", config, "--steps", 3, "--batch-size", 2,
               "--sample-every", 3, "--device", "cuda", "--amp", amp)
    assert done.returncode == 0, done.stderr
    done = run("train-biart", "--out", tmp_path / "biart", "--data", "shapes", "--vae", vae_dir / "augvae.safetensors",
               "--steps", 3, "--batch-size", 4, "--n-layer", 1, "--n-head", 2, "--n-embd", 32, "--text-len", 16,
               "--vocab-size", 520, "--sample-every", 3, "--device", "cuda", "--amp", amp)
    assert done.returncode == 0, done.stderr
    assert lverse.BiART.from_checkpoint(tmp_path / "biart" / "biart.safetensors").metadata["step"] == 3
