"""AugVAE's convolutional layers as plain PyTorch modules (taming-transformers' design,
SPEC §2.1), under the official checkpoints' names: ``conv_in``, ``down.L.block.i``,
``down.L.attn.i``, ``down.L.downsample``, ``mid.block_1``/``attn_1``/``block_2``,
``up.L...``, ``norm_out``, ``conv_out``. Every container has its own ``forward``, so a hook,
an activation checkpoint or an FSDP unit can sit on any level or block."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """norm -> swish -> conv, twice, plus a skip (a 1x1 ``nin_shortcut`` when the width changes).
    The official dropout has p = 0 in every configuration, so there is none."""

    def __init__(self, c_in: int, c_out: int, groups: int):
        super().__init__()
        self.norm1 = group_norm(c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = group_norm(c_out, groups)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        skip = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions with 1x1 convolutions."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = group_norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        normed = self.norm(x)

        def positions(conv: nn.Conv2d) -> torch.Tensor:  # (B, 1 head, H*W, C)
            return conv(normed).reshape(b, 1, c, h * w).transpose(2, 3)

        attended = F.scaled_dot_product_attention(positions(self.q), positions(self.k), positions(self.v))
        return x + self.proj_out(attended.transpose(2, 3).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Zero-pad right and bottom by one, then a stride-2 3x3 convolution (taming's)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution of an encoder or decoder: ``block.i`` (each followed by ``attn.i``
    where attention is used), then ``downsample`` or ``upsample`` unless it is the last."""

    def __init__(self, blocks: list[ResnetBlock], attns: list[AttnBlock], resample: nn.Module | None,
                 resample_name: str):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attns)
        self.resample_name = resample_name
        setattr(self, resample_name, resample)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            h = block(h)
            if i < len(self.attn):
                h = self.attn[i](h)
        resample = getattr(self, self.resample_name)
        return h if resample is None else resample(h)


class Middle(nn.Module):
    """``block_1``, ``attn_1`` (where attention is used), ``block_2`` at constant width."""

    def __init__(self, channels: int, use_attn: bool, groups: int):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, groups)
        self.attn_1 = AttnBlock(channels, groups) if use_attn else None
        self.block_2 = ResnetBlock(channels, channels, groups)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.block_1(h)
        if self.attn_1 is not None:
            h = self.attn_1(h)
        return self.block_2(h)


class Encoder(nn.Module):
    """taming's Encoder with ``double_z=False``: one level per multiplier, attention (when
    used) at the last, coarsest level, whose grid is the quantized one."""

    def __init__(self, in_channels: int, hidden_dim: int, ch_mult: tuple[int, ...], num_res_blocks: int,
                 z_channels: int, use_attn: bool, groups: int):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, hidden_dim, 3, padding=1)
        block_in, levels = hidden_dim, []
        for level, mult in enumerate(ch_mult):
            last = level == len(ch_mult) - 1
            block_out = hidden_dim * mult
            blocks, attns = [], []
            for _ in range(num_res_blocks):
                blocks.append(ResnetBlock(block_in, block_out, groups))
                block_in = block_out
                if use_attn and last:
                    attns.append(AttnBlock(block_in, groups))
            levels.append(Level(blocks, attns, None if last else Downsample(block_in), "downsample"))
        self.down = nn.ModuleList(levels)
        self.mid = Middle(block_in, use_attn, groups)
        self.norm_out = group_norm(block_in, groups)
        self.conv_out = nn.Conv2d(block_in, z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    """taming's Decoder without an output activation. ``up`` is stored fine to coarse (the
    official order) and run coarse to fine; attention (when used) at the coarsest level."""

    def __init__(self, in_channels: int, out_channels: int, hidden_dim: int, ch_mult: tuple[int, ...],
                 num_res_blocks: int, use_attn: bool, groups: int):
        super().__init__()
        block_in = hidden_dim * ch_mult[-1]
        self.conv_in = nn.Conv2d(in_channels, block_in, 3, padding=1)
        self.mid = Middle(block_in, use_attn, groups)
        levels = []
        for level in reversed(range(len(ch_mult))):
            block_out = hidden_dim * ch_mult[level]
            blocks, attns = [], []
            for _ in range(num_res_blocks + 1):
                blocks.append(ResnetBlock(block_in, block_out, groups))
                block_in = block_out
                if use_attn and level == len(ch_mult) - 1:
                    attns.append(AttnBlock(block_in, groups))
            levels.append(Level(blocks, attns, Upsample(block_in) if level != 0 else None, "upsample"))
        self.up = nn.ModuleList(reversed(levels))
        self.norm_out = group_norm(block_in, groups)
        self.conv_out = nn.Conv2d(block_in, out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))
