"""Starting gloo workers on localhost for the distributed tests: a free port, and spawn with a
deadline after which the workers are killed and the test fails."""

from __future__ import annotations

import socket
import time

import pytest
import torch.multiprocessing as mp

SPAWN_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(fn, world_size: int, out_dir) -> None:
    """Run ``fn(rank, world_size, port, out_dir)`` in ``world_size`` processes; fail (and kill
    them) after SPAWN_TIMEOUT_S."""
    context = mp.start_processes(fn, args=(world_size, free_port(), str(out_dir)),
                                 nprocs=world_size, join=False, start_method="spawn")
    deadline = time.monotonic() + SPAWN_TIMEOUT_S
    while not context.join(timeout=max(0.0, deadline - time.monotonic())):
        if time.monotonic() >= deadline:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
            pytest.fail(f"distributed workers did not finish in {SPAWN_TIMEOUT_S} s")
