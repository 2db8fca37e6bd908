"""An independent, plain-PyTorch AugVAE written from SPEC §2 (not from lverse's code).

It is the oracle of the parity tests: same state_dict names as the official checkpoints,
so lverse's weights load into it with ``load_state_dict(strict=True)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


def swish(x):
    return x * torch.sigmoid(x)


class ResBlock(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.norm1, self.conv1 = norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        if c_in != c_out:
            self.nin_shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x):
        h = self.conv2(swish(self.norm2(self.conv1(swish(self.norm1(x))))))
        skip = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return skip + h


class Down(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Up(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Attn(nn.Module):
    """Single-head spatial self-attention over all positions (taming's AttnBlock)."""

    def __init__(self, c):
        super().__init__()
        self.norm = norm(c)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x):
        b, c, h, w = x.shape
        n = self.norm(x)
        q = self.q(n).flatten(2).transpose(1, 2)            # b, hw, c
        k = self.k(n).flatten(2)                            # b, c, hw
        att = torch.softmax(q @ k * c**-0.5, dim=2)         # b, hw(query), hw(key)
        out = (self.v(n).flatten(2) @ att.transpose(1, 2)).view(b, c, h, w)
        return x + self.proj_out(out)


class Mid(nn.Module):
    def __init__(self, c, use_attn=False):
        super().__init__()
        self.block_1, self.block_2 = ResBlock(c, c), ResBlock(c, c)
        if use_attn:
            self.attn_1 = Attn(c)

    def forward(self, x):
        x = self.block_1(x)
        if hasattr(self, "attn_1"):
            x = self.attn_1(x)
        return self.block_2(x)


def run_level(level, h):
    for i, block in enumerate(level.block):
        h = block(h)
        if hasattr(level, "attn"):
            h = level.attn[i](h)
    return h


