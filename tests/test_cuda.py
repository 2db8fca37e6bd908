"""What needs a GPU, beyond the CUDA cases of test_vq, test_biart, test_augvae_parity and
test_cli: an official-size AugVAE-SL's ids against CPU (differing only at float-rounding
ties), half precision on CUDA, the sampler's seeds on CUDA, a training step of each model
under CUDA autocast, and the notebook API on CUDA. scripts/gpu-check.sh runs every `cuda`
test (`pytest -m cuda`); without a CUDA device they skip."""

import copy
import os
from pathlib import Path

import lverse
import pytest
import torch
from lverse import BiART
from PIL import Image
from torch import nn

from .conftest import make_pair

# LVERSE_CUDA_TEST_DEVICE=cpu runs these tests' code on the CPU (a dry run of the test code
# itself where there is no GPU: CPU against CPU proves nothing about CUDA).
DEVICE = os.environ.get("LVERSE_CUDA_TEST_DEVICE", "cuda")
_no_device = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="no CUDA device")


def cuda(test):
    return pytest.mark.cuda(_no_device(test))

V, T = 50, 40
EXAMPLE = Path(__file__).parents[1] / "examples" / "images" / "scene_0.png"


def official_sl() -> lverse.AugVAE:
    torch.manual_seed(0)
    model = lverse.AugVAE.sl().eval()
    with torch.no_grad():  # codebook spread like trained features
        model.quantizers[0].embedding.weight.normal_(0, 0.05)
    return model


def features64(model: lverse.AugVAE, x: torch.Tensor) -> torch.Tensor:
    """The tokenized level's features in float64 on CPU, one row per code."""
    m = copy.deepcopy(model).double().cpu()
    level = m.config.single_level
    h = x.double().cpu()
    with torch.no_grad():
        for i, (encoder, pre_quant) in enumerate(zip(m.encoders, m.pre_quants, strict=False)):
            h = encoder(h)
            if i == level:
                z = pre_quant(h)
                return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    raise AssertionError("no tokenized level")


@cuda
def test_official_sl_ids_match_cpu_except_ties(capsys):
    model = official_sl()
    x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        cpu_ids = model.encode(x).flatten()
        gpu = copy.deepcopy(model).to(DEVICE)
        gpu_ids = gpu.encode(x.to(DEVICE)).cpu().flatten()
        decoded = gpu.decode(gpu_ids.view(2, -1).to(DEVICE)).cpu()
    differ = (cpu_ids != gpu_ids).nonzero().flatten()
    with capsys.disabled():
        print(f"\nAugVAE-SL 256 px on CUDA: {100 * (1 - len(differ) / len(cpu_ids)):.3f}% of "
              f"{len(cpu_ids)} ids equal CPU's")
    assert len(differ) <= 0.01 * len(cpu_ids)
    if len(differ):
        z = features64(model, x)[differ]
        e = model.quantizers[0].embedding.weight.detach().double()
        d_cpu = (z - e[cpu_ids[differ]]).square().sum(1)
        d_gpu = (z - e[gpu_ids[differ]]).square().sum(1)
        assert ((d_cpu - d_gpu).abs() / d_cpu).max().item() < 1e-4, "a differing id is not a tie"
    assert (decoded - model.decode(gpu_ids.view(2, -1))).abs().max().item() < 1e-3


@cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models_run_natively_on_cuda(dtype):
    vae, _ = make_pair(single_level=1)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    ids = vae.eval().encode(x)
    half = copy.deepcopy(vae).to(DEVICE, dtype)
    half_ids = half.encode(x.to(DEVICE, dtype))
    assert half_ids.device.type == DEVICE and (half_ids.cpu() == ids).double().mean().item() >= 0.9
    out = half.decode(ids.to(DEVICE))
    assert out.dtype == dtype and torch.isfinite(out.float()).all()
    torch.manual_seed(0)
    model = BiART(V, T, n_layer=2, n_head=4, n_embd=32).eval()
    idx = torch.randint(0, V, (3, 8), generator=torch.Generator().manual_seed(2))
    seg = torch.zeros_like(idx)
    gen = copy.deepcopy(model).to(DEVICE, dtype).generate(idx.to(DEVICE), seg.to(DEVICE), 6, greedy=True)
    assert gen.device.type == DEVICE and gen.shape == (3, 6)
    assert (gen.cpu() == model.generate(idx, seg, 6, greedy=True)).double().mean().item() >= 0.5


