"""CIFAR-10 / CIFAR-100, balanced or exponentially imbalanced (paper Sec. 6; docs/definitions.md).

Accepted layouts under ``data_dir`` (detected in this order):
- torchvision pickles: ``cifar-10-batches-py/`` (``data_batch_1..5``, ``test_batch``,
  ``batches.meta``) or ``cifar-100-python/`` (``train``, ``test``, ``meta``);
- HF parquet of the hub's schema (``uoft-cs/cifar10``, ``uoft-cs/cifar100``):
  ``train.parquet``/``test.parquet`` (or ``data/train-*.parquet`` shards) in ``data_dir``
  or in ``data_dir/cifar10`` (``cifar100``).
Images are decoded once into an in-memory uint8 tensor ``[N, 3, 32, 32]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch

from datamodules import class_names as names_lib
from datamodules.base import SSLDataModule
from datamodules.datasets import ImageSet
from datamodules.imbalance import exponential_counts, first_n_per_class
from datamodules.io.cache import cached_decode
from datamodules.io.decode import decode_all
from datamodules.io.locate import candidate_folders, missing_data_error
from datamodules.io.parquet import find_split_files, read_image_parquet
from datamodules.io.torchvision_files import CIFAR_FOLDERS, read_cifar_pickles
from datamodules.transforms import CIFAR10_STATS, CIFAR100_STATS, AugmentationSpec

__all__ = ["CIFAR10DataModule", "CIFAR100DataModule", "cifar_present", "load_cifar_split"]

# dataset -> (num_classes, parquet folder names, label columns, paper imbalance factor, names)
_SPECS = {
    "cifar10": (10, ["cifar10", "cifar-10"], ("label",), 1.5, names_lib.CIFAR10),
    "cifar100": (
        100,
        ["cifar100", "cifar-100"],
        ("fine_label", "label"),
        1.034,
        names_lib.CIFAR100,
    ),
}
_SPLITS = ("train", "test")


def _layouts(dataset: str) -> list[str]:
    folder = CIFAR_FOLDERS[dataset][0]
    return [
        f"{folder}/ (torchvision python pickles)",
        f"train.parquet + test.parquet (HF hub parquet schema), in data_dir or data_dir/{dataset}/",
    ]


def cifar_present(dataset: str, data_dir: str | Path) -> bool:
    """Whether either layout of ``dataset`` is under ``data_dir`` (no decoding)."""
    tv_folder = CIFAR_FOLDERS[dataset][0]
    root = Path(data_dir).expanduser()
    if (root / tv_folder).is_dir() or (root.name == tv_folder and root.is_dir()):
        return True
    folders = candidate_folders(root, _SPECS[dataset][1])
    return any(f.is_dir() and find_split_files(f, "train") for f in folders)


def load_cifar_split(
    dataset: str, data_dir: str | Path, split: str, cache_dir: str | None = None
) -> ImageSet:
    """One CIFAR split from either layout, decoded to uint8 ``[N, 3, 32, 32]`` in file order."""
    if dataset not in _SPECS:
        raise ValueError(f"unknown CIFAR dataset {dataset!r}: choose one of {sorted(_SPECS)}")
    if split not in _SPLITS:
        raise ValueError(f"unknown {dataset} split {split!r}: choose one of {list(_SPLITS)}")
    num_classes, folders, label_cols, _, default_names = _SPECS[dataset]
    tv_folder = CIFAR_FOLDERS[dataset][0]
    root = Path(data_dir).expanduser()
    for cand in (root / tv_folder, root):
        if cand.name == tv_folder and cand.is_dir():
            images, labels, names = read_cifar_pickles(cand, dataset, split)
            return ImageSet(torch.from_numpy(images), labels, names)
    for folder in candidate_folders(root, folders):
        files = find_split_files(folder, split) if folder.is_dir() else []
        if files:
            data = read_image_parquet(files, label_cols)
            images = cached_decode(
                cache_dir,
                f"{dataset}-{split}",
                files,
                "size=32",
                lambda data=data, where=str(files[0]): decode_all(
                    data.blobs.to_pylist(), size=32, where=where
                ),
            )
            if data.labels.min(initial=0) < 0 or data.labels.max(initial=0) >= num_classes:
                raise ValueError(f"{files[0]}: labels outside 0..{num_classes - 1}: not {dataset}")
            return ImageSet(images, data.labels, data.class_names or default_names)
    raise missing_data_error(dataset, root, _layouts(dataset), split)


class _CIFARDataModule(SSLDataModule):
    dataset: str = "cifar10"
    image_size = 32

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 256,
        eval_batch_size: int = 512,
        num_workers: int = 4,
        seed: int = 0,
        download: bool = False,
        ood: dict[str, str] | None = None,
        imbalance: Literal["none", "exponential"] = "none",
        imbalance_factor: float | None = None,
        train_subset: int | None = None,
        eval_subset: int | None = None,
        augmentation: AugmentationSpec = "auto",
        cache_dir: str | None = None,
        augment_on: Literal["loader", "loader_batched", "device"] = "loader",
        data_on_device: bool = False,
    ):
        """
        Args:
            data_dir: folder with ``cifar-10-batches-py/`` / ``cifar-100-python/`` or the HF
                parquet files (or their parent, e.g. ``../shared/data``).
            batch_size: the global training batch of one micro-step, all processes together (paper: 256).
            eval_batch_size: batch size of the bank / eval / OOD loaders, per process.
            num_workers: loader workers.
            seed: seeds shuffle and augmentations (reproducible epochs).
            download: fetch with torchvision when missing (needs internet).
            ood: OOD sets, name -> folder, served un-augmented at 32 px.
            imbalance: ``"none"`` or ``"exponential"`` (docs/definitions.md).
            imbalance_factor: the exponential base; None = the paper's value (1.5 for
                CIFAR-10, 1.034 for CIFAR-100).
            train_subset: first N images per class of the SSL training set (after imbalance).
            eval_subset: first N images per class of the test split and of each OOD set.
            augmentation: ``"auto"`` (the preset of the method being trained), a preset name
                (``simclr``, ``simsiam``, ``byol``), one ``AugmentationConfig`` (crop, jitter,
                probabilities, blur, solarize) for both views, or a pair (view 1, view 2).
            cache_dir: optional folder for a cache of decoded images.
            augment_on: ``"loader"`` (per image in the loader workers), ``"loader_batched"``
                (whole batches in the loader workers, the batched recipe: less CPU time) or
                ``"device"`` (whole uint8 batches on the model's device,
                ``datamodules.batch_augment``).
            data_on_device: with ``augment_on="device"``, keep the uint8 training set on the
                model's device and serve index batches (the GPU fast path,
                ``configs/overrides/fast_gpu.yaml``).
        """
        super().__init__(
            data_dir, batch_size, eval_batch_size, num_workers, seed, download, ood,
            train_subset, eval_subset, augmentation, cache_dir, augment_on, data_on_device,
        )  # fmt: skip
        self._init_imbalance(imbalance, imbalance_factor)
        self.save_hyperparameters()

    def _init_imbalance(self, imbalance: str, imbalance_factor: float | None) -> None:
        if imbalance not in ("none", "exponential"):
            raise ValueError(f"unknown imbalance {imbalance!r}: choose 'none' or 'exponential'")
        factor = _SPECS[self.dataset][3] if imbalance_factor is None else float(imbalance_factor)
        if not np.isfinite(factor) or factor < 1:
            raise ValueError(
                f"imbalance_factor must be >= 1 (1 = balanced), got {imbalance_factor}"
            )
        self.imbalance = imbalance
        self.imbalance_factor = factor

    def _load_splits(self) -> tuple[ImageSet, ImageSet]:
        train = load_cifar_split(self.dataset, self.data_dir, "train", self.cache_dir)
        test = load_cifar_split(self.dataset, self.data_dir, "test", self.cache_dir)
        return train, test

    def _select_train(self, train: ImageSet) -> ImageSet:
        """Exponential split: class i keeps its first floor(n_max * factor^-i) images, n_max
        the size of the largest class (5,000 / 500 on the real data). Test split untouched."""
        if self.imbalance == "none":
            return train
        n_max = int(torch.bincount(train.labels, minlength=self.num_classes).max())
        counts = exponential_counts(n_max, self.imbalance_factor, self.num_classes)
        return train.subset(first_n_per_class(train.labels.numpy(), counts))

    def _present(self) -> bool:
        return cifar_present(self.dataset, self.data_dir)

    def _missing_data_error(self, note: str | None = None) -> FileNotFoundError:
        return missing_data_error(self.dataset, self.data_dir, _layouts(self.dataset), note=note)

    def _download(self) -> None:
        import torchvision

        cls = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}[
            self.dataset
        ]
        for train in (True, False):
            cls(root=self.data_dir, train=train, download=True)


class CIFAR10DataModule(_CIFARDataModule):
    """CIFAR-10 at 32 px, optionally exponentially imbalanced (factor 1.5: 14,736 images)."""

    dataset = "cifar10"
    num_classes = 10
    stats = CIFAR10_STATS


class CIFAR100DataModule(_CIFARDataModule):
    """CIFAR-100 (fine labels) at 32 px, optionally exponentially imbalanced (factor 1.034)."""

    dataset = "cifar100"
    num_classes = 100
    stats = CIFAR100_STATS
