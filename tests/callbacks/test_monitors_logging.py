"""The demo setting (SimCLR, MLP, latent classes) logged to W&B (offline), TensorBoard and
CSV at once: histograms and scalars under the documented names; ``ssl-norms plot`` on it.
In W&B the evaluation metrics are defined against ``epoch`` and the per-class norms are a
table and a bar chart at every evaluation.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import lightning.pytorch as pl
import pytest
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

import callbacks
from callbacks import (
    ConfidenceMonitor,
    EffectiveLRMonitor,
    EmbeddingNormMonitor,
    EvaluationPass,
    HealthMonitor,
    KNNMonitor,
)
from ssl_norms.plot import main as plot_main

pytestmark = pytest.mark.slow

N_TRAIN, NUM_CLASSES, EPOCHS = 300, 4, 2
STEP_METRICS = [
    f"norm/{s}_{q}" for s in ("z", "h") for q in ("mean", "std", "q05", "q25", "q50", "q75", "q95")
]
STEP_METRICS += ["lr/base", "lr/effective", "lr/effective_median"]
STEP_METRICS += ["health/alignment", "health/opposite_halves"]
OOD = "latent_holdout"
EVAL_METRICS = ["knn/top1", "knn/top5"]
EVAL_METRICS += [f"confidence/{m}/{OOD}" for m in ("auroc", "aupr", "fpr95")]
EVAL_METRICS += ["confidence/aurc", "confidence/random_aurc", "confidence/excess_aurc"]
EVAL_METRICS += [f"health/{m}_{s}" for m in ("rankme", "uniformity", "l2_std") for s in "zh"]
EVAL_METRICS += [f"norm/ood_ratio/{OOD}", f"norm/ood/{OOD}_mean"]
EVAL_METRICS += [
    f"norm/{split}_{infix}{stat}"
    for split in ("bank", "eval")
    for infix in ("", "h_")
    for stat in ("mean", "std", "q05", "q25", "q50", "q75", "q95")
]
EVAL_METRICS += [f"norm/class_mean/{c}" for c in range(NUM_CLASSES)]
HISTOGRAMS = ["norm/bank_hist", "norm/eval_hist", "norm/bank_h_hist", "norm/eval_h_hist"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    from datamodules import LatentClassesDataModule
    from ssl_norms.methods import SimCLR

    run_dir = tmp_path_factory.mktemp("demo_run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_DIR", str(run_dir))
        pl.seed_everything(0)
        model = SimCLR(
            backbone="mlp",
            backbone_in_dim=64,
            backbone_width=32,
            projector_hidden_dim=32,
            projector_out_dim=16,
            lr=0.05,
            warmup_epochs=1,
        )
        data = LatentClassesDataModule(
            num_classes=NUM_CLASSES,
            n_train=N_TRAIN,
            n_eval=101,
            imbalance_ratio=2.0,
            batch_size=64,
            ood_classes=1,
        )
        loggers = [
            CSVLogger(run_dir, name="csv", version=""),
            TensorBoardLogger(run_dir, name="tb", version=""),
            WandbLogger(project="ssl-norms-tests", save_dir=str(run_dir), offline=True),
        ]
        trainer = pl.Trainer(
            max_epochs=EPOCHS,
            accelerator="cpu",
            devices=1,
            logger=loggers,
            callbacks=[
                EvaluationPass(every_n_epochs=1),
                KNNMonitor(k=20),
                EmbeddingNormMonitor(every_n_steps=2, histogram_bins=32),
                ConfidenceMonitor(),
                HealthMonitor(every_n_steps=2),
                EffectiveLRMonitor(every_n_steps=2),
            ],
            log_every_n_steps=2,
            num_sanity_val_steps=0,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(model, data)
        loggers[2].experiment.finish()  # flush the offline run file
    return run_dir


def csv_columns(run_dir: Path) -> tuple[list[str], list[dict]]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def test_csv_has_documented_columns(demo_run):
    columns, rows = csv_columns(demo_run)
    missing = [m for m in STEP_METRICS + EVAL_METRICS if m not in columns]
    assert not missing
    top1 = [float(r["knn/top1"]) for r in rows if r["knn/top1"]]
    assert len(top1) == EPOCHS and all(0.0 <= a <= 1.0 for a in top1)
    eff = [float(r["lr/effective"]) for r in rows if r["lr/effective"]]
    assert eff and all(v > 0 for v in eff)


def test_every_logged_name_is_documented(demo_run):
    # Each metric column of the monitors matches a pattern of callbacks/__init__'s docstring.
    doc = callbacks.__doc__
    patterns = [
        p.replace("<", "{").replace(">", "}")
        for p in re.findall(r"``((?:norm|knn|lr|confidence|health)/[^`]+)``", doc)
    ]
    regexes = [
        re.compile(
            "^"
            + re.escape(p)
            .replace(r"\{q\}", "q(05|25|50|75|95)")
            .replace(r"\{split\}", "(bank|eval)")
            .replace(r"\{c\}", r"\d+")
            .replace(r"\{i\}", r"\d+")
            .replace(r"\{name\}", r"[^/]+")
            .replace(r"\{s\}", "(z|h)")
            + "$"
        )
        for p in patterns
    ]
    columns, _ = csv_columns(demo_run)
    ours = [c for c in columns if c.split("/")[0] in ("norm", "knn", "lr", "confidence", "health")]
    assert ours and [c for c in ours if not any(r.match(c) for r in regexes)] == []
    for name in [*HISTOGRAMS, "norm/class_mean_table", "norm/class_mean_bar"]:
        assert any(r.match(name) for r in regexes), name


def wandb_records(path: Path) -> list[bytes]:
    """Records of an offline ``.wandb`` file (a LevelDB-style log: 32 KiB blocks of chunks)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, records, pending = 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer: zero padding
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        if kind == 0:
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:  # full
            records.append(chunk)
        elif kind == 2:  # first
            pending = chunk
        elif kind == 3:  # middle
            pending += chunk
        elif kind == 4:  # last
            records.append(pending + chunk)
            pending = b""
    return records


