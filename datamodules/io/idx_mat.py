"""Two more torchvision on-disk formats used as OOD sets: (Fashion-)MNIST idx files and SVHN .mat."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

__all__ = ["find_idx_test", "read_idx_pair", "read_svhn_mat"]


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def find_idx_test(folder: Path) -> tuple[Path, Path] | None:
    """``t10k-images-idx3-ubyte[.gz]`` and its labels in ``folder``, ``folder/raw`` or
    ``folder/FashionMNIST/raw`` (torchvision's layout), else None."""
    for cand in (folder, folder / "raw", folder / "FashionMNIST" / "raw", folder / "MNIST" / "raw"):
        for ext in ("", ".gz"):
            images, labels = (
                cand / f"t10k-images-idx3-ubyte{ext}",
                cand / f"t10k-labels-idx1-ubyte{ext}",
            )
            if images.is_file() and labels.is_file():
                return images, labels
    return None


def read_idx_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """Greyscale images as uint8 ``[N, 3, H, W]`` (channels repeated) and int64 labels."""
    x = _read_idx(images)
    return np.repeat(x[:, None], 3, axis=1), _read_idx(labels).astype(np.int64)


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """SVHN ``test_32x32.mat``: uint8 ``[N, 3, 32, 32]`` and labels 0..9 (the file writes 0 as 10)."""
    from scipy.io import loadmat

    mat = loadmat(path)
    x = np.ascontiguousarray(mat["X"].transpose(3, 2, 0, 1))
    y = mat["y"].reshape(-1).astype(np.int64) % 10
    return x, y
