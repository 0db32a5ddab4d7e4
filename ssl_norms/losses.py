"""SSL losses as small pure functions (paper Eq. (1) and Sec. 4.2; docs/definitions.md).

All of them take embeddings that are NOT yet normalised: they normalise internally, so the
gradient reaching ``z`` carries the 1/||z|| factor of Proposition 3.1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["info_nce", "supervised_info_nce", "negative_cosine", "symmetric_negative_cosine"]


def info_nce(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = 0.5,
    *,
    keys1: torch.Tensor | None = None,
    keys2: torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """SimCLR's NT-Xent loss (paper Eq. (1) with a temperature), over a global batch.

    For B pairs there are 2B anchors; anchor i's positive is its other view and its
    denominator sums over all 2B - 1 other embeddings (positive included). Cosine
    similarities are divided by ``temperature``; the loss is the mean over the anchors.

    ``z1``, ``z2`` [n, d] are the anchors; by default they are the whole batch. Under data
    parallelism they are one shard of the global batch whose two views are ``keys1``,
    ``keys2`` [B, d] (``ssl_norms.distributed.gather_rows``), ``z1`` being rows
    ``offset .. offset + n`` of ``keys1``: the loss is then the mean over this shard's 2n
    anchors, each contrasted with all 2B - 1 others, and the mean of the shards' losses is
    the loss of the global batch.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(
            f"info_nce expects two [N, d] tensors of equal shape, got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = z1.shape[0]
    anchors = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    if keys1 is None and keys2 is None:
        keys, total = anchors, n
    elif keys1 is not None and keys2 is not None and keys1.shape == keys2.shape:
        total = keys1.shape[0]
        if keys1.shape[1:] != z1.shape[1:] or not 0 <= offset <= total - n:
            raise ValueError(
                f"info_nce: anchors {tuple(z1.shape)} at offset {offset} are not rows of keys {tuple(keys1.shape)}"
            )
        keys = F.normalize(torch.cat([keys1, keys2], dim=0), dim=1)
    else:
        raise ValueError("info_nce: give both keys1 and keys2 (of equal shape) or neither")
    logits = anchors @ keys.T / temperature
    rows = torch.arange(n, device=z1.device) + offset
    # Column of each anchor itself and of its positive among the 2B keys.
    own = torch.cat([rows, rows + total])
    positives = torch.cat([rows + total, rows])
    # An anchor is never its own negative: mask it out of the softmax. (new_full fills on
    # the device; new_tensor would copy the value from the host and wait for the GPU.)
    logits = logits.index_put(
        (torch.arange(2 * n, device=z1.device), own), logits.new_full((), float("-inf"))
    )
    return F.cross_entropy(logits, positives)


def supervised_info_nce(
    z: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 1.0,
    *,
    keys: torch.Tensor | None = None,
    key_labels: torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """Supervised InfoNCE (paper Sec. 4.2, Khosla et al. 2020 "L_out" form).

    Every other sample of the same class is a positive. For anchor i with positive set
    P(i), loss_i = -1/|P(i)| sum_{p in P(i)} log( exp(s_ip/T) / sum_{k != i} exp(s_ik/T) ).
    Anchors without any positive in the batch are left out of the mean.

    As in :func:`info_nce`, ``z`` may be one shard (rows ``offset ..``) of a global batch
    ``keys`` with labels ``key_labels``; the mean is then over the shard's anchors that
    have a positive. (The mean over shards equals the global loss only when every shard
    has the same number of such anchors; with labels of several classes per shard the
    caller weights the shards by that count.)
    """
    if z.dim() != 2 or labels.shape != (z.shape[0],):
        raise ValueError(
            f"supervised_info_nce expects z [N, d] and labels [N], got {tuple(z.shape)} and {tuple(labels.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = z.shape[0]
    zn = F.normalize(z, dim=1)
    if keys is None and key_labels is None:
        kn, key_labels = zn, labels
    elif keys is not None and key_labels is not None and key_labels.shape == (keys.shape[0],):
        if keys.shape[1:] != z.shape[1:] or not 0 <= offset <= keys.shape[0] - n:
            raise ValueError(
                f"supervised_info_nce: anchors {tuple(z.shape)} at offset {offset} are not rows of keys {tuple(keys.shape)}"
            )
        kn = F.normalize(keys, dim=1)
    else:
        raise ValueError(
            "supervised_info_nce: give both keys and key_labels [len(keys)] or neither"
        )
    logits = zn @ kn.T / temperature
    cols = torch.arange(kn.shape[0], device=z.device)
    self_mask = cols[None, :] == (torch.arange(n, device=z.device) + offset)[:, None]
    log_prob = logits - torch.logsumexp(
        logits.masked_fill(self_mask, float("-inf")), dim=1, keepdim=True
    )
    positive = (labels[:, None] == key_labels[None, :]) & ~self_mask
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
    """1/2 [ -cos(p1, sg(z2)) - cos(p2, sg(z1)) ] (SimSiam and BYOL; docs/definitions.md)."""
    return 0.5 * (negative_cosine(p1, z2) + negative_cosine(p2, z1))