@cuda
def test_sampler_seeds_on_cuda():
    torch.manual_seed(0)
    model = BiART(V, T, n_layer=2, n_head=4, n_embd=32).eval().to(DEVICE)
    idx = torch.randint(0, V, (4, 8), generator=torch.Generator().manual_seed(3)).to(DEVICE)
    seg = torch.zeros_like(idx)
    a = model.generate(idx, seg, 12, seed=7, token_range=(10, 40))
    assert torch.equal(a, model.generate(idx, seg, 12, seed=7, token_range=(10, 40)))
    assert not torch.equal(a, model.generate(idx, seg, 12, seed=8, token_range=(10, 40)))
    assert ((a >= 10) & (a < 40)).all()
    # Per-row seeds: a row's tokens depend on its own seed only, whatever the batch.
    rows = model.generate(idx, seg, 12, seed=[1, 2, 3, 4], token_range=(10, 40))
    alone = model.generate(idx[2:3], seg[2:3], 12, seed=[3], token_range=(10, 40))
    assert torch.equal(rows[2:3], alone)


@cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_training_steps_under_cuda_autocast(dtype):
    torch.manual_seed(0)
    model = BiART(V, T, n_layer=2, n_head=4, n_embd=32).to(DEVICE).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(DEVICE, enabled=dtype == torch.float16 and DEVICE == "cuda")
    idx = torch.randint(0, V, (3, 12), device=DEVICE)
    seg = (torch.arange(12, device=DEVICE) >= 6).long().expand(3, 12).contiguous()
    with torch.autocast(DEVICE, dtype=dtype):
        logits = model(idx, seg)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1).float(), idx.flatten())
    assert logits.dtype == dtype
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    assert torch.isfinite(loss) and model.tok_emb.weight.grad.dtype == torch.float32

    vae, _ = make_pair(single_level=1)
    vae = vae.to(DEVICE).train()
    embedding = vae.quantizers[0].embedding
    before = embedding.weight.clone()
    opt = torch.optim.Adam([p for p in vae.parameters() if p.requires_grad], lr=1e-3)
    x = (torch.rand(2, 3, 32, 32, device=DEVICE) * 2 - 1)
    with torch.autocast(DEVICE, dtype=dtype):
        recon, commitment = vae(x)
        loss = nn.functional.mse_loss(recon.float(), x) + commitment
    assert commitment.dtype == torch.float32  # distances and commitment stay fp32
    scaler.scale(loss).backward()
    scaler.step(opt)
    assert torch.isfinite(loss) and not torch.equal(embedding.weight, before)


@cuda
def test_notebook_api_on_cuda():
    from lverse.weights import default_model_dir

    cpu_model = lverse.load(default_model_dir())
    gpu_model = lverse.load(default_model_dir(), device=DEVICE)
    assert gpu_model.device.type == DEVICE
    image = Image.open(EXAMPLE)
    assert gpu_model.caption(image) == cpu_model.caption(image)
    pictures = gpu_model.generate("a large green triangle at the top", n=2, seed=0, output_type="pt")
    assert pictures.device.type == DEVICE and pictures.shape[0] == 2 and pictures.min() >= -1 and pictures.max() <= 1
    assert isinstance(gpu_model.caption(pictures[0]), str)
    (pil,) = gpu_model.generate("a small red circle", seed=0)
    assert pil.size == (gpu_model.augvae.config.resolution,) * 2
