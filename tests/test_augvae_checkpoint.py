"""Loading official Lightning checkpoints and lverse's own format; rejecting the rest."""

import argparse

import lverse
import pytest
import torch
from lverse import AugVAE, CheckpointError

from .conftest import SMALL, make_pair


def official_args(single_level):
    # The training script's argparse namespace as it is pickled into hyper_parameters.
    # An SL checkpoint holds the ML args mutated by setup_finetune (finetune=True).
    return argparse.Namespace(
        hidden_dim=SMALL["hidden_dim"], ch_mult=list(SMALL["ch_mult"]), num_res_blocks=1,
        z_channels=SMALL["z_channels"], codebook_dim=SMALL["codebook_dim"],
        num_tokens=SMALL["num_tokens"], resolution=32, attn_resolutions=[16, 8, 4],
        in_channels=3, out_channels=3, use_attn=False, double_z=False, quant_beta=0.25,
        quant_ema_decay=0.99, quant_ema_eps=1e-5, dropout=0.0, loss_type="lpips_l2",
        finetune=single_level is not None, learning_rate=4.5e-6, batch_size=8,
    )


def write_lightning_ckpt(path, reference, single_level):
    state = dict(reference.state_dict())
    # The perceptual loss travels in official checkpoints and must be ignored.
    state["loss.perceptual_loss.scaling_layer.shift"] = torch.zeros(1, 3, 1, 1)
    state["loss.perceptual_loss.lin0.model.1.weight"] = torch.zeros(1, 64, 1, 1)
    torch.save({
        "epoch": 29, "global_step": 1000, "pytorch-lightning_version": "1.5.10",
        "state_dict": state,
        "hyper_parameters": {"args": official_args(single_level), "batch_size": 8,
                             "learning_rate": 4.5e-6},
        "optimizer_states": [], "lr_schedulers": [], "callbacks": {},
    }, path)


@pytest.mark.parametrize("single_level", [None, 1], ids=["ML", "SL"])
def test_lightning_ckpt_loads(tmp_path, images, single_level):
    _, reference = make_pair(single_level=single_level, seed=3)
    path = tmp_path / "augvae.ckpt"
    write_lightning_ckpt(path, reference, single_level)
    model = AugVAE.from_checkpoint(path)
    assert not model.training
    assert model.config.single_level == single_level
    assert model.config.levels == 3
    reference.eval()
    ids = model.encode(images)
    assert torch.equal(ids, reference.encode(images))
    assert (model.decode(ids) - reference.decode(ids)).abs().max() < 1e-4


def test_safetensors_round_trip(tmp_path, images):
    model, _ = make_pair(single_level=1, seed=4)
    path = tmp_path / "vae.safetensors"
    model.save(path)
    loaded = AugVAE.from_checkpoint(path)
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    # Tying survives the trip (stored once, restored as one tensor).
    assert loaded.quantizers[1].embedding.weight is loaded.quantizers[0].embedding.weight
    model.eval()
    assert torch.equal(loaded.encode(images), model.encode(images))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        AugVAE.from_checkpoint(tmp_path / "nope.ckpt")


def test_text_file_is_rejected(tmp_path):
    path = tmp_path / "notes.ckpt"
    path.write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        AugVAE.from_checkpoint(path)


def test_truncated_checkpoint_is_rejected(tmp_path):
    _, reference = make_pair(seed=5)
    path = tmp_path / "cut.ckpt"
    write_lightning_ckpt(path, reference, None)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        AugVAE.from_checkpoint(path)


