"""Representation-health metrics: the signals other SSL libraries monitor, beside the norms.

- :func:`rankme`: effective rank of the embeddings (Garrido et al., 2023, "RankMe").
- :func:`alignment` and :func:`uniformity`: the two properties of contrastive embeddings on
  the hypersphere of Wang & Isola (2020), which the paper builds on (Sections 2.2 and 6).
- :func:`l2_normalized_std`: the collapse signal of SimSiam (Chen & He, 2021), as lightly
  computes it.
- :func:`opposite_halves_rate`: the rate of positive pairs more than pi/2 apart (paper
  Appendix C.2, Table S1).

Embeddings are 2-D torch tensors ``[N, d]`` (CPU or GPU, any float dtype); every function
computes in float64 on the CPU and returns a Python float. Metrics on the hypersphere reject
zero rows (their direction is undefined). Exact definitions: ``docs/confidence.md``.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "rankme",
    "alignment",
    "uniformity",
    "l2_normalized_std",
    "opposite_halves_rate",
]


def _matrix(z: torch.Tensor, name: str, min_rows: int = 1) -> torch.Tensor:
    """``z`` as a finite [N, d] float64 CPU tensor with at least ``min_rows`` rows."""
    if not isinstance(z, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
    if z.ndim != 2:
        raise ValueError(f"{name} must be 2-D [N, d] (one embedding per row), got {tuple(z.shape)}")
    if z.shape[0] < min_rows or z.shape[1] == 0:
        raise ValueError(
            f"{name} has shape {tuple(z.shape)}: this metric needs at least {min_rows} "
            "embedding(s) of dimension >= 1"
        )
    out = z.detach().to(device="cpu", dtype=torch.float64)
    if not torch.isfinite(out).all():
        raise ValueError(f"{name} has NaN or infinite values")
    return out


def _unit(z: torch.Tensor, name: str) -> torch.Tensor:
    """Rows of ``z`` divided by their l2 norm; zero rows are an error (no direction)."""
    norms = z.norm(dim=1, keepdim=True)
    if (norms == 0).any():
        raise ValueError(
            f"{name} has {int((norms == 0).sum())} zero rows: their direction on the "
            "hypersphere is undefined; drop them"
        )
    return z / norms


def _pair(z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a = _matrix(z1, "z1")
    b = _matrix(z2, "z2")
    if a.shape != b.shape:
        raise ValueError(
            f"z1 and z2 must hold the two views of the same pairs row by row; shapes differ: "
            f"{tuple(a.shape)} vs {tuple(b.shape)}"
        )
    return a, b


def rankme(z: torch.Tensor, eps: float = 1e-7) -> float:
    """Effective rank of the embeddings ``z`` [N, d] (RankMe, Garrido et al., 2023).

    ``RankMe(Z) = exp(-sum_k p_k log p_k)`` with ``p_k = sigma_k / ||sigma||_1 + eps`` over
    the ``min(N, d)`` singular values ``sigma_k`` of ``Z`` (not centred), ``eps = 1e-7`` as
    in that paper. Between about 1 (every embedding on one line: collapse) and ``min(N, d)``
    (equal singular values). An all-zero ``Z`` is an error (no singular spectrum).
    """
    x = _matrix(z, "z")
    sigma = torch.linalg.svdvals(x)
    total = sigma.sum()
    if total == 0:
        raise ValueError("every embedding is zero: RankMe is undefined")
    p = sigma / total + eps
    return float(torch.exp(-(p * torch.log(p)).sum()))


def alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2.0) -> float:
    """Alignment of positive pairs (Wang & Isola, 2020): ``E ||f(x) - f(y)||_2^alpha``.

    ``z1[i]`` and ``z2[i]`` are the embeddings of the two views of sample ``i`` ([N, d]
    each); ``f`` is the l2-normalised embedding. The mean over the N pairs; lower is better
    aligned, 0 when every pair coincides, 4 (``alpha = 2``) when every pair is antipodal.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    a, b = _pair(z1, z2)
    return float((_unit(a, "z1") - _unit(b, "z2")).norm(dim=1).pow(alpha).mean())


def uniformity(z: torch.Tensor, t: float = 2.0, block_rows: int = 1024) -> float:
    """Uniformity (Wang & Isola, 2020): ``log E exp(-t ||f(x) - f(y)||_2^2)``.

    The mean is over the ``N (N - 1) / 2`` unordered pairs of distinct rows ``i < j`` of
    ``z`` [N, d], ``f`` the l2-normalised embedding (as their ``torch.pdist`` code). Lower is
    more uniform; 0 when every embedding is the same point (collapse). For two views,
    Wang & Isola average the uniformity of each view. Computed exactly, ``block_rows`` rows
    at a time (memory ``block_rows x N`` float64), with a log-sum-exp.
    """
    if t <= 0:
        raise ValueError(f"t must be positive, got {t}")
    u = _unit(_matrix(z, "z", min_rows=2), "z")
    n = u.shape[0]
    parts = []
    for start in range(0, n - 1, block_rows):
        rows = u[start : start + block_rows]
        # ||u - v||^2 = 2 - 2 u.v for unit vectors; clamp the rounding below 0.
        sq = (2.0 - 2.0 * rows @ u.T).clamp_(min=0.0)
        i = torch.arange(start, start + rows.shape[0])[:, None]
        upper = torch.arange(n)[None, :] > i  # pairs i < j only
        parts.append(torch.logsumexp(-t * sq[upper], 0))
    log_pairs = math.log(n * (n - 1) / 2)
    return float(torch.logsumexp(torch.stack(parts), 0) - log_pairs)


def l2_normalized_std(z: torch.Tensor) -> float:
    """Mean over dimensions of the std of the l2-normalised embeddings (collapse signal).

    ``mean_k std_i(z_ik / ||z_i||)`` with the unbiased (N - 1) std over the N rows, as
    SimSiam (Chen & He, 2021, Section 4.1) and lightly's ``std_of_l2_normalized``. It is 0
    when the embeddings collapse to one direction, and about ``1 / sqrt(d)`` when they are
    spread like an isotropic Gaussian in ``d`` dimensions (each coordinate of a uniform unit
    vector has variance exactly ``1 / d``).
    """
    x = _matrix(z, "z", min_rows=2)
    return float(_unit(x, "z").std(dim=0, correction=1).mean())


def opposite_halves_rate(z1: torch.Tensor, z2: torch.Tensor) -> float:
    """Fraction of positive pairs whose angle exceeds pi/2 (paper Appendix C.2, Table S1).

    ``z1[i]``, ``z2[i]`` ([N, d] each) are the embeddings of the two views of sample ``i``.
    The angle exceeds pi/2 exactly when the cosine similarity is negative, i.e. when
    ``z1[i] . z2[i] < 0``; a pair at exactly pi/2 (dot product 0) is not counted.
    Table S1 reports about 2-28% after one epoch and 0-1% after 16.
    """
    a, b = _pair(z1, z2)
    _unit(a, "z1")  # the angle of a zero row is undefined: reject it
    _unit(b, "z2")
    return float(((a * b).sum(1) < 0).double().mean())
