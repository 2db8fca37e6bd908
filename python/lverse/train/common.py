"""What the training loops share: seeding, schedules, checkpoint state."""

from __future__ import annotations

import math
import os
import random
from pathlib import Path

import numpy as np
import torch


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


def save_train_state(path: Path, step: int, optimizer, extra: dict | None = None) -> None:
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


def load_train_state(path: Path, optimizer) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["python_rng"])
    return state
