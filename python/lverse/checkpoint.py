"""Reading and writing checkpoints: official PyTorch Lightning ``.ckpt`` pickles and
lverse's own safetensors files (config in the metadata)."""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import pickle
import pickletools
import re
import struct
import sys
import types
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from ._checks import require_known_keys
from .errors import CheckpointError

FORMAT_KEY = "lverse.format"
CONFIG_KEY = "lverse.config"
EXTRA_KEY = "lverse.extra"


def _sniff(path: Path) -> str:
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    with open(path, "rb") as f:
        head = f.read(16)
    # safetensors first: its 8-byte little-endian header length can start with any byte,
    # 0x80 (a pickle's first byte) included; the JSON header always opens with "{".
    if len(head) >= 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= path.stat().st_size:
        return "safetensors"
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    if head[:1] == b"\x80":
        return "torch-legacy"
    raise CheckpointError(
        f"{path} is not a checkpoint: expected a PyTorch (Lightning) .ckpt/.pt or an lverse "
        f".safetensors file, found data starting with {head[:8]!r}"
    )


# What official checkpoints pickle besides tensors: the training script's namespace and,
# depending on the Lightning version, its AttributeDict, read here as the plain dict it
# subclasses (so no Lightning install is needed, and nothing from the file runs).
_SAFE_GLOBALS = [argparse.Namespace] + [
    (dict, name)
    for name in (
        "pytorch_lightning.utilities.parsing.AttributeDict",
        "lightning_fabric.utilities.data.AttributeDict",
        "lightning.fabric.utilities.data.AttributeDict",
    )
]


# What torch.load raises for a file it cannot (or will not) read: its own exceptions, and
# whatever the unpickler trips on in a damaged pickle.
# struct.error: the unpickler reading a number the file cuts short (found by fuzz/checkpoint.py).
_LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, TypeError,
                KeyError, IndexError, AttributeError, AssertionError, struct.error, OverflowError, RecursionError)


def _torch_load(path: Path) -> object:
    # weights_only keeps arbitrary code out of the unpickler. An open file, not the path:
    # given a path ending in .safetensors, torch.load hands the file to safetensors by its
    # name, while _sniff found a pickle or zip in it (found by fuzz/checkpoint.py).
    with open(path, "rb") as f:
        try:
            with torch.serialization.safe_globals(_SAFE_GLOBALS):
                return torch.load(f, map_location="cpu", weights_only=True)
        except OSError as err:
            # libtorch's zip reader, on some damaged archives read from a file object: EINVAL.
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: libtorch's reader failed on it "
                                  f"({err})") from err
        except _LOAD_ERRORS as err:
            # torch's message (kept as the cause only where it carries no advice) may tell the
            # user to load the file with weights_only=False, that is, to run whatever code it holds.
            raise _load_error(path, err) from (None if _gives_unsafe_advice(str(err)) else err)


_REFUSED_CODE = ("lverse unpickles only tensors, containers, argparse.Namespace and Lightning's AttributeDict, "
                 "so that loading a file never runs code from it")
# The modules torch's weights_only unpickler refuses outright (_blocklisted_modules).
_BLOCKED_MODULES = ("sys", "os", "posix", "nt")


def _gives_unsafe_advice(text: str) -> bool:
    return bool(re.search(r"weights_only`?\s*(set to|=)\s*`?False", text))


