"""The notebook API on the shipped default model: output types, per-item seeds, progress
bars, one name per option, load/save/to, repr and the CLI's help."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import lverse
import numpy as np
import pytest
import torch
from lverse import progress
from lverse.data import shapes
from lverse.pipeline import LVerse, default_model

TEXT = "a large green triangle at the top"
OTHER = "a small red circle at the center"


@pytest.fixture(autouse=True)
def quiet_bars():
    """Bars off unless a test turns them on; back to the environment's choice after."""
    progress.set_progress(False)
    yield
    progress._enabled = None


def pixels(images) -> list[np.ndarray]:
    return [np.asarray(im) for im in images]


# -- output types --------------------------------------------------------------------------


def test_output_types_agree_and_have_the_documented_shapes():
    pil = lverse.generate(TEXT, n=2, candidates=3, seed=1)
    pt = lverse.generate(TEXT, n=2, candidates=3, seed=1, output_type="pt")
    arr = lverse.generate(TEXT, n=2, candidates=3, seed=1, output_type="np")
    assert [im.size for im in pil] == [(64, 64)] * 2
    assert pt.shape == (2, 3, 64, 64) and pt.dtype == torch.float32
    assert arr.shape == (2, 64, 64, 3) and arr.dtype == np.float32
    assert pt.min() >= -1.0 - 1e-3 and pt.max() <= 1.0 + 1e-3
    assert arr.min() >= 0.0 and arr.max() <= 1.0
    # The same images: PIL is the tensor rounded to 8 bits, the array the tensor in [0, 1].
    assert all(np.array_equal(a, b) for a, b in zip(pixels(pil), pixels(lverse.images.to_pil(pt)), strict=True))
    assert np.abs(arr - ((pt.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()).max() < 1e-6
    # A "pt" output is what caption reads.
    assert lverse.caption(pt) == lverse.caption(pil)


def test_a_list_of_texts_gives_one_entry_per_text():
    out = lverse.generate([TEXT, OTHER], n=2, candidates=2, seed=0, output_type="pt")
    assert isinstance(out, list) and [o.shape for o in out] == [(2, 3, 64, 64)] * 2
    pil = lverse.generate([TEXT, OTHER], n=2, candidates=2, seed=0)
    assert [len(p) for p in pil] == [2, 2]


def test_grid_takes_every_output_type():
    kinds = [lverse.generate([TEXT, OTHER], n=2, candidates=2, seed=4, output_type=t) for t in ("pil", "pt", "np")]
    sheets = [np.asarray(lverse.images.grid(k, columns=2)) for k in kinds]
    assert sheets[0].shape == (128, 128, 3)
    assert np.array_equal(sheets[0], sheets[1])
    assert np.abs(sheets[0].astype(int) - sheets[2].astype(int)).max() <= 1


def test_bad_output_type():
    with pytest.raises(ValueError, match="output_type must be one of 'pil', 'pt', 'np', got 'tensor'"):
        lverse.generate(TEXT, output_type="tensor")


# -- per-item seeds ------------------------------------------------------------------------


def test_an_image_depends_on_seed_text_and_index_only():
    alone = lverse.generate(TEXT, n=2, candidates=2, seed=9, rerank=False, output_type="pt")
    in_batch = lverse.generate([OTHER, TEXT, OTHER], n=2, candidates=2, seed=9, rerank=False, output_type="pt")[1]
    more_candidates = lverse.generate(TEXT, n=2, candidates=6, seed=9, rerank=False, output_type="pt")
    assert torch.equal(alone, in_batch)
    assert torch.equal(alone, more_candidates)
    assert not torch.equal(alone, lverse.generate(TEXT, n=2, candidates=2, seed=10, rerank=False, output_type="pt"))


def test_reported_seeds_regenerate_the_chosen_images_alone():
    images, seeds = lverse.generate([TEXT, OTHER], n=2, candidates=5, seed=3, return_seeds=True)
    assert [im.info["seed"] for im in images[1]] == seeds[1]
    again = lverse.generate(OTHER, seed=seeds[1])
    assert len(again) == 2
    assert all(np.array_equal(a, b) for a, b in zip(pixels(again), pixels(images[1]), strict=True))
    one = lverse.generate(TEXT, seed=[seeds[0][1]])
    assert np.array_equal(pixels(one)[0], pixels(images[0])[1])
    # Without a seed the images still report theirs.
    fresh, fresh_seeds = lverse.generate(TEXT, n=1, candidates=2, return_seeds=True)
    assert np.array_equal(pixels(lverse.generate(TEXT, seed=fresh_seeds))[0], pixels(fresh)[0])


def test_bad_item_seeds():
    with pytest.raises(ValueError, match="one such list per text"):
        lverse.generate([TEXT, OTHER], seed=[[1, 2], [3]])
    with pytest.raises(TypeError, match=r"seed\[0\]\[0\] must be an int"):
        lverse.generate(TEXT, seed=["x"])


def test_a_sampled_caption_does_not_depend_on_its_batch():
    scenes = [np.asarray(shapes.scene(2_000_000_100 + i)[0]) for i in range(3)]
    batch, seeds = lverse.caption(scenes, greedy=False, seed=11, candidates=0, return_seeds=True)
    assert lverse.caption(scenes[2], greedy=False, seed=11, candidates=0) == batch[2]
    assert lverse.caption(scenes[2], greedy=False, seed=[seeds[2]]) == batch[2]
    # Reranked captions report the seed of the winner (None when the greedy one won).
    captions, chosen = lverse.caption(scenes, seed=2, candidates=4, return_seeds=True)
    for scene, text, s in zip(scenes, captions, chosen, strict=True):
        if s is not None:
            assert lverse.caption(scene, greedy=False, seed=[s]) == text


# -- progress --------------------------------------------------------------------------------


def test_progress_bars_switch_off_and_the_callback_stays(capfd, monkeypatch):
    calls = []
    lverse.generate(TEXT, candidates=2, seed=0, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1] == (64, 64)
    assert capfd.readouterr().err == ""
    progress.set_progress(True)
    lverse.generate(TEXT, candidates=2, seed=0)
    lverse.caption([np.zeros((64, 64, 3), np.uint8)] * 2, candidates=2)
    err = capfd.readouterr().err
    assert "generate" in err and "caption" in err
    progress._enabled = None
    monkeypatch.setenv("LVERSE_PROGRESS", "0")
    lverse.generate(TEXT, candidates=2, seed=0)
    assert capfd.readouterr().err == ""
    with pytest.raises(TypeError, match="set_progress takes True or False"):
        lverse.set_progress("no")


# -- one name per option, full signatures --------------------------------------------------


@pytest.mark.parametrize("name", ["caption", "generate"])
def test_function_and_method_take_the_same_options(name):
    function = inspect.signature(getattr(lverse, name)).parameters
    method = inspect.signature(getattr(LVerse, name)).parameters
    assert all(p.kind is not p.VAR_KEYWORD for p in [*function.values(), *method.values()])
    assert [n for n in function if n != "model"] == [n for n in method if n != "self"]
    assert all(function[n].default == method[n].default for n in method if n != "self")
    doc = getattr(lverse, name).__doc__
    for option in function:
        if option not in ("images", "texts"):
            assert option in doc, f"{name}'s docstring does not describe {option}"


def test_rerank_is_one_name():
    image = np.asarray(shapes.scene(2_000_000_001)[0])
    model = default_model()
    assert lverse.caption(image, rerank=False) == model.caption(image, rerank=False)
    with pytest.raises(TypeError, match="rerank_candidates"):
        lverse.caption(image, rerank_candidates=False)


# -- load, save, to, repr ------------------------------------------------------------------


def test_save_writes_what_load_reads(tmp_path):
    model = default_model()
    model.save(tmp_path / "copy")
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == ["augvae.safetensors", "biart.safetensors",
                                                                      "lverse.json", "tokenizer.json"]
    copy = lverse.load(tmp_path / "copy")
    for a, b in [(model.vae, copy.vae), (model.biart, copy.biart)]:
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    image = np.asarray(shapes.scene(2_000_000_002)[0])
    assert copy.caption(image) == model.caption(image)
    assert copy.known_words == model.known_words


def test_load_and_to_set_device_and_dtype(tmp_path):
    default_model().save(tmp_path / "m")
    model = lverse.load(tmp_path / "m", device="cpu", dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16 and model.device == torch.device("cpu")
    assert {p.dtype for p in model.vae.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.biart.parameters()} == {torch.bfloat16}
    assert isinstance(model.caption(np.asarray(shapes.scene(2_000_000_003)[0])), str)
    model.to(torch.float32)
    assert {p.dtype for m in (model.vae, model.biart) for p in m.parameters()} == {torch.float32}
    with pytest.raises(TypeError, match="dtype must be a floating torch.dtype"):
        lverse.load(tmp_path / "m", dtype=torch.int64)


def test_repr_names_the_parts():
    text = repr(default_model())
    for part in ("AugVAE-SL", "0.54M params", "64 px -> 64 codes of 512", "BiART 4x256", "3.75M params",
                 "device=cpu", "dtype=torch.float32"):
        assert part in text, text


# -- the command line ----------------------------------------------------------------------


def test_cli_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "lverse", "--help"], capture_output=True, text=True).stdout
    assert out.startswith("usage: python -m lverse")
    for command in ("info", "reconstruct", "caption", "generate", "eval", "train-vae", "train-biart"):
        assert command in out


def test_console_script_names_itself(monkeypatch):
    from lverse.__main__ import build_parser

    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/lverse", "--help"])
    assert build_parser().format_usage().startswith("usage: lverse ")
    script = Path(sys.executable).with_name("lverse")  # the console script the install made
    if script.exists():
        out = subprocess.run([str(script), "--help"], capture_output=True, text=True).stdout
        assert out.startswith("usage: lverse [-h] COMMAND")


def test_notebook_example_runs_headless(tmp_path):
    script = Path(__file__).parents[1] / "examples" / "notebook.py"
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "fourth image regenerated alone: True" in done.stdout
    assert "dtype=torch.bfloat16" in done.stdout
    assert (tmp_path / "four.png").exists() and lverse.load(tmp_path / "model").describe()["biart"]["layers"] == 4
