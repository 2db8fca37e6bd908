"""BiART under FSDP2 (``fully_shard``) per block, 2 CPU processes (gloo): the sharded training
step gives the unsharded model's loss and updated weights, and the native sampler refuses
the sharded module instead of reading a shard as the whole weight."""

import os

import lverse
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from .test_augvae_ddp import free_port

fsdp = pytest.importorskip("torch.distributed.fsdp")


def make_model() -> lverse.BiART:
    torch.manual_seed(0)
    return lverse.BiART(50, 24, n_layer=2, n_head=2, n_embd=32, embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0)


def batch():
    g = torch.Generator().manual_seed(3)
    idx = torch.randint(0, 50, (4, 16), generator=g)
    return idx, (torch.arange(16) >= 8).long().expand(4, 16).contiguous()


def step(model) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    idx, seg = batch()
    loss = torch.nn.functional.cross_entropy(model(idx[:, :-1], seg[:, :-1]).flatten(0, 1), idx[:, 1:].flatten())
    loss.backward()
    opt.step()
    return loss.item()


def worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model = make_model()
    for block in model.blocks:
        fsdp.fully_shard(block)
    fsdp.fully_shard(model)
    loss = step(model)  # every rank sees the same batch, so the result is the unsharded one
    try:
        idx, seg = batch()
        model.generate(idx[:, :4], seg[:, :4] * 0, 2)
        refusal = None
    except lverse.NativePathError as err:
        refusal = str(err)
    full = {k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in model.state_dict().items()}
    torch.save({"loss": loss, "state": full, "refusal": refusal}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_fsdp_per_block_matches_unsharded(tmp_path):
    mp.start_processes(worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    plain = make_model()
    plain_loss = step(plain)
    for rank in range(2):
        out = torch.load(tmp_path / f"rank{rank}.pt")
        assert abs(out["loss"] - plain_loss) < 1e-5
        for key, value in plain.state_dict().items():
            assert (out["state"][key] - value).abs().max().item() < 1e-5, key
        assert out["refusal"] is not None and "the model is a torch.distributed.fsdp" in out["refusal"]
