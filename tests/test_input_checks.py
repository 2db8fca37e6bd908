"""Bad input to the Python API raises a clear exception instead of aborting the process,
dumping a libtorch trace or returning something plausible but wrong."""

import lverse
import numpy as np
import pytest
import torch
from lverse import AugVAE, AugVAEConfig, BiART, tasks
from lverse.layout import TokenLayout
from lverse.pipeline import default_model

from .conftest import SMALL

LAYOUT = TokenLayout(text_vocab=20, image_vocab=16, text_len=6, image_len=4)


@pytest.fixture(scope="module")
def small_biart():
    torch.manual_seed(0)
    return BiART(LAYOUT.vocab_size, LAYOUT.block_size, n_layer=1, n_head=2, n_embd=16).eval()


def text_part():
    return torch.tensor([LAYOUT.caption_ids([3, 4])])


def image_part():
    return torch.tensor([[0, 5, 15, 7]])


# -- sizes that would abort the process in an allocation ----------------------------------


def test_absurd_beam_widths_are_a_memory_error(small_biart):
    idx, seg = LAYOUT.image_to_text(image_part())
    with pytest.raises(MemoryError, match="cannot allocate 4611686018427387904 beam rows on the host"):
        small_biart.beam_search(idx, seg, 3, beams=2**62, token_range=LAYOUT.caption_ranges)
    # More beams than legal ids is still a valid search (it keeps more partial captions).
    tokens, _ = small_biart.beam_search(idx, seg, 3, beams=30, token_range=LAYOUT.caption_ranges)
    assert tokens.shape == (1, 3)


def test_image_sizes_are_bounded():
    pixels = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=f"size must be at most {lverse._native.MAX_IMAGE_SIZE}, got 1000000"):
        lverse.images.load(pixels, size=10**6)
    with pytest.raises(ValueError, match=r"resizing a 4000x1 image to a shorter side of 1024 would make it 4096000x"):
        lverse.images.load(np.zeros((1, 4000, 3), dtype=np.uint8), size=1024)


@pytest.mark.parametrize("grid, error, match", [
    ((-8, -8), ValueError, "grid height must be a positive int, got -8"),
    ((True, True), ValueError, "grid height must be a positive int, got True"),
    ((3,), ValueError, r"grid must be a pair \(h, w\), got \(3,\)"),
    ((2**62, 4), ValueError, r"grid must be \(h, w\) with positive sides, multiples of 1, whose levels hold"),
    ((2, 8), ValueError, r"expected 16 ids per image for a 2x8 grid, got 64"),
])
def test_decode_grid_is_checked(grid, error, match):
    model = AugVAE(AugVAEConfig(**{**SMALL, "single_level": 1}))
    ids = torch.zeros(1, 64, dtype=torch.long)  # SL level 1 of a 32 px image: 8x8
    with pytest.raises(error, match=match):
        model.decode(ids, grid=grid)
    assert model.decode(ids, grid=(8, 8)).shape == (1, 3, 32, 32)
    assert model.decode(ids, grid=(4, 16)).shape == (1, 3, 16, 64)


# -- silently wrong output ----------------------------------------------------------------


def test_nan_logits_are_an_error_not_token_zero():
    torch.manual_seed(0)
    model = BiART(30, 12, n_layer=1, n_head=2, n_embd=8).eval()
    with torch.no_grad():
        model.head.weight[5, 0] = float("nan")
    idx = torch.tensor([[1, 2, 3]])
    seg = torch.zeros_like(idx)
    for options in (dict(greedy=True), dict(seed=0), dict(seed=0, top_k=3), dict(seed=0, top_p=0.5)):
        with pytest.raises(ValueError, match="the model's logits are NaN or \\+inf"):
            model.generate(idx, seg, 2, **options)
    with pytest.raises(ValueError, match="the model's logits are NaN"):
        model.beam_search(idx, seg, 2, beams=2)


