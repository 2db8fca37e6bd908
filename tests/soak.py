"""Soak: lverse under the mixed load of a training job and a server, for a bounded time.

Three threads in this process and two forked worker processes (with a second thread each)
draw calls at random from one menu: ``caption`` and ``generate`` on the default model,
``images.load`` of batches of every format with corrupt and truncated files among them,
``vq.nearest``, the bad inputs of the README's list, and (in the main thread) Ctrl-C in
the middle of a long generation. Every call must return exactly what the same call
returned single-threaded before the soak began, or raise the exception documented for
it; no process may die or hang; and after a warm-up, each process's RSS must grow by less
than 5 MB per 1000 calls. One summary line is printed (the README quotes it).

It runs in a fresh interpreter (as a user's job would, not inside a test runner that
has already done other work): ``tests/test_soak.py`` runs it for 150 s in the suite (in
60 s each process makes about 1000 calls, too few to resolve 5 MB per 1000 calls: single
CI runs then read up to +10). Alone, and longer:
    python tests/soak.py --seconds 600
    python -m pytest -m soak -s tests/test_soak.py --soak-seconds 600
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import gc
import json
import multiprocessing
import os
import queue
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lverse
import numpy as np
import torch
from lverse import BiART, CheckpointError, ImageError
from lverse.data import shapes
from PIL import Image

PARENT_THREADS = 3
WORKERS = 2
WORKER_THREADS = 2
# RSS is measured from the end of the warm-up (each thread has made every call twice, and
# this fraction of the time has passed) to the end of the run.
WARMUP_FRACTION = 0.2
MAX_GROWTH_MB_PER_1000 = 5.0
# A process that has not reported this long after its deadline has hung.
HANG_MARGIN_S = 120
INTERRUPT_EVERY_S = 5.0
SAMPLE_EVERY_S = 0.5


@dataclass
class Call:
    """One entry of the menu: ``run()`` either returns a value equal to the single-threaded
    one (``same``), or raises ``error`` with a message matching ``match``."""

    name: str
    run: Callable[[], Any]
    weight: int = 1
    error: type[BaseException] | None = None
    match: str = ""
    expected: Any = field(default=None, repr=False)


def _pixels(images) -> tuple[bytes, ...]:
    return tuple(np.asarray(im).tobytes() for im in images)


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _write_files(root) -> dict[str, str]:
    """A scene in every format lverse reads, and damaged files: a JPEG and a PNG cut in
    half, random bytes named .png, an empty file."""
    image, _ = shapes.scene(2_000_000_017)
    image = image.resize((96, 80))
    files = {}
    for fmt, ext in [("PNG", "png"), ("JPEG", "jpg"), ("GIF", "gif"), ("WEBP", "webp"), ("BMP", "bmp"),
                     ("TIFF", "tif")]:
        path = root / f"scene.{ext}"
        image.save(path, fmt)
        files[ext] = str(path)
    for ext in ("jpg", "png"):
        data = open(files[ext], "rb").read()
        path = root / f"cut.{ext}"
        path.write_bytes(data[: len(data) // 2])
        files[f"cut_{ext}"] = str(path)
    path = root / "noise.png"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    files["noise"] = str(path)
    path = root / "empty.jpg"
    path.write_bytes(b"")
    files["empty"] = str(path)
    foreign = root / "foreign_model"
    foreign.mkdir()
    (foreign / "augvae.safetensors").write_bytes(b"not a checkpoint at all")
    (foreign / "biart.safetensors").write_bytes(b"not a checkpoint either")
    files["foreign_model"] = str(foreign)
    return files


def _menu(files: dict[str, str]) -> list[Call]:
    scene = [np.asarray(shapes.scene(2_000_000_000 + i)[0]) for i in range(3)]
    scene_tensor = lverse.images.load(Image.fromarray(scene[2]), size=64)
    z = torch.randn(512, 64, generator=torch.Generator().manual_seed(1))
    codebook = torch.randn(300, 64, generator=torch.Generator().manual_seed(2))
    nan_image = scene[0].astype(np.float32) / 255
    nan_image[3, 4, 1] = np.nan
    formats = [files[k] for k in ("png", "jpg", "gif", "webp", "bmp", "tif")]
    load = lverse.images.load
    return [
        Call("caption a file", lambda: lverse.caption(files["png"]), 2),
        Call("caption a mixed batch", lambda: tuple(lverse.caption([files["jpg"], scene[0], scene_tensor],
                                                                   candidates=4)), 1),
        Call("caption sampled", lambda: lverse.caption(scene[1], greedy=False, seed=5, candidates=2), 1),
        *[Call(f"generate seed {s}", lambda s=s, text=text: _pixels(lverse.generate(text, n=2, candidates=3, seed=s)))
          for s, text in [(0, "a large green triangle at the top"), (1, "a small red circle at the center")]],
        Call("load every format", lambda: load(formats, size=64), 8),
        Call("load at 256 px", lambda: load(formats[:3], size=256), 3),
        Call("vq.nearest", lambda: lverse.vq.nearest(z, codebook), 8),
        # Damaged files, alone and inside batches.
        Call("load a cut JPEG in a batch", lambda: load([files["png"], files["cut_jpg"], files["bmp"]], size=64), 3,
             ImageError, r"cut\.jpg"),
        Call("load a cut PNG", lambda: load(files["cut_png"], size=64), 2, ImageError, r"cut\.png"),
        Call("load random bytes", lambda: load([files["gif"], files["noise"]], size=64), 2, ImageError,
             r"noise\.png"),
        Call("load an empty file", lambda: load(files["empty"], size=64), 1, ImageError, r"empty\.jpg"),
        Call("caption a cut JPEG", lambda: lverse.caption([files["png"], files["cut_jpg"]]), 2, ImageError,
             r"cut\.jpg"),
        Call("load a missing file", lambda: load(files["png"] + ".missing", size=64), 1, FileNotFoundError,
             r"image file not found"),
        # The README's refused inputs.
        Call("generate empty text", lambda: lverse.generate(""), 1, ValueError, "empty"),
        Call("generate unknown words", lambda: lverse.generate("a purple elephant"), 1, ValueError,
             "vocabulary.*purple"),
        Call("generate None", lambda: lverse.generate(None), 1, TypeError, "NoneType"),
        Call("generate bytes", lambda: lverse.generate(b"a red circle"), 1, TypeError, "bytes"),
        Call("caption no images", lambda: lverse.caption([]), 1, ValueError, "no images"),
        Call("caption an empty batch", lambda: lverse.caption(torch.zeros(0, 3, 64, 64)), 1, ValueError,
             "no images"),
        Call("caption NaN pixels", lambda: lverse.caption([scene[0], nan_image]), 1, ValueError,
             r"images\[1\].*NaN"),
        Call("caption out of range", lambda: lverse.caption(torch.full((1, 3, 64, 64), 3.0)), 1, ValueError,
             r"\[-1, 1\]"),
        Call("caption a meta tensor", lambda: lverse.caption(torch.empty(1, 3, 64, 64, device="meta")), 1,
             ValueError, "meta"),
        Call("caption bytes", lambda: lverse.caption(b"\x89PNG"), 1, TypeError, "bytes"),
        Call("load a missing model", lambda: lverse.load(files["png"] + ".model"), 1, FileNotFoundError,
             "model not found"),
        Call("load a foreign model", lambda: lverse.load(files["foreign_model"]), 1, CheckpointError,
             "foreign_model"),
        Call("vq.nearest mismatched", lambda: lverse.vq.nearest(z, codebook[:, :32]), 1, ValueError, "64"),
    ]


def _settle(menu: list[Call]) -> None:
    """The single-threaded answers, before any other thread or process starts; and a
    check that every bad input raises what the menu says."""
    for call in menu:
        try:
            value = call.run()
        except BaseException as err:
            assert call.error is not None, f"{call.name}: raised {type(err).__name__}: {err}"
            assert isinstance(err, call.error) and re.search(call.match, str(err)), \
                f"{call.name}: expected {call.error.__name__} matching {call.match!r}, got {type(err).__name__}: {err}"
            continue
        assert call.error is None, f"{call.name}: returned instead of raising {call.error.__name__}"
        call.expected = value
        again = call.run()
        assert _same(value, again), f"{call.name}: two single-threaded runs differ"


class _Tally:
    """Calls, exceptions by type and wrong outcomes of one process, shared by its threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls = 0
        self.exceptions: collections.Counter[str] = collections.Counter()
        self.wrong: list[str] = []

    def record(self, exception: str | None = None, wrong: str | None = None) -> None:
        with self.lock:
            self.calls += 1
            if exception:
                self.exceptions[exception] += 1
            if wrong and len(self.wrong) < 10:
                self.wrong.append(wrong)


