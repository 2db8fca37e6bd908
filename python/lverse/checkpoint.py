"""Reading and writing checkpoints: official PyTorch Lightning ``.ckpt`` pickles and
lverse's own safetensors files (config in the metadata)."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

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


def _torch_load(path: Path) -> object:
    # weights_only keeps arbitrary code out of the unpickler.
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as err:
        text = str(err)
        unsupported = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if unsupported:
            raise CheckpointError(
                f"{path} pickles an object of class {unsupported.group(1)}, which lverse does not unpickle "
                "(only tensors, containers, argparse.Namespace and Lightning's AttributeDict are allowed, "
                "so that loading runs no code from the file)"
            ) from err
        first_line = re.sub(r"\x1b\[[0-9;]*m", "", text.strip().splitlines()[0]) if text.strip() else type(err).__name__
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {first_line}") from err


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
    try:
        config = json.loads(metadata[CONFIG_KEY])
    except (KeyError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} has no readable {CONFIG_KEY} metadata") from err
    extra = json.loads(metadata[EXTRA_KEY]) if EXTRA_KEY in metadata else {}
    return config, state, extra


def save_safetensors(path, kind: str, config: dict, tensors: dict, specs,
                     extra: dict | None = None) -> None:
    """Writes each tensor once (tied names are restored from the config on load); ``extra``
    is JSON-able metadata (e.g. a token layout and tokenizer) stored beside the config."""
    from safetensors.torch import save_file

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
    save_file(state, str(path), metadata=metadata)


def _count_indexed(state: dict, prefix: str) -> int:
    indices = {int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)}
    return max(indices) + 1 if indices else 0


def _augvae_config_from_lightning(path: Path, args: dict, state: dict) -> dict:
    required = ["hidden_dim", "ch_mult", "num_res_blocks", "z_channels", "codebook_dim",
                "num_tokens", "resolution"]
    missing = [k for k in required if k not in args]
    if missing:
        raise CheckpointError(
            f"{path}: hyper_parameters['args'] lacks {missing}; not an AugVAE checkpoint"
        )
    if args.get("double_z"):
        raise CheckpointError(f"{path}: double_z=True is not an AugVAE configuration")
    levels = _count_indexed(state, "quantizers.") or len(args.get("attn_resolutions", []))
    encoders = _count_indexed(state, "encoders.")
    finetune = bool(args.get("finetune")) or any(k.startswith("connectors.") for k in state)
    return {
        "hidden_dim": int(args["hidden_dim"]),
        "ch_mult": [int(m) for m in args["ch_mult"]],
        "inner_ch_mult": [2, 4],
        "num_res_blocks": int(args["num_res_blocks"]),
        "z_channels": int(args["z_channels"]),
        "codebook_dim": int(args["codebook_dim"]),
        "num_tokens": int(args["num_tokens"]),
        "resolution": int(args["resolution"]),
        "levels": levels,
        # SL keeps encoders 0..j of the ML model (setup_finetune), so j = encoders - 1.
        "single_level": encoders - 1 if finetune else None,
        "use_attn": bool(args.get("use_attn", False)),
        "beta": float(args.get("quant_beta", 0.25)),
        "ema_decay": float(args.get("quant_ema_decay", 0.99)),
        "ema_eps": float(args.get("quant_ema_eps", 1e-5)),
        "in_channels": int(args.get("in_channels", 3)),
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
    if not isinstance(data, dict) or "state_dict" not in data:
        raise CheckpointError(
            f"{path} is a PyTorch file but not a Lightning checkpoint (no 'state_dict' entry); "
            "build the model with AugVAE(...) and call load_checked(state_dict) instead"
        )
    state = {k: v for k, v in data["state_dict"].items() if not k.startswith("loss.")}
    if "encoders.0.conv_in.weight" not in state:
        sample = ", ".join(list(state)[:3])
        raise CheckpointError(
            f"{path} is not an AugVAE checkpoint: no encoders.0.conv_in.weight (keys start {sample})"
        )
    hparams = data.get("hyper_parameters") or {}
    args = hparams.get("args")
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    if not isinstance(args, dict):
        raise CheckpointError(f"{path} has no hyper_parameters['args'] to describe the architecture")
    return _augvae_config_from_lightning(path, args, state), state


def expand_tied(state: dict, specs) -> dict:
    """Adds the names of tied tensors that a file stored once."""
    state = dict(state)
    for name, _shape, _init, _arg, _trainable, _buffer, tied_to in specs:
        if tied_to is not None and name not in state and tied_to in state:
            state[name] = state[tied_to]
    return state


def check_state_dict(state: dict, specs, what: str) -> None:
    """Raises one CheckpointError naming every missing, unexpected and mis-shaped key."""
    expected = {spec[0]: tuple(spec[1]) for spec in specs}
    problems = []
    for name, shape in expected.items():
        if name not in state:
            problems.append(f"missing {name}, expected shape {shape}")
        elif tuple(state[name].shape) != shape:
            problems.append(f"{name}: expected shape {shape}, found {tuple(state[name].shape)}")
    problems += [f"unexpected {name} {tuple(state[name].shape)}" for name in state if name not in expected]
    if problems:
        raise CheckpointError(f"{what}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))


def load_biart_checkpoint(path) -> tuple[dict, dict[str, torch.Tensor], dict]:
    """(config, state dict, extra metadata) of an lverse BiART safetensors file."""
    path = Path(os.fspath(path))
    if _sniff(path) != "safetensors":
        raise CheckpointError(
            f"{path} is not an lverse BiART checkpoint (expected a .safetensors file written "
            "by BiART.save; no BiART weights were ever published in another format)"
        )
    return _read_safetensors(path, "biart")
