"""EffectiveLRMonitor equals the closed form lr * ||z_i||^(p-2) (paper Section 3, Theorem 3.4)."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from callbacks import EffectiveLRMonitor
from callbacks.effective_lr_monitor import backbone_lr

# A hand-made batch: norms 5, 1, 2, 0.5.
Z = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0], [0.3, 0.4]])
NORMS = np.array([5.0, 1.0, 2.0, 0.5])


class FixedZ(pl.LightningModule):
    """Returns the hand-made z from every training step; lr halves every step."""

    def __init__(self, gradscale_power: float) -> None:
        super().__init__()
        self.gradscale_power = gradscale_power
        self.head = nn.Linear(1, 1)
        self.backbone = nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        (x,) = batch
        loss = (self.backbone(x) + self.head(x)).pow(2).mean()
        return {"loss": loss, "z": Z.clone(), "h": Z.clone()}

    def configure_optimizers(self):
        # The backbone is not group 0: the monitor must find it by name.
        opt = torch.optim.SGD(
            [
                {"params": self.head.parameters(), "name": "head", "lr": 0.7},
                {"params": self.backbone.parameters(), "name": "backbone", "lr": 0.1},
            ]
        )
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def run(power: float) -> dict:
    mon = EffectiveLRMonitor(every_n_steps=1)
    trainer = pl.Trainer(
        max_steps=2,
        accelerator="cpu",
        callbacks=[mon],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    data = DataLoader(TensorDataset(torch.ones(4, 1)), batch_size=2)
    trainer.fit(FixedZ(power), data)
    return mon.last_results


@pytest.mark.parametrize("power", [0.0, 1.0])  # default training, GradScale(p = 1)
def test_effective_lr_closed_form(power):
    res = run(power)
    lr = 0.05  # the second step's lr: 0.1 halved once (read when the step starts)
    eff = lr * NORMS ** (power - 2)
    assert res["lr"] == pytest.approx(lr)
    assert res["power"] == power
    assert res["mean"] == pytest.approx(eff.mean(), rel=1e-6)
    assert res["median"] == pytest.approx(np.median(eff), rel=1e-6)
    if power == 0.0:  # lr / ||z||^2 by hand: 0.05 * (1/25, 1, 1/4, 4)
        assert res["mean"] == pytest.approx(0.05 * (0.04 + 1 + 0.25 + 4) / 4, rel=1e-6)
    else:  # lr / ||z||: 0.05 * (1/5, 1, 1/2, 2), median 0.05 * 0.75
        assert res["median"] == pytest.approx(0.05 * 0.75, rel=1e-6)


def test_backbone_lr_falls_back_to_group_zero():
    opt = torch.optim.SGD([{"params": [nn.Parameter(torch.ones(1))], "lr": 0.3}])
    assert backbone_lr(opt) == 0.3
