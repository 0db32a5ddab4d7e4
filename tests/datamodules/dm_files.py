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


def _torch_save_as_numpy1(obj, path: Path) -> None:
    """``torch.save`` with the pickle naming numpy 1's ``numpy.core`` module, as in the files
    Wei et al. published (written before numpy 2 renamed it ``numpy._core``)."""
    import zipfile

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("data.pkl"):
                # Protocol-2 GLOBAL opcodes are newline-terminated text: a rename is safe.
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            dst.writestr(info.filename, data)


def cifar10n_arrays(seed: int = 0, n: int = 50_000) -> dict[str, np.ndarray]:
    """The six int64 label arrays of CIFAR-10N (Wei et al. 2022), as in CIFAR-10_human.pt."""
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, 10, n)
    noisy = {
        f"random_label{i}": np.where(rng.random(n) < 0.8, clean, rng.integers(0, 10, n))
        for i in (1, 2, 3)
    }
    stacked = np.stack(list(noisy.values()), 1)
    counts = np.stack([(stacked == c).sum(1) for c in range(10)], 1)
    aggre = counts.argmax(1)  # a majority label (the first on a three-way tie)
    worse = np.where((stacked != clean[:, None]).any(1), stacked[:, 0], clean)
    return {"clean_label": clean, "aggre_label": aggre, "worse_label": worse, **noisy}


def write_cifar10n(path: Path, arrays: dict, numpy1_names: bool = True) -> Path:
    """``CIFAR-10_human.pt``: a torch-saved dict of numpy arrays (the published format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if numpy1_names:
        _torch_save_as_numpy1(arrays, path)
    else:
        import torch

        torch.save(arrays, path)
    return path


def cifar100n_arrays(seed: int = 0, n: int = 50_000) -> dict:
    """CIFAR-100_human.pt's content: numpy fine labels, coarse labels as Python lists."""
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, 100, n)
    noisy = np.where(rng.random(n) < 0.6, clean, rng.integers(0, 100, n))
    return {
        "clean_label": clean,
        "noisy_label": noisy,
        "clean_coarse_label": [int(c) // 5 for c in clean],
        "noisy_coarse_label": [int(c) // 5 for c in noisy],
    }


def cifar10h_counts(seed: int = 0, n: int = 10_000, per_image=(47, 64)) -> np.ndarray:
    """int64 ``[n, 10]`` annotation counts, 47 to 63 per image as in cifar10h-counts.npy
    (``per_image``: the half-open range of annotations per image)."""
    rng = np.random.default_rng(seed)
    counts = np.zeros((n, 10), dtype=np.int64)
    true = rng.integers(0, 10, n)
    for i in range(n):
        labels = np.where(rng.random(rng.integers(*per_image)) < 0.9, true[i], rng.integers(0, 10))
        counts[i] = np.bincount(labels, minlength=10)
    return counts


CIFAR10H_RAW_COLUMNS = [
    "annotator_id", "trial_index", "is_attn_check", "true_category", "chosen_category",
    "true_label", "chosen_label", "correct_guess", "cifar10_test_set_idx", "image_filename",
    "subcategory", "reaction_time", "time_elapsed",
]  # fmt: skip


def write_cifar10h_raw(path: Path, counts: np.ndarray, seed: int = 0) -> Path:
    """``cifar10h-raw.csv`` (or ``.zip`` holding it): one row per trial, shuffled, with
    attention checks (``is_attn_check`` 1, index -99999) that must not be counted."""
    import csv
    import zipfile

    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck"]  # fmt: skip
    rng = np.random.default_rng(seed)
    trials = [
        (i, c) for i in range(counts.shape[0]) for c in range(10) for _ in range(counts[i, c])
    ]
    trials += [(-99999, int(c)) for c in rng.integers(0, 10, 500)]  # attention checks
    order = rng.permutation(len(trials))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CIFAR10H_RAW_COLUMNS)
    for k, t in enumerate(order):
        idx, chosen = trials[t]
        attn = int(idx < 0)
        true = chosen if attn else int(counts[idx].argmax())
        writer.writerow([k // 220, k % 220, attn, names[true], names[chosen], true, chosen,
                         int(true == chosen), idx, f"{names[true]}/img_{k}.png", "sub",
                         round(float(rng.uniform(300, 3000)), 1), k * 1000])  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("cifar10h-raw.csv", text.getvalue())
    else:
        path.write_text(text.getvalue())
    return path
