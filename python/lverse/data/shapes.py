"""Procedural captioned scenes: lverse's own data for its default model.

``scene(seed)`` draws one to two objects (4 shapes x 6 colours x 2 sizes) in the cells of a
3x3 grid, antialiased (drawn at 4x and downsampled), and returns the image with its one
canonical caption. Everything follows from the seed, so a seed names a scene.

Caption grammar (fixed; a caption always describes exactly one scene layout up to
translation for two objects):

* one object:  ``a {size} {colour} {shape} at the {cell}``
  with cell in: top left, top, top right, left, center, right, bottom left, bottom,
  bottom right.
* two objects: ``a {A} {relation} a {B}`` where A comes first in row-major order (top row
  first, left to right) and relation is A's place relative to B: ``left of`` (same row),
  ``above`` (same column), ``above and left of`` or ``above and right of``.

Seeds at or above ``HELD_OUT_SEED`` are held out: training never draws them.
"""

from __future__ import annotations

import random

from PIL import Image, ImageDraw

IMAGE_SIZE = 64
SUPERSAMPLE = 4
HELD_OUT_SEED = 2_000_000_000

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {
    "red": (225, 45, 45),
    "green": (40, 185, 70),
    "blue": (50, 95, 235),
    "yellow": (245, 215, 40),
    "purple": (165, 70, 215),
    "white": (245, 245, 245),
}
SIZES = {"small": 0.26, "large": 0.42}  # half-extent as a fraction of a cell
CELLS = ("top left", "top", "top right", "left", "center", "right",
         "bottom left", "bottom", "bottom right")
BACKGROUND = (38, 38, 46)


def _draw(draw: ImageDraw.ImageDraw, shape: str, colour, cx: float, cy: float, r: float):
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "square":
        s = r * 0.88
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)], fill=colour)
    elif shape == "cross":
        t = r * 0.36
        draw.rectangle([cx - r, cy - t, cx + r, cy + t], fill=colour)
        draw.rectangle([cx - t, cy - r, cx + t, cy + r], fill=colour)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _relation(a: int, b: int) -> str:
    ra, ca = divmod(a, 3)
    rb, cb = divmod(b, 3)
    if ra == rb:
        return "left of"
    if ca == cb:
        return "above"
    return "above and left of" if ca < cb else "above and right of"


def layout(seed: int) -> list[tuple[str, str, str, int]]:
    """The objects of scene ``seed``: (size, colour, shape, cell) in row-major cell order."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    rng = random.Random(seed)
    count = rng.choice((1, 2))
    cells = sorted(rng.sample(range(9), count))
    return [(rng.choice(tuple(SIZES)), rng.choice(tuple(COLOURS)), rng.choice(SHAPES), cell)
            for cell in cells]


def caption_of(objects) -> str:
    def phrase(obj):
        size, colour, shape, _ = obj
        return f"a {size} {colour} {shape}"

    if len(objects) == 1:
        return f"{phrase(objects[0])} at the {CELLS[objects[0][3]]}"
    first, second = objects
    return f"{phrase(first)} {_relation(first[3], second[3])} {phrase(second)}"


def render(objects, size: int = IMAGE_SIZE) -> Image.Image:
    big = size * SUPERSAMPLE
    image = Image.new("RGB", (big, big), BACKGROUND)
    draw = ImageDraw.Draw(image)
    cell = big / 3
    for obj_size, colour, shape, index in objects:
        row, col = divmod(index, 3)
        cx, cy = (col + 0.5) * cell, (row + 0.5) * cell
        _draw(draw, shape, COLOURS[colour], cx, cy, SIZES[obj_size] * cell)
    return image.resize((size, size), Image.BOX)


def scene(seed: int, size: int = IMAGE_SIZE) -> tuple[Image.Image, str]:
    """(image, caption) of scene ``seed``."""
    objects = layout(seed)
    return render(objects, size), caption_of(objects)


def vocabulary() -> list[str]:
    """Every word a caption can use."""
    words = {"a", "at", "the", "of", "and", "above", "left", "right", "top", "bottom", "center"}
    words |= set(SHAPES) | set(COLOURS) | set(SIZES)
    return sorted(words)
