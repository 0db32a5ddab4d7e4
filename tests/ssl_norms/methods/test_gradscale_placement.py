"""GradScale placement (docs/definitions.md): the gradient arriving at z is ||z_i||^p x the default, row by row.

Runs in float64. The default (p = 0) gradient is also checked against the gradient of an
independently written float64 loss, so the test checks the loss as well as the scaling.
"""

from __future__ import annotations

import pytest
import torch
from method_helpers import IN_DIM, make_method


def _reference_loss(name: str, z: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """Independent float64 losses on z = [view 1 rows; view 2 rows]."""
    n = z.shape[0] // 2
    if name == "simclr":  # NT-Xent, temperature 0.5, written as an explicit loop
        u = z / z.norm(dim=1, keepdim=True)
        total = z.new_zeros(())
        for i in range(2 * n):
            pos = (i + n) % (2 * n)
            sims = torch.stack([u[i] @ u[k] / 0.5 for k in range(2 * n) if k != i])
            total = total - (u[i] @ u[pos] / 0.5 - torch.logsumexp(sims, dim=0))
        return total / (2 * n)
    # SimSiam / BYOL: p = z (predictor outputs), targets = detached projector outputs.
    t1, t2 = targets[:n], targets[n:]
    cos1 = (z[:n] * t2).sum(1) / (z[:n].norm(dim=1) * t2.norm(dim=1))
    cos2 = (z[n:] * t1).sum(1) / (z[n:].norm(dim=1) * t1.norm(dim=1))
    return 0.5 * (-cos1.mean() - cos2.mean())


def _grad_at_z(name: str, power: float, views):
    """The gradient arriving at the output of the module whose output is z."""
    torch.manual_seed(7)
    model = make_method(name, gradscale_power=power).double().train()
    module = model.projector if name == "simclr" else model.predictor
    captured = {}

    def hook(_mod, _inp, out):
        captured["z"] = out
        out.register_hook(lambda g: captured.__setitem__("grad", g))

    module.register_forward_hook(hook)
    targets = {}
    if name == "simsiam":
        model.projector.register_forward_hook(
            lambda _m, _i, out: targets.__setitem__("t", out.detach())
        )
    if name == "byol":
        model.target_projector.register_forward_hook(
            lambda _m, _i, out: targets.__setitem__("t", out.detach())
        )
    model.compute_loss(*views).loss.backward()
    return captured["z"].detach(), captured["grad"], targets.get("t")


@pytest.mark.parametrize("power", [1.0, 2.0, -0.5])
def test_gradient_at_z_is_scaled_row_by_row(method_name: str, power: float) -> None:
    g = torch.Generator().manual_seed(3)
    views = [torch.randn(6, IN_DIM, generator=g, dtype=torch.float64) for _ in range(2)]
    z0, grad0, targets = _grad_at_z(method_name, 0.0, views)
    zp, gradp, _ = _grad_at_z(method_name, power, views)
    assert torch.equal(z0, zp)  # GradScale is the identity in the forward pass

    # The default gradient equals the gradient of an independent reference loss.
    z_leaf = z0.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(_reference_loss(method_name, z_leaf, targets), z_leaf)
    torch.testing.assert_close(grad0, ref, rtol=1e-10, atol=1e-12)

    norms = z0.norm(dim=1, keepdim=True)
    torch.testing.assert_close(gradp, norms.pow(power) * grad0, rtol=1e-10, atol=1e-14)
    assert not torch.allclose(gradp, grad0)  # the scale is not 1 for these embeddings
