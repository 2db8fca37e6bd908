"""python -m lverse: bad flag values stop a command at parse time (argparse: exit 2, the
value and what was expected), and bad resume state stops it before training (exit 1, one line)."""

import argparse
import json
import random

import lverse
import pytest
import torch
from lverse.__main__ import main
from lverse.cli import _args, info
from lverse.cli.reconstruct import output_paths
from lverse.layout import TokenLayout
from lverse.tokenizer import Tokenizer
from lverse.train.biart import refuse_changed_architecture
from lverse.train.common import load_train_state, save_train_state
from PIL import Image

from .conftest import SMALL


def parse_error(capsys, *argv) -> str:
    """The last stderr line of a command that argparse refuses (exit status 2)."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def run_error(capsys, *argv) -> str:
    """The one stderr line of a command that fails after parsing (exit status 1)."""
    assert main([str(a) for a in argv]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def small_config_json() -> str:
    return json.dumps({**SMALL, "ch_mult": list(SMALL["ch_mult"]), "inner_ch_mult": list(SMALL["inner_ch_mult"]),
                       "single_level": 1})


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(path)
    return path


@pytest.fixture
def vae_path(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "vae.safetensors"
    lverse.AugVAE(lverse.AugVAEConfig(**SMALL, single_level=1)).save(path)
    return path


# -- the shared converters ---------------------------------------------------------------


@pytest.mark.parametrize("convert, good, bad, expected", [
    (_args.positive_int, ("1", "7"), ("0", "-1", "1.5", "x"), "an integer >= 1"),
    (_args.nonnegative_int, ("0", "3"), ("-1", "x"), "an integer >= 0"),
    (_args.positive_float, ("1e-3", "2"), ("0", "-1", "nan", "inf", "x"), "a number > 0"),
    (_args.fraction, ("0", "0.5", "1"), ("-0.1", "1.01", "2.0", "nan", "x"), "a fraction between 0 and 1"),
])
def test_converters_accept_the_range_and_name_bad_values(convert, good, bad, expected):
    for text in good:
        assert convert(text) == float(text)
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match=f"expected {expected}, got '{text}'"):
            convert(text)


# -- parse-time checks, one per defect ----------------------------------------------------


@pytest.mark.parametrize("value", ["-1", "0"])
def test_caption_batch_size_must_be_positive(capsys, image, value):
    assert parse_error(capsys, "caption", image, "--batch-size", value).endswith(
        f"error: argument --batch-size: expected an integer >= 1, got '{value}'")


@pytest.mark.parametrize("command", ["train-vae", "train-biart"])
@pytest.mark.parametrize("value", ["0", "-3"])
def test_training_steps_must_be_positive(capsys, tmp_path, command, value):
    message = parse_error(capsys, command, "--out", tmp_path / "run", "--steps", value)
    assert message.endswith(f"error: argument --steps: expected an integer >= 1, got '{value}'")
    assert not (tmp_path / "run").exists()


def test_reconstruct_size_must_be_positive(capsys, image):
    assert parse_error(capsys, "reconstruct", image, "--size", 0).endswith(
        "error: argument --size: expected an integer >= 1, got '0'")


@pytest.mark.parametrize("value", ["2.0", "-1"])
def test_reencode_is_a_fraction(capsys, tmp_path, value):
    assert parse_error(capsys, "train-biart", "--out", tmp_path, "--reencode", value).endswith(
        f"error: argument --reencode: expected a fraction between 0 and 1, got '{value}'")


def test_eval_counts(capsys):
    assert parse_error(capsys, "eval", "--round-trip", -3).endswith(
        "error: argument --round-trip: expected an integer >= 0, got '-3'")
    assert parse_error(capsys, "eval", "--scenes", 0).endswith(
        "error: argument --scenes: expected an integer >= 1, got '0'")


def test_eval_json_stays_valid_without_round_trips(capsys):
    assert main(["eval", "--scenes", "2", "--round-trip", "0", "--caption-candidates", "0", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["round_trip_exact_match"] is None and result["round_trips"] == 0
    json.dumps(result, allow_nan=False)


@pytest.mark.parametrize("command", ["train-vae", "train-biart"])
@pytest.mark.parametrize("flag, value", [("--checkpoint-every", "0"), ("--sample-every", "0"),
                                         ("--batch-size", "0"), ("--batch-size", "-2")])
def test_training_intervals_and_batch_size_must_be_positive(capsys, tmp_path, command, flag, value):
    assert parse_error(capsys, command, "--out", tmp_path, flag, value).endswith(
        f"error: argument {flag}: expected an integer >= 1, got '{value}'")


def test_train_vae_config_names_a_missing_file_or_bad_json(capsys, tmp_path):
    assert parse_error(capsys, "train-vae", "--out", tmp_path, "--config", "missing.json").endswith(
        "error: argument --config: no such file 'missing.json'; expected a JSON object or a .json file")
    assert parse_error(capsys, "train-vae", "--out", tmp_path, "--config", '{"hidden_dim": ').endswith(
        "error: argument --config: '{\"hidden_dim\": ' is not valid JSON: Expecting value: line 1 column 16 (char 15)")
    broken = tmp_path / "broken.json"
    broken.write_text("hidden_dim = 16")
    assert f"argument --config: file '{broken}' is not valid JSON" in parse_error(
        capsys, "train-vae", "--out", tmp_path, "--config", broken)
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"bogus": 1}')
    assert parse_error(capsys, "train-vae", "--out", tmp_path, "--config", unknown).endswith(
        f"argument --config: '{unknown}' is not an AugVAE config: unknown AugVAE config keys: ['bogus']")


def test_train_vae_config_file_is_read(tmp_path):
    from lverse.__main__ import build_parser

    path = tmp_path / "config.json"
    path.write_text(small_config_json())
    args = build_parser().parse_args(["train-vae", "--out", str(tmp_path), "--config", str(path)])
    assert args.config == lverse.AugVAEConfig(**SMALL, single_level=1)


def test_train_vae_config_inline_json_longer_than_a_file_name(tmp_path):
    from lverse.__main__ import build_parser

    text = json.dumps({**json.loads(small_config_json()), "norm_groups": 32}, indent=4)
    assert len(text) > 255  # longer than a file name may be
    args = build_parser().parse_args(["train-vae", "--out", str(tmp_path), "--config", text])
    assert args.config == lverse.AugVAEConfig(**SMALL, single_level=1)


def test_checkpoint_errors_keep_their_list_of_problems(capsys, tmp_path, image):
    model = lverse.AugVAE(lverse.AugVAEConfig(**SMALL, single_level=1))
    with torch.no_grad():
        next(iter(model.parameters())).view(-1)[0] = float("nan")
    model.save(tmp_path / "bad.safetensors")
    assert main(["reconstruct", str(image), "--ckpt", str(tmp_path / "bad.safetensors"), "-o", str(tmp_path)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("lverse reconstruct: error: ") and "1 problem(s):" in lines[0]
    assert len(lines) == 2 and "NaN" in lines[1], lines


def test_generate_output_must_be_a_writable_image_file(capsys, tmp_path):
    assert parse_error(capsys, "generate", "a red circle", "-o", tmp_path).endswith(
        f"error: argument -o/--output: '{tmp_path}' is a directory; expected an image file name such as "
        f"'{tmp_path / 'generated.png'}'")
    assert parse_error(capsys, "generate", "a red circle", "-o", "noext").endswith(
        "error: argument -o/--output: cannot write an image to 'noext': expected a file name ending in an "
        "image extension such as .png or .jpg")
    for name in ("x.png", "x.JPG", "x.webp"):
        assert _args.image_file(str(tmp_path / name)).name == name


def test_architecture_flags_default_to_unset(tmp_path):
    # None lets a resumed run tell "not passed" from "passed the default value".
    from lverse.__main__ import build_parser

    args = build_parser().parse_args(["train-biart", "--out", str(tmp_path)])
    assert (args.text_len, args.n_layer, args.n_head, args.n_embd) == (None, None, None, None)


# -- reconstruct: outputs that share a name --------------------------------------------------


def test_reconstruct_output_names_stay_plain_without_collisions(tmp_path):
    assert [p.name for p in output_paths([tmp_path / "a.png", tmp_path / "d" / "b.jpg"], tmp_path)] == [
        "a.png", "b.png"]


def test_reconstruct_numbers_every_output_when_names_collide(tmp_path):
    inputs = [tmp_path / "d1" / "x.png", tmp_path / "d2" / "x.jpg", tmp_path / "y.png"]
    assert [p.name for p in output_paths(inputs, tmp_path)] == ["1-x.png", "2-x.png", "3-y.png"]
    # Case-insensitive file systems would merge these two.
    assert [p.name for p in output_paths([tmp_path / "X.png", tmp_path / "x.png"], tmp_path)] == [
        "1-X.png", "2-x.png"]
    many = [tmp_path / f"d{i}" / "x.png" for i in range(10)]
    assert output_paths(many, tmp_path)[0].name == "01-x.png"


def test_reconstruct_keeps_both_images_with_the_same_name(capsys, tmp_path, vae_path):
    for folder, colour in (("d1", (255, 0, 0)), ("d2", (0, 0, 255))):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (32, 32), colour).save(tmp_path / folder / "x.png")
    out = tmp_path / "rec"
    assert main(["reconstruct", str(tmp_path / "d1" / "x.png"), str(tmp_path / "d2" / "x.png"),
                 "--ckpt", str(vae_path), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["1-x.png", "2-x.png"]
    assert "2 image(s)" in capsys.readouterr().out


# -- resuming ---------------------------------------------------------------------------------


def save_biart_run(out, vae_path, n_layer=1):
    """A saved train-biart run (no training needed): a tiny BiART for the small AugVAE."""
    vae = lverse.AugVAE.from_checkpoint(vae_path)
    tokenizer = Tokenizer.train(["a red circle", "a blue square", "a green triangle"] * 5, 520)
    layout = TokenLayout(text_vocab=tokenizer.vocab_size, image_vocab=vae.config.num_tokens, text_len=8,
                         image_len=vae.tokens_per_image)
    model = lverse.BiART.for_layout(layout, tokenizer, n_layer=n_layer, n_head=2, n_embd=32)
    out.mkdir()
    model.save(out / "biart.safetensors", metadata={"step": 2, "data": "fake", "words": []})
    return model, vae


def test_train_biart_resume_refuses_a_different_architecture(capsys, tmp_path, vae_path):
    out = tmp_path / "run"
    save_biart_run(out, vae_path, n_layer=1)
    message = run_error(capsys, "train-biart", "--out", out, "--data", "fake", "--vae", vae_path, "--steps", 3,
                        "--resume", "--n-layer", 2, "--n-embd", 32)
    assert message == (f"lverse train-biart: error: cannot resume {out / 'biart.safetensors'} with a different "
                       "architecture: --n-layer 2 (saved: 1); drop these flags to resume, or train into a new --out")


def test_train_biart_resume_accepts_unset_or_matching_flags(tmp_path, vae_path):
    model, vae = save_biart_run(tmp_path / "run", vae_path)
    unset = argparse.Namespace(text_len=None, n_layer=None, n_head=None, n_embd=None, vae=vae_path)
    refuse_changed_architecture(unset, model, vae, tmp_path)
    matching = argparse.Namespace(text_len=8, n_layer=1, n_head=2, n_embd=32, vae=vae_path)
    refuse_changed_architecture(matching, model, vae, tmp_path)


def test_train_biart_resume_refuses_an_augvae_of_other_codes(tmp_path, vae_path):
    model, _ = save_biart_run(tmp_path / "run", vae_path)
    other = lverse.AugVAE(lverse.AugVAEConfig(**{**SMALL, "num_tokens": 32}, single_level=1))
    unset = argparse.Namespace(text_len=None, n_layer=None, n_head=None, n_embd=None, vae="other.safetensors")
    expected = ("with --vae other.safetensors: the model reads 64 codes from a 64-code codebook, "
                "the AugVAE gives 64 from 32")
    with pytest.raises(ValueError, match=expected):
        refuse_changed_architecture(unset, model, other, tmp_path)


def test_train_vae_resume_refuses_a_different_config(capsys, tmp_path, vae_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "augvae.safetensors").write_bytes(vae_path.read_bytes())
    other = json.dumps({**json.loads(small_config_json()), "hidden_dim": 16})
    message = run_error(capsys, "train-vae", "--out", out, "--config", other, "--steps", 3, "--resume")
    assert message == (f"lverse train-vae: error: --config differs from the model in {out / 'augvae.safetensors'}: "
                       "hidden_dim=16 (saved: 32); drop --config to resume, or train into a new --out")


@pytest.mark.parametrize("content", [b"", b"hello", b"\x80\x02garbage" * 10])
def test_resume_from_a_damaged_train_state_names_the_file(capsys, tmp_path, vae_path, content):
    out = tmp_path / "run"
    out.mkdir()
    (out / "augvae.safetensors").write_bytes(vae_path.read_bytes())
    (out / "train_state.pt").write_bytes(content)
    message = run_error(capsys, "train-vae", "--out", out, "--steps", 3, "--resume")
    assert message.startswith(f"lverse train-vae: error: cannot resume from {out / 'train_state.pt'}: "
                              "not a readable training state (")
    assert message.endswith("); the file is damaged or was not written by lverse")


def test_train_state_round_trips_with_weights_only(tmp_path):
    layer = torch.nn.Linear(3, 3)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=1e-3, betas=(0.9, 0.95))
    layer(torch.randn(2, 3)).sum().backward()
    optimizer.step()
    path = tmp_path / "train_state.pt"
    save_train_state(path, 7, optimizer)
    expected_random = random.random()
    fresh = torch.optim.AdamW(torch.nn.Linear(3, 3).parameters(), lr=1e-3)
    assert load_train_state(path, fresh)["step"] == 7
    assert random.random() == expected_random
    assert fresh.state_dict()["param_groups"][0]["betas"] == (0.9, 0.95)


def test_train_state_without_its_keys_or_for_another_optimizer(tmp_path):
    path = tmp_path / "train_state.pt"
    torch.save([1, 2], path)
    optimizer = torch.optim.AdamW(torch.nn.Linear(3, 3).parameters())
    with pytest.raises(lverse.CheckpointError,
                       match="not an lverse training state \\(it lacks step, optimizer, torch_rng, python_rng\\)"):
        load_train_state(path, optimizer)
    save_train_state(path, 1, optimizer)
    bigger = torch.optim.AdamW([*torch.nn.Linear(3, 3).parameters(), torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(lverse.CheckpointError, match="it does not fit this run"):
        load_train_state(path, bigger)


# -- one line per error ---------------------------------------------------------------------


def test_main_prints_only_the_first_line_of_a_long_message(capsys, monkeypatch):
    def fail(args):
        raise RuntimeError("Internal torch error: something broke\nException raised from f at x.cpp:1\nframe #0")

    monkeypatch.setattr(info, "run", fail)
    assert run_error(capsys, "info") == "lverse info: error: Internal torch error: something broke"
