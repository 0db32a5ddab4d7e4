"""SSL losses as small pure functions (DESIGN §3, paper Eq. (1) and Sec. 4.2).

All of them take embeddings that are NOT yet normalised: they normalise internally, so the
gradient reaching ``z`` carries the 1/||z|| factor of Proposition 3.1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["info_nce", "supervised_info_nce", "negative_cosine", "symmetric_negative_cosine"]


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's NT-Xent loss (paper Eq. (1) with a temperature).

    For N pairs there are 2N anchors; anchor i's positive is its other view and its
    denominator sums over all 2N - 1 other embeddings (positive included). Cosine
    similarities are divided by ``temperature``; the loss is the mean over the 2N anchors.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(
            f"info_nce expects two [N, d] tensors of equal shape, got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    logits = z @ z.T / temperature
    # An anchor is never its own negative: mask the diagonal out of the softmax.
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, positives)


def supervised_info_nce(
    z: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Supervised InfoNCE (paper Sec. 4.2, Khosla et al. 2020 "L_out" form).

    Every other sample of the same class is a positive. For anchor i with positive set
    P(i), loss_i = -1/|P(i)| sum_{p in P(i)} log( exp(s_ip/T) / sum_{k != i} exp(s_ik/T) ).
    Anchors without any positive in the batch are left out of the mean.
    """
    if z.dim() != 2 or labels.shape != (z.shape[0],):
        raise ValueError(
            f"supervised_info_nce expects z [N, d] and labels [N], got {tuple(z.shape)} and {tuple(labels.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = z.shape[0]
    zn = F.normalize(z, dim=1)
    logits = zn @ zn.T / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    log_prob = logits - torch.logsumexp(
        logits.masked_fill(self_mask, float("-inf")), dim=1, keepdim=True
    )
    positive = (labels[:, None] == labels[None, :]) & ~self_mask
    n_pos = positive.sum(dim=1)
    has_pos = n_pos > 0
    if not bool(has_pos.any()):
        raise ValueError(
            "supervised_info_nce: no sample in the batch has a positive (every class appears once)"
        )
    per_anchor = -(log_prob * positive).sum(dim=1)[has_pos] / n_pos[has_pos]
    return per_anchor.mean()


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean of -cos(p, stopgrad(z)): SimSiam's / BYOL's D(p, z) (the L^A term of Eq. (1))."""
    if p.shape != z.shape:
        raise ValueError(
            f"negative_cosine expects equal shapes, got {tuple(p.shape)} and {tuple(z.shape)}"
        )
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()


def symmetric_negative_cosine(
    p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor
) -> torch.Tensor:
    """1/2 [ -cos(p1, sg(z2)) - cos(p2, sg(z1)) ] (DESIGN §3, SimSiam and BYOL)."""
    return 0.5 * (negative_cosine(p1, z2) + negative_cosine(p2, z1))
