"""lverse in a notebook: caption scenes and draw scenes from text with the shipped default
model, then save everything in one grid. Runs as a script too (the tests run it headless):

    python examples/quickstart.py [OUT.png]
"""

# %% The default model loads on first use; nothing is downloaded.
import sys
from pathlib import Path

import lverse
from lverse.data import shapes

out_path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("out/quickstart.png")

# %% Image -> text. Any path, PIL image, numpy array or tensor works; here: scenes the model
# never saw in training (seeds at or above shapes.HELD_OUT_SEED).
scenes = [shapes.scene(shapes.HELD_OUT_SEED + i) for i in range(4)]
captions = lverse.caption([image for image, _ in scenes])
for (_, truth), guess in zip(scenes, captions, strict=True):
    print(f"{'ok ' if guess == truth else 'no '} {guess!r}  (drawn from {truth!r})")

# %% Text -> image: 8 candidates per prompt, ranked by how well the same model captions
# each of them back to the prompt (self-reranking); keep the best 2.
prompts = ["a large green triangle at the center", "a small red circle above a large blue square"]
pictures = lverse.generate(prompts, n=2, candidates=8, seed=0)
for prompt, (best, _) in zip(prompts, pictures, strict=True):
    print(f"{prompt!r} -> read back as {lverse.caption(best)!r}")

# %% One grid: the captioned scenes on the first row, the generated pictures on the second.
row = [image for image, _ in scenes] + [image for images in pictures for image in images]
out_path.parent.mkdir(parents=True, exist_ok=True)
lverse.images.grid(row, columns=4).save(out_path)
print(f"wrote {out_path}")
