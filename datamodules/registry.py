"""DataModules and splits by name: one clear error for an unknown data set or split."""

from __future__ import annotations

from pathlib import Path

from datamodules.base import SSLDataModule
from datamodules.cifar import CIFAR10DataModule, CIFAR100DataModule, load_cifar_split
from datamodules.datasets import ImageSet
from datamodules.flowers import Flowers102DataModule, load_flowers102_split
from datamodules.imagenet100 import ImageNet100DataModule, load_imagenet100_split
from datamodules.latent import LatentClassesDataModule

__all__ = ["DATAMODULES", "get_datamodule", "load_split"]

DATAMODULES: dict[str, type[SSLDataModule]] = {
    "cifar10": CIFAR10DataModule,
    "cifar100": CIFAR100DataModule,
    "flowers102": Flowers102DataModule,
    "imagenet100": ImageNet100DataModule,
    "latent_classes": LatentClassesDataModule,
}


def _check(name: str, known) -> str:
    key = name.lower().replace("-", "").replace("_", "")
    for k in known:
        if k.replace("_", "") == key:
            return k
    raise ValueError(f"unknown dataset {name!r}: choose one of {sorted(known)}")


def get_datamodule(name: str, **kwargs) -> SSLDataModule:
    """``get_datamodule("cifar10", data_dir=..., imbalance="exponential")``."""
    return DATAMODULES[_check(name, DATAMODULES)](**kwargs)


def load_split(
    dataset: str, data_dir: str | Path, split: str, cache_dir: str | None = None
) -> ImageSet:
    """One split of an image data set as decoded uint8 images (or lazily decoded for ImageNet-100)."""
    name = _check(dataset, ["cifar10", "cifar100", "flowers102", "imagenet100"])
    if name in ("cifar10", "cifar100"):
        return load_cifar_split(name, data_dir, split, cache_dir)
    if name == "flowers102":
        return load_flowers102_split(data_dir, split, cache_dir=cache_dir)
    return load_imagenet100_split(data_dir, split)
