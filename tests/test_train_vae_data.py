"""train-vae on any data source at the config's resolution, the official two-stage recipe
(SL fine-tuned from ML with --init) and the official loss's LPIPS, read from an official
checkpoint's perceptual-loss tensors."""

import json

import lverse
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lverse.__main__ import main
from lverse.train.lpips import LPIPS
from lverse.train.vae_data import fine_tune_from
from PIL import Image

from .conftest import SMALL

CONFIG = json.dumps({**SMALL, "ch_mult": list(SMALL["ch_mult"]), "inner_ch_mult": list(SMALL["inner_ch_mult"])})
QUICK = ["--steps", "2", "--batch-size", "2", "--sample-every", "2", "--restart-every", "0"]


def photo_folder(root, count: int):
    root.mkdir()
    for i in range(count):
        Image.new("RGB", (50, 40), (20 * i, 200 - 10 * i, 60)).save(root / f"{i}.png")
    return root


def train_vae(*args) -> int:
    return main(["train-vae", *map(str, args), *QUICK])


def test_any_source_at_the_configs_resolution_then_sl_from_ml(tmp_path, capsys):
    folder = photo_folder(tmp_path / "photos", 12)
    assert train_vae("--data", f"folder:{folder}", "--config", CONFIG, "--held-out", 3, "--out", tmp_path / "ml") == 0
    printed = capsys.readouterr()
    assert "step 2: held-out PSNR" in printed.out + printed.err and "(3 images)" in printed.out + printed.err
    # No LPIPS weights at hand: said, not silently dropped.
    assert "note: no LPIPS weights here" in printed.err
    ml = lverse.AugVAE.from_checkpoint(tmp_path / "ml" / "augvae.safetensors")
    assert ml.config.single_level is None and ml.config.resolution == 32
    assert train_vae("--data", f"folder:{folder}", "--init", tmp_path / "ml" / "augvae.safetensors",
                     "--lpips", "off", "--out", tmp_path / "sl") == 0
    sl = lverse.AugVAE.from_checkpoint(tmp_path / "sl" / "augvae.safetensors")
    assert sl.config.single_level == 1 and sl.tokens_per_image == 64 and hasattr(sl, "connectors")


def test_fine_tuning_keeps_the_ml_weights_sl_keeps():
    torch.manual_seed(0)
    ml = lverse.AugVAE(lverse.AugVAEConfig(**SMALL))
    sl = fine_tune_from(ml, lverse.AugVAEConfig(**SMALL, single_level=1))
    ml_state, sl_state = ml.state_dict(), sl.state_dict()
    # SL at level 1 of 3 keeps ML decoders 1 and 2 as its decoders 0 and 1 (SPEC §2.5).
    for key, value in sl_state.items():
        if key.startswith("connectors."):
            continue
        if key.startswith("decoders."):
            number, rest = key.split(".", 2)[1:]
            key = f"decoders.{int(number) + 1}.{rest}"
        assert torch.equal(value, ml_state[key]), key
    assert {k for k in sl_state if k.startswith("encoders.")} == {
        k for k in ml_state if k.startswith(("encoders.0.", "encoders.1."))}


def test_init_with_another_architecture_is_refused(tmp_path, capsys):
    torch.manual_seed(0)
    lverse.AugVAE(lverse.AugVAEConfig(**SMALL, single_level=1)).save(tmp_path / "sl.safetensors")
    config = json.loads(CONFIG)
    assert train_vae("--data", "fake", "--init", tmp_path / "sl.safetensors", "--config", json.dumps(config),
                     "--out", tmp_path / "run") == 1
    assert "an SL checkpoint cannot start a model of another architecture (single_level=None (checkpoint: 1))" in (
        capsys.readouterr().err)


def test_fg_weight_is_for_shapes_scenes(tmp_path, capsys):
    assert train_vae("--data", "fake", "--config", CONFIG, "--fg-weight", 2, "--out", tmp_path / "run") == 1
    assert "--fg-weight applies to shapes scenes" in capsys.readouterr().err


def test_shapes_scenes_are_drawn_at_the_configs_resolution(tmp_path):
    # The config's 32 px, not the shapes' native 64 px (which crashed before).
    config = json.dumps({**json.loads(CONFIG), "single_level": 1})
    assert train_vae("--data", "shapes", "--config", config, "--out", tmp_path / "run") == 0
    assert lverse.AugVAE.from_checkpoint(tmp_path / "run" / "augvae.safetensors").config.resolution == 32


# -- LPIPS ------------------------------------------------------------------------------------


