"""A callback for the spawned DDP tests: the ranks leave together and close gloo themselves.

Once in a full-suite run, a spawned rank aborted at interpreter exit ("terminate called
without an active exception", SIGABRT) after ``Trainer.fit`` had finished on both ranks:
the process group was left to an ``atexit`` hook while the other rank had already gone.
Meeting at a barrier and destroying the group in ``teardown`` (after the last collective
Lightning makes) removes that race.
"""

from __future__ import annotations

import torch.distributed as dist
from lightning.pytorch import Callback


class LeaveTogether(Callback):
    def teardown(self, trainer, pl_module, stage: str) -> None:
        if dist.is_available() and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
