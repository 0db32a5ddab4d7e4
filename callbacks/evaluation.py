"""One evaluation pass shared by every evaluation monitor (docs/contract.md, "Evaluation schedule").

:class:`EvaluationPass` owns WHEN the evaluation loop runs during ``fit`` (every n epochs, at
the last epoch, and before a stop requested during a training batch) and, whenever the
validation or test loop runs (``fit``, ``ssl-norms validate|test``), collects the outputs
``{"h", "z", "y", "idx"}`` of every loader ``[bank, eval, *ood]`` and gathers each split ONCE
across ranks (sampler padding dropped, rows sorted by dataset index). It then hands the
gathered :class:`EvalFeatures` to every :class:`EvalMonitor` in ``trainer.callbacks``
(``KNNMonitor``, ``EmbeddingNormMonitor``, ``ConfidenceMonitor``, ``HealthMonitor``): each
is a small ``compute(features) -> results``, run on rank 0; the results are broadcast once
and logged. Adding a monitor adds no gather.

It also keeps the sorted per-sample norms of the last evaluation's bank (the un-augmented
SSL training set) and saves them in every checkpoint, so that a trained model can score new
inputs by the percentile of their norm (:mod:`ssl_norms.inference`, paper Section 7).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn

from callbacks._eval_outputs import (
    EvalOutputs,
    check_eval_outputs,
    eval_loader_names,
    num_eval_batches,
)
from callbacks._gather import sync_buffers_from_rank_zero
from callbacks._lightning import can_stop_early, last_batch_of_epoch
from callbacks._logging import log_epoch_metrics, log_step
from callbacks._wandb import define_epoch_metrics
from ssl_norms.inference import REFERENCE_KEY
from ssl_norms.norms import embedding_norms

__all__ = ["EvalFeatures", "EvalMonitor", "EvaluationPass", "REFERENCE_KEY", "split_kind"]


def split_kind(name: str) -> str:
    """``"bank"``, ``"eval"`` or ``"ood"`` (any ``ood/<name>`` loader)."""
    return "ood" if name.startswith("ood/") else name


class EvalFeatures:
    """The gathered outputs of one evaluation, as every monitor's ``compute`` receives them.

    ``splits[name]`` (``name`` in ``bank``, ``eval``, ``ood/<name>``) holds, one row per
    dataset sample in index order: ``y``, ``idx``, ``z_norm`` and ``h_norm`` (||z||, ||h||,
    computed per batch) always, and ``h`` / ``z`` where a monitor asked for them
    (:meth:`EvalMonitor.needs`). ``shared`` carries per-sample results from one monitor to
    the next in the same pass (``KNNMonitor`` puts its eval-split predictions there).
    """

    def __init__(
        self,
        splits: dict[str, dict[str, torch.Tensor]],
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        epoch: int = 0,
        evaluation: int = 0,
        final: bool = True,
    ) -> None:
        self.splits = splits
        self.num_classes = num_classes
        self.class_names = class_names
        self.epoch = epoch
        self.evaluation = evaluation  # 0 for the first evaluation of this run
        self.final = final  # the last evaluation of a fit, or a validate/test run
        self.shared: dict[str, Any] = {}

    def split(self, name: str) -> dict[str, torch.Tensor]:
        if name not in self.splits:
            raise KeyError(
                f"the evaluation has no {name!r} loader (loaders: {sorted(self.splits)}); "
                "val_dataloader() must return [bank, eval, *ood] (docs/contract.md)"
            )
        return self.splits[name]

    @property
    def ood(self) -> dict[str, dict[str, torch.Tensor]]:
        """``{name: split}`` for the ``ood/<name>`` loaders, in loader order."""
        return {k[len("ood/") :]: v for k, v in self.splits.items() if k.startswith("ood/")}


class EvalMonitor(Callback):
    """Base of the monitors that read the shared evaluation pass.

    A monitor declares the full feature tensors it needs (:meth:`needs`), computes its
    results from :class:`EvalFeatures` (:meth:`compute`, rank 0, plain Python values) and
    turns them into scalar metrics (:meth:`metrics`) and, optionally, media such as
    histograms (:meth:`log_media`). After each evaluation ``last_results`` holds the
    results plus ``epoch`` and ``step`` (every rank) and ``history`` lists them.
    """

    #: Whether the monitor also logs per training step (it then works without a pass).
    per_step: ClassVar[bool] = False
    #: Keys this monitor writes into ``features.shared``.
    provides: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.last_results: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []

    def needs(self) -> dict[str, set[str]]:
        """``{"bank" | "eval" | "ood": {"h", "z"}}``: full tensors to gather per split kind."""
        return {}

    def consumes(self) -> tuple[str, ...]:
        """Keys of ``features.shared`` this monitor reads (another monitor must provide them)."""
        return ()

    def due(self, features: EvalFeatures) -> bool:
        return True

    def compute(self, features: EvalFeatures) -> dict[str, Any]:
        raise NotImplementedError

    def metrics(self, results: dict[str, Any]) -> dict[str, float]:
        return {}

    def log_media(self, trainer, results: dict[str, Any], features: EvalFeatures, step: int):
        """Histograms, tables (rank zero); nothing by default."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        if any(isinstance(cb, EvaluationPass) for cb in trainer.callbacks):
            return
        what = f"{type(self).__name__} computes on the shared evaluation pass"
        fix = (
            "add `- class_path: callbacks.EvaluationPass` (init_args: every_n_epochs) to "
            "trainer.callbacks, or EvaluationPass(every_n_epochs=...) to Trainer(callbacks=...)"
        )
        if self.per_step:
            rank_zero_warn(
                f"{what}; without callbacks.EvaluationPass it logs per-step values only: {fix}"
            )
        else:
            raise ValueError(
                f"{what}, but trainer.callbacks has no callbacks.EvaluationPass: {fix}"
            )


