"""Human label files for the norm-as-confidence analysis (paper Section 5, Fig. 4 middle/right).

Read in the formats their authors publish:

- **CIFAR-10N / CIFAR-100N** (Wei et al., ICLR 2022, github.com/UCSC-REAL/cifar-10-100n,
  ``data/``): ``CIFAR-10_human.pt`` and ``CIFAR-100_human.pt``, ``torch.save``-d dicts of
  int64 numpy arrays of length 50,000 in CIFAR training-set order. CIFAR-10N keys:
  ``clean_label``, ``aggre_label`` (majority vote of three annotators), ``worse_label``,
  ``random_label1``, ``random_label2``, ``random_label3`` (one annotator each). CIFAR-100N
  keys: ``clean_label``, ``noisy_label`` (one annotator), and in the current release
  ``clean_coarse_label`` / ``noisy_coarse_label`` (Python lists of 20 superclasses).
- **CIFAR-10H** (Peterson et al., ICCV 2019, github.com/jcpeterson/cifar-10h, ``data/``):
  ``cifar10h-counts.npy`` (int64 ``[10000, 10]``, about 50 annotations per image),
  ``cifar10h-probs.npy`` (float64 ``[10000, 10]``, the counts divided by their row sums),
  and ``cifar10h-raw.zip`` holding ``cifar10h-raw.csv`` (one row per trial; attention
  checks have ``is_attn_check = 1`` and ``cifar10_test_set_idx = -99999``), in CIFAR-10
  test-set order.

Each loader takes the file itself or a folder holding it (directly, in ``data/``, or in a
sub-folder named after the repository) and raises ``FileNotFoundError`` naming the file and
where to get it when it is absent, ``ValueError`` naming the problem when it is malformed.
Definitions: ``docs/confidence.md``.
"""

from __future__ import annotations

import csv
import io
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from datamodules.io.locate import missing_data_error

__all__ = [
    "CIFAR10N_FILE",
    "CIFAR100N_FILE",
    "CIFAR10H_FILES",
    "CIFARNLabels",
    "CIFAR10HLabels",
    "find_human_labels",
    "load_cifar10n",
    "load_cifar100n",
    "load_cifar10h",
    "order_for_dataset",
]

CIFAR10N_FILE = "CIFAR-10_human.pt"
CIFAR100N_FILE = "CIFAR-100_human.pt"
CIFAR10H_COUNTS = "cifar10h-counts.npy"
CIFAR10H_PROBS = "cifar10h-probs.npy"
CIFAR10H_RAW = "cifar10h-raw.csv"
CIFAR10H_RAW_ZIP = "cifar10h-raw.zip"
CIFAR10H_FILES = (CIFAR10H_COUNTS, CIFAR10H_PROBS, CIFAR10H_RAW, CIFAR10H_RAW_ZIP)

TRAIN_SIZE = 50_000  # CIFAR training set: the rows of CIFAR-10N / CIFAR-100N
TEST_SIZE = 10_000  # CIFAR-10 test set: the rows of CIFAR-10H
CIFAR10N_KEYS = (
    "clean_label",
    "aggre_label",
    "worse_label",
    "random_label1",
    "random_label2",
    "random_label3",
)
CIFAR100N_KEYS = ("clean_label", "noisy_label")
CIFAR100N_COARSE_KEYS = ("clean_coarse_label", "noisy_coarse_label")
RAW_COLUMNS = ("is_attn_check", "cifar10_test_set_idx", "chosen_label")

