"""The training sampler: a seeded shuffle that also tells the dataset which epoch it is.

Why not a plain ``RandomSampler``: the two-view dataset seeds its augmentations from
(seed, epoch, index) and must learn the epoch. Lightning calls ``set_epoch`` on the
loader's sampler each epoch; under DDP (``use_distributed_sampler=True``) it wraps this
sampler in ``DistributedSamplerWrapper``, which forwards ``set_epoch`` and shards the
indices across ranks (every rank draws the same permutation from the seed). The wrapper
has ``drop_last=False``: when W ranks do not divide N it pads with ``(-N) mod W`` <= W-1
repeated indices, so an epoch covers every index at least once and at most that many twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import Sampler

from datamodules.datasets import sample_seed

__all__ = ["EpochSampler"]

# A fixed "index" for the shuffle's seed: beyond any dataset size, so it never equals the
# per-sample augmentation seed of a real index.
_SHUFFLE_SALT = 1 << 62


class EpochSampler(Sampler[int]):
    """Permutation of ``range(n)`` seeded by (seed, epoch); calls ``on_epoch(epoch)`` on iter.

    Without an explicit ``set_epoch`` the epoch advances by one after each pass, so
    consecutive epochs differ even outside Lightning.
    """

    def __init__(
        self,
        n: int,
        seed: int = 0,
        shuffle: bool = True,
        on_epoch: Callable[[int], None] | None = None,
    ):
        self.n = int(n)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.on_epoch = on_epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        epoch = self.epoch
        self.epoch += 1
        # Set eagerly (not in a generator) so the dataset knows the epoch before any worker
        # receives an index of it.
        if self.on_epoch is not None:
            self.on_epoch(epoch)
        if not self.shuffle:
            return iter(range(self.n))
        g = torch.Generator().manual_seed(sample_seed(self.seed, epoch, _SHUFFLE_SALT))
        return iter(torch.randperm(self.n, generator=g).tolist())
