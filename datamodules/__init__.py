"""LightningDataModules and SSL augmentations (DESIGN §3-4, docs/contract.md).

``SSLDataModule`` is the base class; ``CIFAR10DataModule``, ``CIFAR100DataModule``,
``Flowers102DataModule``, ``ImageNet100DataModule`` and ``LatentClassesDataModule`` are its
thin subclasses. ``datamodules.transforms`` holds the augmentation presets.
"""

from datamodules.base import SSLDataModule
from datamodules.cifar import CIFAR10DataModule, CIFAR100DataModule
from datamodules.latent import LatentClassesDataModule
from datamodules.transforms import eval_transform, ssl_augmentation

__all__ = [
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "LatentClassesDataModule",
    "SSLDataModule",
    "eval_transform",
    "ssl_augmentation",
]
