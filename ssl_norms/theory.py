"""Closed forms of the paper's Section 3 (Propositions 3.1-3.2, Theorem 3.4).

These hold for ANY points: the tests check them against autograd and against explicit
gradient steps in float64. They are also what the effective learning rate is built on.
"""

from __future__ import annotations

import torch

__all__ = [
    "cosine_gradient",
    "info_nce_anchor_gradient",
    "cosine_change_after_step",
    "cosine_change_bound",
]


def _perp(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Component of ``a`` orthogonal to ``b`` (row-wise), written ``a_{perp b}`` in the paper."""
    b_hat = b / b.norm(dim=-1, keepdim=True)
    return a - (a * b_hat).sum(-1, keepdim=True) * b_hat


def cosine_gradient(z_i: torch.Tensor, z_j: torch.Tensor) -> torch.Tensor:
    """Proposition 3.1: gradient of L^A = -cos(z_i, z_j) w.r.t. z_i, ``-(z_j_hat / ||z_i||)_{perp z_i}``.

    Its norm is sin(phi_ij) / ||z_i||.
    """
    z_j_hat = z_j / z_j.norm(dim=-1, keepdim=True)
    return -_perp(z_j_hat, z_i) / z_i.norm(dim=-1, keepdim=True)


def info_nce_anchor_gradient(z: torch.Tensor, i: int, j: int) -> torch.Tensor:
    """Proposition 3.2 / Eq. (2): gradient w.r.t. z_i of L_ij = -cos(z_i, z_j) + log S_i (tau = 1).

    S_i = sum_{k != i} exp(cos(z_i, z_k)); z_j is held fixed (the gradient is w.r.t. z_i only).
    """
    z_hat = z / z.norm(dim=-1, keepdim=True)
    others = torch.ones(z.shape[0], dtype=torch.bool, device=z.device)
    others[i] = False
    exp_sim = torch.exp(z_hat[others] @ z_hat[i])
    weights = exp_sim / exp_sim.sum()
    repulsion = _perp((weights[:, None] * z_hat[others]).sum(0), z[i]) / z[i].norm()
    return cosine_gradient(z[i], z[j]) + repulsion


def cosine_change_after_step(lr: float, rho: float, cos_phi: torch.Tensor | float) -> torch.Tensor:
    """Exact change of cos(z_i, z_j) after one simultaneous gradient step on both (Appendix A.4).

    With ||z_i|| = ||z_j|| = rho and t = lr / rho^2, the step z' = z + (lr / rho) (z_other_hat)_perp
    gives  cos' - cos = 2 t sin^2(phi) (1 - t cos(phi)) / (1 + t^2 sin^2(phi)).
    """
    c = torch.as_tensor(cos_phi, dtype=torch.float64)
    s2 = 1 - c**2
    t = lr / rho**2
    return 2 * t * s2 * (1 - t * c) / (1 + t**2 * s2)


def cosine_change_bound(lr: float, rho: float, cos_phi: torch.Tensor | float) -> torch.Tensor:
    """Theorem 3.4's bound 2 lr sin^2(phi) / rho^2 on the change of the cosine similarity.

    It holds whenever cos(phi) >= 0. The proof drops the term -lr^2 sin^2 cos / rho^4 (and
    the growth rho' > rho), which is positive for obtuse pairs: by the exact change above the
    bound then fails exactly when lr / rho^2 < |cos(phi)| / sin^2(phi).
    """
    c = torch.as_tensor(cos_phi, dtype=torch.float64)
    return 2 * lr * (1 - c**2) / rho**2