def _load_error(path: Path, err: BaseException) -> CheckpointError:
    """The CheckpointError for a file torch.load refused or could not read. A pickle that
    refers to code is named as such, with the globals it names; torch's advice to load it
    with weights_only=False, which would run that code, is never passed on."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    if isinstance(err, pickle.UnpicklingError):
        # The refused global torch names first, then any others the pickle names (a pickle
        # torch stopped reading early, at an opcode it does not read, is scanned all the same).
        names = _unsafe_globals(path)
        refused = _refused_global(text)
        if refused and refused not in names:
            names.insert(0, refused)
        if names:
            shown = [_describe_global(name) for name in names[:5]]
            if len(names) > 5:
                shown.append(f"{len(names) - 5} more")
            listed = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} and {shown[-1]}"
            return CheckpointError(f"{path} holds code that lverse will not run: it pickles {listed}. "
                                   f"{_REFUSED_CODE}.")
    if "TorchScript" in text:
        return CheckpointError(f"{path} is a TorchScript archive (a program, not a checkpoint), which lverse "
                               "will not run")
    if "legacy .tar format" in text:
        return CheckpointError(f"{path} is in PyTorch's legacy .tar format, which lverse does not read")
    reason = _torch_reason(text) or type(err).__name__
    operand = re.fullmatch(r"Unsupported operand (\d+)", reason)
    if operand:
        code = int(operand.group(1))
        opcode = next((op.name for op in pickletools.opcodes if ord(op.code[0]) == code), None)
        reason = (f"its pickle uses opcode {code}{f' ({opcode})' if opcode else ''}, which lverse's safe "
                  "unpickler does not read (torch.save writes pickle protocol 2 by default)")
    elif _gives_unsafe_advice(text):
        # A refusal of the weights_only unpickler that names no global: nothing in the file ran.
        reason = f"{reason} ({_REFUSED_CODE})"
    return CheckpointError(f"{path} is not a readable PyTorch checkpoint: {reason}")


def _refused_global(text: str) -> str | None:
    """The global (module.name) torch's weights_only unpickler refused, from its message."""
    blocked = re.search(r"unsupported GLOBAL (\S+) whose module \S+ is blocked", text)
    if blocked:
        return blocked.group(1)
    unsupported = re.search(r"Unsupported global: GLOBAL (\S+) was not an allowed global", text)
    if unsupported:
        name = unsupported.group(1)
        # torch drops the "builtins." of builtins (GLOBAL eval for builtins.eval).
        return name if "." in name else f"builtins.{name}"
    found = re.search(r"(?:Can only create new object|Can only build).* but got <class '([^']+)'>", text)
    return found.group(1) if found else None


