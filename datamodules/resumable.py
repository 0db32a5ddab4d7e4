"""A training DataLoader that Lightning resumes in the middle of an epoch.

Lightning keeps ``state_dict()`` of every training loader that has ``state_dict`` and
``load_state_dict`` in the checkpoint's fit-loop state, and hands it back to
``load_state_dict`` when a run restarts inside an epoch; a loader without them gets a
warning that it is not resumable (and would restart the epoch's data at its first batch
while the step counters go on). Both go to the ``GlobalBatchSampler``, which knows the
epoch and the batches of it that the training loop took. The DataModule restores the same
state for every resume (``SSLDataModule.load_state_dict``), also the ones at the end of an
epoch, which Lightning does not hand to the loader; restoring it twice changes nothing.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader

from datamodules.sampler import GlobalBatchSampler

__all__ = ["ResumableDataLoader"]


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over a ``GlobalBatchSampler`` whose position is checkpointed."""

    def state_dict(self) -> dict[str, Any]:
        return self._global_sampler().state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._global_sampler().load_state_dict(state_dict)

    def _global_sampler(self) -> GlobalBatchSampler:
        if not isinstance(self.sampler, GlobalBatchSampler):
            raise TypeError(
                f"ResumableDataLoader needs a GlobalBatchSampler, got {type(self.sampler).__name__}"
            )
        return self.sampler
