"""Logging that works with the W&B, TensorBoard and CSV loggers at once (issue 5, item 5).

Scalars go through every logger's ``log_metrics`` (rank zero). Histograms go to W&B as
``wandb.Histogram`` and to TensorBoard with ``add_histogram``; loggers without histograms
(CSV) get them as quantile columns, which the monitors log as ordinary scalars.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import torch

__all__ = ["log_step", "log_scalars", "log_histogram", "log_epoch_metrics", "train_step_due"]


def log_step(trainer) -> int:
    """The step Lightning logs the current metrics at (optimizer steps taken, ``train/loss``'s)."""
    try:
        return int(trainer.fit_loop.epoch_loop._batches_that_stepped)
    except AttributeError:  # pragma: no cover - older/newer loop layouts
        return int(trainer.global_step)


def train_step_due(trainer, every_n_steps: int) -> bool:
    """Whether a per-step monitor runs on this training batch.

    Every ``every_n_steps`` optimizer steps, on the last micro-batch of an accumulation
    window (the one whose optimizer step Lightning logs). Rank-independent, so collective
    gathers stay in step across ranks.
    """
    if log_step(trainer) % max(1, every_n_steps) != 0:  # the cheap test first: most steps
        return False
    if trainer.sanity_checking:
        return False
    try:
        return not trainer.fit_loop._should_accumulate()
    except AttributeError:  # pragma: no cover
        return True


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
            # Same step key as WandbLogger.log_metrics, so W&B aligns it with the scalars.
            logger.experiment.log({name: hist, "trainer/global_step": step})
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
