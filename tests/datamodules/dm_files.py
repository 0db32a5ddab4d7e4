"""Writers of small data files in the real on-disk formats (CIFAR pickles, HF parquet, ...)."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def random_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """uint8 ``[n, 3, size, size]``, each image distinct."""
    return np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8)


def class_major_labels(per_class: list[int]) -> np.ndarray:
    """Labels interleaved (0, 1, 2, ..., 0, 1, ...) so "dataset order" is not class order."""
    rows = [(k, c) for c, n in enumerate(per_class) for k in range(n)]
    rows.sort()
    return np.array([c for _, c in rows], dtype=np.int64)


def write_cifar10_pickles(
    root: Path, train_labels: np.ndarray, test_labels: np.ndarray, seed: int = 0
):
    """``root/cifar-10-batches-py`` with data_batch_1..5, test_batch, batches.meta; returns images."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train = random_images(len(train_labels), seed=seed)
    test = random_images(len(test_labels), seed=seed + 1)
    for b, chunk in enumerate(np.array_split(np.arange(len(train_labels)), 5), start=1):
        entry = {"batch_label": f"training batch {b} of 5", "labels": train_labels[chunk].tolist(),
                 "data": train[chunk].reshape(len(chunk), -1), "filenames": [f"{i}.png" for i in chunk]}  # fmt: skip
        with open(folder / f"data_batch_{b}", "wb") as fh:
            pickle.dump(entry, fh)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({"labels": test_labels.tolist(), "data": test.reshape(len(test), -1)}, fh)
    names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": names, "num_vis": 3072}, fh)
    return train, test


def write_cifar100_pickles(
    root: Path, train: np.ndarray, train_labels, test: np.ndarray, test_labels
):
    """``root/cifar-100-python`` with train, test and meta (fine and coarse labels)."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, data, labels in (("train", train, train_labels), ("test", test, test_labels)):
        entry = {"fine_labels": list(map(int, labels)), "coarse_labels": [int(c) // 5 for c in labels],
                 "data": data.reshape(len(data), -1)}  # fmt: skip
        with open(folder / name, "wb") as fh:
            pickle.dump(entry, fh)
    with open(folder / "meta", "wb") as fh:
        pickle.dump(
            {"fine_label_names": [f"fine{i}" for i in range(100)], "coarse_label_names": []}, fh
        )


def encode(img_chw: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    arr = img_chw.transpose(1, 2, 0)
    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(buf, format=fmt)
    return buf.getvalue()


def write_hf_parquet(
    path: Path, images: list[bytes], labels, image_col="image", label_col="label", names=None
):
    """A parquet file in the HF ``datasets`` schema: ``{bytes, path}`` struct + int label."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = pa.array([{"bytes": b, "path": None} for b in images],
                   type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))  # fmt: skip
    table = pa.table({image_col: img, label_col: pa.array(np.asarray(labels, dtype=np.int64))})
    label_feat = (
        {"names": names, "_type": "ClassLabel"} if names else {"dtype": "int64", "_type": "Value"}
    )
    meta = {"info": {"features": {image_col: {"_type": "Image"}, label_col: label_feat}}}
    table = table.replace_schema_metadata({"huggingface": json.dumps(meta)})
    pq.write_table(table, path)


def solid_jpeg(value: int, size: tuple[int, int] = (40, 52)) -> bytes:
    """A JPEG of one grey level: survives compression almost exactly, so images are identifiable."""
    buf = io.BytesIO()
    Image.new("RGB", (size[1], size[0]), (value, value, value)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write_flowers102_folder(root: Path, labels: np.ndarray, trn, val, tst) -> Path:
    """torchvision's ``flowers-102/``: jpg/image_%05d.jpg (grey level = id), imagelabels.mat, setid.mat."""
    from scipy.io import savemat

    folder = root / "flowers-102"
    (folder / "jpg").mkdir(parents=True)
    for i in range(1, len(labels) + 1):
        (folder / "jpg" / f"image_{i:05d}.jpg").write_bytes(solid_jpeg(4 * i, (40 + i % 7, 52)))
    savemat(folder / "imagelabels.mat", {"labels": np.asarray(labels, dtype=np.uint8)[None] + 1})
    ids = {
        k: np.asarray(v, dtype=np.uint16)[None]
        for k, v in (("trnid", trn), ("valid", val), ("tstid", tst))
    }
    savemat(folder / "setid.mat", ids)
    return folder


def write_idx(path: Path, array: np.ndarray) -> None:
    """An (uncompressed) idx file as in torchvision's MNIST/FashionMNIST ``raw/`` folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())
