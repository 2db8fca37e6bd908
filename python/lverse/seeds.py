"""Per-item seeds: what makes one image of a batch (or one sampled caption) reproducible
on its own.

A call's ``seed`` is not used as one stream for the whole batch; each item gets its own
seed, derived from the call's seed, what the item is conditioned on and its index
(image k of text t: ``item_seed(seed, ids of t, k)``), and the sampler gives every row its
own stream. So an item depends on (seed, t, k) only: not on the batch size, the number of
candidates, the other texts of the call or their order. The derived seeds are reported
(``return_seeds=True``, and ``PIL.Image.info["seed"]``), and a list of them given back as
``seed`` samples exactly those items again.
"""

from __future__ import annotations

import hashlib
import os

import torch

from ._checks import require_int


def fresh_seed() -> int:
    """A call seed for a call given none (so that its items still report their seeds)."""
    return int.from_bytes(os.urandom(8), "little")


def item_seed(seed: int, condition: bytes, index: int) -> int:
    """The 64-bit seed of item ``index`` of a call seeded ``seed``, conditioned on
    ``condition`` (BLAKE2b, so that neighbouring seeds and indices give unrelated streams)."""
    digest = hashlib.blake2b(digest_size=8, person=b"lverse-item")
    digest.update(seed.to_bytes(8, "little", signed=False))
    digest.update(index.to_bytes(8, "little", signed=True))
    digest.update(condition)
    return int.from_bytes(digest.digest(), "little")


def rows_of(ids: torch.Tensor) -> list[bytes]:
    """Each row of a (B, T) id tensor as bytes: what items conditioned on it are keyed by."""
    return [row.tobytes() for row in ids.detach().to("cpu", torch.int64).numpy()]


def require_seed(seed, name: str = "seed") -> int:
    """An int seed, reduced to 64 bits."""
    return require_int(seed, name) % 2**64
