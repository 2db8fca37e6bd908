"""What the training loops share: seeding, schedules, checkpoint state."""

from __future__ import annotations

import math
import os
import random
import sys
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError, first_line


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def init_distributed() -> tuple[int, int]:
    """(rank, world size): from torchrun's environment (joining the process group: NCCL
    with CUDA, gloo otherwise), or (0, 1) for a plain run."""
    if "RANK" not in os.environ:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def rank_device(name: str, world: int) -> torch.device:
    """``--device`` for this rank: under torchrun, ``cuda`` means this rank's own GPU
    (``LOCAL_RANK``), not cuda:0 for every rank (NCCL refuses two ranks on one GPU)."""
    device = torch.device(name)
    if world > 1 and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def autocast(device: torch.device, amp: str | None):
    """Mixed precision for ``--amp bf16|fp16`` on CUDA; a no-op on CPU (bf16 ran about 50x
    slower than float32 on the 2-core development CPU)."""
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype, enabled=amp is not None and device.type == "cuda")


def grad_scaler(device: torch.device, amp: str | None) -> torch.amp.GradScaler:
    """Loss scaling for fp16 (whose small gradients underflow); pass-through otherwise."""
    return torch.amp.GradScaler("cuda", enabled=amp == "fp16" and device.type == "cuda")


def cosine_lr(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10% of the base rate."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def note_if_already_done(start: int, steps: int, out: Path, rank: int) -> None:
    """--steps counts the steps already run, so a resumed run can have none left; say so
    rather than exit without a word."""
    if start >= steps and rank == 0:
        print(f"{out} is already at step {start} (--steps {steps} in all): nothing to train", file=sys.stderr)


def save_train_state(path: Path, step: int, optimizer, extra: dict | None = None) -> None:
    """Writes what resuming needs besides the weights. Everything here (ints, floats, tuples,
    dicts, tensors) loads with ``torch.load(weights_only=True)``; ``extra`` must keep to that."""
    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "python_rng": random.getstate(),
        **(extra or {}),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


TRAIN_STATE_KEYS = ("step", "optimizer", "torch_rng", "python_rng")


def load_train_state(path: Path, optimizer) -> dict:
    """Restores the optimizer and the RNGs saved by ``save_train_state``; returns the state.
    A damaged file, or one that does not fit ``optimizer``, raises CheckpointError naming it."""
    state = _read_train_state(path)
    try:
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
    except (TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"cannot resume from {path}: it does not fit this run ({first_line(err)})") from err
    return state


def _read_train_state(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise  # already a clear one-line error naming the file
    except Exception as err:
        # torch.load reports damage as whatever its reader trips on (UnpicklingError,
        # EOFError, KeyError, OSError, RuntimeError), with messages about its internals.
        raise CheckpointError(f"cannot resume from {path}: not a readable training state ({type(err).__name__}); "
                              "the file is damaged or was not written by lverse") from err
    missing = [key for key in TRAIN_STATE_KEYS if not isinstance(state, dict) or key not in state]
    if missing or not isinstance(state["step"], int):
        what = f"lacks {', '.join(missing)}" if missing else "has no integer step"
        raise CheckpointError(f"cannot resume from {path}: not an lverse training state (it {what})")
    return state
