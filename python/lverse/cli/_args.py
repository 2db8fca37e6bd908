"""argparse ``type=`` converters shared by the subcommands, so that a bad value stops the
command at parse time, before any model loads or training step runs, with a message that
names the value and what was expected."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def _int(text: str, expected: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def _float(text: str, expected: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    # nan passes no comparison, so without this it would slip through every range check.
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def _checked(parse, expected: str, accept):
    """A converter: ``parse`` the text (naming ``expected`` if it cannot), then require
    ``accept(value)``."""

    def convert(text: str):
        value = parse(text, expected)
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return convert


positive_int = _checked(_int, "an integer >= 1", lambda v: v >= 1)
nonnegative_int = _checked(_int, "an integer >= 0", lambda v: v >= 0)
positive_float = _checked(_float, "a number > 0", lambda v: v > 0)
fraction = _checked(_float, "a fraction between 0 and 1", lambda v: 0 <= v <= 1)


def json_object(text: str) -> dict:
    """A JSON object given inline or as the path of a file holding one."""
    path = Path(text)
    # Inline JSON first: a whole config is longer than a file name may be, and asking the
    # filesystem about it raises OSError (which argparse does not catch).
    if text.lstrip().startswith("{"):
        source, origin = text, repr(text)
    elif path.is_file():
        source, origin = path.read_text(), f"file {text!r}"
    elif path.exists():
        raise argparse.ArgumentTypeError(f"{text!r} is not a file; expected a JSON object or a .json file")
    else:
        # Neither a file nor JSON-looking text: most likely a mistyped path, so say that
        # rather than report a JSON syntax error at column 1.
        raise argparse.ArgumentTypeError(f"no such file {text!r}; expected a JSON object or a .json file")
    try:
        value = json.loads(source)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"{origin} is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{origin} holds a JSON {type(value).__name__}; expected a JSON object")
    return value


def _writable_image_extensions() -> set[str]:
    from PIL import Image

    Image.init()  # registers every plugin, not just the few PIL preloads
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE}


def image_file(text: str) -> Path:
    """A path to write one image to, whose extension (.png, .jpg, ...) PIL can write;
    checked up front so that a long generation is not lost at the save."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory; expected an image file name such as "
                                         f"{str(path / 'generated.png')!r}")
    if path.suffix.lower() not in _writable_image_extensions():
        raise argparse.ArgumentTypeError(f"cannot write an image to {text!r}: expected a file name ending in an "
                                         "image extension such as .png or .jpg")
    return path
