"""The subcommands of ``python -m lverse``, one module each."""

from ..train import biart as train_biart
from ..train import vae as train_vae
from . import info, reconstruct


def commands():
    return [info, reconstruct, train_vae, train_biart]