class EvaluationPass(Callback):
    """Runs the evaluation every ``every_n_epochs`` and feeds every monitor from one gather.

    Args:
        every_n_epochs: run the evaluation loop every n training epochs and at the end of
            training (the last epoch, or the last step when ``max_steps`` ends training
            inside an epoch); this callback sets ``trainer.check_val_every_n_epoch``
            accordingly at the start of every epoch (the Trainer's own value is overridden).
        store_reference_norms: save the bank's sorted ||z|| and ||h|| of the last evaluation
            in every checkpoint (``checkpoint["ssl_norms_reference_norms"]``), the
            reference of :mod:`ssl_norms.inference`'s confidence percentile.

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
    the final one. The Lightning internals this relies on are listed in
    ``callbacks._lightning``.

    Skipped epochs have no validation loop, so a ``ModelCheckpoint`` that saves at
    validation end saves only on evaluation epochs; pass it ``save_on_train_epoch_end=True``
    to keep ``last.ckpt`` current every epoch. The sanity-check pass is skipped.

    ``monitors`` lists the :class:`EvalMonitor` callbacks found at setup (providers of
    shared results first); ``evaluations`` counts the evaluations of this run; ``reference``
    holds the stored bank norms (``{"z", "h", "epoch", "step"}``).
    """

    def __init__(self, every_n_epochs: int = 10, store_reference_norms: bool = True) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.every_n_epochs = int(every_n_epochs)
        self.store_reference_norms = bool(store_reference_norms)
        self.monitors: list[EvalMonitor] = []
        self.evaluations = 0
        self.reference: dict[str, Any] | None = None
        self._needs: dict[str, set[str]] = {}
        self._outputs = EvalOutputs()
        self._active = False
        self._evaluated_epochs: list[int] = []
        self._fit_start = 0

    # -- monitors -------------------------------------------------------------------
    def setup(self, trainer, pl_module, stage: str) -> None:
        found = [cb for cb in trainer.callbacks if isinstance(cb, EvalMonitor)]
        # Providers of shared results (the k-NN predictions) compute first.
        self.monitors = sorted(found, key=lambda m: not m.provides)
        provided = {key for m in self.monitors for key in m.provides}
        for monitor in self.monitors:
            missing = [key for key in monitor.consumes() if key not in provided]
            if missing:
                raise ValueError(
                    f"{type(monitor).__name__} reads {missing} from the same evaluation pass, "
                    "which no monitor in trainer.callbacks provides: add callbacks.KNNMonitor "
                    "(its k-NN predictions give the correctness), or turn that part off"
                )
        self._needs = {}
        for monitor in self.monitors:
            for kind, keys in monitor.needs().items():
                self._needs.setdefault(kind, set()).update(keys)

    # -- schedule -------------------------------------------------------------------
    def _is_last_epoch(self, trainer) -> bool:
        epoch = trainer.current_epoch
        if trainer.max_epochs is not None and 0 <= trainer.max_epochs - 1 <= epoch:
            return True
        if trainer.max_steps is not None and trainer.max_steps >= 0:
            batches = trainer.num_training_batches
            if batches != float("inf"):
                steps_per_epoch = -(-int(batches) // max(1, trainer.accumulate_grad_batches))
                return trainer.global_step + steps_per_epoch >= trainer.max_steps
        return False

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        # Lightning's fit loop validates after epoch e when (e + 1) % check_val_every_n_epoch
        # == 0 (read on every batch), so setting it here selects this epoch: 1 = validate,
        # e + 2 = skip it.
        epoch = trainer.current_epoch
        due = (epoch + 1) % self.every_n_epochs == 0 or self._is_last_epoch(trainer)
        trainer.check_val_every_n_epoch = 1 if due else epoch + 2

    @staticmethod
    def _stop_ends_training(trainer) -> bool:
        """Whether a pending ``should_stop`` ends training after this batch or this epoch.

        Mirrors Lightning 2.6: the epoch loop leaves after the batch when
        ``FitLoop._can_stop_early`` (``min_epochs``/``min_steps`` met); otherwise the epochs go
        on, and the fit loop stops after the epoch whose end meets them.
        """
        if not trainer.should_stop:
            return False
        if can_stop_early(trainer):
            return True
        if not last_batch_of_epoch(trainer):
            return False
        fit = trainer.fit_loop
        epochs_after = fit.epoch_progress.current.processed + 1
        met_epochs = epochs_after >= fit.min_epochs if fit.min_epochs else True
        met_steps = fit.epoch_loop.global_step >= fit.min_steps if fit.min_steps else True
        return met_epochs and met_steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Lightning validates a selected epoch on the batch where ``should_stop`` is set
        # (right after this hook), so select this epoch to make that evaluation the last.
        if self._stop_ends_training(trainer):
            trainer.check_val_every_n_epoch = 1
        # ``max_steps`` can end training inside an epoch, where the fit loop validates only
        # at the epoch's last batch or every ``trainer.val_check_batch`` batches: on the
        # final step, make this batch a validation batch so the last evaluation happens.
        max_steps = trainer.max_steps
        if max_steps is not None and max_steps >= 0 and trainer.global_step >= max_steps:
            trainer.check_val_every_n_epoch = 1
            trainer.val_check_batch = batch_idx + 1

    def on_train_start(self, trainer, pl_module) -> None:
        self._fit_start = len(self._evaluated_epochs)

    def on_train_end(self, trainer, pl_module) -> None:
        if not trainer.should_stop or not trainer.enable_validation:
            return
        stopped = int(trainer.current_epoch) - 1  # the fit loop has counted it as completed
        evaluated = self._evaluated_epochs[self._fit_start :]
        if stopped >= 0 and (not evaluated or evaluated[-1] != stopped):
            last = f"epoch {evaluated[-1]}" if evaluated else "none"
            rank_zero_warn(
                f"training stopped early (trainer.should_stop) after epoch {stopped}, which "
                f"was not an evaluation epoch, without a final evaluation (last: {last}): the "
                "stop was requested outside the training batches (e.g. on_train_epoch_end) or "
                "after EvaluationPass.on_train_batch_end; see the EvaluationPass docstring"
            )

    # -- collection -----------------------------------------------------------------
    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._start(trainer, pl_module)

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._start(trainer, pl_module)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self._collect(outputs, dataloader_idx)

    def on_test_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self._collect(outputs, dataloader_idx)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._end(trainer, pl_module)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._end(trainer, pl_module)

    def _start(self, trainer, pl_module) -> None:
        self._active = not trainer.sanity_checking
        if not self._active:
            return
        self._outputs.reset()
        self._names = eval_loader_names(trainer, len(num_eval_batches(trainer)))
        sync_buffers_from_rank_zero(pl_module)

    def _collect(self, outputs, dataloader_idx: int) -> None:
        if not self._active:
            return
        outputs = check_eval_outputs(outputs)
        h = outputs["h"].flatten(1)
        z = outputs.get("z")
        z = h if z is None else z
        row = {
            "y": outputs["y"].long(),
            "idx": outputs["idx"].long(),
            "z_norm": embedding_norms(z),
            "h_norm": embedding_norms(h),
        }
        name = self._names[dataloader_idx] if dataloader_idx < len(self._names) else ""
        for key in sorted(self._needs.get(split_kind(name), ())):
            row[key] = h if key == "h" else z
        self._outputs.add(dataloader_idx, row)

    def _features(self, trainer, splits) -> EvalFeatures:
        dm = getattr(trainer, "datamodule", None)
        declared = getattr(dm, "num_classes", None)
        try:
            names = list(dm.class_names) if dm is not None else None
        except (AttributeError, RuntimeError):
            names = None
        final = True  # validate / test: one evaluation
        if trainer.state.fn == TrainerFn.FITTING:
            last_epoch = trainer.max_epochs is not None and 0 <= trainer.max_epochs - 1 <= (
                trainer.current_epoch
            )
            max_steps = trainer.max_steps is not None and 0 <= trainer.max_steps <= (
                trainer.global_step
            )
            final = last_epoch or max_steps or bool(trainer.should_stop)
        return EvalFeatures(
            splits,
            num_classes=int(declared) if isinstance(declared, int) and declared > 0 else None,
            class_names=names,
            epoch=int(trainer.current_epoch),
            evaluation=self.evaluations,
            final=bool(final),
        )

    def _end(self, trainer, pl_module) -> None:
        if not self._active:
            return
        self._active = False
        # One gather per split, whatever the number of monitors.
        splits = {name: self._outputs.gather(pl_module, i) for i, name in enumerate(self._names)}
        self._outputs.reset()
        features = self._features(trainer, splits)
        step = log_step(trainer)
        if self.store_reference_norms and "bank" in splits:
            bank = splits["bank"]
            self.reference = {
                "z": torch.sort(bank["z_norm"].detach().float().cpu()).values,
                "h": torch.sort(bank["h_norm"].detach().float().cpu()).values,
                "epoch": features.epoch,
                "step": int(trainer.global_step),
            }
        results = None
        # Rank 0 computes and shares the (small) results: the other ranks neither
        # duplicate the work nor log other values.
        if trainer.is_global_zero:
            results = [m.compute(features) if m.due(features) else None for m in self.monitors]
        results = trainer.strategy.broadcast(results, src=0)
        metrics: dict[str, float] = {}
        for monitor, res in zip(self.monitors, results, strict=True):
            if res is None:
                continue
            res.update(epoch=features.epoch, step=step)
            monitor.last_results = res
            monitor.history.append(res)
            metrics.update(monitor.metrics(res))
        define_epoch_metrics(trainer, metrics)
        log_epoch_metrics(pl_module, metrics)
        for monitor, res in zip(self.monitors, results, strict=True):
            if res is not None:
                monitor.log_media(trainer, res, features, step)
        self._evaluated_epochs.append(features.epoch)
        self.evaluations += 1

    # -- checkpoints ----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"evaluations": self.evaluations}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.evaluations = int(state_dict.get("evaluations", 0))

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        if self.store_reference_norms and self.reference is not None:
            checkpoint[REFERENCE_KEY] = dict(self.reference)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        if REFERENCE_KEY in checkpoint:
            self.reference = dict(checkpoint[REFERENCE_KEY])