@pytest.mark.parametrize("call, error, match", [
    (lambda m: tasks.generate_caption_ids(m, LAYOUT, torch.full((1, 4), -1)), ValueError,
     r"image id -1 is outside the image vocabulary \[0, 16\)"),
    (lambda m: tasks.score(m, LAYOUT, text_part(), torch.full((1, 4), 16), given="text"), ValueError,
     r"image id 16 is outside the image vocabulary \[0, 16\)"),
    (lambda m: tasks.score(m, LAYOUT, torch.full((1, 6), 25), image_part(), given="image"), ValueError,
     r"caption id 25 is neither a text id in \[0, 20\) nor EOC \(39\) or PAD \(36\)"),
    (lambda m: tasks.score(m, LAYOUT, text_part(), None, given="text"), TypeError,
     "image ids must be a torch.Tensor, got NoneType"),
    (lambda m: tasks.score(m, LAYOUT, text_part().float(), image_part(), given="text"), TypeError,
     "caption ids must be int64, got torch.float32"),
    (lambda m: tasks.score(m, TokenLayout(10, 10, 4, 4), text_part(), image_part(), given="text"), ValueError,
     r"layout needs vocab_size 24 and block_size >= 10, the model has 40 and 12"),
    (lambda m: tasks.generate_caption_ids(m, LAYOUT, image_part(), beams=0), ValueError,
     "beams must be a positive int, got 0"),
    (lambda m: tasks.generate_caption_ids(m, LAYOUT, image_part(), beams=True), ValueError,
     "beams must be a positive int, got True"),
    (lambda m: tasks.rerank(m, LAYOUT, text_part(), image_part()), ValueError,
     r"expected candidate image ids of shape \(1, C, 4\), got \(1, 4\)"),
    (lambda m: tasks.rerank_captions(m, LAYOUT, image_part(), text_part()), ValueError,
     r"expected candidate caption ids of shape \(1, C, 6\), got \(1, 6\)"),
    (lambda m: LAYOUT.caption_ids([1.5]), TypeError, "text id must be an int, got float"),
])
def test_task_inputs_are_checked(small_biart, call, error, match):
    with pytest.raises(error, match=match):
        call(small_biart)


def test_valid_task_inputs_still_work(small_biart):
    assert tasks.generate_caption_ids(small_biart, LAYOUT, image_part(), beams=2).shape == (1, 6)
    order, scores = tasks.rerank(small_biart, LAYOUT, text_part(), image_part().unsqueeze(1))
    assert order.shape == scores.shape == (1, 1)


def test_caption_refuses_tensors_it_would_misread():
    model = default_model()
    size = model.vae.config.resolution
    scene = lverse.images.load("examples/images/scene_0.png", size=size)[0]
    with pytest.raises(TypeError, match="expected image tensor of floats in \\[-1, 1\\], got torch.uint8"):
        model.caption(((scene + 1) * 127.5).to(torch.uint8))
    with pytest.raises(ValueError, match=r"expected image tensor of values in \[-1, 1\], got \[\d+, \d+\]"):
        model.caption(((scene + 1) * 127.5).round())
    with pytest.raises(ValueError, match=f"expected image tensor of {size}x{size} pixels, got 128x128"):
        model.caption(torch.zeros(3, 128, 128))
    # A list of tensors is read like the batch they make.
    assert model.caption([scene, scene], candidates=0) == model.caption(torch.stack([scene, scene]), candidates=0)


# -- config types and ranges --------------------------------------------------------------


@pytest.mark.parametrize("overrides, error, match", [
    (dict(beta=-1.0), ValueError, "beta must be >= 0, got -1"),
    (dict(ema_decay=1.5), ValueError, r"ema_decay must be in \[0, 1\), got 1.5"),
    (dict(ema_decay=float("nan")), ValueError, r"ema_decay must be in \[0, 1\), got NaN"),
    (dict(ema_eps=0.0), ValueError, "ema_eps must be > 0, got 0"),
    (dict(single_level=True), TypeError, "single_level must be an int, got bool"),
    (dict(single_level=-1), ValueError, "single_level must be an int >= 0, got -1"),
    (dict(hidden_dim=32.0), TypeError, "hidden_dim must be an int, got float"),
])
def test_augvae_config_is_checked(overrides, error, match):
    with pytest.raises(error, match=match):
        AugVAE(AugVAEConfig(**{**SMALL, **overrides}))


