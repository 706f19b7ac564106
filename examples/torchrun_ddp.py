"""Data-parallel training with an adaptim optimizer, launched by torchrun.

    torchrun --nproc_per_node=2 examples/torchrun_ddp.py --optimizer adamw --steps 200

Copy this file as a starting point. It runs on CPU (gloo backend) and on GPUs (nccl, one GPU per
process). What it shows:

- adaptim optimizers are plain ``torch.optim.Optimizer`` subclasses: wrap the model in
  ``DistributedDataParallel`` and build the optimizer on ``ddp.parameters()`` exactly as with
  torch.optim. DDP averages gradients across processes during ``backward()``, so every process
  applies the same update and the replicas stay identical.
- ``DistributedSampler`` gives each process its own part of every epoch.
- Checkpoints: rank 0 saves model, optimizer and scheduler with ``torch.save``; on restart every
  rank loads the file with ``torch.load(weights_only=True)`` and training continues exactly where
  it stopped (adaptim's ``load_state_dict`` checks the file first and refuses a mismatched one).

Optimizer state sharding: replace the optimizer line with
``torch.distributed.optim.ZeroRedundancyOptimizer(ddp.parameters(), optimizer_class=adaptim.AdamW,
lr=...)``; for FSDP2 call ``torch.distributed.fsdp.fully_shard`` on the layers and the model and
build the adaptim optimizer on ``model.parameters()`` (see README, "Reliability").
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import adaptim


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", default="adamw", choices=adaptim.list_optimizers())
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--steps", type=int, default=200, help="total optimizer steps")
    parser.add_argument("--batch-size", type=int, default=32, help="per process")
    parser.add_argument("--checkpoint", default="ddp_checkpoint.pt",
                        help="saved every --save-every steps and at the end (rank 0); resumed "
                             "from if it exists (run again with the same --steps)")
    parser.add_argument("--save-every", type=int, default=100)
    parser.add_argument("--log-every", type=int, default=10)
    return parser.parse_args()


def synthetic_regression(n: int = 4096, d_in: int = 16, d_out: int = 4) -> TensorDataset:
    """y = tanh(x A) B + noise, the same on every rank (fixed seed)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, d_in, generator=gen)
    a, b = torch.randn(d_in, 32, generator=gen) / 4, torch.randn(32, d_out, generator=gen)
    y = torch.tanh(x @ a) @ b + 0.01 * torch.randn(n, d_out, generator=gen)
    return TensorDataset(x, y)


def save_checkpoint(path, model, optimizer, scheduler, step) -> None:
    """Rank 0 writes; a temporary file and an atomic rename, so a crash mid-write never leaves
    a truncated checkpoint behind."""
    if dist.get_rank() == 0:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "step": step}, f"{path}.tmp")
        os.replace(f"{path}.tmp", path)
    dist.barrier()


def main() -> None:
    args = parse_args()
    use_cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo")  # env:// set up by torchrun
    rank, world = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)

    torch.manual_seed(0)  # identical initial weights everywhere (DDP also broadcasts rank 0's)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 4)).to(device)
    ddp = DistributedDataParallel(model, device_ids=[local_rank] if use_cuda else None)
    optimizer = adaptim.create(args.optimizer, ddp.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.steps)

    step = 0
    if os.path.exists(args.checkpoint):
        saved = torch.load(args.checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        step = saved["step"]
        if rank == 0:
            print(f"resumed from {args.checkpoint} at step {step}", flush=True)

    dataset = synthetic_regression()
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=0)
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, drop_last=True)
    epoch, done_in_epoch = divmod(step, len(loader))
    while step < args.steps:
        sampler.set_epoch(epoch)  # a different shuffle each epoch, the same on every rank
        for x, y in loader:
            if done_in_epoch:  # resumed mid-epoch: skip the batches already trained on
                done_in_epoch -= 1
                continue
            if step >= args.steps:
                break
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(ddp(x), y)
            loss.backward()  # gradients are averaged across ranks here
            optimizer.step()
            scheduler.step()
            step += 1
            if step == 1 or step % args.log_every == 0 or step == args.steps:
                mean_loss = loss.detach().clone()
                dist.all_reduce(mean_loss)  # sum (gloo has no AVG), then divide
                mean_loss /= world
                if rank == 0:
                    print(f"step {step} loss {mean_loss.item():.6f} "
                          f"lr {scheduler.get_last_lr()[0]:.2e}", flush=True)
            if step % args.save_every == 0 and step < args.steps:
                save_checkpoint(args.checkpoint, model, optimizer, scheduler, step)
        epoch += 1

    save_checkpoint(args.checkpoint, model, optimizer, scheduler, step)
    if rank == 0:
        print(f"saved {args.checkpoint} at step {step}", flush=True)
    # Release DDP (its reducer holds the process group) and let every rank arrive before the
    # group is torn down: a rank that destroys it while a peer still uses it can abort at exit.
    del ddp
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