def test_wandb_offline_run_has_histograms_and_scalars(demo_run):
    from wandb.proto import wandb_internal_pb2 as pb

    files = list((demo_run / "wandb").glob("offline-run-*/*.wandb"))
    assert len(files) == 1
    history: dict[str, list] = {}
    for raw in wandb_records(files[0]):
        record = pb.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") != "history":
            continue
        for item in record.history.item:
            key = item.key or "/".join(item.nested_key)
            history.setdefault(key, []).append(json.loads(item.value_json))
    for name in ["knn/top1", "norm/z_mean", "lr/effective", "norm/class_mean/0", "norm/bank_q50"]:
        assert name in history, name
    for name in HISTOGRAMS:
        assert history[f"{name}/_type"][-1] == "histogram", name
        values, bins = history[f"{name}/values"][-1], history[f"{name}/bins"][-1]
        assert len(values) == 32 and len(bins) == 33
    # The bank histogram counts every training sample exactly once.
    assert sum(history["norm/bank_hist/values"][-1]) == N_TRAIN
    assert len(history["knn/top1"]) == EPOCHS


def test_tensorboard_has_histograms(demo_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(demo_run / "tb"), size_guidance={"histograms": 0, "scalars": 0})
    acc.Reload()
    assert set(HISTOGRAMS) <= set(acc.Tags()["histograms"])
    assert {"knn/top1", "norm/z_mean", "lr/effective"} <= set(acc.Tags()["scalars"])
    assert len(acc.Histograms("norm/bank_hist")) == EPOCHS


def test_plot_writes_pngs(demo_run, capsys):
    assert plot_main([str(demo_run)]) == 0
    out = capsys.readouterr().out
    expected = [
        "norms.png",
        "effective_lr.png",
        "knn.png",
        "norm_distributions.png",
        "class_means.png",
    ]
    for name in expected:
        path = demo_run / "plots" / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert str(path) in out


def wandb_parsed(run_dir: Path) -> tuple[dict[str, list], dict[str, object]]:
    """(history ``{key: [values]}``, metric definitions ``{name: MetricRecord}``)."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = list((run_dir / "wandb").glob("offline-run-*/*.wandb"))
    history: dict[str, list] = {}
    metrics: dict[str, object] = {}
    for raw in wandb_records(path):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                history.setdefault(key, []).append(json.loads(item.value_json))
        elif kind == "metric" and record.metric.name:
            metrics[record.metric.name] = record.metric
    return history, metrics


def test_wandb_evaluation_metrics_are_plotted_against_the_epoch(demo_run):
    history, metrics = wandb_parsed(demo_run)
    assert "epoch" in metrics
    for name in [*EVAL_METRICS, *HISTOGRAMS, "norm/class_mean_table"]:
        assert metrics[name].step_metric == "epoch", name
        assert name in history or f"{name}/_type" in history, name
    # Per-step metrics keep Lightning's step axis (no definition of their own).
    for name in STEP_METRICS:
        assert name not in metrics, name
    # Every evaluation row carries its epoch: one evaluation per epoch, epochs 0 and 1.
    assert len(history["knn/top1"]) == EPOCHS
    assert sorted(set(history["epoch"])) == list(range(EPOCHS))


def test_wandb_per_class_norms_table_at_each_evaluation(demo_run):
    history, _ = wandb_parsed(demo_run)
    assert history["norm/class_mean_table/_type"] == ["table-file"] * EPOCHS
    assert history["norm/class_mean_table/nrows"] == [NUM_CLASSES] * EPOCHS
    (run_files,) = list((demo_run / "wandb").glob("offline-run-*/files"))
    path = run_files / history["norm/class_mean_table/path"][-1]
    table = json.loads(path.read_text())
    assert table["columns"] == ["class", "name", "mean_z", "mean_h", "count"]
    # The table's values are the logged scalars of the last evaluation.
    _, rows = csv_columns(demo_run)
    last = {
        c: float([r for r in rows if r.get(f"norm/class_mean/{c}")][-1][f"norm/class_mean/{c}"])
        for c in range(NUM_CLASSES)
    }
    assert {row[0]: row[2] for row in table["data"]} == pytest.approx(last, rel=1e-6)
    assert sum(row[4] for row in table["data"]) == N_TRAIN
    # The bar chart is logged beside it (W&B stores a chart's data as a table).
    assert history["norm/class_mean_bar_table/_type"] == ["table-file"] * EPOCHS
