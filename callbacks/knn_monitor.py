"""``KNNMonitor``: weighted k-NN accuracy of the backbone features (DESIGN §3, issue 5).

Bank = loader ``"bank"`` (the un-augmented SSL training set), queries = loader ``"eval"``.
Features are gathered from all ranks, the ``DistributedSampler`` padding dropped and rows
sorted by dataset index, so the accuracy does not depend on the number of processes.
Optionally the accuracy per bucket of norm / max norm (paper Fig. 4 left).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn

from callbacks._eval_outputs import (
    EvalLoopCallback,
    EvalOutputs,
    check_eval_outputs,
    eval_loader_names,
    num_eval_batches,
)
from callbacks._gather import sync_buffers_from_rank_zero
from callbacks._logging import log_epoch_metrics, log_step
from callbacks._stats import bucket_accuracy
from ssl_norms.knn import knn_accuracy, knn_predict
from ssl_norms.norms import embedding_norms

__all__ = ["KNNMonitor"]


class KNNMonitor(EvalLoopCallback):
    """Logs ``knn/top1``, ``knn/top5`` (and ``knn/bucket_acc/<i>``, ``knn/bucket_count/<i>``).

    Args:
        every_n_epochs: run the evaluation loop every n training epochs and at the end of
            training (the last epoch, or the last step when ``max_steps`` ends training
            inside an epoch); this callback sets ``trainer.check_val_every_n_epoch``
            accordingly at the start of every epoch (the Trainer's own value is overridden).
        k, temperature: of the weighted k-NN (DESIGN §3); ``k`` is clamped to the bank size.
        bucket_accuracy: also log the accuracy per bucket of ``||.|| / max ||.||`` over the
            evaluation split (paper Fig. 4 left).
        backend: ``"auto"`` (FAISS when installed, a GPU index when FAISS sees a GPU),
            ``"faiss"`` or ``"torch"`` (chunked matmul); see :func:`ssl_norms.knn.knn_predict`.
        num_buckets, bucket_min_count: 20 buckets of 0.05, kept when they hold more than
            50 samples (the paper's choice).
        bucket_space: the norm that defines the buckets: ``"z"`` (loss space, where the
            paper's theory lives) or ``"h"`` (backbone features, the k-NN's input).
        chunk_size: queries per matmul of the torch backend (default: automatic).

    Early stopping. When ``trainer.should_stop`` is set during a training batch (by
    ``training_step``, an ``on_train_batch_start`` hook, or the ``on_train_batch_end`` of a
    callback listed before this one) and Lightning honours it after this batch
    (``min_epochs``/``min_steps`` met) or at the end of this epoch (the epoch that meets
    ``min_epochs``), this callback selects the current epoch for validation in its
    ``on_train_batch_end``; Lightning's training epoch loop validates a selected epoch on the
    batch where a stop is requested, so the final evaluation runs before training stops
    (mid-epoch, at the step reached). Not covered, because Lightning 2.6 validates only
    inside the training epoch loop and reads ``check_val_every_n_epoch`` right after the
    ``on_train_batch_end`` hooks: a stop requested later in the batch (a callback listed
    after this one, ``LightningModule.on_train_batch_end``) or outside the batches
    (``on_train_epoch_end``, e.g. ``EarlyStopping(check_on_train_epoch_end=True)``;
    ``on_train_epoch_start``) on an epoch that is not due ends training without a final
    evaluation, and ``on_train_end`` warns. ``EarlyStopping`` on ``knn/top1`` should use
    ``check_on_train_epoch_end=False``: it then stops right after an evaluation, which is
    the final one.

    Skipped epochs have no validation loop, so a ``ModelCheckpoint`` that saves at
    validation end saves only on evaluation epochs; pass it ``save_on_train_epoch_end=True``
    to keep ``last.ckpt`` current every epoch.

    After every evaluation epoch, ``last_results`` holds the computed values (on every
    rank): ``top1``, ``top5``, ``bucket_acc``/``bucket_count`` (dicts by bucket),
    ``bank_size``, ``eval_size``, ``epoch``, ``step``; ``history`` lists them all.
    The sanity-check pass is skipped.
    """

    def __init__(
        self,
        every_n_epochs: int = 10,
        k: int = 200,
        temperature: float = 0.1,
        bucket_accuracy: bool = False,
        backend: Literal["auto", "faiss", "torch"] = "auto",
        num_buckets: int = 20,
        bucket_min_count: int = 50,
        bucket_space: Literal["z", "h"] = "z",
        chunk_size: int | None = None,
    ) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        if bucket_space not in ("z", "h"):
            raise ValueError(f"bucket_space must be 'z' or 'h', got {bucket_space!r}")
        self.every_n_epochs = int(every_n_epochs)
        self.k = int(k)
        self.temperature = float(temperature)
        self.bucket_accuracy = bool(bucket_accuracy)
        self.backend = backend
        self.num_buckets = int(num_buckets)
        self.bucket_min_count = int(bucket_min_count)
        self.bucket_space = bucket_space
        self.chunk_size = chunk_size
        self.last_results: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self._outputs = EvalOutputs()
        self._active = False
        self._fit_history_start = 0

    # -- schedule -------------------------------------------------------------------
    def _is_last_epoch(self, trainer) -> bool:
        epoch = trainer.current_epoch
        if (
            trainer.max_epochs is not None
            and trainer.max_epochs >= 0
            and epoch >= trainer.max_epochs - 1
        ):
            return True
        if trainer.max_steps is not None and trainer.max_steps >= 0:
            batches = trainer.num_training_batches
            if batches != float("inf"):
                steps_per_epoch = -(-int(batches) // max(1, trainer.accumulate_grad_batches))
                return trainer.global_step + steps_per_epoch >= trainer.max_steps
        return False

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        # Lightning's fit loop validates after epoch e when (e + 1) % check_val_every_n_epoch
        # == 0 (TrainingEpochLoop._should_check_val_epoch, read on every batch), so setting
        # it here selects this epoch: 1 = validate, e + 2 = skip it.
        epoch = trainer.current_epoch
        due = (epoch + 1) % self.every_n_epochs == 0 or self._is_last_epoch(trainer)
        trainer.check_val_every_n_epoch = 1 if due else epoch + 2

    @staticmethod
    def _stop_ends_training(trainer) -> bool:
        """Whether a pending ``should_stop`` ends training after this batch or this epoch.

        Mirrors Lightning 2.6: ``TrainingEpochLoop.done`` leaves after the batch when
        ``FitLoop._can_stop_early`` (``min_epochs``/``min_steps`` met); otherwise the epochs go
        on, and ``FitLoop.done`` stops after the epoch whose end meets them.
        """
        if not trainer.should_stop:
            return False
        fit = trainer.fit_loop
        try:
            if fit._can_stop_early:
                return True
            epoch_loop = fit.epoch_loop
            if not epoch_loop._num_ready_batches_reached():  # not this epoch's last batch
                return False
            epochs_after = fit.epoch_progress.current.processed + 1
            met_epochs = epochs_after >= fit.min_epochs if fit.min_epochs else True
            met_steps = epoch_loop.global_step >= fit.min_steps if fit.min_steps else True
            return met_epochs and met_steps
        except AttributeError:  # pragma: no cover - other loop layouts: evaluate to be safe
            return True

    def on_train_start(self, trainer, pl_module) -> None:
        self._fit_history_start = len(self.history)

    def on_train_end(self, trainer, pl_module) -> None:
        if not trainer.should_stop or not trainer.enable_validation:
            return
        # The fit loop has counted the stopped epoch as completed by now.
        stopped = int(trainer.current_epoch) - 1
        evaluated = [r["epoch"] for r in self.history[self._fit_history_start :]]
        if stopped >= 0 and (not evaluated or evaluated[-1] != stopped):
            rank_zero_warn(
                f"training stopped early (trainer.should_stop) after epoch {stopped}, which "
                "was not an evaluation epoch, without a final k-NN evaluation (last: "
                f"{f'epoch {evaluated[-1]}' if evaluated else 'none'}): the stop was requested "
                "outside the training batches (e.g. on_train_epoch_end) or after "
                "KNNMonitor.on_train_batch_end; see the KNNMonitor docstring"
            )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # A stop request ends training after this batch (or this epoch): Lightning validates
        # a selected epoch on the batch where ``should_stop`` is set
        # (TrainingEpochLoop._should_check_val_fx, right after this hook), so select this
        # epoch to make that evaluation the final one.
        if self._stop_ends_training(trainer):
            trainer.check_val_every_n_epoch = 1
        # ``max_steps`` can end training inside an epoch, where the fit loop validates only
        # at the epoch's last batch or every ``trainer.val_check_batch`` batches
        # (TrainingEpochLoop._should_check_val_fx, called right after this hook): on the
        # final step, make this batch a validation batch so the last evaluation happens.
        max_steps = trainer.max_steps
        if max_steps is not None and max_steps >= 0 and trainer.global_step >= max_steps:
            trainer.check_val_every_n_epoch = 1
            trainer.val_check_batch = batch_idx + 1

    # -- collection -----------------------------------------------------------------
    def _start(self, trainer, pl_module) -> None:
        self._active = not trainer.sanity_checking
        if not self._active:
            return
        self._outputs.reset()
        names = eval_loader_names(trainer, len(num_eval_batches(trainer)))
        self._bank = names.index("bank") if "bank" in names else 0
        self._eval = names.index("eval") if "eval" in names else 1
        sync_buffers_from_rank_zero(pl_module)

    def _collect(self, outputs, dataloader_idx: int) -> None:
        if not self._active or dataloader_idx not in (self._bank, self._eval):
            return
        outputs = check_eval_outputs(outputs)
        h = outputs["h"]
        space = outputs.get(self.bucket_space, h) if self.bucket_accuracy else h
        self._outputs.add(
            dataloader_idx,
            {
                "h": h.flatten(1),
                "y": outputs["y"].long(),
                "idx": outputs["idx"].long(),
                "norm": embedding_norms(space),
            },
        )

    # -- computation ----------------------------------------------------------------
    def _num_classes(self, trainer, bank_y: torch.Tensor, eval_y: torch.Tensor) -> int:
        n = int(max(bank_y.max().item(), eval_y.max().item())) + 1
        declared = getattr(getattr(trainer, "datamodule", None), "num_classes", None)
        return max(n, int(declared)) if isinstance(declared, int) else n

    def compute(
        self, bank: dict[str, torch.Tensor], queries: dict[str, torch.Tensor], num_classes: int
    ) -> dict:
        """k-NN results for gathered ``bank`` and ``queries`` dicts (``h``, ``y``, ``norm``)."""
        pred, scores = knn_predict(
            bank["h"],
            bank["y"],
            queries["h"],
            k=self.k,
            temperature=self.temperature,
            num_classes=num_classes,
            backend=self.backend,
            chunk_size=self.chunk_size,
        )
        y = queries["y"].to(scores.device)
        results: dict[str, Any] = {
            "top1": knn_accuracy(scores, y, top_k=1),
            "top5": knn_accuracy(scores, y, top_k=5),
            "bank_size": int(bank["h"].shape[0]),
            "eval_size": int(queries["h"].shape[0]),
        }
        if self.bucket_accuracy:
            buckets = bucket_accuracy(
                queries["norm"], pred == y, self.num_buckets, self.bucket_min_count
            )
            results["bucket_acc"] = {i: acc for i, (acc, _) in buckets.items()}
            results["bucket_count"] = {i: n for i, (_, n) in buckets.items()}
        return results

    def _end(self, trainer, pl_module) -> None:
        if not self._active:
            return
        self._active = False
        bank = self._outputs.gather(pl_module, self._bank)
        queries = self._outputs.gather(pl_module, self._eval)
        self._outputs.reset()
        results = None
        # Every rank holds the gathered features; rank 0 computes and shares the (small)
        # results, so the other ranks neither duplicate the search nor log other values.
        if trainer.is_global_zero:
            results = self.compute(
                bank, queries, self._num_classes(trainer, bank["y"], queries["y"])
            )
        results = trainer.strategy.broadcast(results, src=0)
        results.update(epoch=int(trainer.current_epoch), step=log_step(trainer))
        self.last_results = results
        self.history.append(results)
        metrics = {"knn/top1": results["top1"], "knn/top5": results["top5"]}
        for i, acc in results.get("bucket_acc", {}).items():
            metrics[f"knn/bucket_acc/{i}"] = acc
            metrics[f"knn/bucket_count/{i}"] = float(results["bucket_count"][i])
        log_epoch_metrics(pl_module, metrics)
