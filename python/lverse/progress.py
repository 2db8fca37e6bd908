"""Progress bars (tqdm.auto: a widget in notebooks, text in terminals) for calls that work
on more than one item and for long CLI commands. On by default; ``set_progress(False)``
or the environment variable ``LVERSE_PROGRESS=0`` silences them. A ``progress=`` callback
given to a call is called either way."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

_enabled: bool | None = None  # None: follow LVERSE_PROGRESS


def set_progress(enabled: bool) -> None:
    """Turns lverse's progress bars on or off for this process (over LVERSE_PROGRESS)."""
    if not isinstance(enabled, bool):
        raise TypeError(f"set_progress takes True or False, got {type(enabled).__name__}")
    global _enabled
    _enabled = enabled


def progress_enabled() -> bool:
    if _enabled is not None:
        return _enabled
    return os.environ.get("LVERSE_PROGRESS", "1").strip().lower() not in ("0", "false", "no", "off")


@contextlib.contextmanager
def steps(description: str, show: bool,
          callback: Callable[[int, int], object] | None = None) -> Iterator[Callable[[int, int], object] | None]:
    """A ``progress(done, total)`` hook for the sampler: it moves a bar (when ``show`` and
    bars are on) and calls ``callback``; None when there is neither."""
    if not (show and progress_enabled()):
        yield callback
        return
    from tqdm.auto import tqdm

    with tqdm(desc=description, unit="step", leave=False) as bar:
        def hook(done: int, total: int) -> object:
            if bar.total != total:
                bar.reset(total=total)
            bar.update(done - bar.n)
            return callback(done, total) if callback is not None else None

        yield hook
