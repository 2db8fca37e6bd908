"""Bad input reaches Python as a clear exception, never a panic or a crash."""

import lverse
import pytest
import torch

from .conftest import SMALL, make_pair


@pytest.fixture(scope="module")
def model():
    m, _ = make_pair(single_level=1)
    return m.eval()


@pytest.mark.parametrize(
    "images, error, match",
    [
        (torch.zeros(3, 32, 32), ValueError, r"expected images of shape \(B, 3, H, W\), got \[3, 32, 32\]"),
        (torch.zeros(1, 4, 32, 32), ValueError, r"\(B, 3, H, W\), got \[1, 4, 32, 32\]"),
        (torch.zeros(1, 3, 30, 32), ValueError, "multiples of 4, got 30x32"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), TypeError, "expected a Float image tensor.*got Uint8"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.float64), TypeError, "got Double"),
        ([[0.0]], TypeError, "images must be a torch.Tensor, got list"),
    ],
)
def test_bad_images(model, images, error, match):
    with pytest.raises(error, match=match):
        model.encode(images)
    with pytest.raises(error, match=match):
        model(images)


@pytest.mark.parametrize(
    "ids, error, match",
    [
        (torch.full((1, 64), 64), ValueError, r"code id 64 is outside the codebook range \[0, 64\)"),
        (torch.full((1, 64), -1), ValueError, r"code id -1 is outside"),
        (torch.zeros(1, 63, dtype=torch.int64), ValueError, "expected 64 ids per image for a 8x8 grid, got 63"),
        (torch.zeros(64, dtype=torch.int64), ValueError, r"expected ids of shape \(B, N\)"),
        (torch.zeros(1, 64, dtype=torch.int32), TypeError, "expected int64 ids, got Int"),
        (torch.zeros(1, 64), TypeError, "expected int64 ids, got Float"),
    ],
)
def test_bad_ids(model, ids, error, match):
    with pytest.raises(error, match=match):
        model.decode(ids)


def test_bad_config():
    with pytest.raises(ValueError, match="divisible by the 32 GroupNorm groups"):
        lverse.AugVAE(lverse.AugVAEConfig(**{**SMALL, "hidden_dim": 20}))
    with pytest.raises(ValueError, match="single_level must name a level below the coarsest"):
        lverse.AugVAE(lverse.AugVAEConfig(**SMALL, single_level=2))
    with pytest.raises(ValueError, match="unknown AugVAE config keys"):
        lverse.AugVAEConfig.from_dict({"hidden": 3})


def test_tampered_parameter_is_reported(model):
    broken, _ = make_pair(single_level=1)
    broken.encoders[0].conv_in.weight = torch.nn.Parameter(torch.zeros(2, 2))
    with pytest.raises(lverse.NativePathError,
                       match=r"encoders.0.conv_in.weight has shape \(2, 2\), expected \(32, 3, 3, 3\)"):
        broken.encode(torch.zeros(1, 3, 32, 32))


def test_empty_batch(model):
    ids = model.encode(torch.zeros(0, 3, 32, 32))
    assert ids.shape == (0, 64)
    assert model.decode(ids).shape == (0, 3, 32, 32)
