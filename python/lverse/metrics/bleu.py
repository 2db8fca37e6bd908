"""Corpus BLEU-1..4 as the COCO caption evaluation computes it (pycocoevalcap's bleu_scorer
with the "closest" reference length): clipped n-gram counts and lengths are summed over all
images before the precisions are taken, so this is not a mean of per-image BLEU."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

MAX_N = 4
# pycocoevalcap's constants: they keep 0/0 at 0 and a zero count from a log error.
_TINY = 1e-15
_SMALL = 1e-9


def ngram_counts(words: Sequence[str], max_n: int = MAX_N) -> Counter:
    return Counter(tuple(words[i : i + k]) for k in range(1, max_n + 1) for i in range(len(words) - k + 1))


def corpus_bleu(references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> list[float]:
    """BLEU-1..4 of tokenized ``hypotheses`` (one string per image) against the tokenized
    ``references`` of the same images."""
    correct = [0] * MAX_N
    guessed = [0] * MAX_N
    hyp_total = ref_total = 0
    for refs, hyp in zip(references, hypotheses, strict=True):
        words = hyp.split()
        counts = ngram_counts(words)
        max_ref: Counter = Counter()
        ref_lengths = []
        for ref in refs:
            ref_words = ref.split()
            ref_lengths.append(len(ref_words))
            max_ref |= ngram_counts(ref_words)  # | keeps the larger count of each n-gram
        # The reference length closest to the hypothesis's; a tie goes to the shorter.
        ref_total += min((abs(length - len(words)), length) for length in ref_lengths)[1]
        hyp_total += len(words)
        for k in range(MAX_N):
            guessed[k] += max(0, len(words) - k)
        for gram, count in counts.items():
            correct[len(gram) - 1] += min(max_ref[gram], count)
    scores = []
    product = 1.0
    for k in range(MAX_N):
        product *= float(correct[k] + _TINY) / (guessed[k] + _SMALL)
        scores.append(product ** (1.0 / (k + 1)))
    ratio = (hyp_total + _TINY) / (ref_total + _SMALL)
    if ratio < 1:  # brevity penalty
        scores = [s * math.exp(1 - 1 / ratio) for s in scores]
    return scores
