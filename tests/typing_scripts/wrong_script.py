"""Mistakes mypy must find in a user's script (tests/test_typing.py): each line below."""

import lverse
import torch

caption: int = lverse.caption("scene.png")
tensor: torch.Tensor = lverse.generate("a red circle")
lverse.caption("x.png", rerank_candidates=False)
