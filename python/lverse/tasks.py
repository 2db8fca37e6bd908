"""BiART's two directions on ids: image codes from caption ids, caption ids from image
codes, likelihood scores, and self-reranking (the same model reads each candidate image
and scores the prompt: no CLIP needed)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from . import seeds
from ._checks import require_positive_int, require_tensor
from .layout import TokenLayout


def _check_pair(model, layout: TokenLayout) -> None:
    """The layout must be the one the model was built for: same vocabulary, and sequences
    that fit its block."""
    if not isinstance(layout, TokenLayout):
        raise TypeError(f"layout must be a TokenLayout, got {type(layout).__name__}")
    layout.require_fits(model.config)


def _require_candidates(candidates, rows: int, length: int, what: str) -> None:
    """Candidates (rows, C, length) for ``rows`` inputs."""
    require_tensor(candidates, what)
    if candidates.dim() != 3 or candidates.shape[0] != rows or candidates.shape[2] != length:
        raise ValueError(f"expected {what} of shape ({rows}, C, {length}), got {tuple(candidates.shape)}")


def _sample_options(greedy, temperature, top_k, top_p, seed):
    return dict(greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)


@torch.no_grad()
def generate_image_ids(model, layout: TokenLayout, text: torch.Tensor, *, candidates: int = 1,
                       temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                       seed: int | Sequence[Sequence[int]] | None = None, greedy: bool = False,
                       progress: Callable[[int, int], object] | None = None, return_seeds: bool = False):
    """Caption parts (B, text_len) -> AugVAE ids (B, candidates, image_len); all B x C
    candidates run as one batch.

    Candidate k of caption row t is sampled from its own seed, ``item_seed(seed, ids of
    row t, k)`` (see ``lverse.seeds``), so it depends on the seed, the caption and k alone.
    ``seed`` is an int, None (a fresh one) or B lists of ``candidates`` item seeds as
    reported, which samples exactly those items. ``return_seeds`` also returns the item
    seeds, B lists of ``candidates``."""
    _check_pair(model, layout)
    require_positive_int(candidates, "candidates")
    rows = text.shape[0]
    item_seeds = _item_seeds(seed, seeds.rows_of(text), candidates, "rows of caption ids")
    idx, seg = layout.text_to_image(text)
    idx = idx.repeat_interleave(candidates, 0)
    seg = seg.repeat_interleave(candidates, 0)
    flat = None if greedy else [s for row in item_seeds for s in row]
    out = model.generate(idx, seg, layout.image_len, token_range=layout.image_range, progress=progress,
                         pad_token=layout.pad, **_sample_options(greedy, temperature, top_k, top_p, flat))
    ids = (out - layout.image_offset).view(rows, candidates, layout.image_len)
    return (ids, item_seeds) if return_seeds else ids


def _item_seeds(seed, conditions: list[bytes], count: int, what: str) -> list[list[int]]:
    """``count`` item seeds for each of ``conditions``: derived from an int (or a fresh)
    call seed, or given as such lists."""
    if isinstance(seed, (list, tuple)):
        if len(seed) != len(conditions) or any(not isinstance(r, (list, tuple)) or len(r) != count for r in seed):
            raise ValueError(f"seed as item seeds must be {len(conditions)} lists ({what}) of {count} ints")
        return [[seeds.require_seed(s, f"seed[{i}][{k}]") for k, s in enumerate(row)] for i, row in enumerate(seed)]
    base = seeds.fresh_seed() if seed is None else seeds.require_seed(seed)
    return [[seeds.item_seed(base, condition, k) for k in range(count)] for condition in conditions]


# What sampled captions are conditioned on, for their item seeds (their image enters
# through the probabilities, so that a caption does not depend on the batch it is in).
CAPTION = b"caption"


@torch.no_grad()
def generate_caption_ids(model, layout: TokenLayout, image: torch.Tensor, *, beams: int | None = None,
                         greedy: bool = True, temperature: float = 1.0, top_k: int | None = None,
                         top_p: float | None = None, seed: int | Sequence[int] | None = None,
                         progress: Callable[[int, int], object] | None = None) -> torch.Tensor:
    """AugVAE ids (B, image_len) -> caption parts (B, text_len) ending in EOC and PAD.

    Greedy by default; ``beams=k`` runs beam search; ``greedy=False`` samples, each row
    from its own seed: ``seed`` is an int (every row then draws from ``item_seed(seed,
    CAPTION, 0)``, so a caption depends on the seed and its image alone), None (a fresh
    one) or B item seeds."""
    _check_pair(model, layout)
    if beams is not None:
        require_positive_int(beams, "beams")
    idx, seg = layout.image_to_text(image)
    common = dict(token_range=layout.caption_ranges, stop_token=layout.eoc, pad_token=layout.pad)
    if beams is not None and beams > 1:
        tokens, _ = model.beam_search(idx, seg, layout.text_len, beams=beams, **common)
        return tokens
    row_seeds = None
    if not greedy:
        if isinstance(seed, (list, tuple)):
            row_seeds = [seeds.require_seed(s, f"seed[{i}]") for i, s in enumerate(seed)]
        else:
            base = seeds.fresh_seed() if seed is None else seeds.require_seed(seed)
            row_seeds = [seeds.item_seed(base, CAPTION, 0)] * image.shape[0]
    return model.generate(idx, seg, layout.text_len, **common, progress=progress,
                          **_sample_options(greedy, temperature, top_k, top_p, row_seeds))



def _part_log_likelihood(model, idx, seg, start: int, length: int, legal: list[tuple[int, int]],
                         stop_token: int | None = None) -> torch.Tensor:
    """Sum over positions [start, start + length) of log p(token | prefix), with the
    distribution renormalised over the legal ids as the sampler draws; with ``stop_token``
    only positions up to and including its first occurrence count."""
    logits = model(idx, seg)[:, start - 1 : start - 1 + length]
    mask = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    for lo, hi in legal:
        mask[lo:hi] = True
    targets = idx[:, start : start + length]
    logp = logits.masked_fill(~mask, float("-inf")).log_softmax(-1)
    picked = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if stop_token is not None:
        is_stop = (targets == stop_token).long()
        picked = picked.masked_fill((is_stop.cumsum(1) - is_stop) > 0, 0.0)
    return picked.sum(1)


@torch.no_grad()
def score(model, layout: TokenLayout, text: torch.Tensor, image: torch.Tensor, *, given: str) -> torch.Tensor:
    """Log-likelihood (B,) of one part given the other.

    ``given="image"``: log p(caption | image), read as ``[SOI] image [SOC] caption``; the
    caption is scored up to and including EOC (padding carries no information).
    ``given="text"``: log p(image | caption), read as ``[SOC] caption [SOI] image``.
    """
    _check_pair(model, layout)
    require_tensor(text, "caption ids")
    require_tensor(image, "image ids")
    if given == "image":
        idx, seg = layout.image_to_text(image, text)
        return _part_log_likelihood(model, idx, seg, layout.image_len + 2, layout.text_len,
                                    layout.caption_ranges, stop_token=layout.eoc)
    if given == "text":
        idx, seg = layout.text_to_image(text, image)
        return _part_log_likelihood(model, idx, seg, layout.text_len + 2, layout.image_len, [layout.image_range])
    raise ValueError(f"given must be 'image' or 'text', got {given!r}")


@torch.no_grad()
def rerank_captions(model, layout: TokenLayout, image: torch.Tensor,
                    candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-reranking the other way: for images (B, image_len) and candidate captions
    (B, C, text_len), scores log p(image | caption) with the text-to-image direction of the
    same model: the caption under which the image is most likely explains it best.
    Returns (order (B, C) best first, scores (B, C))."""
    _check_pair(model, layout)
    layout.check_image_ids(image)
    _require_candidates(candidates, image.shape[0], layout.text_len, "candidate caption ids")
    b, c, t = candidates.shape
    flat_image = image.repeat_interleave(c, 0)
    scores = score(model, layout, candidates.reshape(b * c, t), flat_image, given="text").view(b, c)
    return scores.argsort(dim=1, descending=True, stable=True), scores


@torch.no_grad()
def rerank(model, layout: TokenLayout, text: torch.Tensor,
           candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-reranking: for captions (B, text_len) and candidate images (B, C, image_len),
    scores log p(caption | candidate) with the image-to-text direction of the same model.
    Returns (order (B, C) best first, scores (B, C))."""
    _check_pair(model, layout)
    layout.check_caption_ids(text)
    _require_candidates(candidates, text.shape[0], layout.image_len, "candidate image ids")
    b, c, n = candidates.shape
    flat_text = text.repeat_interleave(c, 0)
    scores = score(model, layout, flat_text, candidates.reshape(b * c, n), given="image").view(b, c)
    return scores.argsort(dim=1, descending=True, stable=True), scores
