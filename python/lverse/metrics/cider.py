"""CIDEr-D as the COCO caption evaluation computes it (pycocoevalcap's Cider, sigma 6).

Document frequencies come from the references of the images being evaluated, so a score
depends on which images are in the set; the idf uses log(number of images). Per image:
tf-idf vectors of 1- to 4-grams, the hypothesis's weights clipped at the reference's, a
Gaussian penalty on the length difference, averaged over n and over references, times 10.
As in pycocoevalcap the "length" in the penalty is the number of bigrams."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from .bleu import MAX_N, ngram_counts

SIGMA = 6.0


def _vector(counts: Counter, document_frequency: Counter, log_images: float):
    """Per n: the n-grams' tf-idf weights and the vector's norm; and the bigram count."""
    weights: list[dict] = [{} for _ in range(MAX_N)]
    squares = [0.0] * MAX_N
    bigrams = 0
    for gram, tf in counts.items():
        n = len(gram) - 1
        weight = float(tf) * (log_images - math.log(max(1.0, document_frequency[gram])))
        weights[n][gram] = weight
        squares[n] += weight**2
        if n == 1:
            bigrams += tf
    return weights, [math.sqrt(s) for s in squares], bigrams


def _similarity(hyp, ref) -> list[float]:
    (hyp_weights, hyp_norms, hyp_length), (ref_weights, ref_norms, ref_length) = hyp, ref
    delta = float(hyp_length - ref_length)
    values = []
    for n in range(MAX_N):
        value = 0.0
        for gram, weight in hyp_weights[n].items():
            ref_weight = ref_weights[n].get(gram, 0.0)
            value += min(weight, ref_weight) * ref_weight  # the "-D" clipping
        if hyp_norms[n] != 0 and ref_norms[n] != 0:
            value /= hyp_norms[n] * ref_norms[n]
        # math.e ** x rather than math.exp(x): the same operation as numpy's np.e ** x.
        values.append(value * math.e ** (-(delta**2) / (2 * SIGMA**2)))
    return values


def cider_d(references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> float:
    ref_counts = [[ngram_counts(ref.split()) for ref in refs] for refs in references]
    document_frequency: Counter = Counter()
    for counts in ref_counts:
        document_frequency.update(set().union(*counts))
    log_images = math.log(float(len(ref_counts)))
    scores = []
    for counts, hyp in zip(ref_counts, hypotheses, strict=True):
        hyp_vector = _vector(ngram_counts(hyp.split()), document_frequency, log_images)
        total = [0.0] * MAX_N
        for ref in counts:
            for n, value in enumerate(_similarity(hyp_vector, _vector(ref, document_frequency, log_images))):
                total[n] += value
        scores.append(sum(total) / MAX_N / len(counts) * 10.0)
    return sum(scores) / len(scores)
