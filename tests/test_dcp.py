"""adaptim's ``skipped_steps`` through torch.distributed.checkpoint: get_optimizer_state_dict +
dcp.save, then dcp.load + set_optimizer_state_dict into a new optimizer, in real gloo process
groups of 1 and 2 processes (CPU). DCP keeps only a state_dict's "state" and "param_groups";
the counter rides in every saved parameter group (``adaptim_skipped_steps``)."""

from __future__ import annotations

import datetime
import os

import pytest
import torch
import torch.distributed as dist

from spawning import spawn



def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh(),
                               torch.nn.Linear(4, 2)).double()


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (get_optimizer_state_dict,
                                                         set_optimizer_state_dict)
    from torch.nn.parallel import DistributedDataParallel as DDP

    import adaptim

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size, timeout=datetime.timedelta(seconds=60))
    model = DDP(_model())
    opt = adaptim.Adam(model.parameters(), lr=0.01, on_nonfinite="skip")
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(rank), dtype=torch.float64)
    for bad in (False, True, False):
        opt.zero_grad()
        model(x).square().mean().backward()
        if bad:
            next(model.parameters()).grad[0, 0] = float("nan")  # every rank: skipped
        opt.step()
    checkpoint = os.path.join(out_dir, "ckpt")
    dcp.save({"optim": get_optimizer_state_dict(model, opt)}, checkpoint_id=checkpoint)

    resumed = DDP(_model())
    resumed_opt = adaptim.Adam(resumed.parameters(), lr=0.01, on_nonfinite="skip")
    template = {"optim": get_optimizer_state_dict(resumed, resumed_opt)}
    dcp.load(template, checkpoint_id=checkpoint)
    set_optimizer_state_dict(resumed, resumed_opt, template["optim"])
    same_state = all(
        torch.equal(resumed_opt.state[q][k], opt.state[p][k])
        for p, q in zip(model.parameters(), resumed.parameters()) for k in opt.state[p])
    torch.save({"saved": opt.skipped_steps, "loaded": resumed_opt.skipped_steps,
                "same_state": same_state,
                "group_keys": sorted(resumed_opt.param_groups[0])},
               os.path.join(out_dir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("world_size", [1, 2])
def test_skipped_steps_survive_distributed_checkpoint(tmp_path, world_size):
    spawn(_worker, world_size, tmp_path)
    for rank in range(world_size):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert result["saved"] == 1
        assert result["loaded"] == 1
        assert result["same_state"]
        assert "adaptim_skipped_steps" not in result["group_keys"]
