"""Out-of-distribution evaluation sets (paper Fig. 3): any image folder, served un-augmented.

``ood`` maps a name to a folder. Accepted, in this order:
- torchvision layouts: ``cifar-10-batches-py/`` or ``cifar-100-python/`` (the one matching
  the name first, so one ``data/`` folder can hold both), ``FashionMNIST/raw/t10k-*`` idx
  files, SVHN ``test_32x32.mat``;
- HF parquet: the ``test`` split (else ``validation``, else every parquet file, e.g. the
  shared ``cifar100/test_first20.parquet``) in ``folder/<name>`` or ``folder``; or a single
  ``.parquet`` file.
Images are decoded once, greyscale turned into 3 channels and resized to the host
DataModule's image size. With ``download=True`` the known names (cifar10, cifar100,
fashion_mnist, svhn) are fetched with torchvision.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from datamodules.datasets import ImageSet
from datamodules.io.cache import cached_decode
from datamodules.io.decode import decode_all
from datamodules.io.idx_mat import find_idx_test, read_idx_pair, read_svhn_mat
from datamodules.io.locate import SHARED_HINT, missing_data_error
from datamodules.io.parquet import find_split_files, read_image_parquet
from datamodules.io.torchvision_files import CIFAR_FOLDERS, read_cifar_pickles
from datamodules.threads import one_thread

__all__ = ["download_ood_set", "load_ood_set", "ood_missing_error", "ood_present"]

OOD_LAYOUTS = [
    "cifar-10-batches-py/ or cifar-100-python/ (torchvision pickles; the test split is used)",
    "FashionMNIST/raw/t10k-images-idx3-ubyte (torchvision), or SVHN test_32x32.mat",
    "test.parquet / test-*.parquet / data/test-*.parquet (HF parquet), else validation, else "
    "every *.parquet, in the folder or in folder/<name>/",
    "a single .parquet file",
]


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def _resize_all(images: torch.Tensor, size: int) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as F

    if tuple(images.shape[-2:]) == (size, size):
        return images
    with one_thread():
        return F.resize(images, [size, size], antialias=True)


def _parquet_files(folder: Path) -> list[Path]:
    if folder.is_file() and folder.suffix == ".parquet":
        return [folder]
    if not folder.is_dir():
        return []
    for split in ("test", "validation"):
        files = find_split_files(folder, split)
        if files:
            return files
    return sorted(folder.glob("*.parquet")) or sorted(folder.glob("data/*.parquet"))


def _torchvision_set(
    name: str, path: Path
) -> tuple[np.ndarray, np.ndarray, list[str] | None] | None:
    """The OOD set from a torchvision layout under ``path``, or None."""
    order = sorted(CIFAR_FOLDERS, key=lambda d: d != _key(name))  # the named CIFAR first
    for dataset in order:
        sub = CIFAR_FOLDERS[dataset][0]
        if path.name == sub or (path / sub).is_dir():
            folder = path if path.name == sub else path / sub
            return read_cifar_pickles(folder, dataset, "test")
    if path.is_dir() and (idx := find_idx_test(path)) is not None:
        images, labels = read_idx_pair(*idx)
        return images, labels, None
    if (path / "test_32x32.mat").is_file():
        images, labels = read_svhn_mat(path / "test_32x32.mat")
        return images, labels, [str(d) for d in range(10)]
    return None


def _find(name: str, path: Path) -> tuple[str, object] | None:
    """("torchvision", (images, labels, names)) or ("parquet", files) or None."""
    found = _torchvision_set(name, path)
    if found is not None:
        return "torchvision", found
    for cand in (path / name, path):
        files = _parquet_files(cand)
        if files:
            return "parquet", files
    return None


def ood_present(name: str, folder: str | Path) -> bool:
    """Whether ``load_ood_set`` finds the set (reads the small torchvision files, if any)."""
    return _find(name, Path(folder).expanduser()) is not None


def load_ood_set(
    name: str, folder: str | Path, image_size: int, cache_dir: str | None = None
) -> ImageSet:
    """The OOD set ``name`` from ``folder`` as uint8 ``image_size`` x ``image_size`` RGB images."""
    path = Path(folder).expanduser()
    found = _find(name, path)
    if found is not None and found[0] == "torchvision":
        images, labels, names = found[1]
        names = names or [str(c) for c in range(int(labels.max(initial=-1)) + 1)]
        return ImageSet(_resize_all(torch.from_numpy(images), image_size), labels, names)
    if found is None:
        raise ood_missing_error(name, path)
    files = found[1]
    data = read_image_parquet(files)
    images = cached_decode(
        cache_dir,
        f"ood-{_key(name)}",
        files,
        f"size={image_size}",
        lambda: decode_all(data.blobs.to_pylist(), size=image_size, where=f"OOD set {name!r}"),
    )
    names = data.class_names or [str(c) for c in range(int(np.max(data.labels, initial=-1)) + 1)]
    return ImageSet(images, data.labels, names)


def ood_missing_error(name: str, folder: str | Path, note: str | None = None) -> FileNotFoundError:
    """The missing-data error of OOD set ``name`` (folder, layouts, fix), plus ``note``."""
    fix = f"point ood[{name!r}] at a folder holding one of these layouts, e.g. {SHARED_HINT}"
    return missing_data_error(
        f"out-of-distribution set {name!r}",
        Path(folder).expanduser(),
        OOD_LAYOUTS,
        fix=fix,
        note=note,
    )


def download_ood_set(name: str, folder: str | Path) -> None:
    """Fetch a known OOD set's test split with torchvision (needs internet); others: nothing."""
    import torchvision.datasets as tvd

    root, key = str(Path(folder).expanduser()), _key(name)
    if key == "cifar10":
        tvd.CIFAR10(root, train=False, download=True)
    elif key == "cifar100":
        tvd.CIFAR100(root, train=False, download=True)
    elif key == "fashionmnist":
        tvd.FashionMNIST(root, train=False, download=True)
    elif key == "svhn":
        tvd.SVHN(root, split="test", download=True)
