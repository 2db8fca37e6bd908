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


@torch.no_grad()
def beam_search_loop(model, idx, seg, steps, width, token_range):
    """Textbook beam search without a cache, one prefix row at a time: every live beam is
    extended by every legal id, scored by summed log-probability renormalised over
    [lo, hi), and the ``width`` best (ties: earlier beam, then lower id) survive.
    Returns the best continuation (B, steps) and its score (B,) in float64."""
    lo, hi = token_range
    best_tokens, best_scores = [], []
    for row in range(idx.shape[0]):
        beams = [(0.0, [])]
        for _ in range(steps):
            prefixes = torch.stack([torch.cat([idx[row], torch.tensor(t, dtype=torch.long)]) for _, t in beams])
            segs = torch.cat([seg[row].expand(len(beams), -1), torch.ones(len(beams), len(beams[0][1]),
                                                                         dtype=torch.long)], 1)
            logp = model(prefixes, segs)[:, -1, lo:hi].log_softmax(-1).double()
            candidates = [(score + logp[b, i].item(), b, lo + i) for b, (score, _) in enumerate(beams)
                          for i in range(hi - lo)]
            candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
            beams = [(score, beams[b][1] + [token]) for score, b, token in candidates[:width]]
        best_scores.append(beams[0][0])
        best_tokens.append(beams[0][1])
    return torch.tensor(best_tokens, dtype=torch.long), torch.tensor(best_scores, dtype=torch.float64)


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
