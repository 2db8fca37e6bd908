"""AugVAE under DistributedDataParallel: 2 CPU processes (gloo) train a few steps on
different data; every parameter, the EMA codebook included, stays identical across ranks
and the loss falls."""

import os
import socket

import lverse
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from .conftest import SMALL


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)  # same initial weights on every rank (DDP also broadcasts them)
    model = lverse.AugVAE(lverse.AugVAEConfig(**SMALL, single_level=1)).train()
    # SL leaves the coarse levels' biases unused, as the official model does.
    ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    opt = torch.optim.Adam([p for p in ddp.parameters() if p.requires_grad], lr=1e-3)
    g = torch.Generator().manual_seed(100 + rank)  # each rank sees its own data
    fixed = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1
    losses = []
    for _ in range(8):
        recon, commitment = ddp(fixed)
        loss = torch.nn.functional.mse_loss(recon, fixed) + commitment
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    torch.save({"state": model.state_dict(), "losses": losses}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_ddp_keeps_ranks_identical(tmp_path):
    mp.start_processes(worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    for key, value in r0["state"].items():
        assert torch.allclose(value, r1["state"][key], atol=1e-6), key
    assert r0["state"]["quantizers.0.embedding.cluster_size"].sum() > 0
    assert r0["losses"][-1] < r0["losses"][0] and r1["losses"][-1] < r1["losses"][0]
