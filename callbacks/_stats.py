"""Norm and accuracy statistics of the monitors: pure functions on gathered tensors.

Paper references: Fig. 2c (mean norm per class), Fig. 3 (OOD mean norm / training mean
norm), Fig. 4 left (k-NN accuracy per bucket of norm / max norm; defined in
``ssl_norms.confidence`` and re-exported here).
"""

from __future__ import annotations

import numpy as np
import torch

# Moved to the public module that owns the norm-as-confidence metrics; re-exported here so the
# monitors and their tests keep importing it from this module.
from ssl_norms.confidence import bucket_accuracy

__all__ = [
    "QUANTILES",
    "norm_summary",
    "norm_histogram",
    "class_means",
    "ood_ratio",
    "bucket_accuracy",
]

QUANTILES = (0.05, 0.25, 0.50, 0.75, 0.95)


def _qname(q: float) -> str:
    return f"q{round(q * 100):02d}"


def norm_summary(norms: torch.Tensor) -> dict[str, float]:
    """Mean, std (unbiased; 0 for one sample) and the QUANTILES of a 1-D tensor of norms.

    Keys: ``mean``, ``std``, ``q05``, ``q25``, ``q50``, ``q75``, ``q95`` (linear
    interpolation, as ``numpy.quantile``; ``q50`` is the median).
    """
    # One device-to-host copy, then numpy: a handful of small torch ops would cost more in
    # dispatch overhead than the statistics themselves (this runs every n training steps).
    x = np.sort(norms.detach().flatten().double().cpu().numpy())
    # numpy's "linear" quantiles on the sorted values, without np.quantile's overhead.
    pos = np.asarray(QUANTILES) * (x.size - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, x.size - 1)
    qs = x[lo] + (pos - lo) * (x[hi] - x[lo])
    out = {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if x.size > 1 else 0.0}
    out.update({_qname(q): float(v) for q, v in zip(QUANTILES, qs, strict=True)})
    return out


def norm_histogram(norms: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Counts ``[bins]`` (int64) and edges ``[bins + 1]`` over [min, max] of the norms."""
    x = norms.detach().double().cpu().flatten()
    lo, hi = x.min().item(), x.max().item()
    if hi <= lo:  # all equal: one non-empty bin around the value
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = torch.histogram(x, bins=bins, range=(lo, hi))
    return counts.long(), edges


def class_means(
    norms: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None
) -> dict[int, float]:
    """Mean norm per class present in ``labels`` (paper Fig. 2c), in float64."""
    y = labels.detach().long().cpu()
    x = norms.detach().double().cpu()
    n = int(num_classes) if num_classes is not None else int(y.max().item()) + 1
    counts = torch.bincount(y, minlength=n)
    sums = torch.bincount(y, weights=x, minlength=n)
    return {c: (sums[c] / counts[c]).item() for c in range(n) if counts[c] > 0}


def ood_ratio(ood_norms: torch.Tensor, train_norms: torch.Tensor) -> float:
    """Mean OOD norm divided by the mean training (bank) norm (paper Fig. 3)."""
    return (ood_norms.detach().double().mean() / train_norms.detach().double().mean()).item()
