"""Datasets behind the loaders: decoded image sets, two-view training sets, eval sets.

Reproducibility: the two views of sample ``i`` in epoch ``e`` are drawn with torch's
generator seeded from ``sample_seed(seed, e, i)`` inside ``torch.random.fork_rng``, so they
depend neither on the number of workers, nor on the batch composition, nor on the global
RNG, which they leave untouched. The epoch lives in a shared-memory tensor that
``GlobalBatchSampler`` sets at the start of each epoch, so persistent workers see it too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.threads import one_thread

__all__ = [
    "EvalDataset",
    "ImageSet",
    "IndexBatchDataset",
    "RawImageDataset",
    "TwoViewDataset",
    "sample_seed",
]

_M64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 63-bit seed for (seed, epoch, index): splitmix64 chained over the three."""
    h = _splitmix64(seed & _M64)
    h = _splitmix64(h ^ (epoch & _M64))
    h = _splitmix64(h ^ (index & _M64))
    return h >> 1


class ImageSet(Dataset):
    """Decoded uint8 images ``[3, H, W]`` with int64 labels.

    ``images`` is a uint8 tensor ``[N, 3, H, W]`` (decoded once, in memory) or a sequence
    with ``__getitem__``/``take`` (``io.decode.EncodedImages``: lazy decoding for data sets
    too large to hold decoded, i.e. ImageNet-100).
    """

    def __init__(self, images, labels: Sequence[int] | np.ndarray, class_names: list[str]):
        self.images = images
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        self.class_names = list(class_names)
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageSet:
        idx = np.asarray(indices, dtype=np.int64)
        if isinstance(self.images, torch.Tensor):
            images = self.images[torch.from_numpy(idx)]
        else:
            images = self.images.take(idx)
        return ImageSet(images, self.labels.numpy()[idx], self.class_names)


class EpochAwareDataset(Dataset):
    """A training set whose samples depend on (seed, epoch, index); the epoch comes from
    ``GlobalBatchSampler`` at the start of each epoch (datamodules/sampler.py)."""

    def __init__(self, base: Dataset, seed: int = 0):
        self.base = base
        self.seed = int(seed)
        # Shared memory: a set_epoch in the main process reaches (persistent) workers.
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        self._epoch[0] = int(epoch)

    def __len__(self) -> int:
        return len(self.base)


class TwoViewDataset(EpochAwareDataset):
    """Training set: ``([view1, view2], y, idx)``, seeded per sample.

    ``transform`` is one callable for both views or a pair (view 1, view 2) for asymmetric
    recipes (BYOL at 128 px). Both views are drawn from one generator seeded from
    ``sample_seed(seed, epoch, i)``, view 1 first.
    """

    def __init__(self, base: Dataset, transform: Callable | Sequence[Callable], seed: int = 0):
        super().__init__(base, seed)
        self.transforms = _two(transform)

    def __getitem__(self, i: int):
        img, y = self.base[i]
        first, second = self.transforms
        with one_thread(), torch.random.fork_rng(devices=[]):
            # The CPU generator only: torch.manual_seed also queues CUDA seeding with a
            # captured stack trace, which cost more than the augmentation itself.
            torch.default_generator.manual_seed(sample_seed(self.seed, self.epoch, int(i)))
            views = [first(img), second(img)]
        return views, y, int(i)


class RawImageDataset(EpochAwareDataset):
    """Training set of ``augment_on="device"``: ``(uint8 image [3, H, W], y, idx)``.

    The two views are made later, batched on the model's device, by
    ``datamodules.batch_augment.BatchAugment`` from (seed, ``epoch``, idx): this set only
    carries the epoch. ``base`` must hold its images as one uint8 tensor ``[N, 3, H, W]``.
    """

    def __init__(self, base: ImageSet, seed: int = 0):
        images = getattr(base, "images", None)
        if not (
            isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.ndim == 4
        ):
            raise ValueError(
                "augment_on='device' needs the training images in memory as one uint8 tensor "
                f"[N, 3, H, W], but this data set holds {type(images).__name__} (e.g. lazily "
                "decoded JPEGs): use augment_on='loader'"
            )
        super().__init__(base, seed)

    def __getitem__(self, i: int):
        return self.base.images[i], int(self.base.labels[i]), int(i)


class IndexBatchDataset(Dataset):
    """Training set of ``data_on_device``: a whole batch ``(idx, y, idx)`` (int64 tensors) per
    fetch, without per-sample calls; the images stay with the DataModule, on the device.

    Use with a batch size, ``collate_fn=IndexBatchDataset.collate`` and no workers.
    """

    def __init__(self, raw: RawImageDataset):
        self.raw = raw

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, i: int):
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, ...]]:
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return [(idx, self.raw.base.labels[idx], idx)]

    @staticmethod
    def collate(batch: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
        """The one batch ``__getitems__`` made (or single samples, concatenated)."""
        if len(batch) == 1:
            return batch[0]
        return tuple(torch.cat(parts) for parts in zip(*batch, strict=True))


def _two(transform: Callable | Sequence[Callable]) -> tuple[Callable, Callable]:
    if callable(transform):
        return transform, transform
    pair = tuple(transform)
    if len(pair) != 2 or not all(callable(t) for t in pair):
        raise ValueError("transform is one callable or a pair (view 1, view 2) of callables")
    return pair  # type: ignore[return-value]


class EvalDataset(Dataset):
    """Un-augmented evaluation set: ``(x, y, idx)``, ``idx`` the index in this dataset."""

    def __init__(self, base: Dataset, transform: Callable):
        self.base = base
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        img, y = self.base[i]
        with one_thread():
            return self.transform(img), y, int(i)
