"""LightningDataModules and SSL augmentations (docs/contract.md, docs/definitions.md).

``SSLDataModule`` is the base class; ``CIFAR10DataModule``, ``CIFAR100DataModule``,
``Flowers102DataModule``, ``ImageNet100DataModule`` and ``LatentClassesDataModule`` are its
thin subclasses. ``datamodules.transforms`` holds the augmentation presets;
``get_datamodule`` / ``load_split`` select by name.
"""

from datamodules.base import SSLDataModule
from datamodules.cifar import CIFAR10DataModule, CIFAR100DataModule
from datamodules.flowers import Flowers102DataModule
from datamodules.imagenet100 import ImageNet100DataModule
from datamodules.latent import LatentClassesDataModule
from datamodules.registry import DATAMODULES, get_datamodule, load_split
from datamodules.transforms import PRESETS, eval_transform, ssl_augmentation

__all__ = [
    "DATAMODULES",
    "PRESETS",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "Flowers102DataModule",
    "ImageNet100DataModule",
    "LatentClassesDataModule",
    "SSLDataModule",
    "eval_transform",
    "get_datamodule",
    "load_split",
    "ssl_augmentation",
]
