"""The exponentially imbalanced split and per-class subsets (paper Sec. 6; docs/definitions.md)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["exponential_counts", "first_n_per_class"]


def exponential_counts(n_max: int, factor: float, num_classes: int) -> list[int]:
    """floor(n_max * factor^-i) for class i = 0..num_classes-1.

    The paper's CIFAR-10 (n_max 5000, factor 1.5) gives [5000, 3333, ..., 130] (14,736);
    CIFAR-100 uses n_max 500, factor 1.034. Raises if the factor is < 1 or a class ends empty.
    """
    if not math.isfinite(factor) or factor < 1:
        raise ValueError(f"imbalance_factor must be >= 1 (1 = balanced), got {factor}")
    # The relative 1e-12 guards exact products (e.g. 5000 * 2^-3) against float round-down.
    counts = [math.floor(n_max * factor**-i * (1 + 1e-12)) for i in range(num_classes)]
    if min(counts) < 1:
        empty = counts.index(0)
        raise ValueError(
            f"imbalance_factor {factor} with {n_max} images in the largest class leaves class {empty} "
            f"(and later ones) empty: floor({n_max} * {factor}^-{empty}) = 0. Use a factor below "
            f"{n_max ** (1 / (num_classes - 1)):.4f}."
        )
    return counts


def first_n_per_class(labels: np.ndarray, counts: Sequence[int]) -> np.ndarray:
    """Indices of the first ``counts[c]`` samples of each class c, in dataset order (sorted)."""
    labels = np.asarray(labels)
    keep = []
    for c, n in enumerate(counts):
        rows = np.flatnonzero(labels == c)
        if len(rows) < n:
            raise ValueError(
                f"class {c} has {len(rows)} images, fewer than the {n} the split asks for"
            )
        keep.append(rows[:n])
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)
