"""Per-step monitors under gradient accumulation: statistics over ALL micro-batches of the step.

A tiny module returns, as z and h, its input rows ``[3a, 4a]`` (||.|| = 5a exactly in
float32). With ``accumulate_grad_batches=4`` and batches of 2 rows, each optimizer step sums
its gradient over 8 rows; the logged statistics must be the float64 statistics of those 8
norms (numpy, computed here), not of the last micro-batch's 2.
"""

from __future__ import annotations

import csv

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from callbacks import EffectiveLRMonitor, EmbeddingNormMonitor

ACCUM, BATCH, STEPS = 4, 2, 3
# Scales a of rows [3a, 4a]: 24 rows = 3 optimizer steps of 4 micro-batches of 2 rows.
SCALES = np.array(
    [0.5, 7.0, 1.25, 3.0, 9.5, 0.75, 2.0, 4.5]  # step 0
    + [6.0, 0.25, 8.0, 1.5, 3.5, 10.0, 2.5, 0.125]  # step 1
    + [1.0, 5.0, 0.375, 12.0, 2.25, 6.5, 4.0, 0.625]  # step 2
)
POWER = 1.0
LR = 0.1


class KnownNorms(pl.LightningModule):
    """``training_step`` returns the batch's rows as z and h (norms known exactly)."""

    gradscale_power = POWER

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        (x,) = batch
        loss = self.backbone(x).pow(2).mean()
        return {"loss": loss, "z": x.clone(), "h": 2 * x}

    def configure_optimizers(self):
        return torch.optim.SGD([{"params": self.backbone.parameters(), "name": "backbone"}], lr=LR)


def summary(norms: np.ndarray) -> dict[str, float]:
    x = norms.astype(np.float64)
    out = {"mean": x.mean(), "std": x.std(ddof=1)}
    for q in (5, 25, 50, 75, 95):
        out[f"q{q:02d}"] = np.quantile(x, q / 100, method="linear")
    return out


def fit(tmp_path, every_n_steps: int = 1):
    rows = torch.tensor(np.stack([3 * SCALES, 4 * SCALES], axis=1), dtype=torch.float32)
    norm_mon = EmbeddingNormMonitor(every_n_steps=every_n_steps)
    lr_mon = EffectiveLRMonitor(every_n_steps=every_n_steps)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        accumulate_grad_batches=ACCUM,
        callbacks=[norm_mon, lr_mon],
        logger=CSVLogger(tmp_path, name="csv", version=""),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    data = DataLoader(TensorDataset(rows), batch_size=BATCH, shuffle=False)
    trainer.fit(KnownNorms(), data)
    # One row per log_metrics call: merge each step's rows (the two monitors log apart).
    by_step: dict[int, dict[str, str]] = {}
    with open(tmp_path / "csv" / "metrics.csv", newline="") as f:
        for r in csv.DictReader(f):
            by_step.setdefault(int(r["step"]), {}).update({k: v for k, v in r.items() if v})
    logged = [r for _, r in sorted(by_step.items()) if "norm/z_mean" in r]
    assert all("lr/effective" in r for r in logged)
    return norm_mon, lr_mon, logged


def test_norm_and_lr_statistics_cover_every_micro_batch(tmp_path):
    norm_mon, lr_mon, logged = fit(tmp_path)
    assert [int(r["step"]) for r in logged] == list(range(STEPS))
    per_step = BATCH * ACCUM  # rows per optimizer step
    for step, row in enumerate(logged):
        norms = 5.0 * SCALES[step * per_step : (step + 1) * per_step]
        for key, factor in (("z", 1.0), ("h", 2.0)):
            expected = summary(factor * norms)
            for stat, value in expected.items():
                assert float(row[f"norm/{key}_{stat}"]) == pytest.approx(value, rel=1e-12, abs=0)
        eff = LR * norms ** (POWER - 2)
        assert float(row["lr/effective"]) == pytest.approx(eff.mean(), rel=1e-12)
        assert float(row["lr/effective_median"]) == pytest.approx(np.median(eff), rel=1e-12)
        assert float(row["lr/base"]) == pytest.approx(LR)
    # The last step's values are also what the monitors keep ...
    last = 5.0 * SCALES[-per_step:]
    assert norm_mon.last_train_results["z"]["mean"] == pytest.approx(last.mean(), rel=1e-12)
    assert lr_mon.last_results["median"] == pytest.approx(
        np.median(LR * last ** (POWER - 2)), rel=1e-12
    )
    # ... and differ from the last micro-batch's alone (what was logged before).
    last_micro = 5.0 * SCALES[-BATCH:]
    for stat, value in summary(last_micro).items():
        assert norm_mon.last_train_results["z"][stat] != pytest.approx(value, rel=1e-6), stat
    assert lr_mon.last_results["mean"] != pytest.approx(
        (LR * last_micro ** (POWER - 2)).mean(), rel=1e-6
    )


def test_steps_that_are_not_logged_buffer_nothing(tmp_path, monkeypatch):
    from callbacks._logging import StepBuffer

    added: list[int] = []
    original = StepBuffer.add

    def spy(self, step, tensors):
        added.append(step)
        original(self, step, tensors)

    monkeypatch.setattr(StepBuffer, "add", spy)
    _, _, logged = fit(tmp_path, every_n_steps=2)
    # Steps 0 and 2 are logged: 4 micro-batches each, for each of the two monitors.
    assert [int(r["step"]) for r in logged] == [0, 2]
    assert sorted(added) == [0] * 8 + [2] * 8