def test_biart_sizes_are_not_bools():
    with pytest.raises(TypeError, match="vocab_size must be an int, got bool"):
        BiART(True, 10, 1, 1, 8)
    with pytest.raises(TypeError, match="pad_token must be an int, got bool"):
        BiART(30, 12, 1, 2, 8).generate(torch.tensor([[1]]), torch.tensor([[0]]), 1, pad_token=True)


def test_image_helpers_refuse_what_they_would_get_wrong():
    with pytest.raises(ValueError, match="the image tensor holds NaN or infinite values"):
        lverse.images.to_pil(torch.full((3, 4, 4), float("nan")))
    small, large = lverse.images.to_pil(torch.zeros(3, 4, 4)), lverse.images.to_pil(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="image 1 is 8x8, not 4x4 like image 0"):
        lverse.images.grid([small, large], columns=2)
    with pytest.raises(ValueError, match=r"tensors of one shape, got \(1, 3, 4, 4\) and \(1, 3, 8, 8\)"):
        lverse.images.psnr(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 8, 8))


def _overcommit_mode() -> str:
    try:
        with open("/proc/sys/vm/overcommit_memory") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


@pytest.mark.skipif(_overcommit_mode() != "0", reason="only Linux's heuristic overcommit refuses the allocation "
                    "up front; elsewhere it could succeed and the prefill would exhaust memory")
def test_an_impossible_batch_is_a_memory_error():
    model = BiART(30, 4096, 1, 2, 8).eval()
    # Views with no memory of their own; the cache would need 2 x 1.2 TiB.
    idx = torch.ones(1, 1, dtype=torch.long).expand(10**7, 1)
    seg = torch.zeros(1, 1, dtype=torch.long).expand(10**7, 1)
    with pytest.raises(MemoryError, match=r"cannot allocate the KV cache for 10000000 sequences of 4096 positions"):
        model.generate(idx, seg, 2)


def test_numpy_ints_and_floats_are_plain_values_in_configs():
    config = AugVAEConfig(**{**SMALL, "hidden_dim": np.int64(32), "beta": np.float32(0.5), "ch_mult": [1, 2]})
    assert type(config.hidden_dim) is int and type(config.beta) is float and config.ch_mult == (1, 2)
    model = BiART(np.int64(30), 12, n_layer=1, n_head=2, n_embd=8).eval()
    assert type(model.config.vocab_size) is int
    out = model.generate(torch.tensor([[1]]), torch.tensor([[0]]), np.int64(2), pad_token=np.int64(0), seed=0)
    assert out.shape == (1, 2)


# -- what caption and generate are given --------------------------------------------------


def test_an_empty_batch_is_no_images():
    size = default_model().vae.config.resolution
    with pytest.raises(ValueError, match="^no images given$"):
        lverse.caption(torch.zeros(0, 3, size, size))
    with pytest.raises(ValueError, match="^no images given$"):
        lverse.caption([])
    with pytest.raises(ValueError, match=r"^images\[1\]: an empty batch, no images given$"):
        lverse.caption([torch.zeros(3, size, size), torch.zeros(0, 3, size, size)])


def test_a_bad_item_of_a_list_is_named_by_its_index():
    model = default_model()
    size = model.vae.config.resolution
    good = np.zeros((size, size, 3), dtype=np.uint8)
    cases = [
        ([good, good, np.zeros((4, 4, 2), np.uint8)], ValueError,
         r"images\[2\]: expected 1 \(gray\), 3 \(RGB\) or 4 \(RGBA\) channels, got 2"),
        ([good, np.zeros((4,), np.uint8)], ValueError,
         r"images\[1\]: expected an array of shape \(H, W\) or \(H, W, C\), got \(4,\)"),
        ([good, np.full((4, 4, 3), 2.0)], ValueError, r"images\[1\]: float arrays must hold values in \[0, 1\]"),
        ([good, np.zeros((4, 4, 3), np.int64)], TypeError, r"images\[1\]: expected a uint8 or float array, got dtype"),
        ([good, good, good, np.zeros((0, 4, 3), np.uint8)], lverse.ImageError, r"images\[3\]: image has an empty side"),
        (["examples/images/scene_0.png", 3], TypeError,
         r"images\[1\]: expected a path, PIL image, numpy array or tensor, got int"),
        ([good, torch.zeros(3, size + 1, size)], ValueError, rf"images\[1\]: expected image tensor of {size}x{size}"),
        ([torch.zeros(3, size, size), torch.full((3, size, size), 2.0)], ValueError,
         r"images\[1\]: expected image tensor of values in \[-1, 1\], got \[2, 2\]"),
    ]
    for images, error, match in cases:
        with pytest.raises(error, match=match):
            model.caption(images)
    with pytest.raises(ValueError, match=r"images\[1\]: expected 1 \(gray\)"):
        lverse.images.load([good, np.zeros((4, 4, 5), np.uint8)])
    with pytest.raises(lverse.ImageError, match=r"images\[1\]: image has an empty side"):
        lverse.images.load([good, np.zeros((4, 0), np.uint8)], size=size)


