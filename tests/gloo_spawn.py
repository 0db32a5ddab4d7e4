"""Run a function on W spawned CPU processes joined in a gloo process group (for the
"1 process == W processes" tests of the collectives). Imported as ``gloo_spawn``.

``run_on_ranks(fn, world_size, *args)`` calls ``fn(rank, world_size, *args)`` in every
process and returns the list of the ranks' return values (anything ``torch.save`` takes).
``fn`` must be a module-level function (spawn pickles it by name).
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, out: str, fn, args) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        result = fn(rank, world_size, *args)
        torch.save(result, Path(out) / f"rank{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_on_ranks(fn, world_size: int, *args) -> list:
    with tempfile.TemporaryDirectory() as out:
        mp.start_processes(
            _worker,
            args=(world_size, _free_port(), out, fn, args),
            nprocs=world_size,
            start_method="spawn",
        )
        return [
            torch.load(Path(out) / f"rank{r}.pt", weights_only=False) for r in range(world_size)
        ]
