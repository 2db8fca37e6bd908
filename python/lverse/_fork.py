"""One intra-op thread and no progress bars in forked children, so that lverse (and torch)
cannot deadlock there.

A child made by ``fork()`` (a DataLoader worker, multiprocessing's "fork" start method)
inherits the parent's memory but none of its threads. libtorch's OpenMP pool is such
memory: once the parent has run an intra-op-parallel operation (a convolution, a large
matmul), the first parallel operation in a forked child waits forever for pool threads that
do not exist there. lverse's own native work runs on a rayon pool that a child rebuilds for
itself (``src/pool.rs``), but AugVAE's convolutions run on libtorch's, and so does plain
torch code in the same child.

One thread makes libtorch run every operation inline, on the calling thread, which is also
what DataLoader does in its workers. A child that knows its parent never ran a parallel
operation may raise it again with ``torch.set_num_threads``.

Forked children also draw no progress bars (``lverse.progress``): tqdm guards its bars with
a thread lock that a child inherits locked when another thread of the parent held it at the
fork, and a worker's bars would only garble the parent's. ``set_progress(True)`` in the child
turns them back on.
"""

from __future__ import annotations

import os

import torch


def _one_thread_in_child() -> None:
    if torch.get_num_threads() > 1:
        torch.set_num_threads(1)
    from .progress import set_progress

    set_progress(False)


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_one_thread_in_child)