def test_tensors_and_other_images_mix_in_one_list():
    model = default_model()
    size = model.vae.config.resolution
    path = "examples/images/scene_0.png"
    tensor = lverse.images.load(path, size=size)[0]
    alone = model.caption(path, candidates=0)
    assert model.caption([tensor, path, tensor], candidates=0) == [alone] * 3


@pytest.mark.parametrize("bad, found", [(float("nan"), "1 NaN"), (float("inf"), "1 infinite"),
                                        (-float("inf"), "1 infinite")], ids=["nan", "inf", "-inf"])
def test_non_finite_pixels_are_named(bad, found):
    model = default_model()
    size = model.vae.config.resolution
    good = np.random.default_rng(0).uniform(0.15, 0.95, (size, size, 3))
    pixels = good.copy()
    pixels[3, 4, 1] = bad
    with pytest.raises(ValueError, match=rf"^image: float arrays must hold values in \[0, 1\], got {found} value"):
        model.caption(pixels)
    with pytest.raises(ValueError, match=rf"^images\[1\]: float arrays must hold values in \[0, 1\], got {found}"):
        lverse.images.load([good, pixels], size=size)
    tensor = torch.from_numpy(pixels).float().permute(2, 0, 1) * 2 - 1
    with pytest.raises(ValueError, match=rf"expected image tensor of values in \[-1, 1\], got {found} value"):
        model.caption(tensor)


def test_a_meta_tensor_has_no_values_to_caption():
    size = default_model().vae.config.resolution
    with pytest.raises(ValueError, match="expected image tensor with values, got a tensor on the meta device"):
        lverse.caption(torch.zeros(1, 3, size, size, device="meta"))
    with pytest.raises(ValueError, match=r"images\[0\]: expected image tensor with values, got a tensor on the meta"):
        lverse.caption([torch.zeros(3, size, size, device="meta")])


@pytest.mark.parametrize("data", [b"\x89PNG\r\n\x1a\n", bytearray(b"scene.png"), memoryview(b"abc")],
                         ids=["bytes", "bytearray", "memoryview"])
def test_bytes_are_refused_not_read_as_ints(data):
    kind = type(data).__name__
    with pytest.raises(TypeError, match=rf"images must be a path, PIL image, numpy array or tensor, or a list of "
                                        rf"them; got {kind} \(pass a path as a str or pathlib.Path; open encoded "
                                        r"image data with PIL.Image.open\(io.BytesIO\(data\)\)\)"):
        lverse.caption(data)
    with pytest.raises(TypeError, match=rf"images\[1\]: expected a path, PIL image, numpy array or tensor, got {kind}"):
        lverse.caption(["examples/images/scene_0.png", data])
    with pytest.raises(TypeError, match=rf"images must be a path, PIL.Image or numpy array, or a list of them; "
                                        rf"got {kind}"):
        lverse.images.load(data)
    with pytest.raises(TypeError, match=rf"text must be a str or a list of str, got {kind} \(decode bytes first"):
        lverse.generate(data)


@pytest.mark.parametrize("texts, kind", [(None, "NoneType"), (3, "int"), ({"a red circle": 1}, "dict")])
def test_generate_names_what_text_must_be(texts, kind):
    with pytest.raises(TypeError, match=f"^text must be a str or a list of str, got {kind}$"):
        lverse.generate(texts)
    with pytest.raises(TypeError, match="text 1 must be a str, got bytes"):
        lverse.generate(["a small red circle at the top", b"a small red circle at the top"])
