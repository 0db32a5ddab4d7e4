"""Norm and accuracy statistics of the monitors: pure functions on gathered tensors.

Paper references: Fig. 2c (mean norm per class), Fig. 3 (OOD mean norm / training mean
norm), Fig. 4 left (k-NN accuracy per bucket of norm / max norm).
"""

from __future__ import annotations

import torch

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
    x = norms.detach().double().flatten()
    parts = [x.mean().view(1), x.std().view(1) if x.numel() > 1 else x.new_zeros(1)]
    parts.append(torch.quantile(x, x.new_tensor(QUANTILES)))
    values = torch.cat(parts).tolist()  # one device sync for all seven numbers
    names = ["mean", "std", *(_qname(q) for q in QUANTILES)]
    return dict(zip(names, values, strict=True))


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


def bucket_accuracy(
    norms: torch.Tensor,
    correct: torch.Tensor,
    num_buckets: int = 20,
    min_count: int = 50,
) -> dict[int, tuple[float, int]]:
    """Accuracy per bucket of ``norm / max norm`` (paper Fig. 4 left).

    Bucket i holds ratios in [i / num_buckets, (i + 1) / num_buckets) (the maximum, ratio 1,
    goes to the last bucket). Returns ``{i: (accuracy, count)}`` for buckets with more than
    ``min_count`` samples (the paper: 20 buckets of 0.05, more than 50 samples).
    """
    x = norms.detach().double().cpu()
    ok = correct.detach().cpu().double()
    ratio = x / x.max()
    bucket = (ratio * num_buckets).floor().long().clamp_(0, num_buckets - 1)
    counts = torch.bincount(bucket, minlength=num_buckets)
    hits = torch.bincount(bucket, weights=ok, minlength=num_buckets)
    return {
        i: ((hits[i] / counts[i]).item(), int(counts[i]))
        for i in range(num_buckets)
        if counts[i] > min_count
    }
