"""lverse as a notebook uses it: output types, per-image seeds, progress bars, devices and
saving a model. Runs as a script too (the tests run it headless):

    python examples/notebook.py [OUT_DIR]
"""

# %% The shipped default model; repr says what it is and where it lives.
import sys
from pathlib import Path

import lverse
import torch

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("out/notebook")
out.mkdir(parents=True, exist_ok=True)
lverse.set_progress(False)  # bars (tqdm.auto) are on by default; off here for a clean log
model = lverse.pipeline.default_model()
print(model)

# %% Three output types: PIL images (default), a tensor in [-1, 1] (lverse's convention, what
# caption and AugVAE take) or a float array in [0, 1] (diffusers' convention).
text = "a small red circle above a large blue square"
pil = lverse.generate(text, n=4, seed=0)
pt = lverse.generate(text, n=4, seed=0, output_type="pt")
np_images = lverse.generate(text, n=4, seed=0, output_type="np")
print("pil:", [im.size for im in pil], "pt:", tuple(pt.shape), "np:", np_images.shape)
print("read back:", lverse.caption(pt))
lverse.images.grid(pt, columns=4).save(out / "four.png")

# %% Every image has its own seed: the fourth one again, alone, is the same picture.
_, seeds = lverse.generate(text, n=4, seed=0, return_seeds=True)
again = lverse.generate(text, seed=[seeds[3]], output_type="pt")
print("seeds:", seeds, "- fourth image regenerated alone:", torch.equal(again[0], pt[3]))

# %% Save the model to a directory, load it back in bfloat16, caption with it.
model.save(out / "model")
half = lverse.load(out / "model", dtype=torch.bfloat16)
print(half)
print("bfloat16 caption:", lverse.caption(pil[0], model=half))
