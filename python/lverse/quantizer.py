"""AugVAE's EMA vector quantizer (SPEC §2.4) as PyTorch modules, named as the official code
names them: ``quantizers.L.embedding.{weight, cluster_size, embed_avg}``, one codebook shared
by every level (the levels hold the same ``EmbeddingEMA``)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .vq import search


class EmbeddingEMA(nn.Module):
    """The codebook and its exponential moving averages. All three are parameters without
    gradient, as in the official code (so they are in every state_dict and move with the
    model); the codebook changes only through the EMA update."""

    _training_only_settings = ("decay", "eps")  # the native encode/decode never read them

    def __init__(self, num_tokens: int, dim: int, decay: float, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_tokens, dim), requires_grad=False)
        self.cluster_size = nn.Parameter(torch.zeros(num_tokens), requires_grad=False)
        self.embed_avg = nn.Parameter(self.weight.detach().clone(), requires_grad=False)
        self.decay = decay
        self.eps = eps

    @torch.no_grad()
    def update(self, flat: torch.Tensor, ids: torch.Tensor) -> None:
        """Moves cluster sizes and code sums towards this batch's, then renormalises. Per-code
        sums use index_add: the same sums as a one-hot matmul without an N x K temporary.
        The statistics are accumulated in fp32 whatever the module's dtype (a bf16 count
        stops growing at 256) and stored back in it."""
        k, d = self.weight.shape
        counts = torch.zeros(k, dtype=torch.float32, device=flat.device)
        counts.index_add_(0, ids, torch.ones_like(ids, dtype=torch.float32))
        sums = torch.zeros(k, d, dtype=torch.float32, device=flat.device).index_add_(0, ids, flat.float())
        cluster_size, embed_avg = self.cluster_size.float(), self.embed_avg.float()
        self.cluster_size.copy_(cluster_size.mul_(self.decay).add_(counts * (1.0 - self.decay)))
        self.embed_avg.copy_(embed_avg.mul_(self.decay).add_(sums * (1.0 - self.decay)))
        self.renormalize()

    @torch.no_grad()
    def renormalize(self) -> None:
        """The codebook from the statistics: code sums over Laplace-smoothed cluster sizes
        (in fp32). Also run after DDP ranks average their statistics."""
        cluster_size = self.cluster_size.float()
        n = cluster_size.sum()
        k = self.weight.shape[0]
        smoothed = (cluster_size + self.eps) / (n + k * self.eps) * n
        self.weight.copy_(self.embed_avg.float() / smoothed.unsqueeze(1))


class Quantized(NamedTuple):
    codes: torch.Tensor  # (B, D, H, W) straight-through: codebook values, encoder gradient
    commitment: torch.Tensor  # beta * mse(codes, z), gradient towards the encoder only
    ids: torch.Tensor  # (B, H*W) code ids in raster order


class EMAVectorQuantizer(nn.Module):
    """Nearest-code quantization with a straight-through gradient and a commitment loss.

    Distances and the EMA statistics are computed in the codebook's dtype with autocast
    off, so under ``torch.autocast`` (bf16/fp16 activations) they stay fp32: half-precision
    VQ training is a known source of NaNs."""

    _training_only_settings = ("beta",)

    def __init__(self, embedding: EmbeddingEMA, beta: float):
        super().__init__()
        self.embedding = embedding
        self.beta = beta

    def forward(self, z: torch.Tensor, update_ema: bool = False) -> Quantized:
        codebook = self.embedding.weight
        with torch.autocast(z.device.type, enabled=False):
            z = z.to(codebook.dtype)
            b, d, h, w = z.shape
            flat = z.permute(0, 2, 3, 1).reshape(-1, d)
            ids, _ = search(flat.detach(), codebook)
            # The codes before this batch's update moves the codebook (as the official code),
            # back in (B, D, H, W) before the straight-through sum: mixing that layout with a
            # permuted view trips inductor's stride ordering under dynamic shapes.
            looked_up = F.embedding(ids, codebook).view(b, h, w, d).permute(0, 3, 1, 2).contiguous()
            if update_ema:
                _refuse_recompute()
                self.embedding.update(flat.detach(), ids)
            commitment = self.beta * F.mse_loss(looked_up.detach(), z)
            straight_through = z + (looked_up - z).detach()
        return Quantized(straight_through, commitment, ids.view(b, h * w))


def _refuse_recompute() -> None:
    """Activation checkpointing reruns a forward during backward. Rerun here, the EMA
    update would move the codebook a second time and the rerun would quantize with the moved
    codebook, so the gradients would belong to other activations: refuse instead."""
    if not torch.compiler.is_compiling() and torch._C._current_graph_task_id() != -1:
        raise RuntimeError(
            "AugVAE's EMA codebook update ran again during backward (activation checkpointing "
            "around a quantizer recomputes it with a moved codebook). Checkpoint the encoder and "
            "decoder levels instead (e.g. model.encoders[0].down[i]), or set model.ema_update = False."
        )
