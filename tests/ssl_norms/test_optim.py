"""LARS against a hand-written float64 step."""

from __future__ import annotations

import pytest
import torch

from ssl_norms.optim import LARS


def test_lars_two_steps_match_the_closed_form() -> None:
    torch.manual_seed(0)
    w0 = torch.randn(5, 3, dtype=torch.float64)
    b0 = torch.randn(5, dtype=torch.float64)
    grads = [
        (torch.randn(5, 3, dtype=torch.float64), torch.randn(5, dtype=torch.float64))
        for _ in range(2)
    ]
    w, b = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    lr, mom, wd, eta = 0.1, 0.9, 1e-2, 0.02
    opt = LARS(
        [{"params": [w]}, {"params": [b], "weight_decay": 0.0, "lars_adaptation": False}],
        lr=lr,
        momentum=mom,
        weight_decay=wd,
        eta=eta,
    )
    ref_w, ref_b, buf_w, buf_b = w0.clone(), b0.clone(), None, None
    for gw, gb in grads:
        w.grad, b.grad = gw.clone(), gb.clone()
        opt.step()
        d = gw + wd * ref_w
        d = d * (eta * ref_w.norm() / d.norm())
        buf_w = d if buf_w is None else mom * buf_w + d
        ref_w = ref_w - lr * buf_w
        buf_b = gb if buf_b is None else mom * buf_b + gb  # excluded: plain SGD momentum, no decay
        ref_b = ref_b - lr * buf_b
    torch.testing.assert_close(w.detach(), ref_w, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(b.detach(), ref_b, rtol=1e-12, atol=1e-14)


def _reference_step(w, g, buf, lr, mom, wd, eta, nesterov, adapt):
    """The class docstring's step for one parameter, in float64."""
    d = g + wd * w
    if adapt and w.norm() > 0 and d.norm() > 0:
        d = d * (eta * w.norm() / d.norm())
    buf = d.clone() if buf is None else mom * buf + d
    return w - lr * (d + mom * buf if nesterov else buf), buf


@pytest.mark.parametrize("foreach", [False, True], ids=["per_parameter", "multi_tensor"])
@pytest.mark.parametrize("nesterov", [False, True])
def test_lars_steps_match_a_per_parameter_reference(nesterov: bool, foreach: bool) -> None:
    """Several parameters in one group, stepped one after another or together in
    multi-tensor kernels (the GPU's default, forced here on the CPU): a zero parameter (trust ratio 1), one
    without a gradient at the first step (its momentum starts later), a float32 one next to
    float64 ones (stepped as its own kind), and the gradients left as the backward wrote
    them."""
    gen = torch.Generator().manual_seed(1)
    shapes = {"conv": (4, 3, 2, 2), "fc": (6, 5), "zero": (3, 3), "late": (7,), "f32": (5, 2)}
    init = {k: torch.randn(s, generator=gen, dtype=torch.float64) for k, s in shapes.items()}
    init["zero"].zero_()
    params = {k: v.clone().requires_grad_(True) for k, v in init.items()}
    params["f32"] = init["f32"].float().requires_grad_(True)
    lr, mom, wd, eta = 0.3, 0.9, 5e-3, 0.02
    opt = LARS(
        list(params.values()),
        lr=lr,
        momentum=mom,
        weight_decay=wd,
        eta=eta,
        nesterov=nesterov,
        foreach=foreach,
    )
    ref = {k: v.clone() for k, v in init.items()}
    bufs: dict[str, torch.Tensor | None] = dict.fromkeys(init)
    for step in range(3):
        grads = {k: torch.randn(s, generator=gen, dtype=torch.float64) for k, s in shapes.items()}
        for k, p in params.items():
            p.grad = None if (k == "late" and step == 0) else grads[k].to(p.dtype)
        given = {k: p.grad.clone() for k, p in params.items() if p.grad is not None}
        opt.step()
        for k, g in given.items():
            assert torch.equal(params[k].grad, g), f"{k}: the step wrote into its gradient"
        for k in ref:
            if params[k].grad is None:
                continue
            ref[k], bufs[k] = _reference_step(
                ref[k], grads[k], bufs[k], lr, mom, wd, eta, nesterov, adapt=True
            )
    for k, p in params.items():
        if k == "f32":
            torch.testing.assert_close(p.detach().double(), ref[k], rtol=1e-5, atol=1e-6)
        else:
            torch.testing.assert_close(p.detach(), ref[k], rtol=1e-12, atol=1e-14)
    assert torch.equal(params["zero"].detach() != 0, torch.ones(3, 3, dtype=torch.bool))
