"""Exact resume: kill a run, resume from last.ckpt, get the uninterrupted weights."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint
from method_helpers import TinyDataModule, make_method, tiny_trainer


class Killed(RuntimeError):
    pass


class KillAt(Callback):
    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            raise Killed(f"killed at epoch {self.epoch}, batch {self.batch}")


def _fit(tmp, name: str, extra=(), ckpt_path=None, seed: int = 11):
    torch.manual_seed(seed)
    # Cut-init and GradScale on, so that a re-applied cut or a lost schedule would show.
    model = make_method(name, cut_constant=3.0, gradscale_power=1.0, warmup_epochs=1.0, lr=0.05)
    trainer = tiny_trainer(
        max_epochs=3,
        accumulate_grad_batches=2,
        enable_checkpointing=True,
        default_root_dir=tmp,
        callbacks=[ModelCheckpoint(dirpath=tmp / "checkpoints", save_last=True), *extra],
    )
    trainer.fit(model, datamodule=TinyDataModule(n=32, batch_size=8), ckpt_path=ckpt_path)
    return model, trainer


def test_resume_from_last_ckpt_gives_the_uninterrupted_weights(tmp_path, method_name: str) -> None:
    full, full_trainer = _fit(tmp_path / "full", method_name)

    with pytest.raises(Killed):
        _fit(tmp_path / "killed", method_name, extra=[KillAt(epoch=2, batch=1)])
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    assert last.is_file()
    assert torch.load(last, weights_only=False)["global_step"] == 4  # 2 epochs x 2 optimizer steps

    resumed, resumed_trainer = _fit(tmp_path / "killed", method_name, ckpt_path=str(last), seed=999)
    assert resumed_trainer.global_step == full_trainer.global_step == 6
    full_state, resumed_state = full.state_dict(), resumed.state_dict()
    assert full_state.keys() == resumed_state.keys()
    for k, v in full_state.items():
        assert torch.equal(resumed_state[k], v), k
    assert (
        resumed_trainer.optimizers[0].param_groups[0]["lr"]
        == full_trainer.optimizers[0].param_groups[0]["lr"]
    )
