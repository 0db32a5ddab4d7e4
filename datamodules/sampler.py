"""The training sampler: one global permutation per epoch, split into global batches, of
which each process takes its share (docs/distributed.md).

A W-process run must see exactly the global batches of a 1-process run: global batch t of
epoch e is the same set of samples, in the same order, on any number of processes, and
process r holds rows ``r * B/W .. (r+1) * B/W`` of it. Together with the per-sample
augmentation seeds (``datamodules.datasets.sample_seed``) the W shards of a step are the
rows of the single-process batch. Epochs keep only whole optimizer steps: the number of
global batches is cut to a multiple of ``accumulate_grad_batches``, so no step is made of
a partial batch or a partial accumulation window.

It subclasses ``DistributedSampler`` so that Lightning uses it as it is under DDP (it
replaces any other sampler with its own ``DistributedSampler``, whose order depends on W).

Resume: the sampler counts the batches of the current epoch that the training loop took
(``take_batch``, called by the DataModule for each training batch it sees, so batches that
loader workers or Lightning's fetcher prefetched do not count). Its ``state_dict`` goes
into checkpoints (with the DataModule's state, and the training loader's for Lightning's
mid-epoch restarts: ``datamodules.resumable``); ``load_state_dict`` sets the epoch to
continue before the first pass, so that loader workers, which draw indices as soon as the
loader is iterated, draw them from the right epoch, and a run cut inside an epoch continues
that epoch at the next global batch: the batches of the uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DistributedSampler

from datamodules.datasets import sample_seed

__all__ = ["GlobalBatchSampler"]

# A fixed "index" for the shuffle's seed: beyond any dataset size, so it never equals the
# per-sample augmentation seed of a real index.
_SHUFFLE_SALT = 1 << 62


class GlobalBatchSampler(DistributedSampler):
    """This process's indices of a seeded permutation of ``range(n)``, global batch by batch.

    Args:
        n: number of training samples.
        batch_size: the GLOBAL batch of one micro-step (all processes together).
        num_replicas, rank: the number of processes and this one's global rank.
        seed: with the epoch, seeds the permutation (the same on every process).
        accumulate: micro-batches per optimizer step; an epoch holds a multiple of it.
        shuffle: False keeps dataset order (tests).
        on_epoch: called with the epoch when an epoch's iteration starts (the two-view
            dataset's ``set_epoch``: its augmentation seeds depend on the epoch).

    Without an explicit ``set_epoch`` the epoch advances by one after each pass, so
    consecutive epochs differ even outside Lightning.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        accumulate: int = 1,
        shuffle: bool = True,
        on_epoch: Callable[[int], None] | None = None,
    ) -> None:
        # DistributedSampler.__init__ would look up a process group and want a dataset.
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need 0 <= rank < num_replicas, got rank {rank} of {num_replicas}")
        if batch_size < 1 or accumulate < 1:
            raise ValueError(
                f"batch_size and accumulate must be >= 1, got {batch_size} and {accumulate}"
            )
        if batch_size % num_replicas:
            raise ValueError(
                f"batch_size {batch_size} is the global batch of all {num_replicas} processes and "
                f"must be divisible by their number: each process loads batch_size / "
                f"{num_replicas}. Choose a multiple of {num_replicas} (e.g. "
                f"{batch_size - batch_size % num_replicas or num_replicas}) or another number of devices"
            )
        self.n = int(n)
        self.batch_size = int(batch_size)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.seed = int(seed)
        self.accumulate = int(accumulate)
        self.shuffle = shuffle
        self.on_epoch = on_epoch
        self.epoch = 0
        self.iterating_epoch: int | None = None  # the epoch of the latest pass
        self.batches_taken = 0  # batches of that epoch the training loop took
        self._resume_at: tuple[int, int] | None = None
        self.drop_last = True
        self.per_rank = self.batch_size // self.num_replicas
        self.num_batches = self.n // (self.batch_size * self.accumulate) * self.accumulate
        if self.num_batches == 0:
            raise ValueError(
                f"{self.n} training samples make no optimizer step of batch_size {self.batch_size}"
                + (f" x accumulate_grad_batches {self.accumulate}" if self.accumulate > 1 else "")
                + ": lower batch_size"
                + (" or accumulate_grad_batches" if self.accumulate > 1 else "")
                + ", or train on more samples"
            )
        self.epoch_length = self.num_batches  # batches the loop takes per epoch
        # DistributedSampler's attributes, for code that reads them.
        self.num_samples = self.num_batches * self.per_rank
        self.total_size = self.num_batches * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def global_order(self, epoch: int) -> torch.Tensor:
        """The epoch's permutation of ``range(n)`` (the same on every process)."""
        if not self.shuffle:
            return torch.arange(self.n)
        g = torch.Generator().manual_seed(sample_seed(self.seed, epoch, _SHUFFLE_SALT))
        return torch.randperm(self.n, generator=g)

    def __iter__(self) -> Iterator[int]:
        epoch = self.epoch
        self.epoch += 1
        # Set eagerly (not in a generator) so the dataset knows the epoch before any worker
        # receives an index of it.
        if self.on_epoch is not None:
            self.on_epoch(epoch)
        skip = 0
        if self._resume_at is not None and self._resume_at[0] == epoch:
            skip = self._resume_at[1]
        self._resume_at = None
        self.iterating_epoch, self.batches_taken = epoch, skip
        batches = self.global_order(epoch)[: self.total_size].view(self.num_batches, -1)
        start = self.rank * self.per_rank
        return iter(batches[skip:, start : start + self.per_rank].reshape(-1).tolist())

    def take_batch(self, epoch_length: float | None = None) -> None:
        """Count one batch of the current epoch as taken by the training loop;
        ``epoch_length``: the batches it takes per epoch (Lightning's
        ``num_training_batches``, fewer than the sampler's with ``limit_train_batches``)."""
        self.batches_taken += 1
        if epoch_length is not None and epoch_length < self.num_batches:
            self.epoch_length = int(epoch_length)

    def state_dict(self) -> dict[str, int | bool | None]:
        """Where the training loop is: ``epoch`` and the ``batches`` of it taken, whether
        that ``finished`` the epoch, and what ``load_state_dict`` checks (the batches per
        epoch, the global batch, the seed)."""
        return {
            "epoch": self.iterating_epoch,
            "batches": self.batches_taken,
            "finished": self.batches_taken >= self.epoch_length,
            "num_batches": self.num_batches,
            "batch_size": self.batch_size,
            "seed": self.seed,
        }

    def load_state_dict(self, state: dict[str, int | bool | None]) -> None:
        """Continue from ``state``: the next epoch after a finished one, else the same epoch
        after its taken batches. Idempotent; call it before the pass it concerns.

        A cut epoch continues only with the same batches per epoch, global batch and seed
        (anything else would continue another epoch than the one that was cut): refused,
        with what differs."""
        epoch = state.get("epoch")
        if epoch is None:
            return  # saved before any pass
        epoch, done = int(epoch), int(state.get("batches") or 0)
        self._resume_at = None
        if state.get("finished", done >= int(state["num_batches"])):
            self.set_epoch(epoch + 1)
            return
        self.set_epoch(epoch)
        if done == 0:
            return
        mine = {"num_batches": self.num_batches, "batch_size": self.batch_size, "seed": self.seed}
        differs = {k: (state.get(k), v) for k, v in mine.items() if state.get(k) != v}
        if differs:
            what = ", ".join(f"{k} {a} in the checkpoint, {b} now" for k, (a, b) in differs.items())
            raise ValueError(
                f"the checkpoint stopped after {done} of the {state['num_batches']} global "
                f"batches of epoch {epoch}; continuing that epoch needs the same batches, but "
                f"{what}. Resume with the checkpoint's training set, batch_size, "
                f"accumulate_grad_batches and seed, or from a checkpoint saved at the end of "
                f"an epoch"
            )
        self._resume_at = (epoch, done)
