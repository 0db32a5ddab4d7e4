"""Propositions 3.1, 3.2, Corollary 3.3 and Theorem 3.4 as property tests on random float64 points."""

from __future__ import annotations

import math

import pytest
import torch

from ssl_norms.losses import info_nce
from ssl_norms.theory import (
    cosine_change_after_step,
    cosine_change_bound,
    cosine_gradient,
    info_nce_anchor_gradient,
)

DIMS = [2, 3, 20, 128]


def _random_pair(d: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    scale_i, scale_j = torch.exp(torch.empty(2, dtype=torch.float64).uniform_(-3, 3, generator=g))
    z_i = torch.randn(d, generator=g, dtype=torch.float64) * scale_i
    z_j = torch.randn(d, generator=g, dtype=torch.float64) * scale_j
    return z_i, z_j


def _angle(a: torch.Tensor, b: torch.Tensor) -> float:
    # atan2 of |cross-like| and dot: accurate near 0 and pi, unlike acos.
    a_hat, b_hat = a / a.norm(), b / b.norm()
    return math.atan2(float((a_hat - (a_hat @ b_hat) * b_hat).norm()), float(a_hat @ b_hat))


@pytest.mark.parametrize("d", DIMS)
def test_prop_3_1_cosine_gradient_closed_form_and_norm(d: int) -> None:
    g = torch.Generator().manual_seed(d)
    for _ in range(20):
        z_i, z_j = _random_pair(d, g)
        z = z_i.clone().requires_grad_(True)
        loss = -torch.dot(z, z_j) / (z.norm() * z_j.norm())
        (autograd,) = torch.autograd.grad(loss, z)
        # Hand-derived: -(1/||z_i||) (I - z_i z_i^T / ||z_i||^2) z_j / ||z_j||.
        projector = torch.eye(d, dtype=torch.float64) - torch.outer(z_i, z_i) / (z_i @ z_i)
        closed = -(projector @ (z_j / z_j.norm())) / z_i.norm()
        torch.testing.assert_close(autograd, closed, rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(cosine_gradient(z_i, z_j), closed, rtol=1e-10, atol=1e-14)
        assert float(autograd.norm()) == pytest.approx(
            math.sin(_angle(z_i, z_j)) / float(z_i.norm()), rel=1e-9
        )


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("n", [3, 9])
def test_prop_3_2_info_nce_gradient_orthogonal_and_inverse_scaled(d: int, n: int) -> None:
    g = torch.Generator().manual_seed(10 * d + n)
    z = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.exp(
        torch.randn(n, 1, generator=g, dtype=torch.float64)
    )
    i, j = 0, 1

    def anchor_loss(zi: torch.Tensor) -> torch.Tensor:
        # Eq. (1) for one anchor, tau = 1: -cos(z_i, z_j) + log sum_{k != i} exp(cos(z_i, z_k)).
        zz = torch.cat([zi[None], z[1:]])
        zh = zz / zz.norm(dim=1, keepdim=True)
        sims = zh[1:] @ zh[0]
        return -sims[j - 1] + torch.logsumexp(sims, 0)

    zi = z[i].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(anchor_loss(zi), zi)
    # Orthogonal to z_i (relative to the sizes involved).
    assert abs(float(grad @ z[i])) <= 1e-12 * float(grad.norm() * z[i].norm()) + 1e-15
    # Eq. (2) closed form.
    torch.testing.assert_close(info_nce_anchor_gradient(z, i, j), grad, rtol=1e-9, atol=1e-14)
    # Scaling z_i by s scales its gradient by 1/s.
    for s in [0.01, 0.5, 3.0, 250.0]:
        zs = (s * z[i]).clone().requires_grad_(True)
        (grad_s,) = torch.autograd.grad(anchor_loss(zs), zs)
        torch.testing.assert_close(grad_s, grad / s, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("d", DIMS)
def test_prop_3_2_holds_for_the_batched_info_nce(d: int) -> None:
    g = torch.Generator().manual_seed(d + 7)
    z1 = torch.randn(6, d, generator=g, dtype=torch.float64) * 5
    z2 = torch.randn(6, d, generator=g, dtype=torch.float64) * 0.2
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    info_nce(z1, z2, temperature=0.5).backward()
    for z in (z1, z2):
        dots = (z.grad * z.detach()).sum(1)
        assert torch.all(dots.abs() <= 1e-12 * z.grad.norm(dim=1) * z.detach().norm(dim=1) + 1e-15)


@pytest.mark.parametrize("d", DIMS)
def test_cor_3_3_a_gradient_step_never_decreases_the_norm(d: int) -> None:
    g = torch.Generator().manual_seed(d + 11)
    for lr in [1e-3, 0.1, 10.0, 1e3]:
        # Cosine similarity.
        z_i, z_j = _random_pair(d, g)
        z = z_i.clone().requires_grad_(True)
        (-torch.dot(z, z_j) / (z.norm() * z_j.norm())).backward()
        stepped = z_i - lr * z.grad
        # Pythagoras: ||z'||^2 = ||z||^2 + lr^2 ||grad||^2 >= ||z||^2.
        assert float(stepped.norm() ** 2) == pytest.approx(
            float(z_i.norm() ** 2 + lr**2 * z.grad.norm() ** 2), rel=1e-9
        )
        assert float(stepped.norm()) >= float(z_i.norm()) * (1 - 1e-12)
        # InfoNCE on a whole batch.
        z1 = torch.randn(5, d, generator=g, dtype=torch.float64).requires_grad_(True)
        z2 = torch.randn(5, d, generator=g, dtype=torch.float64).requires_grad_(True)
        info_nce(z1, z2).backward()
        for zz in (z1, z2):
            new = zz.detach() - lr * zz.grad
            assert torch.all(new.norm(dim=1) >= zz.detach().norm(dim=1) * (1 - 1e-12))


def _simultaneous_step(z_i: torch.Tensor, z_j: torch.Tensor, lr: float) -> float:
    """Gradient ascent on cos(z_i, z_j) applied to both points at once (Appendix A.4); returns new cos."""
    a = z_i.clone().requires_grad_(True)
    b = z_j.clone().requires_grad_(True)
    cos = torch.dot(a, b) / (a.norm() * b.norm())
    ga, gb = torch.autograd.grad(cos, (a, b))
    a_new, b_new = z_i + lr * ga, z_j + lr * gb
    return float(torch.dot(a_new, b_new) / (a_new.norm() * b_new.norm()))


def _pair_with_angle(
    d: int, rho: float, cos_phi: float, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    u = torch.randn(d, generator=g, dtype=torch.float64)
    u /= u.norm()
    v = torch.randn(d, generator=g, dtype=torch.float64)
    v -= (v @ u) * u
    v /= v.norm()
    return rho * u, rho * (cos_phi * u + math.sqrt(1 - cos_phi**2) * v)


@pytest.mark.parametrize("d", [3, 20])
def test_thm_3_4_bound_holds_for_acute_pairs(d: int) -> None:
    g = torch.Generator().manual_seed(d + 21)
    for _ in range(300):
        rho = float(torch.exp(torch.empty(1, dtype=torch.float64).uniform_(-2, 2, generator=g)))
        lr = float(torch.exp(torch.empty(1, dtype=torch.float64).uniform_(-4, 4, generator=g)))
        c = float(torch.rand(1, generator=g, dtype=torch.float64))  # cos(phi) in [0, 1)
        z_i, z_j = _pair_with_angle(d, rho, c, g)
        change = _simultaneous_step(z_i, z_j, lr) - c
        assert change == pytest.approx(float(cosine_change_after_step(lr, rho, c)), abs=1e-9)
        assert change <= float(cosine_change_bound(lr, rho, c)) + 1e-12


def test_thm_3_4_bound_fails_for_obtuse_pairs_exactly_where_predicted() -> None:
    g = torch.Generator().manual_seed(5)
    violations = 0
    for _ in range(300):
        rho = float(torch.exp(torch.empty(1, dtype=torch.float64).uniform_(-1, 1, generator=g)))
        c = -float(torch.empty(1, dtype=torch.float64).uniform_(0.05, 0.95, generator=g))  # obtuse
        s2 = 1 - c**2
        # Hand-derived threshold: with t = lr / rho^2 the bound fails iff t < |cos| / sin^2.
        t_star = abs(c) / s2
        for t in (0.5 * t_star, 2.0 * t_star):
            lr = t * rho**2
            z_i, z_j = _pair_with_angle(20, rho, c, g)
            change = _simultaneous_step(z_i, z_j, lr) - c
            bound = 2 * lr * s2 / rho**2
            if t < t_star:
                assert change > bound
                violations += 1
            else:
                assert change <= bound
    assert violations == 300
