"""GradScale (paper Sec. 6): identity forward, ||z_i||^p times the default gradient backward."""

from __future__ import annotations

import math

import pytest
import torch

from ssl_norms.gradscale import GradScale, GradScaleLayer, grad_scale
from ssl_norms.losses import info_nce


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0, 2.0, -1.0])
@pytest.mark.parametrize("n,d", [(4, 3), (16, 32)])
def test_forward_identity_backward_scaled_rowwise(power: float, n: int, d: int) -> None:
    g = torch.Generator().manual_seed(n * d)
    z0 = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.exp(
        torch.randn(n, 1, generator=g, dtype=torch.float64)
    )
    other = torch.randn(n, d, generator=g, dtype=torch.float64)

    z_plain = z0.clone().requires_grad_(True)
    info_nce(z_plain, other).backward()

    z_scaled = z0.clone().requires_grad_(True)
    out = GradScale.apply(z_scaled, power)
    assert torch.equal(out, z0)
    info_nce(out, other).backward()

    norms = [math.sqrt(sum(float(v) ** 2 for v in row)) for row in z0]
    for i in range(n):
        torch.testing.assert_close(
            z_scaled.grad[i], z_plain.grad[i] * norms[i] ** power, rtol=1e-10, atol=1e-15
        )


def test_power_one_cancels_the_norm_in_the_cosine_gradient() -> None:
    g = torch.Generator().manual_seed(3)
    base = torch.randn(5, dtype=torch.float64, generator=g)
    target = torch.randn(5, dtype=torch.float64, generator=g)
    cos_phi = float(base @ target / (base.norm() * target.norm()))
    sin_phi = math.sqrt(1 - cos_phi**2)
    for rho in [1e-3, 0.1, 1.0, 7.0, 1e4]:
        z = (base * rho / base.norm()).clone()[None].requires_grad_(True)
        out = grad_scale(z, power=1.0)
        (-torch.nn.functional.cosine_similarity(out, target[None]).sum()).backward()
        assert float(z.grad.norm()) == pytest.approx(sin_phi, rel=1e-9)


def test_layer_and_functional_agree_and_power_zero_is_default() -> None:
    z = torch.randn(3, 4, requires_grad=True)
    layer = GradScaleLayer(1.0)
    assert "power=1.0" in repr(layer)
    layer(z).pow(2).sum().backward()
    g_layer = z.grad.clone()
    z.grad = None
    grad_scale(z, 1.0).pow(2).sum().backward()
    torch.testing.assert_close(z.grad, g_layer)
    assert grad_scale(z, 0.0) is z


def test_rejects_unbatched_input() -> None:
    with pytest.raises(ValueError, match="batch"):
        grad_scale(torch.randn(4), 1.0)
