"""W&B dashboards: evaluation metrics plotted against the epoch, per-class norms as a table.

``WandbLogger`` plots every metric against ``trainer/global_step`` (its glob ``*``). The
evaluation metrics (k-NN, evaluation norms, confidence, health) are defined here one by one,
by exact name, with ``step_metric="epoch"``: an exact definition wins over W&B's globs
(whose order of matching is not defined), and the names are only known at the first
evaluation (class, bucket and OOD names). Lightning adds ``epoch`` to every logged row.
Nothing happens without a ``WandbLogger`` or off rank zero. ``ssl-norms dashboard``
(:mod:`ssl_norms.dashboard`) lays the families out as workspace sections.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["define_epoch_metrics", "log_wandb_media", "wandb_runs"]

# Names already defined, per W&B run id (a run can outlive one Trainer: resume, validate).
_DEFINED: dict[str, set[str]] = {}


def wandb_runs(trainer) -> list[Any]:
    """The W&B runs of the trainer's ``WandbLogger``s (rank zero only; else empty)."""
    if not trainer.is_global_zero:
        return []
    from lightning.pytorch.loggers import WandbLogger

    return [lg.experiment for lg in trainer.loggers if isinstance(lg, WandbLogger)]


def define_epoch_metrics(trainer, names: Iterable[str]) -> None:
    """``define_metric(name, step_metric="epoch")`` for every name not defined yet."""
    for run in wandb_runs(trainer):
        if not hasattr(run, "define_metric"):  # pragma: no cover - disabled runs
            continue
        done = _DEFINED.setdefault(str(getattr(run, "id", id(run))), set())
        if "epoch" not in done:
            run.define_metric("epoch")
            done.add("epoch")
        for name in names:
            if name not in done:
                run.define_metric(name, step_metric="epoch", step_sync=True)
                done.add(name)


def log_wandb_media(trainer, media: Mapping[str, Any], step: int) -> None:
    """Log W&B objects (tables, charts) of an evaluation at the trainer step and epoch."""
    if not media:
        return
    define_epoch_metrics(trainer, media)
    for run in wandb_runs(trainer):
        run.log({**media, "trainer/global_step": step, "epoch": int(trainer.current_epoch)})
