"""lverse in child processes: DataLoader workers and multiprocessing, forked and spawned.

A forked child inherits the parent's memory but none of its threads. Once the parent has
used a thread pool (rayon's, libtorch's OpenMP pool), a child that waits on that pool
waits forever; so every test here first uses lverse in the parent (a batch of files, a
caption with the default model) and bounds every wait in the child with a timeout.
"""

from __future__ import annotations

import multiprocessing
import queue

import lverse
import numpy as np
import pytest
import torch
from PIL import Image

# A hang fails the test after this long instead of blocking the run.
TIMEOUT = 120


def _picture() -> np.ndarray:
    """A 64x64 RGB picture: a red square on blue."""
    pixels = np.zeros((64, 64, 3), np.uint8)
    pixels[..., 2] = 200
    pixels[16:48, 16:48] = (220, 30, 30)
    return pixels


def _work(files: list[str]) -> tuple[np.ndarray, str, int]:
    """What a child does with lverse: a batch of two files (decoded in parallel by lverse's
    pool) and a caption (AugVAE's convolutions on libtorch's pool, VQ search, BiART)."""
    batch = lverse.images.load(files, size=64)
    caption = lverse.caption(_picture())
    return batch.numpy(), caption, torch.get_num_threads()


def _child(files: list[str], results) -> None:
    results.put(_work(files))


class _Dataset(torch.utils.data.Dataset):
    def __init__(self, files: list[str]):
        self.files = files

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int):
        return _work(self.files)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("fork")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        path = root / f"picture{i}.png"
        Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def expected(files):
    """The parent's results, computed before any child starts: this is what starts the
    parent's pools (and loads the default model, which forked children inherit)."""
    lverse.images.load(files[0], size=64)
    batch, caption, _ = _work(files)
    assert caption
    return batch, caption


def _check(result, expected, forked: bool) -> None:
    batch, caption, threads = result
    assert np.array_equal(batch, expected[0])
    assert caption == expected[1]
    if forked:
        # lverse's fork handler: libtorch's inherited pool is unusable in a forked child.
        assert threads == 1


def test_dataloader_workers_forked(files, expected):
    loader = torch.utils.data.DataLoader(
        _Dataset(files), batch_size=None, num_workers=2, multiprocessing_context="fork", timeout=TIMEOUT
    )
    results = list(loader)
    assert len(results) == 4
    for result in results:
        _check(result, expected, forked=True)


def _run_child(context, target, args, what: str):
    """Runs ``target(*args, results)`` in a child process and returns what it puts on the
    queue; a child that gives nothing in TIMEOUT seconds (deadlocked) fails the test."""
    results = context.Queue()
    child = context.Process(target=target, args=(*args, results))
    child.start()
    try:
        result = results.get(timeout=TIMEOUT)
    except queue.Empty:
        pytest.fail(f"{what} gave no result in {TIMEOUT} s (deadlocked?)")
    finally:
        child.join(TIMEOUT)
        if child.is_alive():
            child.kill()
            child.join()
    assert child.exitcode == 0
    return result


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing_children(files, expected, method):
    context = multiprocessing.get_context(method)
    result = _run_child(context, _child, (files,), f"a {method} child using lverse")
    _check(result, expected, forked=method == "fork")


def test_plain_torch_in_a_forked_child(expected):
    """After the parent ran a parallel convolution (its caption did), torch alone in a forked
    child runs one without hanging, thanks to lverse's fork handler."""
    x, w = torch.randn(8, 16, 64, 64), torch.randn(32, 16, 3, 3)
    want = torch.nn.functional.conv2d(x, w)
    got = _run_child(multiprocessing.get_context("fork"), _conv_child, (x, w), "a convolution in a forked child")
    assert torch.allclose(torch.from_numpy(got), want, atol=1e-4)


def _conv_child(x: torch.Tensor, w: torch.Tensor, results) -> None:
    results.put(torch.nn.functional.conv2d(x, w).numpy())
