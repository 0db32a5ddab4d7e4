"""Human labels aligned with a run's samples: rows found by pixels, the class-sorted order
undone, and the values checked against hand-computed ones (numpy / scipy, float64)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import entropy

from ssl_norms.human_agreement import (
    aligned_human_values,
    human_values_or_reasons,
    source_index,
)

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "datamodules"))
from dm_files import cifar10h_counts, cifar10n_arrays, write_cifar10n  # noqa: E402


def test_samples_are_matched_to_their_rows_in_the_full_split() -> None:
    full = torch.tensor(np.random.default_rng(0).integers(0, 256, (6, 3, 2, 2), dtype=np.uint8))
    full[4] = full[1]  # a duplicated image (CIFAR has a few), with the same label
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    subset = full[[5, 1, 4, 0]]
    rows = source_index(subset, labels[[5, 1, 4, 0]], full, labels)
    assert rows.tolist() == [5, 1, 4, 0]
    with pytest.raises(ValueError, match="not in the full split"):
        source_index(full[[2]], torch.tensor([0]), full, labels)  # right pixels, wrong label


def test_cifar10n_on_a_class_sorted_training_split(tmp_path: Path) -> None:
    arrays = cifar10n_arrays(seed=5)
    write_cifar10n(tmp_path / "CIFAR-10_human.pt", arrays)
    clean, aggre = arrays["clean_label"], arrays["aggre_label"]
    # The parquet copy: sorted by class, ties in original order; row r is original[r].
    original = np.argsort(clean, kind="stable")
    bank_rows = np.random.default_rng(1).choice(50_000, 300, replace=False)
    rows = {"bank.source_index": bank_rows, "train_full_labels": clean[original]}
    values = aligned_human_values("cifar10n", tmp_path, rows)
    expected = np.array([float(aggre[original[r]] == clean[original[r]]) for r in bank_rows])
    assert values.dtype == torch.float64
    np.testing.assert_array_equal(values.numpy(), expected)
    assert 0 < expected.mean() < 1  # both outcomes occur: the check can tell them apart

    # The same split in the original order: the identity.
    rows = {"bank.source_index": bank_rows, "train_full_labels": clean}
    expected = (aggre == clean)[bank_rows].astype(float)
    np.testing.assert_array_equal(aligned_human_values("cifar10n", tmp_path, rows), expected)

    # Any other order would silently mismatch: refused.
    shuffled = np.random.default_rng(2).permutation(clean)
    with pytest.raises(ValueError, match="neither the original CIFAR order"):
        aligned_human_values("cifar10n", tmp_path, {**rows, "train_full_labels": shuffled})


def test_cifar10h_entropy_in_the_original_test_order(tmp_path: Path) -> None:
    counts = cifar10h_counts(seed=6)
    np.save(tmp_path / "cifar10h-counts.npy", counts)
    test_labels = counts.argmax(1)  # the original order: majority labels agree with it
    eval_rows = np.arange(0, 10_000, 37)
    rows = {"eval.source_index": eval_rows, "test_full_labels": test_labels}
    values = aligned_human_values("cifar10h", tmp_path, rows)
    np.testing.assert_allclose(values.numpy(), entropy(counts[eval_rows], axis=1), rtol=1e-12)

    # A class-sorted copy of the test split has lost the order: refused with the reason.
    with pytest.raises(ValueError, match="original CIFAR-10 test order"):
        aligned_human_values("cifar10h", tmp_path, {**rows, "test_full_labels": np.sort(test_labels)})  # fmt: skip


def test_reasons_name_the_missing_file_and_where_to_get_it(tmp_path: Path) -> None:
    rows = {"bank.source_index": np.arange(3), "train_full_labels": np.arange(50_000) % 10,
            "eval.source_index": np.arange(3), "test_full_labels": np.arange(10_000) % 10}  # fmt: skip
    out = human_values_or_reasons("cifar10", tmp_path, rows)
    assert set(out) == {"cifar10n", "cifar10h"}
    assert "CIFAR-10N labels not found" in out["cifar10n"]
    assert "To get the data: download CIFAR-10_human.pt" in out["cifar10n"]
    assert "\n" not in out["cifar10n"]
    assert human_values_or_reasons("flowers102", tmp_path, rows) == {}
    with pytest.raises(ValueError, match="unknown human label set 'cifar10x'"):
        aligned_human_values("cifar10x", tmp_path, rows)