class Encoder(nn.Module):
    def __init__(self, c_in, hidden, mults, n_res, z, use_attn=False):
        super().__init__()
        self.conv_in = nn.Conv2d(c_in, hidden, 3, padding=1)
        self.down = nn.ModuleList()
        c = hidden
        for i, m in enumerate(mults):
            level = nn.Module()
            level.block = nn.ModuleList()
            for _ in range(n_res):
                level.block.append(ResBlock(c, hidden * m))
                c = hidden * m
            if use_attn and i == len(mults) - 1:  # the quantized grid's resolution
                level.attn = nn.ModuleList(Attn(c) for _ in range(n_res))
            if i != len(mults) - 1:
                level.downsample = Down(c)
            self.down.append(level)
        self.mid = Mid(c, use_attn)
        self.norm_out = norm(c)
        self.conv_out = nn.Conv2d(c, z, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for level in self.down:
            h = run_level(level, h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        return self.conv_out(swish(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    def __init__(self, z_in, hidden, mults, n_res, c_out, use_attn=False):
        super().__init__()
        c = hidden * mults[-1]
        self.conv_in = nn.Conv2d(z_in, c, 3, padding=1)
        self.mid = Mid(c, use_attn)
        levels = []
        for i in reversed(range(len(mults))):
            level = nn.Module()
            level.block = nn.ModuleList()
            for _ in range(n_res + 1):
                level.block.append(ResBlock(c, hidden * mults[i]))
                c = hidden * mults[i]
            if use_attn and i == len(mults) - 1:  # the input grid's resolution
                level.attn = nn.ModuleList(Attn(c) for _ in range(n_res + 1))
            if i != 0:
                level.upsample = Up(c)
            levels.append(level)
        self.up = nn.ModuleList(reversed(levels))  # up.0 is the finest level
        self.norm_out = norm(c)
        self.conv_out = nn.Conv2d(c, c_out, 3, padding=1)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = run_level(level, h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))


class Codebook(nn.Module):
    def __init__(self, k, d):
        super().__init__()
        w = torch.randn(k, d)
        self.weight = nn.Parameter(w, requires_grad=False)
        self.cluster_size = nn.Parameter(torch.zeros(k), requires_grad=False)
        self.embed_avg = nn.Parameter(w.clone(), requires_grad=False)


class Quantizer(nn.Module):
    def __init__(self, k, d, beta=0.25, decay=0.99, eps=1e-5):
        super().__init__()
        self.embedding = Codebook(k, d)
        self.k, self.beta, self.decay, self.eps = k, beta, decay, eps

    def forward(self, z, update):
        zp = z.permute(0, 2, 3, 1)
        flat = zp.reshape(-1, zp.shape[-1])
        w = self.embedding.weight
        d = flat.pow(2).sum(1, keepdim=True) + w.pow(2).sum(1) - 2 * torch.einsum("bd,nd->bn", flat, w)
        ids = d.argmin(1)
        zq = F.embedding(ids, w).view(zp.shape)
        if update:
            onehot = F.one_hot(ids, self.k).type(flat.dtype)
            e = self.embedding
            with torch.no_grad():
                e.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
                e.embed_avg.mul_(self.decay).add_(onehot.t() @ flat, alpha=1 - self.decay)
                n = e.cluster_size.sum()
                smoothed = (e.cluster_size + self.eps) / (n + self.k * self.eps) * n
                e.weight.copy_(e.embed_avg / smoothed.unsqueeze(1))
        loss = self.beta * F.mse_loss(zq.detach(), zp)
        zq = zp + (zq - zp).detach()
        return zq.permute(0, 3, 1, 2), loss, ids.view(z.shape[0], -1)


class ReferenceAugVAE(nn.Module):
    """ML when ``single_level`` is None, else the SL fine-tune keeping that level."""

    def __init__(self, hidden=128, mults=(1, 2, 4), inner=(2, 4), n_res=2, z=256, dim=256,
                 k=8192, levels=4, single_level=None, use_attn=False):
        super().__init__()
        self.levels, self.single_level = levels, single_level
        a = use_attn
        self.encoders = nn.ModuleList(
            [Encoder(3, hidden, mults, n_res, z, a)]
            + [Encoder(z, hidden, inner, n_res, z, a) for _ in range(levels - 1)]
        )
        self.pre_quants = nn.ModuleList(nn.Conv2d(z, dim, 1) for _ in range(levels))
        self.quantizers = nn.ModuleList(Quantizer(k, dim) for _ in range(levels))
        self.post_quants = nn.ModuleList(nn.Conv2d(dim, z, 1) for _ in range(levels))
        decoders = [Decoder(z if i == 0 else 2 * z, hidden, inner, n_res, z, a) for i in range(levels - 1)]
        decoders.append(Decoder(z if levels == 1 else 2 * z, hidden, mults, n_res, 3, a))
        self.decoders = nn.ModuleList(decoders)
        for i in range(1, levels):  # the official weight sharing
            self.pre_quants[i].weight = self.pre_quants[0].weight
            self.post_quants[i].weight = self.post_quants[0].weight
            for name in ("weight", "cluster_size", "embed_avg"):
                setattr(self.quantizers[i].embedding, name, getattr(self.quantizers[0].embedding, name))
        if single_level is not None:  # setup_finetune
            j = single_level
            del self.decoders[: levels - j - 1]
            del self.encoders[j + 1 :]
            self.connectors = nn.ModuleList(nn.Conv2d(z, 2 * z, 1) for _ in range(len(self.decoders)))

    def quantize_all(self, x, update):
        codes, ids, loss, h = [], [], 0, x
        for i, encoder in enumerate(self.encoders):
            h = encoder(h)
            q, level_loss, level_ids = self.quantizers[i](self.pre_quants[i](h), update)
            codes.append(q)
            ids.append(level_ids)
            loss = loss + level_loss
        return codes, ids, loss

    def decode_codes(self, codes):
        if self.single_level is not None:
            d = self.post_quants[0](codes[-1])
            for connector, decoder in zip(self.connectors, self.decoders, strict=True):
                d = decoder(connector(d))
            return d
        d = None
        for i, decoder in enumerate(self.decoders):
            q = self.post_quants[i](codes[-(i + 1)])
            d = decoder(q if d is None else torch.cat([q, d], 1))
        return d

    def forward(self, x):
        codes, _, loss = self.quantize_all(x, self.training)
        return self.decode_codes(codes), loss

    @torch.no_grad()
    def encode(self, x):
        _, ids, _ = self.quantize_all(x, False)
        if self.single_level is not None:
            return ids[self.single_level]
        return torch.cat(ids, 1)

    @torch.no_grad()
    def decode(self, ids):
        b = ids.shape[0]
        if self.single_level is not None:
            n = ids.shape[1]
            side = int(round(n**0.5))
            w = self.quantizers[self.single_level].embedding.weight
            return self.decode_codes([F.embedding(ids, w).view(b, side, side, -1).permute(0, 3, 1, 2)])
        codes, start = [], 0
        n_total = ids.shape[1]
        # level sides fine to coarse: s, s/2, s/4, ... with sum of squares = n_total
        s = 1
        while sum((s >> i) ** 2 for i in range(self.levels)) < n_total:
            s *= 2
        for i in range(self.levels):
            side = s >> i
            part = ids[:, start : start + side * side]
            start += side * side
            w = self.quantizers[i].embedding.weight
            codes.append(F.embedding(part, w).view(b, side, side, -1).permute(0, 3, 1, 2))
        return self.decode_codes(codes)