def _run_once(call: Call, tally: _Tally) -> None:
    try:
        value = call.run()
    except BaseException as err:
        if isinstance(err, KeyboardInterrupt):
            raise
        ok = call.error is not None and isinstance(err, call.error) and re.search(call.match, str(err))
        tally.record(type(err).__name__, None if ok else f"{call.name}: {type(err).__name__}: {err}")
        return
    if call.error is not None:
        tally.record(wrong=f"{call.name}: returned instead of raising {call.error.__name__}")
    else:
        tally.record(wrong=None if _same(call.expected, value) else f"{call.name}: a different answer")


_LIBC = ctypes.CDLL(None)


def _rss_mb() -> float:
    """Resident memory once garbage cycles are collected (a caught exception's traceback
    holds its frames, tensors included, until then) and glibc has handed its free pages
    back (malloc_trim): both otherwise swing RSS by megabytes from one sample to the next,
    while memory still held, a leak, stays."""
    gc.collect()
    _LIBC.malloc_trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _long_generation():
    """A BiART whose full run takes seconds (1016 steps), so that Ctrl-C lands inside it."""
    torch.manual_seed(0)
    model = BiART(vocab_size=512, block_size=1024, n_layer=4, n_head=4, n_embd=128).eval()
    idx = torch.randint(0, 512, (2, 8), generator=torch.Generator().manual_seed(3))
    return model, idx, torch.zeros_like(idx)


