"""``EffectiveLRMonitor``: the learning rate each sample feels (paper Section 3, Theorem 3.4).

One step changes a cosine similarity by at most 2 lr sin^2(phi) / ||z||^2; with
GradScale(p) the gradient is multiplied by ||z||^p, so sample i feels
``lr * ||z_i||^(p - 2)``. Logged as the batch mean and median, with ``lr`` the current
learning rate of the parameter group named ``"backbone"`` (group 0 when none is named so)
and ``p = pl_module.gradscale_power``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from callbacks._gather import all_gather_cat
from callbacks._logging import (
    StepBuffer,
    confirm_finite_step,
    log_scalars,
    log_step,
    optimizer_step_completes,
    train_step_logged,
)
from ssl_norms import metric_names as M
from ssl_norms.norms import effective_learning_rate, embedding_norms

__all__ = ["EffectiveLRMonitor", "backbone_lr", "effective_lr_stats"]


def backbone_lr(optimizer: torch.optim.Optimizer) -> float:
    """Current lr of the first parameter group named ``"backbone"`` (else group 0)."""
    groups = optimizer.param_groups
    group = next((g for g in groups if g.get("name") == "backbone"), groups[0])
    return float(group["lr"])


def effective_lr_stats(lr: float, z: torch.Tensor, power: float) -> dict[str, float]:
    """``{"mean", "median"}`` of ``lr * ||z_i||^(power - 2)`` over the rows of ``z``.

    The median interpolates linearly between the two middle values (``numpy.median``).
    """
    eff = effective_learning_rate(lr, z.double(), power).cpu().numpy()  # one device sync
    return {"mean": float(eff.mean()), "median": float(np.median(eff))}


class EffectiveLRMonitor(Callback):
    """Logs ``lr/base``, ``lr/effective`` (batch mean) and ``lr/effective_median``.

    Every ``every_n_steps`` optimizer steps, from the detached ``z`` that ``training_step``
    returns, gathered across ranks. The lr is read at the start of the batch: the one the
    optimizer step of this batch uses (a per-step scheduler moves it afterwards). With
    ``accumulate_grad_batches > 1``, ``lr/effective*`` are over every micro-batch of the
    logged optimizer step: their per-sample ||z|| are buffered in ``on_train_batch_end``
    (only for logged steps), gathered across ranks and summarised once, when the
    optimizer step completes.
    ``last_results`` (rank 0) holds ``{"lr", "power", "mean", "median"}``.
    """

    def __init__(self, every_n_steps: int = 50) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = int(every_n_steps)
        self.last_results: dict[str, Any] = {}
        self._lr: float | None = None
        self._norms = StepBuffer()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # Cheap check first: most steps are not logged.
        if not train_step_logged(trainer, self.every_n_steps):
            self._lr = None
            return
        optimizers = trainer.optimizers
        self._lr = backbone_lr(optimizers[0]) if optimizers else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._lr is None:  # not a logged step (or no optimizer)
            return
        if isinstance(outputs, dict) and outputs.get("z") is not None:
            # Buffer the per-sample norms, not z: a norm is all the closed form needs.
            self._norms.add(log_step(trainer), {"n": embedding_norms(outputs["z"])})
        if not optimizer_step_completes(trainer):
            return
        buffered = self._norms.pop()  # every micro-batch of this optimizer step
        if not buffered:
            return
        confirm_finite_step(pl_module)  # before the outputs are read
        norms = all_gather_cat(pl_module, buffered)["n"]
        if not trainer.is_global_zero:
            return
        power = float(getattr(pl_module, "gradscale_power", 0.0) or 0.0)
        stats = effective_lr_stats(self._lr, norms.unsqueeze(1), power)
        self.last_results = {"lr": self._lr, "power": power, **stats}
        log_scalars(
            trainer,
            {
                M.LR_BASE: self._lr,
                M.LR_EFFECTIVE: stats["mean"],
                M.LR_EFFECTIVE_MEDIAN: stats["median"],
            },
            log_step(trainer),
        )