def _torch_reason(text: str) -> str:
    """The first line of what torch's reader found wrong, without torch's advice on how to
    load the file anyway (weights_only=False, add_safe_globals) or where to read more."""
    advice = (
        r"Weights only load failed\.?", r"In PyTorch 2\.6, we changed the default value.*?trusted source\.",
        r"This file can still be loaded, to do so you have two options,.*?checkpoint\.",
        r"\(1\)", r"\(2\) Alternatively, to load with `weights_only=True`.*?error message\.",
        r"Please file an issue with the following so that we can make `weights_only=True` compatible with your "
        r"use case:", r"WeightsUnpickler error:", r"Please use `torch\.serialization\.add_safe_globals.*",
        r"Check the documentation of torch\.load.*", r"[^.\n]*weights_only`?\s*(set to|=)\s*`?False[^.\n]*\.?",
    )
    for pattern in advice:
        text = re.sub(pattern, "", text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else ""


def _unsafe_globals(path: Path) -> list[str]:
    """The globals (module.name) that the file's pickle names and the weights_only unpickler
    does not allow, in order, read without unpickling anything (pickletools only parses)."""
    try:
        from torch import _weights_only_unpickler as wo

        allowed = set(wo._get_allowed_globals()) | set(wo._get_user_allowed_globals())
    except Exception:  # a private torch API: without it, count torch's own as allowed
        allowed = None
    allowed_here = {"argparse.Namespace", *(name for _, name in _SAFE_GLOBALS[1:])}
    return [name for name in _pickled_globals(path)
            if name not in allowed_here
            and (name not in allowed if allowed is not None
                 else not name.startswith(("torch.", "collections.OrderedDict", "_codecs.encode")))]


_SCAN_LIMIT = 64 * 2**20


def _pickled_globals(path: Path) -> list[str]:
    """The globals named by the pickle of a torch.save file, as far as it parses."""
    found: list[str] = []
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                records = [info for info in archive.infolist()
                           if info.filename.count("/") == 1 and info.filename.endswith("/data.pkl")]
                if not records or records[0].file_size > _SCAN_LIMIT:
                    return found
                _scan_pickles(io.BytesIO(archive.read(records[0])), 1, found)
        else:
            # The legacy format: magic number, protocol, system info, the object, storage keys.
            with open(path, "rb") as f:
                _scan_pickles(io.BytesIO(f.read(_SCAN_LIMIT)), 5, found)
    except Exception:  # a damaged pickle: what was found before the damage is still worth naming
        pass
    return list(dict.fromkeys(found))


_STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"}


def _scan_pickles(stream, count: int, found: list[str]) -> None:
    for _ in range(count):
        memo: dict = {}
        recent: list = []  # the last values pushed, where they are strings (STACK_GLOBAL's operands)
        for op, arg, _ in pickletools.genops(stream):
            if op.name in ("GLOBAL", "INST"):
                found.append(_global_name(*arg.split(" ", 1)))
            elif op.name == "STACK_GLOBAL" and len(recent) >= 2 and all(isinstance(v, str) for v in recent[-2:]):
                found.append(_global_name(recent[-2], recent[-1]))
            if op.name in _STRING_OPS:
                recent.append(arg)
            elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = recent[-1] if recent else None
            elif op.name == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else None
            elif op.name in ("GET", "BINGET", "LONG_BINGET"):
                recent.append(memo.get(arg))
            elif op.name not in ("PROTO", "FRAME"):
                recent.append(None)
            del recent[:-2]


def _global_name(module: str, name: str) -> str:
    """module.name as the unpickler reads it: Python 2 names (protocol 2's __builtin__.eval)
    mapped to Python 3's, as pickle and torch's unpickler map them."""
    import _compat_pickle

    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return f"{module}.{name}"


def _describe_global(name: str) -> str:
    """How a refused global reads in the message, looked up (not imported) to tell a class
    from a function where its module is already loaded."""
    obj = _lookup(name)
    if isinstance(obj, type):
        return f"an object of class {name}"
    if callable(obj) or name.split(".")[0] in _BLOCKED_MODULES:
        return f"a call to {name}"
    return f"an object of class {name} (or a call to a function of that name)"


def _lookup(name: str):
    """The object ``module.qualname`` names, if its module is loaded; nothing is imported and
    only __dict__ entries are read, so no code of the file's choosing runs."""
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        obj = sys.modules.get(".".join(parts[:split]))
        if obj is None:
            continue
        for part in parts[split:]:
            if not isinstance(obj, (type, types.ModuleType)):
                return None
            obj = obj.__dict__.get(part)
        return obj
    return None


def _read_safetensors(path: Path, kind: str) -> tuple[dict, dict, dict]:
    """(config, state dict, extra metadata) of an lverse safetensors file of ``kind``."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from err
    found = metadata.get(FORMAT_KEY)
    if found != kind:
        raise CheckpointError(
            f"{path} holds {found or 'a safetensors file without lverse metadata'}, expected "
            f"an lverse {kind} checkpoint"
        )
    if CONFIG_KEY not in metadata:
        raise CheckpointError(f"{path} has no {CONFIG_KEY} metadata to describe the {kind} architecture")
    config = _json_object_metadata(path, metadata, CONFIG_KEY)
    extra = _json_object_metadata(path, metadata, EXTRA_KEY) if EXTRA_KEY in metadata else {}
    return config, state, extra


def _json_object_metadata(path: Path, metadata: dict, key: str) -> dict:
    """The JSON object stored as the metadata entry ``key`` (safetensors metadata is text)."""
    try:
        value = json.loads(metadata[key])
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: the {key} metadata is not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: the {key} metadata must be a JSON object, found {_short(metadata[key])}")
    return value


def _short(value, limit: int = 60) -> str:
    # Enough of a bad value to recognise it, without dumping a whole tensor or tokenizer.
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def require_config_dict(d, config_class, what: str) -> None:
    """``d`` is a dict naming every required field of the dataclass ``config_class`` and no
    other key; raises TypeError/ValueError naming the offending keys."""
    if not isinstance(d, dict):
        raise TypeError(f"a {what} config must be a dict, got {type(d).__name__}")
    require_known_keys(d, config_class, what)
    missing = [f.name for f in dataclasses.fields(config_class) if f.name not in d and _is_required(f)]
    if missing:
        raise ValueError(f"the {what} config lacks {', '.join(missing)}")


def _is_required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


@contextmanager
def blamed_on_file(path, problem: str) -> Iterator[None]:
    """Turns the TypeError/ValueError raised while building something from a file's contents
    (a config, a token layout) into a CheckpointError naming the file: the file is at fault."""
    try:
        yield
    except CheckpointError:
        raise
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: {problem}: {err}") from err


def save_safetensors(path, kind: str, config: dict, tensors: dict, specs,
                     extra: dict | None = None) -> None:
    """Writes each tensor once (tied names are restored from the config on load); ``extra``
    is JSON-able metadata (e.g. a token layout and tokenizer) stored beside the config."""
    from safetensors.torch import save_file

    # A tied name is stored once, under the name it is tied to. A user who gave a level its
    # own tensor (a new Parameter, load_state_dict(assign=True)) would get level 0's back on
    # load, since the loaded model shares it again: refuse rather than lose it.
    broken = [f"{spec[0]} is no longer {spec[6]}" for spec in specs
              if spec[6] is not None and tensors[spec[0]] is not tensors[spec[6]]]
    if broken:
        raise CheckpointError(
            f"cannot save this {kind}: its shared weights were untied ({'; '.join(broken)}), and the format "
            "stores each shared tensor once. Re-tie them, or save model.state_dict() with torch.save."
        )
    tied = {spec[0] for spec in specs if spec[6] is not None}
    state = {
        name: t.detach().to("cpu").contiguous()
        for name, t in tensors.items()
        if name not in tied
    }
    metadata = {FORMAT_KEY: kind, CONFIG_KEY: json.dumps(config)}
    if extra:
        metadata[EXTRA_KEY] = json.dumps(extra)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # A temporary name, then a rename: a run killed mid-write leaves the previous file whole.
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    save_file(state, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def _count_indexed(state: dict, prefix: str) -> int:
    # A key like "quantizers.x.foo" counts as no level; check_state_dict reports it as unexpected.
    indices = {k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)}
    numbers = [int(i) for i in indices if i.isdigit()]
    return max(numbers) + 1 if numbers else 0


def _sequence(value) -> list:
    # A string is iterable too, but never a list of multipliers or resolutions.
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return list(value)


_REQUIRED = object()
# How each kind of argparse value is read, and how a bad one is described.
_ARG_KINDS = {
    "int": (int, "an int"),
    "float": (float, "a number"),
    "ints": (lambda v: [int(m) for m in _sequence(v)], "a list of ints"),
    "list": (_sequence, "a list"),
}


def _arg(path: Path, args: dict, key: str, kind: str, default=_REQUIRED):
    """``args[key]`` (or ``default``) read as ``kind``; a value of another type is the file's fault."""
    value = args[key] if default is _REQUIRED else args.get(key, default)
    convert, described = _ARG_KINDS[kind]
    try:
        return convert(value)
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"{path}: hyper_parameters['args'].{key} = {_short(repr(value))} is not {described}"
        ) from err


