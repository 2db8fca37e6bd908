"""lverse's AugVAE against the independent reference of tests/reference_augvae.py."""

import copy

import pytest
import torch

from .conftest import cuda, make_pair


def max_diff(a, b):
    return (a - b).abs().max().item()


def test_state_dict_names_match_reference(pair):
    model, reference = pair
    assert list(sorted(model.state_dict())) == list(sorted(reference.state_dict()))


def test_weight_tying_is_official(pair):
    model, _ = pair
    assert model.pre_quants[1].weight is model.pre_quants[0].weight
    assert model.pre_quants[1].bias is not model.pre_quants[0].bias
    assert model.post_quants[2].weight is model.post_quants[0].weight
    for name in ("weight", "cluster_size", "embed_avg"):
        assert getattr(model.quantizers[2].embedding, name) is getattr(model.quantizers[0].embedding, name)
    assert not model.quantizers[0].embedding.weight.requires_grad


def test_encode_ids_identical(pair, images):
    model, reference = pair
    model.eval()
    reference.eval()
    ids = model.encode(images)
    expected = reference.encode(images)
    assert ids.dtype == torch.int64
    assert ids.shape == expected.shape == (2, model.tokens_per_image)
    assert torch.equal(ids, expected)
    # The codes must be varied for the comparison to mean something.
    assert ids.unique().numel() > 5


def test_decode_matches(pair, images):
    model, reference = pair
    model.eval()
    ids = reference.encode(images)
    out = model.decode(ids)
    assert out.shape == (2, 3, 32, 32)
    assert max_diff(out, reference.decode(ids)) < 1e-4


def test_eval_forward_matches(pair, images):
    model, reference = pair
    model.eval()
    reference.eval()
    with torch.no_grad():
        out, loss = model(images)
        ref_out, ref_loss = reference(images)
    assert max_diff(out, ref_out) < 1e-4
    assert abs(loss.item() - ref_loss.item()) < 1e-6


def test_training_gradients_and_ema_match(pair, images):
    model, reference = pair
    model.train()
    reference.train()
    for m in (model, reference):
        recon, commitment = m(images)
        loss = torch.nn.functional.mse_loss(recon, images) + commitment
        loss.backward()
    grads = dict(model.named_parameters())
    ref_grads = dict(reference.named_parameters())
    # Relative to each tensor's largest gradient, but not below 1% of the model's largest:
    # a conv bias followed by GroupNorm has an analytically zero gradient, pure rounding noise.
    floor = 1e-2 * max(p.grad.abs().max().item() for p in ref_grads.values() if p.grad is not None)
    checked = 0
    for name, p in ref_grads.items():
        if p.grad is None:  # unused by this architecture (e.g. SL's coarse-level biases)
            assert grads[name].grad is None, name
            continue
        g, rg = grads[name].grad, p.grad
        assert g is not None, name
        scale = max(rg.abs().max().item(), floor)
        assert max_diff(g, rg) / scale < 1e-4, name
        checked += 1
    assert checked > 50
    # The EMA codebook moved, identically, in both.
    sd, ref_sd = model.state_dict(), reference.state_dict()
    for key in ("quantizers.0.embedding.weight", "quantizers.0.embedding.cluster_size",
                "quantizers.0.embedding.embed_avg"):
        assert max_diff(sd[key], ref_sd[key]) < 1e-5, key
    assert sd["quantizers.0.embedding.cluster_size"].sum() > 0


def test_ema_frozen_in_eval_and_when_disabled(images):
    model, _ = make_pair()
    before = copy.deepcopy(model.state_dict())
    model.eval()
    model(images)
    model.train()
    model.ema_update = False
    model(images)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_optimizer_step_is_seen_by_native_forward(images):
    model, _ = make_pair(single_level=1)
    model.eval()
    before = model.decode(model.encode(images))
    with torch.no_grad():
        model.decoders[1].conv_out.bias.add_(0.5)
    after = model.decode(model.encode(images))
    assert abs((after - before).mean().item() - 0.5) < 1e-5


def test_float64_model_matches(images):
    model, reference = make_pair(single_level=1, dtype=torch.float64)
    model.eval()
    x = images.double()
    assert torch.equal(model.encode(x), reference.encode(x))
    ids = reference.encode(x)
    assert max_diff(model.decode(ids), reference.decode(ids)) < 1e-10


def test_non_square_grid_decode(images):
    model, reference = make_pair(single_level=1)
    model.eval()
    wide = torch.rand(1, 3, 32, 64) * 2 - 1
    ids = model.encode(wide)
    assert ids.shape == (1, 8 * 16)
    out = model.decode(ids, grid=(8, 16))
    assert out.shape == (1, 3, 32, 64)


@cuda
def test_cuda_matches_cpu(images):
    model, reference = make_pair(single_level=1)
    model.eval()
    ids = model.encode(images)
    gpu = model.to("cuda")
    assert torch.equal(gpu.encode(images.cuda()).cpu(), ids)
    assert max_diff(gpu.decode(ids.cuda()).cpu(), reference.decode(ids)) < 1e-3


@pytest.mark.parametrize("single_level", [None, 1], ids=["ML", "SL"])
def test_attention_variant_matches(images, single_level):
    # use_attn=True checkpoints (off in both official configs) carry attention blocks.
    model, reference = make_pair(single_level=single_level, use_attn=True)
    assert "encoders.0.down.1.attn.0.q.weight" in model.state_dict()
    assert "decoders.0.mid.attn_1.proj_out.bias" in model.state_dict()
    model.eval()
    reference.eval()
    ids = model.encode(images)
    assert torch.equal(ids, reference.encode(images))
    assert max_diff(model.decode(ids), reference.decode(ids)) < 1e-4
