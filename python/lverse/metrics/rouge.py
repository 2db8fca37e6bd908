"""ROUGE-L as the COCO caption evaluation computes it (pycocoevalcap's Rouge): per image, the
F-measure (beta 1.2) of the best LCS precision and the best LCS recall over its
references, taken separately; then the mean over images."""

from __future__ import annotations

from collections.abc import Sequence

BETA = 1.2


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(refs: Sequence[str], hyp: str) -> float:
    # Split at single spaces, as pycocoevalcap does: an empty caption is one empty token,
    # so its length is 1, not 0.
    hyp_words = hyp.split(" ")
    precision = recall = 0.0
    for ref in refs:
        ref_words = ref.split(" ")
        common = lcs_length(ref_words, hyp_words)
        precision = max(precision, common / float(len(hyp_words)))
        recall = max(recall, common / float(len(ref_words)))
    if precision == 0 or recall == 0:
        return 0.0
    return ((1 + BETA**2) * precision * recall) / float(recall + BETA**2 * precision)


def mean_rouge_l(references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> float:
    scores = [rouge_l(refs, hyp) for refs, hyp in zip(references, hypotheses, strict=True)]
    return sum(scores) / len(scores)
