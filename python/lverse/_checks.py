"""Argument checks shared by the Python API: each raises the exception the docs promise,
naming the argument and what it got."""

from __future__ import annotations

import numbers

import torch


def kind_name(dtype: torch.dtype) -> str:
    """libtorch's name of a dtype ("Int", "Float"), as the native checks word it, so one
    mistake reads the same from the PyTorch forward and the native paths."""
    names = {torch.int64: "Int64", torch.int32: "Int", torch.int16: "Int16", torch.int8: "Int8",
             torch.uint8: "Uint8", torch.bool: "Bool", torch.float16: "Half", torch.bfloat16: "BFloat16",
             torch.float32: "Float", torch.float64: "Double"}
    return names.get(dtype, str(dtype).removeprefix("torch."))


def is_transformed(t: torch.Tensor) -> bool:
    """A tensor seen inside vmap/grad: a functorch wrapper whose values cannot be read and
    which native code must not be handed."""
    return torch._C._functorch.is_functorch_wrapped_tensor(t)


def require_tensor(value, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(value).__name__}")
    return value


def _is_int(value) -> bool:
    # numpy's ints count (numbers.Integral); bool is an int to Python, never a count or an id here.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def require_int(value, what: str) -> int:
    if not _is_int(value):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    return int(value)


def _require_int_at_least(value, what: str, minimum: int, expected: str) -> int:
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{what} must be {expected}, got {value!r}")
    return int(value)


def require_positive_int(value, what: str) -> int:
    return _require_int_at_least(value, what, 1, "a positive int")


def require_nonnegative_int(value, what: str) -> int:
    return _require_int_at_least(value, what, 0, "an int >= 0")


def require_field_types(config) -> None:
    """Every field of the dataclass ``config`` holds the type it is annotated with (``int``,
    ``float``, ``bool``, ``tuple[int, ...]``, optionally ``| None``): a bool or a float is
    not accepted as an int, where the native core would silently take True as 1. numpy
    numbers and lists are stored as the plain Python values they stand for."""
    import dataclasses

    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        kind = str(field.type)
        if kind.endswith(" | None"):
            if value is None:
                continue
            kind = kind.removesuffix(" | None")
        if kind == "int":
            value = require_int(value, field.name)
        elif kind == "float":
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{field.name} must be a float, got {type(value).__name__}")
            value = float(value)
        elif kind == "bool":
            if not isinstance(value, bool):
                raise TypeError(f"{field.name} must be a bool, got {type(value).__name__}")
        elif kind == "tuple[int, ...]":
            if not isinstance(value, (tuple, list)):
                raise TypeError(f"{field.name} must be a tuple of ints, got {type(value).__name__}")
            value = tuple(require_int(entry, f"{field.name} entry") for entry in value)
        # Plain Python values (numpy's become int/float), so the config saves as JSON.
        object.__setattr__(config, field.name, value)


def require_known_keys(d: dict, config_class, what: str) -> None:
    """A config dict names only fields of the dataclass ``config_class``."""
    import dataclasses

    unknown = set(d) - {f.name for f in dataclasses.fields(config_class)}
    if unknown:
        raise ValueError(f"unknown {what} config keys: {sorted(unknown)}")
