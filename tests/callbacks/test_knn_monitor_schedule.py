"""KNNMonitor's evaluation schedule (docs/contract.md): every n epochs and the last one,
never the sanity check; and a clear error when a module breaks the output contract."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
from monitor_testkit import TinyDataModule, TinySSL

from callbacks import EmbeddingNormMonitor, KNNMonitor
from callbacks._eval_outputs import check_eval_outputs


def fit(**kwargs) -> tuple[KNNMonitor, EmbeddingNormMonitor]:
    knn, norms = KNNMonitor(every_n_epochs=3, k=5), EmbeddingNormMonitor(every_n_steps=100)
    trainer = pl.Trainer(
        accelerator="cpu",
        callbacks=[knn, norms],
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
