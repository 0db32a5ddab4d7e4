"""A training step under DDP has no barrier: Lightning's ``self.log(..., sync_dist=True)``
runs one before its all-reduce at every step, a host sync on GPUs; the methods reduce the
logged loss themselves (an all-reduce the host does not wait for)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

_SCRIPT = """
import sys
import torch
import torch.distributed as dist
import lightning.pytorch as pl
sys.path.insert(0, {helpers!r})
from method_helpers import TinyDataModule, make_method, tiny_trainer

class CountBarriers(pl.Callback):  # steps 1-3, after the first step's set-up
    count = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 1:
            self.count, self.barrier = 0, dist.barrier

            def counting(*args, **kwargs):
                self.count += 1
                return self.barrier(*args, **kwargs)

            dist.barrier = counting

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == 4:
            dist.barrier = self.barrier
            with open({out!r} + f"/rank{{trainer.global_rank}}.txt", "w") as f:
                f.write(f"{{self.count}} {{float(trainer.callback_metrics['train/loss']):.6f}}")

torch.manual_seed(0)
model = make_method({method!r})
trainer = tiny_trainer(max_steps=5, strategy="ddp", devices=2, callbacks=[CountBarriers()])
trainer.fit(model, datamodule=TinyDataModule(n=80, batch_size=8))
"""


@pytest.mark.slow
@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_ddp_training_steps_have_no_barrier(tmp_path: Path, method: str) -> None:
    script = tmp_path / "fit.py"
    script.write_text(
        textwrap.dedent(_SCRIPT.format(helpers=str(HERE), out=str(tmp_path), method=method))
    )
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts, losses = zip(
        *((tmp_path / f"rank{r}.txt").read_text().split() for r in (0, 1)), strict=True
    )
    assert counts == ("0", "0")
    assert losses[0] == losses[1], "train/loss is the global batch's on every process"
