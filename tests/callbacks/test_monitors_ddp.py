"""1 process == 2 processes (gloo, ddp_spawn): every evaluation monitor (k-NN accuracy,
histograms, per-class means, confidence, health) and the per-step ones; and the shared
evaluation pass gathers each split once (two collectives: its shard sizes, then its rows).

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

import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
from distributed_exit import LeaveTogether
from lightning.pytorch.strategies import DDPStrategy
from monitor_testkit import DumpResults, TinyDataModule, TinySSL, comparable, load_records

from callbacks import (
    ConfidenceMonitor,
    EmbeddingNormMonitor,
    EvaluationPass,
    HealthMonitor,
    KNNMonitor,
)

pytestmark = pytest.mark.slow

MONITORS = ("knn", "norm", "confidence", "health")


def monitors():
    return {
        "knn": KNNMonitor(k=9, bucket_accuracy=True, bucket_min_count=3, backend="torch"),
        "norm": EmbeddingNormMonitor(every_n_steps=1, histogram_bins=16),
        "confidence": ConfidenceMonitor(),
        "health": HealthMonitor(every_n_steps=1, max_samples=40),
    }


class CountGathers(pl.Callback):
    """Counts the all-gather collectives of each evaluation epoch (rank 0 writes them).

    Placed after the EvaluationPass: its epoch-end hook runs after the pass has gathered.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.counts: list[int] = []

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        strategy = trainer.strategy
        original = type(strategy).all_gather
        self._n = 0

        def counting(*args, **kwargs):
            self._n += 1
            return original(strategy, *args, **kwargs)

        strategy.all_gather = counting

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        del trainer.strategy.all_gather  # back to the class's method
        if not trainer.sanity_checking and trainer.is_global_zero:
            self.counts.append(self._n)
            self.path.write_text(json.dumps(self.counts))


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
    count = CountGathers(tmp_path / f"{name}.json")
    cbs = [EvaluationPass(every_n_epochs=2), count, *mons.values(), dump]
    trainer(tmp_path, cbs, devices).validate(
        model, TinyDataModule(eval_batch_size=1), verbose=False
    )
    gathers = json.loads((tmp_path / f"{name}.json").read_text())
    return load_records(tmp_path / f"{name}.pkl")[-1], gathers


def test_validate_one_process_equals_two(tmp_path):
    model = TinySSL()
    one, gathers_one = evaluate(tmp_path, model, 1, "one")
    two, gathers_two = evaluate(tmp_path, model, 2, "two")
    assert one["knn"]["bank_size"] == 101 and one["knn"]["eval_size"] == 51
    assert one["norm"]["sizes"] == {"bank": 101, "eval": 51, "ood/far": 37}
    assert sum(one["norm"]["hist"]["bank"]["z"][0]) == 101
    assert set(one["confidence"]["ood"]) == {"far"} and "aurc" in one["confidence"]
    assert set(one["health"]["z"]) == {"rankme", "uniformity", "l2_std"}
    for key in MONITORS:
        assert comparable(one[key]) == comparable(two[key]), key
    # Four monitors, three splits: each split is gathered once, by the pass (its shard
    # sizes, then all its tensors packed in one); one process needs no collective.
    assert gathers_one == [0]
    assert gathers_two == [2 * 3]


def test_fit_two_processes_then_one_process_reproduces_last_eval(tmp_path):
    mons = monitors()
    dump = DumpResults(tmp_path / "fit.pkl", mons)
    model = TinySSL()
    cbs = [EvaluationPass(every_n_epochs=2), *mons.values(), dump]
    trainer(tmp_path, cbs, 2, max_epochs=3, num_sanity_val_steps=2).fit(
        model, TinyDataModule(eval_batch_size=1)
    )
    records = load_records(tmp_path / "fit.pkl")
    # every_n_epochs=2 with 3 epochs: after epoch 1 (the 2nd) and epoch 2 (the last).
    assert [r["knn"]["epoch"] for r in records] == [1, 2]
    assert records[-1]["norm"]["sizes"] == {"bank": 101, "eval": 51, "ood/far": 37}
    # ddp_spawn returns rank 0's weights and buffers to this process.
    again, _ = evaluate(tmp_path, model, 1, "again")
    for key in MONITORS:
        assert comparable(records[-1][key]) == comparable(again[key]), key
