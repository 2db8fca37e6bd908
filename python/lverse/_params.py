"""Initialises a hand-written ``torch.nn.Module`` tree from the native core's parameter list.

The core names every parameter once (official state_dict names, shapes, initialisers and
weight tying), because its inference paths bind to the module's tensors by those names.
The Python modules are written as ordinary PyTorch layers; ``initialize_from_specs`` checks
at construction that their tree carries exactly the core's names, shapes and ties, so the two
cannot drift apart, and gives every tensor the core's initial value.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _initial_value(shape, init: str, arg: str, created: dict[str, torch.Tensor]) -> torch.Tensor:
    if init == "uniform_fan_in":
        # PyTorch's default for Conv2d/Linear: kaiming_uniform(a=sqrt(5)) gives this bound.
        bound = 1.0 / math.sqrt(int(arg))
        return torch.empty(shape).uniform_(-bound, bound)
    if init == "normal":
        return torch.randn(shape) * float(arg)
    if init == "ones":
        return torch.ones(shape)
    if init == "zeros":
        return torch.zeros(shape)
    if init == "copy_of":
        return created[arg].detach().clone()
    if init == "lower_triangular":
        return torch.tril(torch.ones(shape))
    raise ValueError(f"unknown initialiser {init!r}")


def named_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer by its full name, tied names included."""
    tensors = dict(module.named_parameters(remove_duplicate=False))
    tensors.update(module.named_buffers(remove_duplicate=False))
    return tensors


def initialize_from_specs(module: nn.Module, specs) -> None:
    """Fills every tensor of ``module`` with the core's initial value; raises RuntimeError
    if the tree's names, shapes, kinds or ties differ from the core's list (a bug in lverse,
    not a user error)."""
    tensors = named_tensors(module)
    buffers = {name for name, _ in module.named_buffers(remove_duplicate=False)}
    expected = {spec[0] for spec in specs}
    if set(tensors) != expected:
        raise RuntimeError(
            f"{type(module).__name__}'s tree differs from the native core's: "
            f"only in Python {sorted(set(tensors) - expected)}, only native {sorted(expected - set(tensors))}"
        )
    created: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, shape, init, arg, trainable, buffer, tied_to in specs:
            tensor = tensors[name]
            if (tuple(tensor.shape) != tuple(shape) or (name in buffers) != buffer
                    or (not buffer and tensor.requires_grad != trainable)):
                raise RuntimeError(f"{name}: Python and native disagree on its shape, kind or trainability")
            if tied_to is not None:
                if tensor is not tensors[tied_to]:
                    raise RuntimeError(f"{name} must be the same tensor as {tied_to}")
            else:
                tensor.copy_(_initial_value(shape, init, arg, created))
            created[name] = tensor