_INT_ARGS = ("hidden_dim", "num_res_blocks", "z_channels", "codebook_dim", "num_tokens", "resolution")


def _augvae_config_from_lightning(path: Path, args: dict, state: dict) -> dict:
    required = [*_INT_ARGS, "ch_mult"]
    missing = [k for k in required if k not in args]
    if missing:
        raise CheckpointError(
            f"{path}: hyper_parameters['args'] lacks {missing}; not an AugVAE checkpoint"
        )
    if args.get("double_z"):
        raise CheckpointError(f"{path}: double_z=True is not an AugVAE configuration")
    levels = _count_indexed(state, "quantizers.") or len(_arg(path, args, "attn_resolutions", "list", []))
    encoders = _count_indexed(state, "encoders.")
    finetune = bool(args.get("finetune")) or any(k.startswith("connectors.") for k in state)
    return {
        **{key: _arg(path, args, key, "int") for key in _INT_ARGS},
        "ch_mult": _arg(path, args, "ch_mult", "ints"),
        "inner_ch_mult": [2, 4],
        "levels": levels,
        # SL keeps encoders 0..j of the ML model (setup_finetune), so j = encoders - 1.
        "single_level": encoders - 1 if finetune else None,
        "use_attn": bool(args.get("use_attn", False)),
        "beta": _arg(path, args, "quant_beta", "float", 0.25),
        "ema_decay": _arg(path, args, "quant_ema_decay", "float", 0.99),
        "ema_eps": _arg(path, args, "quant_ema_eps", "float", 1e-5),
        "in_channels": _arg(path, args, "in_channels", "int", 3),
        "out_channels": 3,
    }


