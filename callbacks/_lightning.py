"""Every Lightning internal the callbacks rely on, in one place (Lightning 2.6's fit loop).

Lightning offers no public hook to choose, epoch by epoch, whether the validation loop runs,
nor to ask whether a stop request ends training now; the evaluation schedule
(:class:`callbacks.EvaluationPass`) and the per-step monitors therefore read a few private
names of the fit loop and steer two Trainer attributes that the loop reads on every batch.
They are listed here so that a test can check that each still exists
(``tests/callbacks/test_lightning_internals.py``), and every access goes through the
functions below, which fall back to a safe answer when a name is gone.

``LIGHTNING_PRIVATE_NAMES``: attribute paths from a ``Trainer`` instance.

- ``fit_loop._can_stop_early``: whether ``min_epochs``/``min_steps`` are met, so a pending
  ``trainer.should_stop`` ends training after this batch;
- ``fit_loop.epoch_loop._num_ready_batches_reached``: whether this is the epoch's last batch;
- ``fit_loop.epoch_loop._batches_that_stepped``: the step Lightning logs metrics at;
- ``fit_loop._should_accumulate``: whether this micro-batch only accumulates gradients.

``LIGHTNING_STEERED_ATTRIBUTES``: public Trainer attributes whose per-batch reading by the
private ``_TrainingEpochLoop._should_check_val_fx`` the schedule relies on.

- ``check_val_every_n_epoch``: Lightning validates after epoch e when
  ``(e + 1) % check_val_every_n_epoch == 0``, read on every batch;
- ``val_check_batch``: within a selected epoch, the batch interval of validation.
"""

from __future__ import annotations

__all__ = [
    "LIGHTNING_PRIVATE_NAMES",
    "LIGHTNING_STEERED_ATTRIBUTES",
    "resolve",
    "can_stop_early",
    "last_batch_of_epoch",
    "batches_that_stepped",
    "should_accumulate",
]

LIGHTNING_PRIVATE_NAMES: tuple[str, ...] = (
    "fit_loop._can_stop_early",
    "fit_loop.epoch_loop._num_ready_batches_reached",
    "fit_loop.epoch_loop._batches_that_stepped",
    "fit_loop._should_accumulate",
)

LIGHTNING_STEERED_ATTRIBUTES: tuple[str, ...] = ("check_val_every_n_epoch", "val_check_batch")


def resolve(trainer, path: str):
    """``trainer.<path>`` (dotted); AttributeError when a name is missing."""
    obj = trainer
    for name in path.split("."):
        obj = getattr(obj, name)
    return obj


def can_stop_early(trainer) -> bool:
    """``FitLoop._can_stop_early``; True when the name is gone (then evaluate to be safe)."""
    try:
        return bool(resolve(trainer, "fit_loop._can_stop_early"))
    except AttributeError:  # pragma: no cover - another Lightning layout
        return True


def last_batch_of_epoch(trainer) -> bool:
    """``TrainingEpochLoop._num_ready_batches_reached()``; True when the name is gone."""
    try:
        return bool(resolve(trainer, "fit_loop.epoch_loop._num_ready_batches_reached")())
    except AttributeError:  # pragma: no cover
        return True


def batches_that_stepped(trainer) -> int:
    """The step Lightning logs ``self.log`` metrics at; ``global_step`` when the name is gone."""
    try:
        return int(resolve(trainer, "fit_loop.epoch_loop._batches_that_stepped"))
    except AttributeError:  # pragma: no cover
        return int(trainer.global_step)


def should_accumulate(trainer) -> bool:
    """``FitLoop._should_accumulate()``; False (the optimizer steps) when the name is gone."""
    try:
        return bool(resolve(trainer, "fit_loop._should_accumulate")())
    except AttributeError:  # pragma: no cover
        return False
