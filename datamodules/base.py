"""``SSLDataModule``: the common logic of every DataModule (docs/contract.md).

Subclasses load their splits (``_load_splits``) and may subsample the training split
(``_select_train``, e.g. the exponential imbalance); this class builds the datasets and
serves the loaders:

- ``train_dataloader()``: ``(views, y, idx)``, two augmented views. ``batch_size`` is the
  GLOBAL batch of one micro-step; a ``GlobalBatchSampler`` draws one permutation per
  (seed, epoch), cuts it into global batches (whole optimizer steps only) and gives each
  of the W processes its ``batch_size / W`` rows of every one, so training does not depend
  on W (docs/distributed.md). With ``augment_on="loader_batched"`` the workers make the
  views a whole batch at a time. With ``augment_on="device"`` it yields ``(uint8 images, y,
  idx)`` instead and ``on_after_batch_transfer`` makes the views on the model's device;
  with ``data_on_device`` too, index batches ``(idx, y, idx)`` whose images are gathered
  from a copy of the training set held on the device.
- ``bank_dataloader()``, ``eval_dataloader()``, ``ood_dataloaders()``: ``(x, y, idx)``,
  un-augmented, plain loaders (no sampler): Lightning injects a ``DistributedSampler``
  (shuffle off, padded with duplicates that callbacks drop by ``idx``).
- ``val_dataloader()`` / ``test_dataloader()``: ``[bank, eval, *ood]`` in the order of
  ``eval_loader_names``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from datamodules.batch_augment import BatchAugment
from datamodules.datasets import (
    EvalDataset,
    ImageSet,
    IndexBatchDataset,
    RawImageDataset,
    TwoViewDataset,
)
from datamodules.imbalance import first_n_per_class
from datamodules.io.download import guarded_download
from datamodules.io.locate import missing_data_error
from datamodules.ood import download_ood_set, load_ood_set, ood_missing_error, ood_present
from datamodules.resumable import ResumableDataLoader
from datamodules.sampler import GlobalBatchSampler
from datamodules.shared_memory import worker_batch
from datamodules.threads import one_thread
from datamodules.transforms import (
    IMAGENET_STATS,
    METHODS,
    AugmentationConfig,
    AugmentationSpec,
    eval_transform,
    resolve_augmentation,
    two_view_augmentation,
)

__all__ = ["AUGMENT_ON", "AugmentBatch", "SSLDataModule"]

#: Where the training views are made (``SSLDataModule.augment_on``).
AUGMENT_ON = ("loader", "loader_batched", "device")


class SSLDataModule(LightningDataModule):
    """Base class: loaders, subsets, OOD sets and class statistics shared by all DataModules.

    Args:
        data_dir: folder holding the data set (see each subclass for the accepted layouts).
        batch_size: the global training batch of one micro-step, over all processes (pairs
            of views; the paper's 256). Each of W processes loads ``batch_size / W``; an
            error before training when W does not divide it. The learning rate refers to
            this batch: nothing is rescaled with W.
        eval_batch_size: batch size of the bank, eval and OOD loaders, per process
            (evaluation results do not depend on it, nor on the number of processes).
        num_workers: loader worker processes (augmentation runs there).
        seed: seeds the shuffle and the augmentations: sample i of epoch e always gets the
            same two views (independent of num_workers).
        download: fetch the data (torchvision / HF hub) when missing, and the OOD sets with
            known names (cifar10, cifar100, fashion_mnist, svhn); needs internet.
        ood: out-of-distribution sets, name -> folder (e.g. ``{"fashion_mnist":
            "../shared/data/fashion_mnist"}``), served un-augmented at this image size.
        train_subset: keep the first N images per class of the SSL training set (after any
            imbalance), for CPU-sized runs. None keeps all.
        eval_subset: keep the first N images per class of the eval split and of each OOD set.
        augmentation: ``"auto"`` (the preset of the method the Trainer runs, at this image
            size; SimCLR's without a Trainer), a preset name (``simclr``, ``simsiam``,
            ``byol``: applied at this image size), one ``AugmentationConfig`` for both views,
            or a pair of them (view 1, view 2). Presets: ``datamodules/README.md``.
        cache_dir: optional folder for decoded-image caches (never the data folder).
        augment_on: where the training views are made. ``"loader"``: per image, in the
            loader workers (torchvision); the loader yields ``([view1, view2], y, idx)``.
            ``"device"``: the loader yields ``(uint8 images [B, 3, H, W], y, idx)`` and
            ``on_after_batch_transfer`` augments the whole batch on the model's device
            (``datamodules.batch_augment``), same recipe and contract. Needs the
            training images in memory as one uint8 tensor (not ImageNet-100).
            ``"loader_batched"``: the batched augmentation of ``"device"`` run on the CPU in
            the loader workers, one whole batch per fetch (the same views, except that from
            48 px on the crop is torchvision's per-image uint8 crop, within one uint8 level
            of the float crop of ``"device"`` when upscaling: ``BatchAugment(uint8_crop)``);
            the loader yields ``([view1, view2], y, idx)``. About 4x less CPU time per image
            than the per-image path (BENCHMARKS.md): the faster choice for CPU training, where
            the workers share the cores with the model.
        data_on_device: with ``augment_on="device"``, hold the uint8 training images on the
            model's device (a GPU for the fast path; CIFAR-10 is 150 MB) and bypass the
            loader's per-sample work: it yields index batches ``(idx, y, idx)`` (no workers)
            and ``on_after_batch_transfer`` gathers ``images[idx]`` on the device before the
            batched augmentation. Same batches, same views, same contract.
    """

    _size_option = "train_subset"  # the argument that gives more training samples (messages)

    #: Set by subclasses.
    num_classes: int = 0
    image_size: int = 32
    stats: tuple[tuple[float, ...], tuple[float, ...]] = IMAGENET_STATS
    #: ImageNet-style eval (resize shorter side + centre crop) for variable-size images.
    eval_center_crop: bool = False
    #: Whether eval images need resizing at transform time (they are stored at image_size).
    eval_resize: bool = False

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 256,
        eval_batch_size: int = 512,
        num_workers: int = 4,
        seed: int = 0,
        download: bool = False,
        ood: dict[str, str] | None = None,
        train_subset: int | None = None,
        eval_subset: int | None = None,
        augmentation: AugmentationSpec = "auto",
        cache_dir: str | None = None,
        augment_on: Literal["loader", "loader_batched", "device"] = "loader",
        data_on_device: bool = False,
    ):
        super().__init__()
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        for name, value in (("train_subset", train_subset), ("eval_subset", eval_subset)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.download = download
        self.ood = dict(ood or {})
        self.train_subset = train_subset
        self.eval_subset = eval_subset
        resolve_augmentation(augmentation, 32)  # a bad preset or field fails here, not mid-run
        self.augmentation = augmentation
        self.cache_dir = cache_dir
        if augment_on not in AUGMENT_ON:
            raise ValueError(
                f"augment_on must be 'loader', 'loader_batched' or 'device', got {augment_on!r}"
            )
        self.augment_on = augment_on
        if data_on_device and augment_on != "device":
            raise ValueError(
                "data_on_device=True holds uint8 images on the device and augments them there: "
                "it needs augment_on='device' (set both)"
            )
        self.data_on_device = bool(data_on_device)
        self._device_images: torch.Tensor | None = None
        self._batch_augment: BatchAugment | None = None
        self._train_sampler: GlobalBatchSampler | None = None
        self._sampler_state: dict | None = None  # from a checkpoint, for the next sampler
        self._train: TwoViewDataset | RawImageDataset | None = None
        self._bank: Dataset | None = None
        self._eval: Dataset | None = None
        self._ood: dict[str, Dataset] = {}
        self._train_labels: torch.Tensor | None = None
        self._class_names: list[str] = []

    # ---- subclass hooks -------------------------------------------------------------
    def _load_splits(self) -> tuple[ImageSet, ImageSet]:
        """(SSL training split, evaluation split) as decoded image sets."""
        raise NotImplementedError

    def _select_train(self, train: ImageSet) -> ImageSet:
        """Subsample the training split before ``train_subset`` (default: keep all)."""
        return train

    def _present(self) -> bool:
        """Whether the data set is found under ``data_dir`` (cheap: no decoding)."""
        return False

    def _download(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot download its data")

    def _missing_data_error(self, note: str | None = None) -> FileNotFoundError:
        """The module's one missing-data error (folder, layouts, fix), plus ``note``."""
        return missing_data_error(type(self).__name__, self.data_dir, [], note=note)

    @property
    def augmentation_views(self) -> tuple[AugmentationConfig, AugmentationConfig]:
        """The (view 1, view 2) recipe in use: ``augmentation`` resolved at ``image_size`` for
        the method the Trainer runs (``"auto"``)."""
        return resolve_augmentation(self.augmentation, self.image_size, self._method())

    def _method(self) -> str | None:
        """``simclr``/``simsiam``/``byol`` when the Trainer runs one of them (or a subclass)."""
        model = getattr(self.trainer, "lightning_module", None) if self.trainer else None
        names = [c.__name__.lower() for c in type(model).__mro__] if model is not None else []
        return next((name for name in names if name in METHODS), None)

    def train_transform(self) -> tuple[Callable, Callable]:
        """The per-image (view 1, view 2) pipelines of ``augment_on="loader"``."""
        mean, std = self.stats
        return two_view_augmentation(self.augmentation_views, self.image_size, mean, std)

    def _set_augmentation(self) -> None:
        # Again at each setup: "auto" sees the Trainer's method only once fit attached it.
        if isinstance(self._train, TwoViewDataset):
            self._train.transforms = self.train_transform()
        elif self._train is not None:
            mean, std = self.stats
            # The workers of "loader_batched" run one thread: the per-image uint8 crop.
            self._batch_augment = BatchAugment(
                self.augmentation_views, self.image_size, mean, std, seed=self.seed,
                uint8_crop=self.augment_on == "loader_batched",
            )  # fmt: skip

    def eval_transform(self, resize: bool | None = None) -> Callable:
        mean, std = self.stats
        resize = self.eval_resize if resize is None else resize
        size = self.image_size if resize else None
        return eval_transform(size, mean, std, center_crop=self.eval_center_crop)

    # ---- Lightning hooks ------------------------------------------------------------
    def prepare_data(self) -> None:
        # Lightning calls this on one process per node, before setup.
        # Only what is missing: a present copy (e.g. read-only shared parquet) is used as is.
        # A network failure (offline machine) raises the missing-data error with a note and
        # leaves no partial archive or shard behind (datamodules/io/download.py).
        if not self.download:
            return
        if not self._present():
            guarded_download(
                self._download,
                self.data_dir,
                self._missing_data_error,
                f"put the files in {_abs(self.data_dir)} or point data_dir at a local copy",
            )
        for name, folder in self.ood.items():
            if not ood_present(name, folder):
                guarded_download(
                    lambda name=name, folder=folder: download_ood_set(name, folder),
                    folder,
                    lambda note, name=name, folder=folder: ood_missing_error(name, folder, note),
                    f"put the files in {_abs(folder)} or point ood[{name!r}] at a local copy",
                )

    def setup(self, stage: str | None = None) -> None:
        if self._train is not None:
            self._set_augmentation()
            return
        train, evalset = self._load_splits()
        train = self._select_train(train)
        if self.train_subset is not None:
            train = _first_per_class(train, self.train_subset, self.num_classes)
        if self.eval_subset is not None:
            evalset = _first_per_class(evalset, self.eval_subset, self.num_classes)
        if len(train) == 0:
            raise ValueError(f"{type(self).__name__}: the SSL training set is empty")
        self._class_names = train.class_names
        self._train_labels = train.labels
        if self.augment_on in ("device", "loader_batched"):
            self._train = RawImageDataset(train, seed=self.seed)
        else:
            self._train = TwoViewDataset(train, self.train_transform(), seed=self.seed)
        self._set_augmentation()
        self._bank = EvalDataset(train, self.eval_transform())
        self._eval = EvalDataset(evalset, self.eval_transform())
        # OOD images are stored at image_size already: no resize at transform time.
        ood_tf = self.eval_transform(resize=False)
        for name, folder in self.ood.items():
            ood_set = load_ood_set(name, folder, self.image_size, self.cache_dir)
            if self.eval_subset is not None and len(ood_set):  # an empty set has no max label
                ood_set = _first_per_class(ood_set, self.eval_subset, int(ood_set.labels.max()) + 1)
            self._ood[name] = EvalDataset(ood_set, ood_tf)

    # ---- what the modules and callbacks read ----------------------------------------
    def _require_setup(self) -> None:
        if self._train is None:
            raise RuntimeError(
                f"{type(self).__name__}: call setup() first (Lightning does it in fit/validate)"
            )

    @property
    def class_counts(self) -> list[int]:
        """Per-class image counts of the SSL training set (after imbalance and subsets)."""
        self._require_setup()
        return torch.bincount(self._train_labels, minlength=self.num_classes).tolist()

    @property
    def class_names(self) -> list[str]:
        self._require_setup()
        return list(self._class_names)

    @property
    def eval_loader_names(self) -> list[str]:
        return ["bank", "eval"] + [f"ood/{name}" for name in self.ood]

    @property
    def train_dataset(self) -> TwoViewDataset | RawImageDataset:
        self._require_setup()
        return self._train  # type: ignore[return-value]

    @property
    def bank_dataset(self) -> Dataset:
        self._require_setup()
        return self._bank  # type: ignore[return-value]

    @property
    def eval_dataset(self) -> Dataset:
        self._require_setup()
        return self._eval  # type: ignore[return-value]

    # ---- loaders --------------------------------------------------------------------
    def _loader(self, ds: Dataset, batch_size: int, resumable: bool = False, **kw) -> DataLoader:
        return (ResumableDataLoader if resumable else DataLoader)(
            ds,
            batch_size=batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            **kw,
        )

    def train_dataloader(self) -> DataLoader:
        """This process's share of every global batch (``GlobalBatchSampler``): the same
        global batches on any number of processes, whole optimizer steps only."""
        self._require_setup()
        ds = self._train
        trainer = self.trainer
        accumulate = trainer.accumulate_grad_batches if trainer is not None else 1
        step = self.batch_size * accumulate
        if len(ds) < step:
            raise ValueError(
                f"{type(self).__name__}: {len(ds)} training samples make no optimizer step of "
                f"batch_size {self.batch_size}"
                + (f" x accumulate_grad_batches {accumulate}" if accumulate > 1 else "")
                + f": lower batch_size or raise {self._size_option}"
            )
        try:
            sampler = GlobalBatchSampler(
                len(ds),
                self.batch_size,
                num_replicas=trainer.world_size if trainer is not None else 1,
                rank=trainer.global_rank if trainer is not None else 0,
                seed=self.seed,
                accumulate=accumulate,
                on_epoch=ds.set_epoch,
            )
            if self._sampler_state is not None:  # a resumed run: its epoch and position
                sampler.load_state_dict(self._sampler_state)
                self._sampler_state = None
        except ValueError as error:
            raise ValueError(f"{type(self).__name__}: {error}") from None
        self._train_sampler = sampler  # counts the batches the training loop takes
        if self.augment_on == "loader_batched":
            # Whole batches: one gather and one batched augmentation per fetch, in the workers.
            return self._loader(
                IndexBatchDataset(ds),
                sampler.per_rank,
                resumable=True,
                sampler=sampler,
                drop_last=True,
                collate_fn=AugmentBatch(self._batch_augment, ds),
            )
        if self.data_on_device:
            # Whole index batches, no workers: the images are gathered on the device.
            return ResumableDataLoader(
                IndexBatchDataset(ds),
                batch_size=sampler.per_rank,
                sampler=sampler,
                drop_last=True,
                collate_fn=IndexBatchDataset.collate,
            )
        return self._loader(ds, sampler.per_rank, resumable=True, sampler=sampler, drop_last=True)

    def device_images(self, device: torch.device | str) -> torch.Tensor:
        """The uint8 training images ``[N, 3, H, W]`` on ``device`` (moved once, then cached)."""
        self._require_setup()
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if self._device_images is None or self._device_images.device != device:
            self._device_images = self._train.base.images.to(device)
        return self._device_images

    def state_dict(self) -> dict:
        """What Lightning keeps in checkpoints for this DataModule: the training sampler's
        position (``GlobalBatchSampler.state_dict``), so that a resumed run continues with
        the epoch, and inside it the batch, of the uninterrupted run."""
        return {"train_sampler": self._train_sampler.state_dict()} if self._train_sampler else {}

    def load_state_dict(self, state_dict: dict) -> None:
        """Lightning restores the checkpoint's state here before the loaders are built; the
        next training sampler starts from it."""
        self._sampler_state = state_dict.get("train_sampler")

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        """Lightning's move, and for a training batch that ``augment_on="device"`` augments,
        the host's copy of its indices as a fourth element (``on_after_batch_transfer``
        drops it): the views' parameters are drawn from them on the host, and reading the
        device's copy there would make the host wait for all the GPU's queued work (the
        previous training step) at every batch."""
        moved = super().transfer_batch_to_device(batch, device, dataloader_idx)
        if self._batch_augment is not None and self._augments(batch):
            return (*moved, batch[2])
        return moved

    def _augments(self, batch) -> bool:
        """Whether ``batch`` is one that ``on_after_batch_transfer`` makes views of: ``(uint8
        images, y, idx)``, or ``(idx, y, idx)`` with ``data_on_device``."""
        if not (isinstance(batch, (list, tuple)) and len(batch) == 3):
            return False
        first = batch[0]
        return (self.data_on_device and _is_index_batch(first)) or _is_uint8_images(first)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """``augment_on="device"``: the uint8 training batch, now on the model's device,
        becomes ``([view1, view2], y, idx)`` (docs/contract.md); with ``data_on_device`` the
        index batch ``(idx, y, idx)`` first becomes the images ``images[idx]`` held on the
        device. Other batches pass as they are."""
        trainer = self.trainer
        if trainer is not None and trainer.training and self._train_sampler is not None:
            # Called once per batch the training loop takes (not for prefetched ones): the
            # sampler's position in the epoch, which checkpoints keep (mid-epoch resume).
            self._train_sampler.take_batch(trainer.num_training_batches)
        host_idx = None
        if isinstance(batch, (list, tuple)) and len(batch) == 4:  # transfer_batch_to_device's
            *batch, host_idx = batch
            batch = tuple(batch)
        if self._batch_augment is None or not self._augments(batch):
            return batch
        first, y, idx = batch
        images = self.device_images(first.device)[first] if first.dtype == torch.int64 else first
        views = self._batch_augment(
            images, idx if host_idx is None else host_idx, self._train.epoch
        )
        if trainer is not None:
            # Lightning converts a batch to the precision's dtype before the transfer, when
            # this one still held uint8 images or indices: the views made here get the
            # same conversion (float64 under "64-true", half under "16-true"), as the
            # loader paths' views do.
            views = trainer.precision_plugin.convert_input(views)
        return views, y, idx

    def bank_dataloader(self) -> DataLoader:
        self._require_setup()
        return self._loader(self._bank, self.eval_batch_size, shuffle=False)

    def eval_dataloader(self) -> DataLoader:
        self._require_setup()
        return self._loader(self._eval, self.eval_batch_size, shuffle=False)

    def ood_dataloaders(self) -> dict[str, DataLoader]:
        self._require_setup()
        return {
            name: self._loader(ds, self.eval_batch_size, shuffle=False)
            for name, ds in self._ood.items()
        }

    def val_dataloader(self) -> list[DataLoader]:
        return [self.bank_dataloader(), self.eval_dataloader(), *self.ood_dataloaders().values()]

    def test_dataloader(self) -> list[DataLoader]:
        return self.val_dataloader()


class AugmentBatch:
    """Collate of ``augment_on="loader_batched"``: an index batch ``(idx, y, idx)`` of an
    ``IndexBatchDataset`` becomes ``([view1, view2], y, idx)`` with ``BatchAugment`` on the
    CPU, one intra-op thread (loader workers share the cores with the model)."""

    def __init__(self, augment: BatchAugment, dataset: RawImageDataset):
        self.augment = augment
        self.dataset = dataset

    def __call__(self, batch):
        idx, y, _ = IndexBatchDataset.collate(batch)
        size = self.augment.image_size
        out = worker_batch((2, len(idx), 3, size, size))
        with one_thread():
            views = self.augment(self.dataset.base.images[idx], idx, self.dataset.epoch, out=out)
        return views, y, idx


def _is_index_batch(x) -> bool:
    return isinstance(x, torch.Tensor) and x.dtype == torch.int64 and x.ndim == 1


def _is_uint8_images(x) -> bool:
    return isinstance(x, torch.Tensor) and x.dtype == torch.uint8 and x.ndim == 4


def _abs(folder: str) -> str:
    return str(Path(folder).expanduser().resolve())


def _first_per_class(ds: ImageSet, n: int, num_classes: int) -> ImageSet:
    """First ``n`` images of each class, in dataset order (classes with fewer keep all)."""
    labels = ds.labels.numpy()
    counts = np.bincount(labels, minlength=num_classes)
    return ds.subset(first_n_per_class(labels, np.minimum(counts, n)))