def load_augvae_checkpoint(path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config dict, state dict) from an official Lightning .ckpt or an lverse file."""
    path = Path(os.fspath(path))
    fmt = _sniff(path)
    if fmt == "safetensors":
        config, state, _ = _read_safetensors(path, "augvae")
        return config, state
    data = _torch_load(path)
    state = _lightning_state_dict(path, data)
    if "encoders.0.conv_in.weight" not in state:
        sample = ", ".join(list(state)[:3])
        raise CheckpointError(
            f"{path} is not an AugVAE checkpoint: no encoders.0.conv_in.weight (keys start {sample})"
        )
    return _augvae_config_from_lightning(path, _lightning_args(path, data), state), state


def load_perceptual_loss(path) -> dict[str, torch.Tensor]:
    """The LPIPS tensors (VGG16 and its linear heads) an official AugVAE .ckpt carries
    under ``loss.perceptual_loss.``, by their names below it; empty when it has none."""
    path = Path(os.fspath(path))
    if _sniff(path) == "safetensors":
        return {}
    data = _torch_load(path)
    if not isinstance(data, dict) or not isinstance(data.get("state_dict"), dict):
        return {}
    prefix = "loss.perceptual_loss."
    return {k[len(prefix):]: v for k, v in data["state_dict"].items() if isinstance(k, str) and k.startswith(prefix)}


def _lightning_state_dict(path: Path, data) -> dict:
    """The model's tensors by name, without the perceptual loss that official files carry."""
    if not isinstance(data, dict) or "state_dict" not in data:
        raise CheckpointError(
            f"{path} is a PyTorch file but not a Lightning checkpoint (no 'state_dict' entry); "
            "build the model with AugVAE(...) and call load_checked(state_dict) instead"
        )
    state = data["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{path}: 'state_dict' is a {type(state).__name__}, expected a dict of tensors by parameter name"
        )
    odd_keys = [k for k in state if not isinstance(k, str)]
    if odd_keys:
        raise CheckpointError(
            f"{path}: state_dict keys must be parameter names (str), found {_short(odd_keys)}"
        )
    return {k: v for k, v in state.items() if not k.startswith("loss.")}


def _lightning_args(path: Path, data: dict) -> dict:
    """The training script's arguments, which describe the architecture."""
    hparams = data.get("hyper_parameters") or {}
    if not isinstance(hparams, dict):
        raise CheckpointError(
            f"{path}: hyper_parameters is a {type(hparams).__name__}, expected a dict holding 'args'"
        )
    args = hparams.get("args")
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    if not isinstance(args, dict):
        raise CheckpointError(f"{path} has no hyper_parameters['args'] to describe the architecture")
    return args


def expand_tied(state: dict, specs) -> dict:
    """Adds the names of tied tensors that a file stored once."""
    state = dict(state)
    for name, _shape, _init, _arg, _trainable, _buffer, tied_to in specs:
        if tied_to is not None and name not in state and tied_to in state:
            state[name] = state[tied_to]
    return state


def check_state_dict(state: dict, specs, what: str) -> None:
    """Raises one CheckpointError naming every missing, unexpected, mis-shaped, mistyped
    and non-finite tensor."""
    expected = {spec[0]: spec for spec in specs}
    problems = []
    for name, spec in expected.items():
        shape, is_buffer = tuple(spec[1]), spec[5]
        if name not in state:
            problems.append(f"missing {name}, expected shape {shape}")
        elif problem := _tensor_problem(name, state[name], shape, is_buffer):
            problems.append(problem)
    problems += [f"unexpected {name} {_shape_of(state[name])}" for name in state if name not in expected]
    if problems:
        raise CheckpointError(f"{what}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))


def _shape_of(value) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else f"({type(value).__name__})"


def _tensor_problem(name: str, value, shape: tuple, buffer: bool) -> str | None:
    """What is wrong with the tensor loaded for ``name``, or None. load_state_dict would copy
    an int tensor into a float parameter without a word, and NaN weights only fail later."""
    if not isinstance(value, torch.Tensor):
        return f"{name}: expected a tensor, found {type(value).__name__}"
    if tuple(value.shape) != shape:
        return f"{name}: expected shape {shape}, found {tuple(value.shape)}"
    # Buffers are constants such as minGPT's causal mask, kept as float, bool or uint8.
    if not value.is_floating_point() and (not buffer or value.is_complex()):
        return f"{name}: expected a floating-point tensor, found {value.dtype}"
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        nan = int(torch.isnan(value).sum())
        return f"{name}: {nan} NaN and {int(torch.isinf(value).sum())} infinite value(s)"
    return None


def load_biart_checkpoint(path) -> tuple[dict, dict[str, torch.Tensor], dict]:
    """(config, state dict, extra metadata) of an lverse BiART safetensors file."""
    path = Path(os.fspath(path))
    if _sniff(path) != "safetensors":
        raise CheckpointError(
            f"{path} is not an lverse BiART checkpoint (expected a .safetensors file written "
            "by BiART.save; no BiART weights were ever published in another format)"
        )
    return _read_safetensors(path, "biart")
