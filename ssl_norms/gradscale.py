"""The GradScale layer (paper Sec. 6, Listing 2).

Identity in the forward pass; the backward pass multiplies row i of the incoming gradient
by ||z_i||^p. p = 0 is default training, p = 1 cancels the 1/||z_i|| factor of
Proposition 3.1 so the cosine-similarity gradient has norm sin(phi) whatever ||z_i|| is.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GradScale", "grad_scale", "GradScaleLayer"]


class GradScale(torch.autograd.Function):
    """``GradScale.apply(z, power)``: z [N, d] (or [N, ...], norms over all but dim 0)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, power: float) -> torch.Tensor:
        ctx.power = float(power)
        ctx.save_for_backward(z)
        return z.view_as(z)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (z,) = ctx.saved_tensors
        if ctx.power == 0.0:
            return grad_output, None
        norms = z.detach().flatten(1).norm(dim=1)
        scale = norms.pow(ctx.power).view(-1, *([1] * (z.dim() - 1)))
        return grad_output * scale, None


def grad_scale(z: torch.Tensor, power: float = 1.0) -> torch.Tensor:
    """Functional GradScale: identity forward, row-wise ||z_i||^power backward."""
    if z.dim() < 2:
        raise ValueError(
            f"grad_scale expects a batch [N, ...] of embeddings, got shape {tuple(z.shape)}"
        )
    if power == 0.0:
        return z
    return GradScale.apply(z, power)


class GradScaleLayer(nn.Module):
    """``nn.Module`` wrapper of :func:`grad_scale`, placed just before normalisation."""

    def __init__(self, power: float = 1.0) -> None:
        super().__init__()
        self.power = float(power)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return grad_scale(z, self.power)

    def extra_repr(self) -> str:
        return f"power={self.power}"