CIFARN_URL = "https://github.com/UCSC-REAL/cifar-10-100n (folder data/)"
CIFAR10H_URL = "https://github.com/jcpeterson/cifar-10h (folder data/)"
CIFARN_FOLDERS = ("cifar-10-100n", "cifar-n", "cifarn")
CIFAR10H_FOLDERS = ("cifar-10h", "cifar10h")


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class CIFARNLabels:
    """CIFAR-10N or CIFAR-100N labels, row ``i`` = image ``i`` of the CIFAR training set.

    Attributes:
        name: ``"CIFAR-10N"`` or ``"CIFAR-100N"``.
        clean: [50000] int64, the original CIFAR labels (``clean_label``).
        consensus: [50000] int64, the human label used as the consensus: CIFAR-10N's
            ``aggre_label`` (majority vote of three annotators); CIFAR-100N's ``noisy_label``
            (its only annotation).
        annotators: [50000, A] int64, the individual annotations: CIFAR-10N's
            ``random_label1..3`` (A = 3); CIFAR-100N's ``noisy_label`` (A = 1).
        arrays: every array of the file as an int64 tensor, under its published key.
    """

    name: str
    clean: torch.Tensor
    consensus: torch.Tensor
    annotators: torch.Tensor
    arrays: dict[str, torch.Tensor] = field(repr=False)

    def consensus_correct(self) -> torch.Tensor:
        """[50000] float64, 1 where the consensus label equals the clean label (Fig. 4 middle)."""
        return (self.consensus == self.clean).double()


@dataclass(frozen=True)
class CIFAR10HLabels:
    """CIFAR-10H human labels, row ``i`` = image ``i`` of the CIFAR-10 test set.

    Attributes:
        probs: [10000, 10] float64 label distribution per image (rows sum to 1).
        counts: [10000, 10] int64 annotation counts, or None when only the probabilities
            file was available.
        source: the file(s) read.
    """

    probs: torch.Tensor
    counts: torch.Tensor | None
    source: tuple[Path, ...]


# ---------------------------------------------------------------------------------------------
# Locating the files


def _candidates(path: Path, filename: str, folders: tuple[str, ...]) -> list[Path]:
    roots = [path] + [path / f for f in folders]
    return [r / filename for r in roots] + [r / "data" / filename for r in roots]


def _locate(path: str | Path, filenames: tuple[str, ...], folders: tuple[str, ...]) -> Path | None:
    p = Path(path).expanduser()
    if p.is_file():
        return p
    for name in filenames:
        for candidate in _candidates(p, name, folders):
            if candidate.is_file():
                return candidate
    return None


def _missing(what: str, path: str | Path, filenames: tuple[str, ...], folders, url: str):
    layouts = [
        f"{' or '.join(filenames)} in the folder, in its data/ sub-folder, or in "
        f"{', '.join(f + '/' for f in folders)} (or their data/)",
        "the file itself",
    ]
    return missing_data_error(
        what,
        path,
        layouts,
        fix=f"download {' / '.join(filenames)} from {url} and put it in that folder",
    )


def find_human_labels(data_dir: str | Path) -> dict[str, Path]:
    """The human label files present under ``data_dir``, searched as the loaders do.

    Returns ``{name: path}`` with ``name`` in ``cifar10n``, ``cifar100n``, ``cifar10h`` for
    each data set found (CIFAR-10H: the first of its files found); absent ones are left out.
    """
    found = {
        "cifar10n": _locate_in(data_dir, (CIFAR10N_FILE,), CIFARN_FOLDERS),
        "cifar100n": _locate_in(data_dir, (CIFAR100N_FILE,), CIFARN_FOLDERS),
        "cifar10h": _locate_in(data_dir, CIFAR10H_FILES, CIFAR10H_FOLDERS),
    }
    return {k: v for k, v in found.items() if v is not None}


def _locate_in(folder: str | Path, filenames: tuple[str, ...], folders) -> Path | None:
    p = Path(folder).expanduser()
    return None if p.is_file() else _locate(p, filenames, folders)


# ---------------------------------------------------------------------------------------------
# CIFAR-10N / CIFAR-100N


