"""The evaluation schedule of EvaluationPass (docs/contract.md): every n epochs and the last
one, never the sanity check; and a clear error when a module breaks the output contract."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
from monitor_testkit import TinyDataModule, TinySSL

from callbacks import EmbeddingNormMonitor, EvaluationPass, KNNMonitor
from callbacks._eval_outputs import check_eval_outputs


def fit(**kwargs) -> tuple[KNNMonitor, EmbeddingNormMonitor]:
    knn, norms = KNNMonitor(k=5), EmbeddingNormMonitor(every_n_steps=100)
    trainer = pl.Trainer(
        accelerator="cpu",
        callbacks=[EvaluationPass(every_n_epochs=3), knn, norms],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=2,
        **kwargs,
    )
    trainer.fit(TinySSL(), TinyDataModule(n_bank=48, n_eval=20, n_ood=10))
    return knn, norms


def test_every_n_epochs_and_the_last_one():
    knn, norms = fit(max_epochs=7)
    # Epochs 0-6: after epochs 2 and 5 ((e + 1) % 3 == 0) and after the last, 6.
    assert [r["epoch"] for r in knn.history] == [2, 5, 6]
    assert norms.last_results["epoch"] == 6 and norms.last_results["sizes"]["bank"] == 48


def test_last_epoch_from_max_steps():
    # 48 samples / batch 16 = 3 steps per epoch; 8 steps end inside epoch 2.
    knn, _ = fit(max_steps=8, max_epochs=-1)
    assert [r["epoch"] for r in knn.history] == [2]


def test_contract_error_is_clear():
    with pytest.raises(RuntimeError, match=r"return \{'h', 'z', 'y', 'idx'\}"):
        check_eval_outputs(None)
    with pytest.raises(RuntimeError, match="got \\['h'\\]"):
        check_eval_outputs({"h": 1})


def test_per_step_monitors_log_once_per_optimizer_step(tmp_path):
    import csv

    from lightning.pytorch.loggers import CSVLogger

    from callbacks import EffectiveLRMonitor

    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=2,
        accumulate_grad_batches=3,  # 3 batches per epoch: one optimizer step per epoch
        callbacks=[EmbeddingNormMonitor(every_n_steps=1), EffectiveLRMonitor(every_n_steps=1)],
        logger=CSVLogger(tmp_path, name="csv", version=""),
        limit_val_batches=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(TinySSL(), TinyDataModule(n_bank=48, n_eval=20, n_ood=10))
    with open(tmp_path / "csv" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows if r.get("norm/z_mean")] == ["0", "1"]
    assert [r["step"] for r in rows if r.get("lr/effective")] == ["0", "1"]


class StopAt(pl.Callback):
    """Sets ``trainer.should_stop`` in epoch ``epoch``: on batch ``batch`` (in the hook
    ``hook``) or, with ``hook="on_train_epoch_end"``, at the end of that epoch."""

    def __init__(self, epoch: int, batch: int = 0, hook: str = "on_train_batch_end") -> None:
        self.epoch, self.batch, self.hook = epoch, batch, hook

    def _maybe_stop(self, trainer, batch_idx: int) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            trainer.should_stop = True

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.hook == "on_train_batch_start":
            self._maybe_stop(trainer, batch_idx)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.hook == "on_train_batch_end":
            self._maybe_stop(trainer, batch_idx)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.hook == "on_train_epoch_end":
            self._maybe_stop(trainer, self.batch)


def fit_with_stop(tmp_path, stop: StopAt, **kwargs):
    import csv

    from lightning.pytorch.loggers import CSVLogger

    knn, norms = KNNMonitor(k=5), EmbeddingNormMonitor(every_n_steps=100)
    trainer = pl.Trainer(
        accelerator="cpu",
        # the stopper first: its batch hooks run before the evaluation pass's
        callbacks=[stop, EvaluationPass(every_n_epochs=3), knn, norms],
        logger=CSVLogger(tmp_path, name="csv", version=""),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )
    trainer.fit(TinySSL(), TinyDataModule(n_bank=48, n_eval=20, n_ood=10))
    with open(tmp_path / "csv" / "metrics.csv", newline="") as f:
        top1_epochs = [int(float(r["epoch"])) for r in csv.DictReader(f) if r.get("knn/top1")]
    return trainer, knn, norms, top1_epochs


@pytest.mark.parametrize("hook", ["on_train_batch_end", "on_train_batch_start"])
def test_early_stop_on_a_non_evaluation_epoch_still_evaluates(tmp_path, hook):
    # every_n_epochs=3: epochs 2, 5, 6 are due; stop in epoch 3 (3 batches), at its 2nd batch.
    trainer, knn, norms, top1_epochs = fit_with_stop(
        tmp_path, StopAt(epoch=3, batch=1, hook=hook), max_epochs=7
    )
    assert trainer.current_epoch == 4  # epoch 3 counted as completed: stopped there
    assert [r["epoch"] for r in knn.history] == [2, 3]
    assert top1_epochs == [2, 3]
    # Mid-epoch: 3 epochs of 3 steps, then 2 steps of epoch 3; the evaluation is logged at
    # Lightning's step of that batch (its step counter moves on after validation).
    assert trainer.global_step == 3 * 3 + 2
    assert knn.history[-1]["step"] == 3 * 3 + 1
    assert norms.last_results["epoch"] == 3


def test_early_stop_waits_for_min_epochs_then_evaluates_the_last_epoch(tmp_path):
    # Stop requested in epoch 3 but min_epochs=5: Lightning trains epoch 4 to its end and
    # stops there; epoch 3 is not evaluated (training goes on), epoch 4 is (the last one).
    trainer, knn, _, top1_epochs = fit_with_stop(
        tmp_path, StopAt(epoch=3, batch=1), max_epochs=7, min_epochs=5
    )
    assert [r["epoch"] for r in knn.history] == [2, 4]
    assert top1_epochs == [2, 4]
    assert trainer.global_step == 5 * 3  # epoch 4 ran to its end
    assert knn.history[-1]["step"] == 5 * 3 - 1  # its last batch (Lightning's log step)


def test_stop_at_epoch_end_is_the_documented_limitation(tmp_path):
    # A stop requested in on_train_epoch_end comes after the epoch's batches: no evaluation
    # can run any more in Lightning's fit loop, and the monitor warns.
    with pytest.warns(UserWarning, match="without a final evaluation"):
        _, knn, _, _ = fit_with_stop(
            tmp_path, StopAt(epoch=3, hook="on_train_epoch_end"), max_epochs=7
        )
    assert [r["epoch"] for r in knn.history] == [2]