def test_other_architecture_lists_every_bad_key(tmp_path):
    _, reference = make_pair(single_level=None, seed=6)
    path = tmp_path / "wide.ckpt"
    write_lightning_ckpt(path, reference, None)
    data = torch.load(path, weights_only=False)
    data["hyper_parameters"]["args"].codebook_dim = 24  # weights say 16
    del data["state_dict"]["decoders.0.conv_in.bias"]
    data["state_dict"]["extra.weight"] = torch.zeros(3)
    torch.save(data, path)
    with pytest.raises(CheckpointError) as info:
        AugVAE.from_checkpoint(path)
    message = str(info.value)
    assert "missing decoders.0.conv_in.bias" in message
    assert "unexpected extra.weight" in message
    assert "quantizers.0.embedding.weight: expected shape (64, 24), found (64, 16)" in message
    assert "pre_quants.0.weight: expected shape (24, 32, 1, 1), found (16, 32, 1, 1)" in message


def test_non_augvae_checkpoint_is_rejected(tmp_path):
    path = tmp_path / "gpt.ckpt"
    torch.save({"state_dict": {"tok_emb.weight": torch.zeros(4, 4)}, "hyper_parameters": {}}, path)
    with pytest.raises(CheckpointError, match="not an AugVAE checkpoint"):
        AugVAE.from_checkpoint(path)
    bare = tmp_path / "bare.pt"
    torch.save({"encoders.0.conv_in.weight": torch.zeros(1)}, bare)
    with pytest.raises(CheckpointError, match="not a Lightning checkpoint"):
        AugVAE.from_checkpoint(bare)


def test_safetensors_of_another_kind_is_rejected(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(path), metadata={"lverse.format": "biart"})
    with pytest.raises(CheckpointError, match="expected an lverse augvae checkpoint"):
        AugVAE.from_checkpoint(path)


def test_load_checked_reports_shapes():
    model = lverse.AugVAE(lverse.AugVAEConfig(**SMALL, single_level=1))
    state = model.state_dict()
    state["connectors.0.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"connectors.0.weight: expected shape \(64, 32, 1, 1\)"):
        model.load_checked(state)


def _pickle_with_fake_module(tmp_path, module: str, class_name: str, script_tail: str):
    """Writes a checkpoint whose hyper_parameters hold an instance of module.class_name,
    from a subprocess that can import that module (the test process cannot)."""
    import subprocess
    import sys

    pkg_root = tmp_path / "fake_pkgs"
    parts = module.split(".")
    folder = pkg_root.joinpath(*parts[:-1])
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, len(parts)):
        (pkg_root.joinpath(*parts[:i]) / "__init__.py").touch()
    (folder / f"{parts[-1]}.py").write_text(f"class {class_name}(dict):\n    pass\n")
    header = f"import sys, torch; sys.path.insert(0, {str(pkg_root)!r})\nfrom {module} import {class_name}\n"
    code = header + script_tail
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_lightning_attribute_dict_hparams_load(tmp_path, images):
    _, reference = make_pair(single_level=1, seed=8)
    ckpt = tmp_path / "pl.ckpt"
    write_lightning_ckpt(ckpt, reference, 1)
    data = torch.load(ckpt, weights_only=False)
    torch.save(data["state_dict"], tmp_path / "state.pt")
    args = vars(data["hyper_parameters"]["args"])
    tail = (f"import argparse; state = torch.load({str(tmp_path / 'state.pt')!r})\n"
            f"args = argparse.Namespace(**{args!r})\n"
            f"torch.save({{'state_dict': state, 'hyper_parameters': AttributeDict(args=args)}}, {str(ckpt)!r})\n")
    _pickle_with_fake_module(tmp_path, "pytorch_lightning.utilities.parsing", "AttributeDict", tail)
    model = AugVAE.from_checkpoint(ckpt)
    reference.eval()
    assert torch.equal(model.encode(images), reference.encode(images))


def test_unknown_pickled_class_is_named(tmp_path):
    ckpt = tmp_path / "odd.ckpt"
    tail = f"torch.save({{'state_dict': {{}}, 'hyper_parameters': Evil(a=1)}}, {str(ckpt)!r})\n"
    _pickle_with_fake_module(tmp_path, "somepkg.tools", "Evil", tail)
    with pytest.raises(CheckpointError, match="pickles an object of class somepkg.tools.Evil"):
        AugVAE.from_checkpoint(ckpt)
