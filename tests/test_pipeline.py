"""lverse.caption / lverse.generate / lverse.load on a small random model saved to disk
(the shipped default model is exercised by the main job and `python -m lverse eval`)."""

import lverse
import numpy as np
import pytest
import torch
from lverse import BiART, Tokenizer
from lverse.layout import TokenLayout
from PIL import Image

from .conftest import SMALL

CAPTIONS = ["a small red circle at the top", "a large blue square left of a small green cross"] * 10


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    vae = lverse.AugVAE(lverse.AugVAEConfig(**SMALL, single_level=1))
    vae.save(root / "augvae.safetensors")
    tok = Tokenizer.train(CAPTIONS, 600)
    layout = TokenLayout(text_vocab=tok.vocab_size, image_vocab=64, text_len=10, image_len=64)
    biart = BiART.for_layout(layout, tok, n_layer=1, n_head=2, n_embd=32)
    from lverse.data import shapes

    words = sorted({w for c in CAPTIONS for w in c.split()} | set(shapes.vocabulary()))
    biart.save(root / "biart.safetensors", metadata={"words": words})
    return root


def test_caption_inputs(model_dir, tmp_path):
    model = lverse.load(model_dir)
    img = Image.new("RGB", (40, 32), (200, 30, 30))
    path = tmp_path / "red.png"
    img.save(path)
    one = lverse.caption(path, model=model)
    assert isinstance(one, str)
    assert lverse.caption(img, model=model) == one
    assert lverse.caption(np.asarray(img), model=model) == one
    many = lverse.caption([path, img], model=model, beams=2)
    assert isinstance(many, list) and len(many) == 2
    tensor = lverse.images.load(path, size=32)
    assert lverse.caption(tensor[0], model=model) == one
    assert lverse.caption(tensor, model=model) == [one]


def test_caption_reranks_greedy_against_sampled_captions(model_dir):
    from lverse.tasks import generate_caption_ids, rerank_captions

    model = lverse.load(model_dir)
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    ids = model.vae.encode(x)
    greedy = generate_caption_ids(model.biart, model.layout, ids)
    assert lverse.caption(x, model=model, candidates=0) == model.layout.decode_captions(model.tokenizer, greedy)
    assert lverse.caption(x, model=model, rerank=False) == lverse.caption(x, model=model, candidates=0)
    sampled = generate_caption_ids(model.biart, model.layout, ids.repeat_interleave(5, 0), greedy=False, seed=0)
    pool = torch.cat([greedy.unsqueeze(1), sampled.view(3, 5, -1)], 1)
    order, _ = rerank_captions(model.biart, model.layout, ids, pool)
    best = pool[torch.arange(3), order[:, 0]]
    assert lverse.caption(x, model=model, candidates=5) == model.layout.decode_captions(model.tokenizer, best)
    with pytest.raises(ValueError, match="candidates must be an int >= 0, got -1"):
        lverse.caption(x, model=model, candidates=-1)


def test_generate_shapes_and_seeds(model_dir):
    model = lverse.load(model_dir)
    pictures = lverse.generate("a red circle", n=2, candidates=3, seed=1, model=model)
    assert len(pictures) == 2 and all(isinstance(p, Image.Image) and p.size == (32, 32) for p in pictures)
    again = lverse.generate("a red circle", n=2, candidates=3, seed=1, model=model)
    assert [p.tobytes() for p in pictures] == [p.tobytes() for p in again]
    grouped = lverse.generate(["a red circle", "a blue square"], n=1, candidates=2, seed=0, model=model, rerank=False)
    assert len(grouped) == 2 and len(grouped[0]) == 1


def test_bad_input(model_dir, tmp_path):
    model = lverse.load(model_dir)
    with pytest.raises(ValueError, match="text 0 is empty"):
        lverse.generate("   ", model=model)
    with pytest.raises(TypeError, match="text 1 must be a str, got int"):
        lverse.generate(["a red circle", 3], model=model)
    with pytest.raises(ValueError, match="words outside the model's vocabulary: giraffe"):
        lverse.generate("a red giraffe", model=model)
    with pytest.raises(ValueError, match="n must be a positive int, got 0"):
        lverse.generate("a red circle", n=0, model=model)
    with pytest.raises(FileNotFoundError, match="no-such.png"):
        lverse.caption(tmp_path / "no-such.png", model=model)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(lverse.ImageError):
        lverse.caption(broken, model=model)
    with pytest.raises(FileNotFoundError, match="model not found"):
        lverse.load(tmp_path / "nowhere")
    with pytest.raises(lverse.CheckpointError, match="is not a model directory"):
        lverse.load(broken)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(lverse.CheckpointError, match="augvae.safetensors is missing"):
        lverse.load(empty)


def cli(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "lverse", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_cli_caption_generate_eval(model_dir, tmp_path):
    img = tmp_path / "a.png"
    Image.new("RGB", (32, 32), (0, 0, 200)).save(img)
    out = cli("caption", img, img, "--model", model_dir)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 2
    grid = tmp_path / "grid.png"
    out = cli("generate", "a red circle", "-n", 2, "--candidates", 2, "--seed", 0, "-o", grid, "--model", model_dir)
    assert out.returncode == 0, out.stderr
    assert Image.open(grid).size == (64, 32)
    out = cli("eval", "--scenes", 4, "--round-trip", 1, "--candidates", 1, "--json", "--model", model_dir)
    assert out.returncode == 0, out.stderr
    import json

    result = json.loads(out.stdout)
    assert result["scenes"] == 4 and result["round_trips"] == 1 and result["augvae_psnr_db"] > 0
    bad = cli("generate", "a red giraffe", "--model", model_dir)
    assert bad.returncode == 1 and bad.stderr.startswith("lverse generate: error: words outside")
    missing = cli("caption", tmp_path / "none.png", "--model", model_dir)
    assert missing.returncode == 1 and "no such image file" in missing.stderr
