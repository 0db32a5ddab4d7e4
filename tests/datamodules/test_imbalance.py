"""The exponential split's counts and the first-n-per-class selection (docs/definitions.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from datamodules.imbalance import exponential_counts, first_n_per_class


def test_paper_counts():
    counts = exponential_counts(5000, 1.5, 10)
    assert (
        counts == [5000, 3333, 2222, 1481, 987, 658, 438, 292, 195, 130] and sum(counts) == 14_736
    )
    c100 = exponential_counts(500, 1.034, 100)
    assert c100 == [math.floor(500 * 1.034**-i) for i in range(100)]
    assert c100[0] == 500 and c100[1] == 483 and c100[-1] == 18
    assert exponential_counts(5000, 2.0, 4) == [
        5000,
        2500,
        1250,
        625,
    ]  # exact products not floored down
    assert exponential_counts(7, 1.0, 3) == [7, 7, 7]


def test_bad_factor_and_empty_class():
    with pytest.raises(ValueError, match=">= 1"):
        exponential_counts(5000, 0.99, 10)
    with pytest.raises(ValueError, match=">= 1"):
        exponential_counts(5000, float("nan"), 10)
    with pytest.raises(ValueError, match="class 3 .*empty.*below"):
        exponential_counts(10, 3.0, 5)


def test_first_n_per_class_keeps_dataset_order():
    labels = np.array([2, 0, 1, 0, 2, 1, 0, 2])
    idx = first_n_per_class(labels, [2, 1, 3])
    assert idx.tolist() == [0, 1, 2, 3, 4, 7]
    with pytest.raises(ValueError, match="class 1 has 2 images"):
        first_n_per_class(labels, [1, 3, 1])