def _interrupt(model, idx, seg, expected_short, tally: _Tally, latencies: list[float]) -> None:
    """Ctrl-C 0.2 s into a long generation: KeyboardInterrupt, soon, and the model still
    gives the same short generation afterwards."""
    sent: list[float] = []

    def send():
        sent.append(time.perf_counter())
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    timer = threading.Timer(0.2, send)
    timer.start()
    try:
        model.generate(idx, seg, 1016, greedy=True)
        tally.record(wrong="long generation: finished before Ctrl-C (make it longer)")
    except KeyboardInterrupt:
        latencies.append(time.perf_counter() - sent[0])
        tally.record("KeyboardInterrupt")
    finally:
        timer.join()
    short = model.generate(idx, seg, 4, greedy=True)
    tally.record(wrong=None if torch.equal(short, expected_short) else "generation after Ctrl-C differs")


class _Gate:
    """Lets the sampling thread hold the others between two calls, so that RSS is read
    with no call in flight: a call's working memory (a batch of images, a generation)
    otherwise moves RSS by about 10 MB from one sample to the next."""

    def __init__(self, others: int):
        self.cond = threading.Condition()
        self.closed = False
        self.running = others  # other threads still inside their loop
        self.held = 0

    def between_calls(self) -> None:
        with self.cond:
            while self.closed:
                self.held += 1
                self.cond.notify_all()
                self.cond.wait()
                self.held -= 1

    def leave(self) -> None:
        with self.cond:
            self.running -= 1
            self.cond.notify_all()

    def quiet(self, read: Callable[[], float], timeout: float) -> float | None:
        """``read()`` once every other thread is held or gone; None if one stays in its
        call for ``timeout`` seconds (a hang)."""
        with self.cond:
            self.closed = True
            try:
                if not self.cond.wait_for(lambda: self.held == self.running, timeout):
                    return None
                return read()
            finally:
                self.closed = False
                self.cond.notify_all()


def _soak(menu: list[Call], seconds: float, threads: int, seed: int, interrupts: bool) -> dict:
    """Runs the menu on ``threads`` threads (the calling one included) until the deadline."""
    tally = _Tally()
    start = time.monotonic()
    deadline = start + seconds
    weights = np.array([c.weight for c in menu], float)
    weights /= weights.sum()
    samples: list[tuple[int, float]] = []  # (calls so far, RSS), from the end of the warm-up
    errors: list[str] = []
    gate = _Gate(threads - 1)
    warmed = threading.Semaphore(0)

    def warm_up() -> None:
        """Every call of the menu, twice, on this thread: its first calls set up caches,
        pools and malloc arenas that are no leak."""
        for _ in range(2):
            for call in menu:
                _run_once(call, tally)
        warmed.release()

    def loop(index: int) -> None:
        rng = np.random.default_rng([seed, index])
        try:
            warm_up()
            while time.monotonic() < deadline:
                gate.between_calls()
                _run_once(menu[rng.choice(len(menu), p=weights)], tally)
        except BaseException as err:  # a thread must not die silently
            errors.append(f"thread {index}: {type(err).__name__}: {err}")
        finally:
            gate.leave()

    others = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(1, threads)]
    for t in others:
        t.start()

    latencies: list[float] = []
    if interrupts:
        model, idx, seg = _long_generation()
        expected_short = model.generate(idx, seg, 4, greedy=True)
    rng = np.random.default_rng([seed, 0])
    warm_up()
    for _ in range(threads):
        warmed.acquire()
    warm_at = max(start + seconds * WARMUP_FRACTION, time.monotonic())
    next_interrupt, next_sample = start + 1.0, warm_at
    while (now := time.monotonic()) < deadline:
        if now >= next_sample:
            rss = gate.quiet(lambda: (tally.calls, _rss_mb()), HANG_MARGIN_S)
            if rss is None:
                errors.append(f"a thread stayed in one call for {HANG_MARGIN_S} s (hang)")
                break
            samples.append(rss)
            next_sample = time.monotonic() + SAMPLE_EVERY_S
        elif interrupts and now >= next_interrupt:
            _interrupt(model, idx, seg, expected_short, tally, latencies)
            next_interrupt = time.monotonic() + INTERRUPT_EVERY_S
        else:
            _run_once(menu[rng.choice(len(menu), p=weights)], tally)
    for t in others:
        t.join(HANG_MARGIN_S)
        if t.is_alive():
            errors.append("a thread is still running its last call long after the deadline (hang)")
    return dict(
        calls=tally.calls, exceptions=dict(tally.exceptions), wrong=tally.wrong, errors=errors,
        samples=samples, growth_per_1000=_growth_per_1000(samples),
        max_interrupt_latency=max(latencies, default=None), interrupts=len(latencies),
    )


