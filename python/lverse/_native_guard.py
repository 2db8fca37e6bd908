"""The check that stands between a module and a native inference path.

The native sampler, beam search and AugVAE encode/decode run lverse's stock architecture on
the module's own tensors, found by name. A module a user has changed (a LoRA adapter, a
forward hook, a parametrization such as ``weight_norm``, a layer swapped by
``quantize_dynamic``, a changed setting such as a LayerNorm's ``eps`` or a convolution's
padding, a patched class ``forward``, an FSDP-sharded parameter) would be computed as if
unchanged, so such a module is refused with an error that names what was found and how to go on.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch
from torch import nn
from torch.nn.modules import module as module_globals
from torch.nn.utils import parametrize

from ._params import named_tensors
from .errors import NativePathError

_MISSING = object()


# Settings that change nothing the native inference paths compute (they run in eval mode,
# and a token layout only names ids). lverse's own classes add theirs in
# ``_training_only_settings`` (e.g. the EMA decay).
_IGNORED_SETTINGS = {"training", "p", "inplace", "layout", "ema_update"}
_PLAIN_VALUES = (bool, int, float, str, tuple, type(None))


class Expected(NamedTuple):
    cls: type
    forward: object  # the class's forward function
    settings: dict  # plain public attributes: eps, padding, n_head, the config, ...


def _settings(m: nn.Module) -> dict:
    ignored = _IGNORED_SETTINGS.union(getattr(m, "_training_only_settings", ()))
    return {k: v for k, v in vars(m).items()
            if not k.startswith("_") and k not in ignored
            and (isinstance(v, _PLAIN_VALUES) or dataclasses.is_dataclass(v))}


def module_structure(module: nn.Module) -> dict[str, Expected]:
    """Every submodule's class, class-level forward and settings, by name: what the native
    code assumes."""
    return {name: Expected(type(m), type(m).forward, _settings(m))
            for name, m in module.named_modules(remove_duplicate=False)}


def _structure_problems(module: nn.Module, expected: dict[str, Expected]) -> list[str]:
    problems = []
    found = dict(module.named_modules(remove_duplicate=False))
    for name, m in found.items():
        label = name or "the model"
        want = expected.get(name)
        if want is None:
            problems.append(f"an extra submodule {label} ({type(m).__module__}.{type(m).__qualname__})")
            continue
        if type(m) is not want.cls:
            problems.append(f"{label} is a {type(m).__module__}.{type(m).__qualname__}, not a {want.cls.__qualname__}")
        elif type(m).forward is not want.forward:
            problems.append(f"{want.cls.__qualname__}.forward replaced on the class")
        else:
            settings = _settings(m)
            problems += [f"{label}.{k} = {settings.get(k)!r} (built with {v!r})"
                         for k, v in want.settings.items() if settings.get(k, _MISSING) != v]
        if m._forward_hooks or m._forward_pre_hooks:
            problems.append(f"a forward hook on {label}")
        if "forward" in m.__dict__:
            problems.append(f"{label}.forward replaced on the instance (del it to restore the class's)")
        if parametrize.is_parametrized(m):
            problems.append(f"a parametrization of {label} ({', '.join(m.parametrizations)})")
    problems += [f"the submodule {name} is missing" for name in expected if name not in found]
    if module_globals._global_forward_hooks or module_globals._global_forward_pre_hooks:
        problems.append("a global forward hook (torch.nn.modules.module.register_module_forward_hook)")
    return problems


def _tensor_problems(tensors: dict[str, torch.Tensor], specs) -> list[str]:
    shapes = {spec[0]: tuple(spec[1]) for spec in specs}
    problems = [f"an extra tensor {name} {tuple(t.shape)}" for name, t in tensors.items() if name not in shapes]
    problems += [f"the tensor {name} is missing" for name in shapes if name not in tensors]
    for name, t in tensors.items():
        if name not in shapes:
            continue
        if type(t) not in (torch.Tensor, nn.Parameter):
            problems.append(f"{name} is a {type(t).__name__} (e.g. sharded by FSDP), not a plain tensor")
        elif t.is_meta:
            problems.append(f"{name} is on the meta device (no values to compute with)")
        elif tuple(t.shape) != shapes[name]:
            problems.append(f"{name} has shape {tuple(t.shape)}, expected {shapes[name]}")
    return problems


def native_tensors(module: nn.Module, specs, expected: dict[str, Expected], what: str) -> dict[str, torch.Tensor]:
    """The module's tensors by name for the native ``what``, or NativePathError if that path
    cannot compute what the module's forward computes."""
    tensors = named_tensors(module)
    problems = _structure_problems(module, expected) + _tensor_problems(tensors, specs)
    if problems:
        shown = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
        raise NativePathError(
            f"the native {what} cannot run this {type(module).__name__} as it is now: found {shown}. "
            "It computes the stock architecture from the weights and would ignore these. Merge adapters "
            "into the weights (PEFT: merge_and_unload()), remove hooks and parametrizations "
            "(torch.nn.utils.parametrize.remove_parametrizations), or use the module's forward(), "
            "which honours them."
        )
    return tensors
