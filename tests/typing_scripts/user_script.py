"""A user's script that type-checks against lverse's annotations (tests/test_typing.py)."""

from pathlib import Path

import lverse
import numpy as np
import torch
from PIL import Image

caption: str = lverse.caption("scene.png")
captions: list[str] = lverse.caption(["a.png", Path("b.png")], beams=4)
pictures: list[Image.Image] = lverse.generate("a red circle", n=4, seed=0)
tensor: torch.Tensor = lverse.generate("a red circle", output_type="pt")
array: np.ndarray = lverse.generate("a red circle", output_type="np")
grouped: list[list[Image.Image]] = lverse.generate(["a", "b"], rerank=False)
tensors: list[torch.Tensor] = lverse.generate(["a", "b"], output_type="pt")
images, seeds = lverse.generate("a red circle", return_seeds=True)
regenerated: list[Image.Image] = lverse.generate("a red circle", seed=seeds[:1])
model = lverse.load("my_model", device="cpu", dtype=torch.bfloat16)
again: str = model.caption(Image.new("RGB", (64, 64)))
more: list[torch.Tensor] = model.generate(["x"], output_type="pt")
model.save("copy")