def _growth_per_1000(samples: list[tuple[int, float]], windows: int = 4) -> float:
    """RSS growth in MB per 1000 calls along its floor: the samples are cut into
    ``windows`` runs of consecutive samples, and a least-squares line goes through each
    run's lowest RSS (against its mean call count). A leak raises the floor; what a thread's
    last call left cached (up to about 15 MB even in a quiet moment) lifts single samples only."""
    if len(samples) < 2 * windows:
        return 0.0
    runs = np.array_split(np.array(samples, float), windows)
    calls = np.array([run[:, 0].mean() for run in runs])
    floors = np.array([run[:, 1].min() for run in runs])
    return float(np.polyfit(calls, floors, 1)[0] * 1000)


def _worker(menu: list[Call], seconds: float, seed: int, results) -> None:
    # The answers again, single-threaded, here: a forked child runs libtorch on one thread
    # (lverse._fork), and AugVAE's decoder rounds differently on one thread than on two
    # (by up to 3e-6, enough to flip an 8-bit level of a generated image).
    _settle(menu)
    results.put((seed, _soak(menu, seconds, WORKER_THREADS, seed, interrupts=False)))


def run(seconds: float, root: Path) -> tuple[str, list[str]]:
    """The soak, in this process and its workers: (the summary line, what went wrong)."""
    menu = _menu(_write_files(root))
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _settle(menu)
        # Forked after the parent used every pool, as DataLoader workers are.
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        workers = [context.Process(target=_worker, args=(menu, seconds, seed, results), daemon=True)
                   for seed in range(1, WORKERS + 1)]
        for w in workers:
            w.start()
        parent = _soak(menu, seconds, PARENT_THREADS, 0, interrupts=True)
        reports = {}
        for _ in workers:
            try:
                seed, report = results.get(timeout=HANG_MARGIN_S)
            except queue.Empty:
                break
            reports[seed] = report
        for w in workers:
            w.join(10)
            if w.is_alive():
                w.kill()
    finally:
        signal.signal(signal.SIGINT, previous)

    everyone = [("parent", parent)] + [(f"worker {s}", reports[s]) for s in sorted(reports)]
    exceptions: collections.Counter[str] = collections.Counter()
    for _, report in everyone:
        exceptions.update(report["exceptions"])
    calls = sum(r["calls"] for _, r in everyone)
    growth = ", ".join(f"{name} {r['growth_per_1000']:+.2f}" for name, r in everyone)
    summary = (
        f"soak {seconds:.0f} s, {PARENT_THREADS} threads + {WORKERS} forked workers x {WORKER_THREADS} threads: "
        f"{calls} calls, exceptions {dict(sorted(exceptions.items()))}, "
        f"{sum(len(r['wrong']) for _, r in everyone)} wrong, "
        f"{WORKERS - len(reports)} workers lost; Ctrl-C {parent['interrupts']}x, "
        f"stopped within {parent['max_interrupt_latency'] or 0:.3f} s; "
        f"RSS growth after warm-up (MB per 1000 calls): {growth}"
    )
    problems = []
    if len(reports) != WORKERS:
        problems.append(f"{WORKERS - len(reports)} workers died or hung: exit codes {[w.exitcode for w in workers]}")
    for name, report in everyone:
        problems += [f"{name}: {e}" for e in report["errors"] + report["wrong"]]
        if report["calls"] == 0:
            problems.append(f"{name}: made no calls")
        if report["growth_per_1000"] >= MAX_GROWTH_MB_PER_1000:
            problems.append(f"{name}: RSS grows by {report['growth_per_1000']:.2f} MB per 1000 calls")
    if not parent["interrupts"] or parent["max_interrupt_latency"] >= 1.0:
        problems.append("Ctrl-C did not stop the long generation within 1 s")
    return summary, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to run (default 60)")
    parser.add_argument("--report", type=Path, help="also write the summary and problems here, as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lverse-soak-") as root:
        summary, problems = run(args.seconds, Path(root))
    print(summary)
    for problem in problems:
        print("PROBLEM:", problem)
    if args.report:
        args.report.write_text(json.dumps({"summary": summary, "problems": problems}))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
