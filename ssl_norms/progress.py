"""One line per epoch and per evaluation, for logs that a person reads after the fact.

Without a terminal (a runner, ``nohup``, CI, SLURM), a redrawn progress bar writes
thousands of frames into the log file. :class:`ProgressLines` prints instead, on global
rank 0 only::

    epoch 3/30  step 120  loss 4.1234  ||z|| 12.31  lr 0.0500  12.3 s
    eval  epoch 3  knn/top1 45.20%  knn/top5 88.10%  ||z|| bank 12.08 eval 11.93

``loss`` and ``||z||`` are the means over the epoch's training batches (``||z||`` in the
loss space, as ``norm/z_mean``), ``lr`` the backbone's learning rate at the epoch's end;
the evaluation line shows what the monitors logged for it. ``ssl-norms fit --progress
auto`` (the default) keeps Lightning's bar in a terminal and uses these lines elsewhere.

The bar is :class:`TimedProgressBar`: Lightning's, redrawn at most twice a second, with
the last step's ``train/loss``. Each redraw reads the loss back from the device; on a GPU
that waits for all the work queued so far, so a redraw per step (Lightning's default, or
any value logged with ``prog_bar=True``, which Lightning turns into a Python number at
every step whether a bar is drawn or not) would stall a GPU run at every step. The lines
read nothing back until an epoch ends.
"""

from __future__ import annotations

import sys
import time
from typing import Literal, TextIO

import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import TQDMProgressBar

from ssl_norms import metric_names as M

__all__ = ["ProgressLines", "ProgressMode", "TimedProgressBar", "use_lines"]

ProgressMode = Literal["auto", "bar", "lines"]


def use_lines(mode: ProgressMode, stream: TextIO | None = None) -> bool:
    """Whether ``mode`` means lines here: ``auto`` picks lines when ``stream`` (stdout) is
    not a terminal."""
    if mode not in ("auto", "bar", "lines"):
        raise ValueError(f"progress must be auto, bar or lines, got {mode!r}")
    if mode != "auto":
        return mode == "lines"
    stream = sys.stdout if stream is None else stream
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):  # a closed or exotic stream
        return True


class TimedProgressBar(TQDMProgressBar):
    """Lightning's progress bar, redrawn at most every ``interval`` seconds (and at the end
    of each loop): as often as a person can read it, whatever the step time."""

    def __init__(self, interval: float = 0.5) -> None:
        super().__init__(refresh_rate=1)
        self.interval = float(interval)
        self._last_draw = -float("inf")

    def _should_update(self, current: int, total: int) -> bool:
        if not self.is_enabled:
            return False
        now = time.monotonic()
        if current == total or now - self._last_draw >= self.interval:
            self._last_draw = now
            return True
        return False

    def get_metrics(self, trainer, pl_module) -> dict:
        """Lightning's items and the last step's loss, read back here, at a redraw only
        (the methods log it without ``prog_bar``)."""
        items = super().get_metrics(trainer, pl_module)
        loss = trainer.callback_metrics.get(M.TRAIN_LOSS)
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            items[M.TRAIN_LOSS] = float(loss)
        return items


class ProgressLines(Callback):
    """Print one line per training epoch and one per evaluation (global rank 0)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._start = 0.0
        self._loss_sum: torch.Tensor | None = None
        self._norm_sum: torch.Tensor | None = None
        self._batches = 0
        self._norm_batches = 0

    def _print(self, text: str) -> None:
        stream = self._stream if self._stream is not None else sys.stdout
        print(text, file=stream, flush=True)

    # ---------------------------------------------------------------- training
    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.monotonic()
        self._loss_sum = self._norm_sum = None
        self._batches = self._norm_batches = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not trainer.is_global_zero or not isinstance(outputs, dict):
            return
        loss = outputs.get("loss")
        if isinstance(loss, torch.Tensor):
            # Summed on the device: no synchronisation per batch.
            value = loss.detach().float()
            self._loss_sum = value if self._loss_sum is None else self._loss_sum + value
            self._batches += 1
        z = outputs.get("z")
        if isinstance(z, torch.Tensor) and z.ndim == 2:
            value = z.detach().float().norm(dim=1).mean()
            self._norm_sum = value if self._norm_sum is None else self._norm_sum + value
            self._norm_batches += 1

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        parts = [f"epoch {trainer.current_epoch + 1}"]
        if trainer.max_epochs and trainer.max_epochs > 0:
            parts[0] += f"/{trainer.max_epochs}"
        parts.append(f"step {trainer.global_step}")
        if self._loss_sum is not None and self._batches:
            parts.append(f"loss {float(self._loss_sum) / self._batches:.4f}")
        if self._norm_sum is not None and self._norm_batches:
            parts.append(f"||z|| {float(self._norm_sum) / self._norm_batches:.4g}")
        lr = _backbone_lr(trainer)
        if lr is not None:
            parts.append(f"lr {lr:.4g}")
        parts.append(f"{time.monotonic() - self._start:.1f} s")
        self._print("  ".join(parts))

    # ---------------------------------------------------------------- evaluation
    def _evaluation(self, trainer, stage: str) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        parts = ["eval" if stage == "validate" else stage, f"epoch {trainer.current_epoch + 1}"]
        for name in (M.KNN_TOP1, M.KNN_TOP5):
            if name in metrics:
                parts.append(f"{name} {100 * float(metrics[name]):.2f}%")
        norms = [
            f"{split} {float(metrics[key]):.4g}"
            for split in M.SPLITS
            if (key := M.split_norm(split, "mean")) in metrics
        ]
        if norms:
            parts.append("||z|| " + " ".join(norms))
        self._print("  ".join(parts))

    def on_validation_end(self, trainer, pl_module) -> None:
        self._evaluation(trainer, "validate")

    def on_test_end(self, trainer, pl_module) -> None:
        self._evaluation(trainer, "test")


def _backbone_lr(trainer) -> float | None:
    try:
        optimizer = trainer.optimizers[0]
    except (IndexError, AttributeError, RuntimeError):
        return None
    for group in optimizer.param_groups:
        if group.get("name") == "backbone":
            return float(group["lr"])
    groups = optimizer.param_groups
    return float(groups[0]["lr"]) if groups else None
