"""train-biart's loss: the weighted mean over generated tokens that --caption-weight sets."""

import math

import pytest
import torch
import torch.nn.functional as F
from lverse.train.biart import generated_token_loss


def _batch():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 6, 9, generator=g)
    targets = torch.randint(0, 9, (4, 6), generator=g)
    targets[0, :2] = -100  # conditioning part of a text-to-image row
    targets[1, 4:] = -100  # after a caption's EOC
    targets[3, :3] = -100
    to_image = torch.tensor([True, False, True, False])
    return logits, targets, to_image


def _by_hand(logits, targets, to_image, weight):
    total = norm = 0.0
    for r in range(targets.shape[0]):
        w = 1.0 if to_image[r] else weight
        for t in range(targets.shape[1]):
            if targets[r, t] != -100:
                total += w * -math.log(torch.softmax(logits[r, t], -1)[targets[r, t]].item())
                norm += w
    return total / norm


@pytest.mark.parametrize("weight", [1.0, 4.0, 0.25])
def test_weighted_mean_over_generated_tokens(weight):
    logits, targets, to_image = _batch()
    got = generated_token_loss(logits, targets, to_image, weight).item()
    assert abs(got - _by_hand(logits, targets, to_image, weight)) < 1e-5


def test_weight_one_is_the_plain_token_mean():
    logits, targets, to_image = _batch()
    plain = F.cross_entropy(logits.reshape(-1, 9), targets.reshape(-1)).item()
    assert abs(generated_token_loss(logits, targets, to_image, 1.0).item() - plain) < 1e-6
    # and a weight moves it toward the caption rows' own mean
    caption_rows = F.cross_entropy(logits[~to_image].reshape(-1, 9), targets[~to_image].reshape(-1)).item()
    heavy = generated_token_loss(logits, targets, to_image, 1e6).item()
    assert abs(heavy - caption_rows) < 1e-4
