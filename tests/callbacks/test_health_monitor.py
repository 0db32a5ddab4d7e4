"""HealthMonitor's per-step pair metrics: every positive pair of the logged optimizer step
(under gradient accumulation too), against float64 formulas computed here (paper Table S1;
Wang & Isola, 2020)."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from callbacks import HealthMonitor
from callbacks.health_monitor import pair_health, spread_rows

ACCUM, BATCH = 2, 3
G = np.random.default_rng(0)
# 12 samples: two views each (3-D); some pairs point in opposite halves of the sphere.
VIEW1 = G.normal(size=(12, 3))
VIEW2 = np.where(G.random((12, 1)) < 0.3, -VIEW1, VIEW1) + 0.3 * G.normal(size=(12, 3))


class PairsModule(pl.LightningModule):
    """``training_step`` returns z = [view-1 rows; view-2 rows] of its batch of samples."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(3, 1)

    def training_step(self, batch, batch_idx):
        v1, v2 = batch
        loss = self.backbone(v1).pow(2).mean()
        return {"loss": loss, "z": torch.cat([v1, v2]), "h": torch.cat([v1, v2])}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def reference(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    ua = a / np.linalg.norm(a, axis=1, keepdims=True)
    ub = b / np.linalg.norm(b, axis=1, keepdims=True)
    return {
        "alignment": float((((ua - ub) ** 2).sum(1)).mean()),
        "opposite_halves": float(((a * b).sum(1) < 0).mean()),
    }


def test_pair_metrics_cover_every_micro_batch_of_the_step():
    logged: list[dict] = []

    class Keep(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if monitor.last_train_results and (
                not logged or logged[-1] is not monitor.last_train_results
            ):
                logged.append(monitor.last_train_results)

    monitor = HealthMonitor(every_n_steps=1)
    data = TensorDataset(torch.tensor(VIEW1, dtype=torch.float64), torch.tensor(VIEW2))
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        accumulate_grad_batches=ACCUM,
        callbacks=[monitor, Keep()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    with pytest.warns(UserWarning, match="per-step values only"):
        trainer.fit(PairsModule().double(), DataLoader(data, batch_size=BATCH))
    per_step = ACCUM * BATCH
    assert len(logged) == len(VIEW1) // per_step == 2
    for step, got in enumerate(logged):
        rows = slice(step * per_step, (step + 1) * per_step)
        expected = reference(VIEW1[rows], VIEW2[rows])
        assert got == pytest.approx(expected, rel=1e-12)
    assert 0 < logged[0]["opposite_halves"] + logged[1]["opposite_halves"] < 2  # informative


def test_pairs_with_a_zero_embedding_are_left_out():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    z2 = torch.tensor([[-1.0, 0.1], [1.0, 0.0], [1.0, 2.0]])
    got = pair_health(z1, z2)
    assert got == pytest.approx(reference(z1[[0, 2]].numpy(), z2[[0, 2]].numpy()))
    assert got["opposite_halves"] == 0.5
    assert pair_health(torch.zeros(2, 2), torch.ones(2, 2)) == {}


def test_odd_number_of_rows_is_a_clear_error():
    monitor = HealthMonitor(every_n_steps=1)
    trainer = type("T", (), {"sanity_checking": False, "fit_loop": None, "global_step": 0})()
    with pytest.raises(ValueError, match="two views stacked"):
        monitor.on_train_batch_end(trainer, None, {"z": torch.ones(3, 2)}, None, 0)


def test_spread_rows_keep_every_part_of_a_sorted_split():
    assert spread_rows(5, None).tolist() == [0, 1, 2, 3, 4]
    rows = spread_rows(1000, 10)
    assert rows.tolist() == [round(i * 999 / 9) for i in range(10)]
    with pytest.raises(ValueError, match="max_samples"):
        HealthMonitor(max_samples=1)
