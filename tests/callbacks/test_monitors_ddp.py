"""1 process == 2 processes (gloo, ddp_spawn): k-NN accuracy, histograms, per-class means.

The splits have odd sizes (101, 51, 37), so DistributedSampler pads each with a duplicate
that the monitors must drop. ``trainer.validate`` on a fixed model isolates the gathering
from training nondeterminism; a short fit then checks the schedule and the BatchNorm
buffer sync (rank 0's weights come back from ddp_spawn; one process must reproduce the
2-process evaluation of the last epoch exactly).

Evaluation batches hold one sample here: a GEMM's result for one row can change in the
last bit with the batch's shape, and the shards' batches differ from one process's. With
batch size 1 every sample's features are bitwise equal in both runs, so the whole chain
(gather, padding removal, order, statistics) must be exact.
"""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
from distributed_exit import LeaveTogether
from lightning.pytorch.strategies import DDPStrategy
from monitor_testkit import DumpResults, TinyDataModule, TinySSL, comparable, load_records

from callbacks import EmbeddingNormMonitor, KNNMonitor

pytestmark = pytest.mark.slow


def monitors():
    return {
        "knn": KNNMonitor(
            every_n_epochs=2, k=9, bucket_accuracy=True, bucket_min_count=3, backend="torch"
        ),
        "norm": EmbeddingNormMonitor(every_n_steps=1, histogram_bins=16),
    }


def trainer(tmp_path, cbs, devices, **kwargs):
    # broadcast_buffers=False: DDP then never syncs BatchNorm statistics itself (with True it
    # happens to broadcast them on the first evaluation forward), so the monitors' own
    # sync is what makes the evaluation rank-independent.
    spawn = DDPStrategy(start_method="spawn", broadcast_buffers=False)
    extra = {"strategy": spawn} if devices > 1 else {}
    return pl.Trainer(
        accelerator="cpu",
        devices=devices,
        callbacks=[*cbs, LeaveTogether()] if devices > 1 else cbs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **extra,
        **kwargs,
    )


def evaluate(tmp_path, model, devices, name):
    mons = monitors()
    dump = DumpResults(tmp_path / f"{name}.pkl", mons)
    trainer(tmp_path, [*mons.values(), dump], devices).validate(
        model, TinyDataModule(eval_batch_size=1), verbose=False
    )
    return load_records(tmp_path / f"{name}.pkl")[-1]


def test_validate_one_process_equals_two(tmp_path):
    model = TinySSL()
    one = evaluate(tmp_path, model, 1, "one")
    two = evaluate(tmp_path, model, 2, "two")
    assert one["knn"]["bank_size"] == 101 and one["knn"]["eval_size"] == 51
    assert one["norm"]["sizes"] == {"bank": 101, "eval": 51, "ood/far": 37}
    assert sum(one["norm"]["hist"]["bank"]["z"][0]) == 101
    for key in ("knn", "norm"):
        assert comparable(one[key]) == comparable(two[key]), key


def test_fit_two_processes_then_one_process_reproduces_last_eval(tmp_path):
    mons = monitors()
    dump = DumpResults(tmp_path / "fit.pkl", mons)
    model = TinySSL()
    trainer(tmp_path, [*mons.values(), dump], 2, max_epochs=3, num_sanity_val_steps=2).fit(
        model, TinyDataModule(eval_batch_size=1)
    )
    records = load_records(tmp_path / "fit.pkl")
    # every_n_epochs=2 with 3 epochs: after epoch 1 (the 2nd) and epoch 2 (the last).
    assert [r["knn"]["epoch"] for r in records] == [1, 2]
    assert records[-1]["norm"]["sizes"] == {"bank": 101, "eval": 51, "ood/far": 37}
    # ddp_spawn returns rank 0's weights and buffers to this process.
    again = evaluate(tmp_path, model, 1, "again")
    for key in ("knn", "norm"):
        assert comparable(records[-1][key]) == comparable(again[key]), key