def _numpy_safe_globals() -> list:
    """What ``torch.load(weights_only=True)`` needs to rebuild the published numpy arrays."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    dtypes = [type(np.dtype(t)) for t in (np.int8, np.int16, np.int32, np.int64, np.uint8)]
    dtypes += [type(np.dtype(t)) for t in (np.uint16, np.uint32, np.uint64, np.float32)]
    dtypes += [type(np.dtype(np.float64)), type(np.dtype(np.bool_))]
    return [
        _reconstruct,
        # The published files were written by numpy 1 (numpy.core), newer ones by numpy 2.
        (_reconstruct, "numpy.core.multiarray._reconstruct"),
        (_reconstruct, "numpy._core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
        *dtypes,
    ]


def _read_torch_dict(path: Path, what: str, url: str) -> dict:
    with open(path, "rb") as fh:
        head = fh.read(64)
    fix = f"download it again from {url}"
    if head.startswith(b"version https://git-lfs"):
        raise ValueError(f"{path} is a Git LFS pointer, not the {what} file: {fix}")
    try:
        # weights_only: the file is data; never run code from a pickle.
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear error
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path} is not a readable {what} file ({first}): {fix}") from err
    if not isinstance(obj, dict):
        raise ValueError(
            f"{path} holds a {type(obj).__name__}, not the dict of label arrays of {what}: {fix}"
        )
    return obj


def _label_array(
    value, key: str, path: Path, length: int, num_classes: int, url: str
) -> torch.Tensor:
    arr = np.asarray(value.numpy() if isinstance(value, torch.Tensor) else value)
    fix = f"download it again from {url}"
    if arr.ndim != 1 or arr.shape[0] != length:
        raise ValueError(
            f"{path}: '{key}' has shape {arr.shape}, expected ({length},) (one label per CIFAR "
            f"image, in dataset order): {fix}"
        )
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{path}: '{key}' holds {arr.dtype} values, expected integers: {fix}")
    if arr.min() < 0 or arr.max() >= num_classes:
        raise ValueError(
            f"{path}: '{key}' has labels outside 0..{num_classes - 1} "
            f"(min {arr.min()}, max {arr.max()}): {fix}"
        )
    return torch.from_numpy(arr.astype(np.int64))


def _load_cifarn(
    path: str | Path,
    filename: str,
    name: str,
    keys: tuple[str, ...],
    num_classes: int,
    optional: dict[str, int],
) -> tuple[Path, dict[str, torch.Tensor]]:
    file = _locate(path, (filename,), CIFARN_FOLDERS)
    if file is None:
        raise _missing(f"{name} labels", path, (filename,), CIFARN_FOLDERS, CIFARN_URL)
    raw = _read_torch_dict(file, name, CIFARN_URL)
    missing = [k for k in keys if k not in raw]
    if missing:
        raise ValueError(
            f"{file} lacks the {name} keys {missing} (it has {sorted(raw)}); is it the "
            f"{filename} of {CIFARN_URL}? Download it again"
        )
    arrays = {k: _label_array(raw[k], k, file, TRAIN_SIZE, num_classes, CIFARN_URL) for k in keys}
    for k, classes in optional.items():
        if k in raw:
            arrays[k] = _label_array(raw[k], k, file, TRAIN_SIZE, classes, CIFARN_URL)
    return file, arrays


def load_cifar10n(path: str | Path) -> CIFARNLabels:
    """CIFAR-10N (Wei et al., 2022) from ``CIFAR-10_human.pt`` (the file or its folder).

    Every key of :data:`CIFAR10N_KEYS` must be present, each 50,000 labels in 0..9.
    """
    _, a = _load_cifarn(path, CIFAR10N_FILE, "CIFAR-10N", CIFAR10N_KEYS, 10, {})
    annotators = torch.stack([a[f"random_label{i}"] for i in (1, 2, 3)], dim=1)
    return CIFARNLabels("CIFAR-10N", a["clean_label"], a["aggre_label"], annotators, a)


def load_cifar100n(path: str | Path) -> CIFARNLabels:
    """CIFAR-100N (Wei et al., 2022) from ``CIFAR-100_human.pt`` (the file or its folder).

    ``clean_label`` and ``noisy_label`` must be present, each 50,000 labels in 0..99; the
    coarse keys, when present, are read too (labels in 0..19).
    """
    coarse = dict.fromkeys(CIFAR100N_COARSE_KEYS, 20)
    _, a = _load_cifarn(path, CIFAR100N_FILE, "CIFAR-100N", CIFAR100N_KEYS, 100, coarse)
    noisy = a["noisy_label"]
    return CIFARNLabels("CIFAR-100N", a["clean_label"], noisy, noisy[:, None], a)


# ---------------------------------------------------------------------------------------------
# CIFAR-10H


def _read_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001
        raise ValueError(
            f"{path} is not a readable .npy file ({err}): download it again from {CIFAR10H_URL}"
        ) from err
    if arr.shape != (TEST_SIZE, 10):
        raise ValueError(
            f"{path} has shape {arr.shape}, expected ({TEST_SIZE}, 10) (one row per CIFAR-10 "
            f"test image, one column per class): download it again from {CIFAR10H_URL}"
        )
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"{path} has negative or non-finite entries: download it again")
    return arr


def _counts_from_npy(path: Path) -> torch.Tensor:
    arr = _read_npy(path)
    if arr.dtype.kind not in "iu":
        raise ValueError(
            f"{path} holds {arr.dtype} values, expected integer counts; is it "
            f"{CIFAR10H_PROBS}? Name each file as published ({CIFAR10H_URL})"
        )
    if (arr.sum(1) == 0).any():
        raise ValueError(f"{path}: {int((arr.sum(1) == 0).sum())} images have no annotation")
    return torch.from_numpy(arr.astype(np.int64))


def _probs_from_npy(path: Path) -> torch.Tensor:
    arr = _read_npy(path).astype(np.float64)
    worst = float(np.abs(arr.sum(1) - 1.0).max())
    if worst > 1e-6:
        raise ValueError(
            f"{path}: rows must sum to 1 (a label distribution per image), but one is off by "
            f"{worst:.3g}; is it {CIFAR10H_COUNTS}? Name each file as published"
        )
    return torch.from_numpy(arr)


def _raw_text(path: Path) -> str:
    if path.suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                members = [m for m in zf.namelist() if m.endswith(".csv")]
                if not members:
                    raise ValueError(f"{path} holds no .csv file (expected {CIFAR10H_RAW})")
                return zf.read(members[0]).decode("utf-8")
        except zipfile.BadZipFile as err:
            raise ValueError(f"{path} is not a zip archive: download it again") from err
    return path.read_text(encoding="utf-8")


def _counts_from_raw(path: Path) -> torch.Tensor:
    """Annotation counts [10000, 10] from the raw trials, attention checks left out."""
    reader = csv.DictReader(io.StringIO(_raw_text(path)))
    missing = [c for c in RAW_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(
            f"{path} lacks the columns {missing} of {CIFAR10H_RAW} (it has "
            f"{reader.fieldnames}): download it again from {CIFAR10H_URL}"
        )
    idx, label = [], []
    try:
        for row in reader:
            if int(row["is_attn_check"]) == 1:
                continue
            idx.append(int(row["cifar10_test_set_idx"]))
            label.append(int(row["chosen_label"]))
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{path}, line {reader.line_num}: {RAW_COLUMNS} must be integers ({err}): "
            f"download it again from {CIFAR10H_URL}"
        ) from err
    i = np.asarray(idx, dtype=np.int64)
    c = np.asarray(label, dtype=np.int64)
    if i.size == 0:
        raise ValueError(f"{path} has no trial other than attention checks")
    if i.min() < 0 or i.max() >= TEST_SIZE or c.min() < 0 or c.max() >= 10:
        raise ValueError(
            f"{path}: cifar10_test_set_idx must be in 0..{TEST_SIZE - 1} and chosen_label in "
            "0..9 for every trial that is not an attention check"
        )
    counts = np.bincount(i * 10 + c, minlength=TEST_SIZE * 10).reshape(TEST_SIZE, 10)
    empty = int((counts.sum(1) == 0).sum())
    if empty:
        raise ValueError(f"{path}: {empty} of the {TEST_SIZE} test images have no annotation")
    return torch.from_numpy(counts)


def load_cifar10h(path: str | Path) -> CIFAR10HLabels:
    """CIFAR-10H (Peterson et al., 2019) from its published files (a file or their folder).

    In a folder, counts come from ``cifar10h-counts.npy``, else from the raw trials
    (``cifar10h-raw.csv`` or ``cifar10h-raw.zip``); probabilities from
    ``cifar10h-probs.npy``, else the counts divided by their row sums. When both counts and
    probabilities are read they must agree (to 1e-9).
    """
    p = Path(path).expanduser()
    if p.is_file():
        files = {p.name: p}
    else:
        files = {n: f for n in CIFAR10H_FILES if (f := _locate_in(p, (n,), CIFAR10H_FOLDERS))}
    if not files:
        raise _missing("CIFAR-10H labels", path, CIFAR10H_FILES, CIFAR10H_FOLDERS, CIFAR10H_URL)
    counts = probs = None
    used: list[Path] = []
    for name, f in files.items():
        if name == CIFAR10H_PROBS or (p.is_file() and name.endswith("probs.npy")):
            probs = _probs_from_npy(f)
        elif counts is None and name.endswith(".npy"):
            counts = _counts_from_npy(f)
        elif counts is None and (name.endswith(".csv") or name.endswith(".zip")):
            counts = _counts_from_raw(f)
        else:
            continue
        used.append(f)
    if counts is None and probs is None:
        raise ValueError(
            f"{path}: not a CIFAR-10H file; expected one of {CIFAR10H_FILES} ({CIFAR10H_URL})"
        )
    if counts is not None:
        from_counts = counts.double() / counts.sum(1, keepdim=True)
        if probs is None:
            probs = from_counts
        elif not torch.allclose(probs, from_counts, rtol=0, atol=1e-9):
            raise ValueError(
                f"{used}: the probabilities are not the counts divided by their row sums; "
                "the files come from different releases or orders: download both again"
            )
    return CIFAR10HLabels(probs=probs, counts=counts, source=tuple(used))


# ---------------------------------------------------------------------------------------------
# Aligning the labels with a dataset's rows


def order_for_dataset(clean: torch.Tensor, dataset_labels: torch.Tensor) -> torch.Tensor:
    """The permutation ``perm`` such that ``human_array[perm]`` follows the dataset's rows.

    The human labels follow the original CIFAR order. Two dataset orders are recognised:
    the original one (``dataset_labels == clean``: the identity), and a copy sorted by class
    and then by original index, such as the Hugging Face parquet mirrors (the stable sort of
    ``clean``). Anything else is a ``ValueError``: matching labels by position would be
    silently wrong.
    """
    c = clean.detach().cpu().long()
    d = dataset_labels.detach().cpu().long()
    if c.ndim != 1 or d.shape != c.shape:
        raise ValueError(
            f"clean and dataset_labels must both be 1-D of the same length; got "
            f"{tuple(c.shape)} and {tuple(d.shape)}"
        )
    if torch.equal(c, d):
        return torch.arange(c.numel())
    perm = torch.argsort(c, stable=True)
    if torch.equal(c[perm], d):
        return perm
    agree = float((c == d).double().mean()) if c.numel() else math.nan
    raise ValueError(
        "the dataset's labels follow neither the original CIFAR order nor a class-sorted copy "
        f"of it (only {agree:.1%} agree by position): pass the dataset the human labels were "
        "collected on (CIFAR-10N/100N: the training split; CIFAR-10H: the CIFAR-10 test split)"
    )
