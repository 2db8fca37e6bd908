import lverse
import pytest
import torch

from .reference_augvae import ReferenceAugVAE

# A small AugVAE in both forms: a 32 px image, 3 levels (16², 8², 4²), 64 codes of dim 16.
SMALL = dict(hidden_dim=32, ch_mult=(1, 2), inner_ch_mult=(2, 4), num_res_blocks=1,
             z_channels=32, codebook_dim=16, num_tokens=64, resolution=32, levels=3)


def reference_for(config) -> ReferenceAugVAE:
    return ReferenceAugVAE(
        hidden=config.hidden_dim, mults=config.ch_mult, inner=config.inner_ch_mult,
        n_res=config.num_res_blocks, z=config.z_channels, dim=config.codebook_dim,
        k=config.num_tokens, levels=config.levels, single_level=config.single_level,
        use_attn=config.use_attn,
    )


def make_pair(single_level=None, seed=0, dtype=torch.float32, use_attn=False):
    """An lverse AugVAE and the reference with identical random weights."""
    torch.manual_seed(seed)
    model = lverse.AugVAE(lverse.AugVAEConfig(**SMALL, single_level=single_level, use_attn=use_attn))
    with torch.no_grad():
        # Spread the codebook like trained features so that codes are well separated.
        model.quantizers[0].embedding.weight.normal_(0, 0.5)
        model.quantizers[0].embedding.embed_avg.copy_(model.quantizers[0].embedding.weight)
    reference = reference_for(model.config)
    reference.load_state_dict(model.state_dict(), strict=True)
    return model.to(dtype), reference.to(dtype)


@pytest.fixture(params=[None, 1], ids=["ML", "SL"])
def pair(request):
    return make_pair(single_level=request.param)


@pytest.fixture
def images():
    torch.manual_seed(1)
    return torch.rand(2, 3, 32, 32) * 2 - 1


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device")


def cuda(test):
    """A test that needs a CUDA device: skipped without one, selected by `-m cuda`
    (scripts/gpu-check.sh runs exactly these on a GPU machine)."""
    return pytest.mark.cuda(pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")(test))


def pytest_addoption(parser):
    parser.addoption("--soak-seconds", type=float, default=150.0,
                     help="how long tests/test_soak.py runs (default 150 s, as in CI)")