@pytest.fixture
def official_lpips(tmp_path):
    """A Lightning-style file holding (random) perceptual-loss tensors under the official names."""
    torch.manual_seed(3)
    weights = {}
    for name, value in LPIPS().state_dict().items():
        random = torch.randn_like(value) * 0.1
        # The scaling buffers are constants; the linear heads' weights are non-negative.
        weights[name] = value if name.startswith("scaling") else random.abs() if name.startswith("lin") else random
    path = tmp_path / "official.ckpt"
    torch.save({"state_dict": {f"loss.perceptual_loss.{k}": v for k, v in weights.items()}}, path)
    return path, weights


def reference_lpips(weights: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LPIPS written out with functional ops: VGG16's 13 convolutions (pool before blocks
    2-5), the taps after each block, unit-normalised channels, squared differences,
    the linear heads, spatial means."""
    blocks = [(0, 2), (5, 7), (10, 12, 14), (17, 19, 21), (24, 26, 28)]
    shift, scale = weights["scaling_layer.shift"], weights["scaling_layer.scale"]
    a, b, total = (x - shift) / scale, (y - shift) / scale, torch.zeros(len(x))
    for k, convs in enumerate(blocks):
        for i, conv in enumerate(convs):
            if k and i == 0:
                a, b = F.max_pool2d(a, 2), F.max_pool2d(b, 2)
            slice_name = f"net.slice{k + 1}.{conv}"
            w, bias = weights[f"{slice_name}.weight"], weights[f"{slice_name}.bias"]
            a, b = F.relu(F.conv2d(a, w, bias, padding=1)), F.relu(F.conv2d(b, w, bias, padding=1))
        na = a / (a.norm(dim=1, keepdim=True) + 1e-10)
        nb = b / (b.norm(dim=1, keepdim=True) + 1e-10)
        head = weights[f"lin{k}.model.1.weight"]
        total += ((na - nb) ** 2 * head.view(1, -1, 1, 1)).sum(1).mean((1, 2))
    return total


def test_lpips_loads_from_an_official_checkpoint_and_matches_a_reference(official_lpips):
    path, weights = official_lpips
    lpips = LPIPS.from_official_checkpoint(path)
    torch.manual_seed(0)
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    ours = lpips(x, y).flatten()
    assert (ours - reference_lpips(weights, x, y)).abs().max() < 1e-5
    assert torch.equal(lpips(x, x).flatten(), torch.zeros(2)) and (ours > 0).all()
    lpips.train()
    assert torch.equal(lpips(x, y).flatten(), ours)  # no dropout in train mode: fixed heads


def test_train_vae_uses_lpips_from_a_checkpoint(tmp_path, official_lpips, monkeypatch):
    path, weights = official_lpips
    calls = []
    original = LPIPS.forward

    def counted(self, x, y):
        calls.append(torch.equal(self.lin0.model[1].weight, weights["lin0.model.1.weight"]))
        return original(self, x, y)

    monkeypatch.setattr(LPIPS, "forward", counted)
    assert train_vae("--data", "fake", "--config", CONFIG, "--lpips", path, "--out", tmp_path / "run") == 0
    assert calls == [True, True]  # once per step (2), with the checkpoint's heads


def test_a_file_without_lpips_weights_is_named(tmp_path, capsys):
    torch.manual_seed(0)
    lverse.AugVAE(lverse.AugVAEConfig(**SMALL)).save(tmp_path / "mine.safetensors")
    assert train_vae("--data", "fake", "--config", CONFIG, "--lpips", tmp_path / "mine.safetensors",
                     "--out", tmp_path / "run") == 1
    assert f"{tmp_path / 'mine.safetensors'} holds no LPIPS weights" in capsys.readouterr().err


def test_training_crops_are_random_squares_of_three_quarters_to_all_of_the_area():
    from lverse.train.vae_data import random_square_crop

    image = Image.new("RGB", (200, 100))
    rng = torch.Generator().manual_seed(0)
    sides = []
    for _ in range(200):
        crop = random_square_crop(image, rng)
        assert crop.size[0] == crop.size[1]
        sides.append(crop.size[0])
    # Area 75-100% of 200x100 gives sides of 122-141, which never fit a 100 px height: the
    # largest centered square is taken, as torchvision does after ten misses.
    assert set(sides) == {100}
    square = Image.new("RGB", (100, 100))
    sides = {random_square_crop(square, rng).size[0] for _ in range(200)}
    assert min(sides) >= 87 and max(sides) == 100 and len(sides) > 5
    ramp = Image.fromarray(np.arange(100 * 100 * 3, dtype=np.uint32).reshape(100, 100, 3).astype(np.uint8))

    def crop(seed):
        return random_square_crop(ramp, torch.Generator().manual_seed(seed)).tobytes()

    assert crop(1) == crop(1) and crop(1) != crop(2)  # the run's generator decides, nothing else
