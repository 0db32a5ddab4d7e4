"""Out-of-distribution evaluation sets (paper Fig. 3): any image folder, served un-augmented.

A folder may hold the torchvision CIFAR pickles or HF parquet files; the ``test`` split is
used (else ``validation``, else every parquet file in the folder, e.g. the shared
``cifar100/test_first20.parquet``). Images are decoded once, greyscale turned into 3
channels and resized to the host DataModule's image size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from datamodules.datasets import ImageSet
from datamodules.io.cache import cached_decode
from datamodules.io.decode import decode_all
from datamodules.io.locate import SHARED_HINT, missing_data_error
from datamodules.io.parquet import find_split_files, read_image_parquet
from datamodules.io.torchvision_files import CIFAR_FOLDERS, read_cifar_pickles

__all__ = ["load_ood_set"]

OOD_LAYOUTS = [
    "cifar-10-batches-py/ or cifar-100-python/ (torchvision pickles; the test split is used)",
    "test.parquet / test-*.parquet / data/test-*.parquet (HF parquet), else validation, else every *.parquet",
    "a single .parquet file",
]


def _resize_all(images: torch.Tensor, size: int) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as F

    if tuple(images.shape[-2:]) == (size, size):
        return images
    return F.resize(images, [size, size], antialias=True)


def _parquet_files(folder: Path) -> list[Path]:
    if folder.is_file() and folder.suffix == ".parquet":
        return [folder]
    for split in ("test", "validation"):
        files = find_split_files(folder, split)
        if files:
            return files
    return sorted(folder.glob("*.parquet")) or sorted(folder.glob("data/*.parquet"))


def load_ood_set(
    name: str, folder: str | Path, image_size: int, cache_dir: str | None = None
) -> ImageSet:
    """The OOD set ``name`` from ``folder`` as uint8 ``image_size`` x ``image_size`` RGB images."""
    path = Path(folder).expanduser()
    for dataset, (sub, *_rest) in CIFAR_FOLDERS.items():
        for cand in (path / sub, path):
            if cand.name == sub and cand.is_dir():
                images, labels, names = read_cifar_pickles(cand, dataset, "test")
                return ImageSet(_resize_all(torch.from_numpy(images), image_size), labels, names)
    files = _parquet_files(path) if path.exists() else []
    if not files:
        fix = f"point ood[{name!r}] at a folder holding one of these layouts, e.g. {SHARED_HINT}"
        raise missing_data_error(f"out-of-distribution set {name!r}", path, OOD_LAYOUTS, fix=fix)
    data = read_image_parquet(files)
    images = cached_decode(
        cache_dir,
        f"ood-{name}",
        files,
        f"size={image_size}",
        lambda: decode_all(data.blobs.to_pylist(), size=image_size, where=f"OOD set {name!r}"),
    )
    names = data.class_names or [str(c) for c in range(int(np.max(data.labels, initial=-1)) + 1)]
    return ImageSet(images, data.labels, names)
