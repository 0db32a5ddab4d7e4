"""The torchvision on-disk formats: CIFAR python pickles and the Flowers102 folder."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

__all__ = ["CIFAR_FOLDERS", "read_cifar_pickles", "read_flowers102_folder"]

# dataset -> (folder, train files, test files, meta file, label key, names key)
CIFAR_FOLDERS = {
    "cifar10": (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        "batches.meta",
        "labels",
        "label_names",
    ),
    "cifar100": (
        "cifar-100-python",
        ["train"],
        ["test"],
        "meta",
        "fine_labels",
        "fine_label_names",
    ),
}


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as err:
        raise ValueError(f"cannot read {path}: {err}. Fetch the CIFAR files again.") from err


def read_cifar_pickles(
    folder: Path, dataset: str, split: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images uint8 ``[N, 3, 32, 32]``, labels int64 ``[N]`` and class names, in file order."""
    _, train_files, test_files, meta_file, label_key, names_key = CIFAR_FOLDERS[dataset]
    files = {"train": train_files, "test": test_files}[split]
    data, labels = [], []
    for name in files:
        entry = _unpickle(folder / name)
        data.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(entry[label_key], dtype=np.int64))
    names = [str(n) for n in _unpickle(folder / meta_file)[names_key]]
    return np.concatenate(data), np.concatenate(labels), names


def read_flowers102_folder(folder: Path, split: str) -> tuple[list[bytes], np.ndarray]:
    """JPEG bytes and 0-based labels of an official split (``train``, ``val``, ``test``).

    ``folder`` is torchvision's ``flowers-102/`` (``jpg/image_%05d.jpg``, ``imagelabels.mat``,
    ``setid.mat`` with 1-based ``trnid``/``valid``/``tstid``).
    """
    from scipy.io import loadmat

    key = {"train": "trnid", "val": "valid", "test": "tstid"}[split]
    ids = loadmat(folder / "setid.mat")[key].reshape(-1).astype(np.int64)
    all_labels = loadmat(folder / "imagelabels.mat")["labels"].reshape(-1).astype(np.int64)
    blobs = []
    for i in ids:
        path = folder / "jpg" / f"image_{i:05d}.jpg"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} listed in setid.mat is missing: fetch Flowers102 again"
            )
        blobs.append(path.read_bytes())
    return blobs, all_labels[ids - 1] - 1
