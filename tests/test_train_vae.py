"""train-vae's restart of unused codes: dead codes are split off busy ones, the EMA totals
are kept, and the codebook stays consistent with its statistics."""

import lverse
import torch
from lverse.train.vae import restart_dead_codes

from .conftest import SMALL


def test_restart_dead_codes_splits_busy_codes():
    torch.manual_seed(0)
    model = lverse.AugVAE(lverse.AugVAEConfig(**SMALL, single_level=1))
    emb = model.quantizers[0].embedding
    with torch.no_grad():
        emb.cluster_size.copy_(torch.rand(64) * 10 + 2)
        emb.cluster_size[[3, 7, 50]] = torch.tensor([0.0, 0.5, 0.99])
        emb.embed_avg.copy_(torch.randn(64, 16) * emb.cluster_size.unsqueeze(1))
        emb.renormalize()
    dead = [3, 7, 50]
    live_usage = emb.cluster_size.sum().item() - emb.cluster_size[dead].sum().item()
    live_codes = emb.weight.clone()

    restarted = restart_dead_codes(model, 1.0, torch.Generator().manual_seed(0))

    assert restarted == 3
    assert (emb.cluster_size >= 1.0).all()
    # The busy codes' usage is shared with the restarted ones, not created.
    torch.testing.assert_close(emb.cluster_size.sum().item(), live_usage, rtol=1e-5, atol=0)
    spread = live_codes.std(0).norm().item()
    for code in dead:
        distances = (live_codes - emb.weight[code]).norm(dim=1)
        distances[dead] = float("inf")
        source = distances.argmin().item()
        assert distances[source] < 0.5 * spread  # a live code plus a little noise
        # Source and copy now share the source's usage and keep its mean.
        torch.testing.assert_close(emb.cluster_size[code], emb.cluster_size[source])
    # The codebook is still the smoothed mean of its statistics (renormalised).
    n, k, eps = emb.cluster_size.sum(), 64, model.config.ema_eps
    smoothed = (emb.cluster_size + eps) / (n + k * eps) * n
    torch.testing.assert_close(emb.weight, emb.embed_avg / smoothed.unsqueeze(1))
    assert restart_dead_codes(model, 1.0, torch.Generator()) == 0
