"""Synthetic run folders as ``ssl-norms fit`` and the embeddings step leave them (imported as
``fake_runs``): metrics.csv rows, progress.json, failure.json and embeddings caches."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from ssl_norms.reproduce.base import Context
from ssl_norms.reproduce.embeddings import cache_path
from ssl_norms.reproduce.profiles import PROFILES

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "configs"


def context(tmp: Path, profile: str = "paper", datasets=None, **kwargs) -> Context:
    return Context(
        profile=PROFILES[profile],
        runs_dir=tmp / "runs" / profile,
        out_dir=tmp / "out",
        configs_dir=CONFIGS,
        datasets=datasets,
        **kwargs,
    )


def write_metrics(run_dir: Path, rows: list[dict[str, object]]) -> None:
    """``RUN/csv/metrics.csv`` with the union of the rows' columns (empty where absent)."""
    (run_dir / "csv").mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    with open(run_dir / "csv" / "metrics.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def finish(run_dir: Path, epochs: int) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "progress.json").write_text(json.dumps({"epochs_done": epochs}))


def fail(run_dir: Path, kind: str, message: str, step=None, exit_code=1) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "failure.json").write_text(
        json.dumps({"kind": kind, "message": message, "step": step, "exit_code": exit_code})
    )


def knn_run(run_dir: Path, values: dict[int, float], epochs: int | None = None, **extra) -> None:
    """A finished run whose k-NN was ``values[epoch]`` (fraction) at each 1-based epoch."""
    rows = []
    for epoch, value in sorted(values.items()):
        rows.append({"epoch": epoch - 1, "step": 10 * epoch, "train/loss": 4.0})
        rows.append({"epoch": epoch - 1, "step": 10 * epoch, "knn/top1": value, **extra})
    write_metrics(run_dir, rows)
    finish(run_dir, epochs if epochs is not None else max(values))


def write_cache(run_dir: Path, epoch: int, meta: dict, arrays: dict[str, np.ndarray]) -> Path:
    """An embeddings cache as ``python -m ssl_norms.reproduce.embeddings`` writes it."""
    path = cache_path(run_dir, epoch)
    path.parent.mkdir(parents=True, exist_ok=True)
    full = {"fingerprint": "test", "epoch": epoch, "missing": {}, "class_names": [], **meta}
    np.savez(path, meta=np.array(json.dumps(full)), **arrays)
    return path
