"""Builds a torch.nn.Module tree from the native core's parameter list.

The core names every parameter once (official state_dict names, shapes, initialisers and
weight tying); this turns that list into ordinary registered ``nn.Parameter``s and buffers
so that state_dict, optimizers, ``.to()`` and DDP treat the model like any other module.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ParamNode(nn.Module):
    """A container in the parameter tree (e.g. ``encoders.0.down.1``); holds no logic.

    Numbered children index like an ``nn.ModuleList``: ``model.encoders[0].down[1]``.
    """

    def __getitem__(self, index: int) -> nn.Module:
        if isinstance(index, int) and index < 0:
            index += len(self)
        try:
            return self._modules[str(index)]
        except KeyError:
            raise IndexError(f"index {index} out of range for {len(self)} children") from None

    def extra_repr(self) -> str:
        own = list(self._parameters.items()) + list(self._buffers.items())
        return ", ".join(f"{name}: {tuple(t.shape)}" for name, t in own if t is not None)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


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


def _child(parent: nn.Module, name: str) -> nn.Module:
    child = parent._modules.get(name)
    if child is None:
        child = ParamNode()
        parent.add_module(name, child)
    return child


def build_tree(root: nn.Module, specs) -> None:
    """Registers every parameter of ``specs`` under ``root`` with its dotted name."""
    created: dict[str, torch.Tensor] = {}
    for name, shape, init, arg, trainable, buffer, tied_to in specs:
        *path, leaf = name.split(".")
        module = root
        for part in path:
            module = _child(module, part)
        if tied_to is not None:
            tensor = created[tied_to]
        else:
            value = _initial_value(shape, init, arg, created)
            tensor = value if buffer else nn.Parameter(value, requires_grad=trainable)
        if buffer:
            module.register_buffer(leaf, tensor)
        else:
            module.register_parameter(leaf, tensor)
        created[name] = tensor


def named_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer by its full name, tied names included."""
    tensors = dict(module.named_parameters(remove_duplicate=False))
    tensors.update(module.named_buffers(remove_duplicate=False))
    return tensors
