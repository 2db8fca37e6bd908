"""The subcommands of ``python -m lverse``, one module each."""

from ..train import biart as train_biart
from ..train import vae as train_vae
from . import caption, eval_captions, evaluate, fid, generate, info, reconstruct, tokenize


def commands():
    return [info, reconstruct, caption, generate, evaluate, eval_captions, fid, tokenize, train_vae, train_biart]
