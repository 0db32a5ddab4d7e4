"""LARS against a hand-written float64 step."""

from __future__ import annotations

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
