"""Embedding-norm quantities (docs/definitions.md)."""

from __future__ import annotations

import torch

__all__ = ["embedding_norms", "effective_learning_rate"]


def embedding_norms(z: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norms ||z_i|| of a batch [N, ...] (flattened over all but dim 0)."""
    return z.detach().flatten(1).norm(dim=1)


def effective_learning_rate(lr: float, z: torch.Tensor, power: float = 0.0) -> torch.Tensor:
    """Per-sample effective learning rate ``lr * ||z_i||^(power - 2)`` (Theorem 3.4).

    One gradient step changes the cosine similarity by at most 2 lr sin^2(phi) / ||z||^2;
    GradScale(p) multiplies the gradient by ||z||^p, hence the exponent p - 2.
    """
    return lr * embedding_norms(z).pow(power - 2.0)
