"""The training commands' own loops under DistributedDataParallel: 2 CPU processes
(gloo), each drawing its own batches, run a few steps; the parameters (and the AugVAE's
codebook statistics) stay identical across ranks and the loss falls on both."""

import json
import os

import lverse
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lverse.__main__ import build_parser
from lverse.train import biart as train_biart
from lverse.train import vae as train_vae

from .conftest import SMALL
from .test_augvae_ddp import free_port

STEPS = 12


def as_torchrun_rank(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)


def biart_worker(rank: int, world: int, port: int, vae_path: str, out_dir: str) -> None:
    as_torchrun_rank(rank, world, port)
    args = build_parser().parse_args([
        "train-biart", "--out", out_dir, "--data", "fake", "--vae", vae_path, "--steps", str(STEPS),
        "--batch-size", "8", "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--text-len", "8",
        "--vocab-size", "520", "--lr", "3e-3", "--warmup", "1", "--checkpoint-every", "100",
        "--sample-every", "100",
    ])
    model, losses = train_biart.train(args)
    torch.save({"state": model.state_dict(), "losses": losses}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def vae_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    as_torchrun_rank(rank, world, port)
    config = {**SMALL, "ch_mult": list(SMALL["ch_mult"]), "inner_ch_mult": list(SMALL["inner_ch_mult"]),
              "resolution": 64, "single_level": 1}
    args = build_parser().parse_args([
        "train-vae", "--out", out_dir, "--config", json.dumps(config), "--steps", str(STEPS), "--batch-size", "4",
        "--lr", "3e-3", "--warmup", "1", "--restart-every", "4", "--min-usage", "0.2", "--checkpoint-every", "100",
        "--sample-every", "100",
    ])
    model, losses = train_vae.train(args)
    torch.save({"state": model.state_dict(), "losses": losses}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def spawn_two(worker, *args) -> tuple[dict, dict]:
    out_dir = args[-1]
    mp.start_processes(worker, args=(2, free_port(), *args), nprocs=2, join=True, start_method="spawn")
    return torch.load(os.path.join(out_dir, "rank0.pt")), torch.load(os.path.join(out_dir, "rank1.pt"))


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_train_biart_ddp_keeps_ranks_identical(tmp_path):
    torch.manual_seed(0)
    vae_path = tmp_path / "vae.safetensors"
    lverse.AugVAE(lverse.AugVAEConfig(**SMALL, single_level=1)).save(vae_path)
    r0, r1 = spawn_two(biart_worker, str(vae_path), str(tmp_path))
    assert r0["losses"] != r1["losses"], "both ranks trained on the same batches"
    for key, value in r0["state"].items():
        assert torch.equal(value, r1["state"][key]), key
    for losses in (r0["losses"], r1["losses"]):
        assert len(losses) == STEPS
        assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5, losses
    # Rank 0 alone writes the checkpoint, with the synchronised weights.
    saved = lverse.BiART.from_checkpoint(tmp_path / "biart.safetensors")
    assert saved.metadata["step"] == STEPS
    for key, value in saved.state_dict().items():
        assert torch.equal(value, r0["state"][key]), key


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_train_vae_ddp_keeps_ranks_identical(tmp_path):
    r0, r1 = spawn_two(vae_worker, str(tmp_path))
    assert r0["losses"] != r1["losses"], "both ranks trained on the same batches"
    for key, value in r0["state"].items():
        assert torch.equal(value, r1["state"][key]), key
    for losses in (r0["losses"], r1["losses"]):
        assert len(losses) == STEPS
        assert sum(losses[-3:]) < sum(losses[:3]), losses
    saved = lverse.AugVAE.from_checkpoint(tmp_path / "augvae.safetensors")
    for key, value in saved.state_dict().items():
        assert torch.equal(value, r0["state"][key]), key
