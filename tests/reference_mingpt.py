"""Plain-PyTorch minGPT (2021 layout) with L-Verse's segment embedding, written from
SPEC §4 as the oracle for BiART: explicit masked softmax attention, no cache."""

import math

import torch
from torch import nn


class Attention(nn.Module):
    def __init__(self, d, heads, block):
        super().__init__()
        self.key, self.query, self.value, self.proj = (nn.Linear(d, d) for _ in range(4))
        self.register_buffer("mask", torch.tril(torch.ones(block, block)).view(1, 1, block, block))
        self.heads = heads

    def forward(self, x):
        b, t, c = x.shape
        def split(y):
            return y.view(b, t, self.heads, c // self.heads).transpose(1, 2)
        k, q, v = split(self.key(x)), split(self.query(x)), split(self.value(x))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.mask[:, :, :t, :t] == 0, float("-inf")).softmax(-1)
        return self.proj((att @ v).transpose(1, 2).contiguous().view(b, t, c))


class Block(nn.Module):
    def __init__(self, d, heads, block):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = Attention(d, heads, block)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(0.0))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class ReferenceBiART(nn.Module):
    def __init__(self, vocab, block, layers, heads, d):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab, d)
        self.seg_emb = nn.Embedding(2, d)
        self.pos_emb = nn.Parameter(torch.zeros(1, block, d))
        self.blocks = nn.Sequential(*[Block(d, heads, block) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx, seg):
        t = idx.shape[1]
        x = self.tok_emb(idx) + self.seg_emb(seg) + self.pos_emb[:, :t]
        return self.head(self.ln_f(self.blocks(x)))


@torch.no_grad()
def greedy_loop(model, idx, seg, steps, token_range=None):
    """minGPT's sample() with sample=False, segment ids appended as GEN, no cache."""
    out = []
    for _ in range(steps):
        logits = model(idx, seg)[:, -1]
        if token_range is not None:
            lo, hi = token_range
            logits = logits[:, lo:hi]
            nxt = logits.argmax(-1, keepdim=True) + lo
        else:
            nxt = logits.argmax(-1, keepdim=True)
        out.append(nxt)
        idx = torch.cat([idx, nxt], 1)
        seg = torch.cat([seg, torch.ones_like(nxt)], 1)
    return torch.cat(out, 1)


def controlled_logits_model(lverse_module_cls, logits: torch.Tensor):
    """A BiART whose every position outputs exactly ``logits`` (V,): ln_f emits a constant
    vector and the head copies it, so sampling can be checked against hand computations."""
    vocab = logits.numel()
    model = lverse_module_cls(vocab, 16, n_layer=1, n_head=1, n_embd=vocab).eval()
    with torch.no_grad():
        model.ln_f.weight.zero_()
        model.ln_f.bias.copy_(logits)
        model.head.weight.copy_(torch.eye(vocab))
    return model
