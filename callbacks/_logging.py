"""Logging that works with the W&B, TensorBoard and CSV loggers at once.

Scalars go through every logger's ``log_metrics`` (rank zero). Histograms go to W&B as
``wandb.Histogram`` and to TensorBoard with ``add_histogram``; loggers without histograms
(CSV) get them as quantile columns, which the monitors log as ordinary scalars.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import torch

from callbacks._lightning import batches_that_stepped, should_accumulate
from callbacks._wandb import define_epoch_metrics

__all__ = [
    "log_step",
    "log_scalars",
    "log_histogram",
    "log_epoch_metrics",
    "train_step_logged",
    "optimizer_step_completes",
    "train_step_due",
    "confirm_finite_step",
    "StepBuffer",
]


def log_step(trainer) -> int:
    """The step Lightning logs the current metrics at (optimizer steps taken, ``train/loss``'s)."""
    return batches_that_stepped(trainer)


def train_step_logged(trainer, every_n_steps: int) -> bool:
    """Whether this training micro-batch belongs to an optimizer step a per-step monitor logs.

    Every ``every_n_steps`` optimizer steps (never in the sanity check). Every micro-batch of
    an accumulation window sees the same :func:`log_step` (Lightning counts the step after
    its last micro-batch), so all of them answer alike. Rank-independent, so collective
    gathers stay in step across ranks.
    """
    if log_step(trainer) % max(1, every_n_steps) != 0:  # the cheap test first: most steps
        return False
    return not trainer.sanity_checking


def optimizer_step_completes(trainer) -> bool:
    """Whether the optimizer steps on this micro-batch (the last of its accumulation window).

    Lightning's own test (``FitLoop._should_accumulate``): ``accumulate_grad_batches``
    micro-batches, or the last batch of the epoch, ends a window.
    """
    return not should_accumulate(trainer)


def confirm_finite_step(pl_module) -> None:
    """Before a monitor gathers a step's outputs: the module's NaN guard raises now if that
    step was not finite (``SSLMethod.raise_if_diverged``: on a GPU the guard reads its checks
    a step late; here the monitor syncs anyway). A no-op for modules without a guard."""
    check = getattr(pl_module, "raise_if_diverged", None)
    if check is not None:
        check()


def train_step_due(trainer, every_n_steps: int) -> bool:
    """Whether a logged optimizer step completes on this micro-batch (log once per step)."""
    return train_step_logged(trainer, every_n_steps) and optimizer_step_completes(trainer)


class StepBuffer:
    """Per-sample tensors of the micro-batches of one optimizer step, until it completes.

    ``add(step, tensors)`` appends a micro-batch's rows (detached); a different ``step``
    drops what an unfinished window left (a resumed or interrupted one). ``pop()`` returns
    the rows concatenated in micro-batch order and empties the buffer.
    """

    def __init__(self) -> None:
        # Plain containers: callbacks are pickled into ddp_spawn's processes.
        self._step: int | None = None
        self._parts: dict[str, list[torch.Tensor]] = {}

    def reset(self) -> None:
        self._step = None
        self._parts = {}

    def add(self, step: int, tensors: Mapping[str, torch.Tensor]) -> None:
        if step != self._step:
            self.reset()
            self._step = step
        for key, value in tensors.items():
            self._parts.setdefault(key, []).append(value.detach())

    def pop(self) -> dict[str, torch.Tensor]:
        out = {key: torch.cat(parts) for key, parts in self._parts.items()}
        self.reset()
        return out


def log_scalars(trainer, metrics: Mapping[str, float], step: int) -> None:
    """``log_metrics`` on every logger, from rank zero only."""
    if not trainer.is_global_zero or not metrics:
        return
    clean = {k: float(v) for k, v in metrics.items()}
    # Lightning adds the epoch to what ``self.log`` sends; do the same so CSV rows align.
    clean.setdefault("epoch", float(trainer.current_epoch))
    for logger in trainer.loggers:
        logger.log_metrics(clean, step=step)


def log_histogram(
    trainer, name: str, values: torch.Tensor, counts: torch.Tensor, edges: torch.Tensor, step: int
) -> None:
    """Histogram ``name`` to the W&B and TensorBoard loggers (rank zero)."""
    if not trainer.is_global_zero:
        return
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    counts_np = counts.detach().cpu().numpy()
    edges_np = edges.detach().cpu().double().numpy()
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            import wandb

            hist = wandb.Histogram(np_histogram=(counts_np, edges_np))
            # Same step key as WandbLogger.log_metrics, so W&B aligns it with the scalars;
            # the epoch too: evaluation histograms are plotted against it (callbacks._wandb).
            define_epoch_metrics(trainer, [name])
            logger.experiment.log(
                {name: hist, "trainer/global_step": step, "epoch": int(trainer.current_epoch)}
            )
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_histogram(
                name,
                values.detach().cpu().double().numpy(),
                global_step=step,
                bins=np.asarray(edges_np),
            )


def log_epoch_metrics(pl_module, metrics: Mapping[str, float]) -> None:
    """``pl_module.log`` each evaluation-epoch value (so checkpoints can monitor them).

    The values are computed on rank 0 and broadcast, hence equal on every rank: a
    ``sync_dist`` reduction would only cost collectives, so its reminder is silenced.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*sync_dist=True.*")
        for name, value in metrics.items():
            pl_module.log(name, float(value), add_dataloader_idx=False, sync_dist=False)
