"""Human labels aligned with a model's samples: the norm against human agreement (paper
Section 5, Fig. 4 middle and right).

CIFAR-10N / CIFAR-100N (Wei et al., 2022) give each CIFAR training image a consensus label
of several annotators; CIFAR-10H (Peterson et al., 2019) gives each CIFAR-10 test image
about 50 human guesses. The files follow the original CIFAR order, while a run trains on a
subset of a copy that may be sorted by class (the Hugging Face parquet mirrors). So each of
the run's samples is found in the full split by its pixels and label (:func:`source_index`),
and the full split's order is matched to the files' (``datamodules.human_labels``:
``order_for_dataset``); anything that cannot be matched is an error that says why, never a
silent misalignment.

- ``cifar10n`` / ``cifar100n``: per training (bank) sample, 1 where the consensus label is
  the clean label, else 0 (Fig. 4 middle: "accuracy of consensus labels");
- ``cifar10h``: per test (eval) sample, the entropy of its human labels in nats (Fig. 4
  right). Needs the original test order, which a class-sorted copy has lost.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "HUMAN_LABEL_SETS",
    "QUANTITY",
    "SPLIT",
    "aligned_human_values",
    "human_label_rows",
    "human_values_or_reasons",
    "source_index",
]

#: The human label sets of each data set.
HUMAN_LABEL_SETS: dict[str, tuple[str, ...]] = {
    "cifar10": ("cifar10n", "cifar10h"),
    "cifar100": ("cifar100n",),
}
#: The split whose samples each set labels (the run's training set = the k-NN bank).
SPLIT = {"cifar10n": "bank", "cifar100n": "bank", "cifar10h": "eval"}
#: What each set's per-sample value is.
QUANTITY = {
    "cifar10n": "consensus label accuracy",
    "cifar100n": "consensus label accuracy",
    "cifar10h": "human label entropy",
}


def _image_keys(images) -> list[bytes]:
    return [
        hashlib.sha1(img.contiguous().numpy().tobytes()).digest() for img in torch.as_tensor(images)
    ]


def source_index(subset_images, subset_labels, full_images, full_labels) -> np.ndarray:
    """Row of each subset image in the full split, matched by its pixels and label.

    Duplicated images (CIFAR has a few) are matched to distinct rows in order. Raises
    ValueError when an image is not in the full split.
    """
    rows: dict[tuple[bytes, int], list[int]] = {}
    for j, (key, label) in enumerate(
        zip(_image_keys(full_images), full_labels.tolist(), strict=True)
    ):
        rows.setdefault((key, int(label)), []).append(j)
    out = np.empty(len(subset_labels), dtype=np.int64)
    for i, (key, label) in enumerate(
        zip(_image_keys(subset_images), subset_labels.tolist(), strict=True)
    ):
        found = rows.get((key, int(label)))
        if not found:
            raise ValueError(f"sample {i} of the subset is not in the full split")
        out[i] = found.pop(0) if len(found) > 1 else found[0]
    return out


def human_label_rows(datamodule) -> dict[str, np.ndarray]:
    """Where a CIFAR DataModule's bank and eval samples sit in the full CIFAR splits.

    Returns ``{"bank.source_index", "eval.source_index", "train_full_labels",
    "test_full_labels"}`` (numpy arrays, the bank and eval datasets' order), or ``{}`` for
    a data set without human labels. Raises ValueError when a sample is not in its split.
    """
    from datamodules.cifar import load_cifar_split

    dataset = getattr(datamodule, "dataset", None)
    if dataset not in HUMAN_LABEL_SETS:
        return {}
    arrays: dict[str, np.ndarray] = {}
    for split, name in (("train", "bank"), ("test", "eval")):
        full = load_cifar_split(dataset, datamodule.data_dir, split, datamodule.cache_dir)
        base = datamodule.bank_dataset.base if name == "bank" else datamodule.eval_dataset.base
        arrays[f"{name}.source_index"] = source_index(
            base.images, base.labels, full.images, full.labels
        )
        arrays[f"{split}_full_labels"] = full.labels.numpy()
    return arrays


def aligned_human_values(which: str, folder: str | Path, rows: dict) -> torch.Tensor:
    """The per-sample values of human label set ``which`` for the samples of ``rows``.

    Args:
        which: ``cifar10n``, ``cifar100n`` (bank samples: consensus label correct, 1 or 0)
            or ``cifar10h`` (eval samples: human label entropy, nats).
        folder: where the label files are (searched as ``datamodules.human_labels`` does).
        rows: :func:`human_label_rows` of the run's DataModule (or the same arrays from a
            cache).

    Returns:
        float64 ``[N]`` in the order of the split's samples. Raises FileNotFoundError (no
        file, with where it was looked for and where to get it) or ValueError (the samples
        cannot be matched to the files' order) with the reason.
    """
    from datamodules import human_labels as H
    from ssl_norms.confidence import label_entropy

    if which not in SPLIT:
        raise ValueError(f"unknown human label set {which!r}: {', '.join(SPLIT)}")
    if which == "cifar10h":
        h = H.load_cifar10h(folder)  # a missing file first: it is the first thing to fix
        if "eval.source_index" not in rows:
            raise ValueError("the run's test split cannot be matched to the CIFAR-10 files")
        labels = torch.as_tensor(rows["test_full_labels"])
        if bool((labels[1:] >= labels[:-1]).all()):
            raise ValueError(
                "CIFAR-10H rows follow the original CIFAR-10 test order, which a copy sorted by "
                "class (the HF parquet files) does not keep: use the torchvision files "
                "(cifar-10-batches-py)"
            )
        agree = float((h.probs.argmax(1) == labels).double().mean())
        if agree < 0.8:
            raise ValueError(
                f"CIFAR-10H's majority labels agree with the test split's labels on only "
                f"{agree:.0%} of the rows: the split is not in the original order"
            )
        return label_entropy(h.probs)[torch.as_tensor(rows["eval.source_index"])]
    loader = H.load_cifar10n if which == "cifar10n" else H.load_cifar100n
    labels = loader(folder)
    if "bank.source_index" not in rows:
        raise ValueError("the run's training set cannot be matched to the CIFAR files")
    perm = H.order_for_dataset(labels.clean, torch.as_tensor(rows["train_full_labels"]))
    aligned = labels.consensus_correct()[perm].double()
    return aligned[torch.as_tensor(rows["bank.source_index"])]


def human_values_or_reasons(
    dataset: str | None, folder: str | Path, rows: dict, sets: Sequence[str] | None = None
) -> dict[str, torch.Tensor | str]:
    """``{which: values}`` for each human label set of ``dataset`` that can be aligned,
    ``{which: reason}`` (one line: what is wrong, and for a missing file where to get it)
    for each that cannot."""
    out: dict[str, torch.Tensor | str] = {}
    for which in sets if sets is not None else HUMAN_LABEL_SETS.get(dataset or "", ()):
        try:
            out[which] = aligned_human_values(which, folder, rows)
        except (FileNotFoundError, ValueError) as error:
            lines = str(error).strip().splitlines()
            # The reason, and for a missing file where to get it (the error's last line).
            fix = [ln for ln in lines[1:] if ln.startswith("To get the data")]
            out[which] = " ".join(lines[:1] + fix)
    return out
