"""LARS (You et al. 2017), as used by SimCLR/BYOL for large batches.

SGD with momentum where each parameter's update is rescaled by the trust ratio
``eta * ||w|| / (||g|| + weight_decay * ||w||)``. Parameter groups with
``lars_adaptation=False`` (biases and BatchNorm parameters, see
``SSLMethod.exclude_bn_bias_from_wd``) take plain SGD-momentum steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

__all__ = ["LARS"]


class LARS(Optimizer):
    """Layer-wise Adaptive Rate Scaling.

    Per parameter ``w`` with gradient ``g``: ``d = g + weight_decay * w``; if the group has
    ``lars_adaptation`` and both norms are positive, ``d *= eta * ||w|| / ||d||``
    (``||d|| = ||g + wd w||``); then ``buf = momentum * buf + d`` and
    ``w -= lr * (d + momentum * buf if nesterov else buf)``.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.02,
        nesterov: bool = False,
        lars_adaptation: bool = True,
    ) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0 or eta <= 0:
            raise ValueError(
                f"invalid LARS arguments: lr={lr}, momentum={momentum}, weight_decay={weight_decay}, eta={eta}"
            )
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            eta=eta,
            nesterov=nesterov,
            lars_adaptation=lars_adaptation,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if group["weight_decay"] != 0:
                    d = d.add(p, alpha=group["weight_decay"])
                if group["lars_adaptation"]:
                    w_norm = torch.linalg.vector_norm(p)
                    d_norm = torch.linalg.vector_norm(d)
                    trust = torch.where(
                        (w_norm > 0) & (d_norm > 0),
                        group["eta"] * w_norm / d_norm,
                        torch.ones_like(w_norm),
                    )
                    d = d.mul(trust)
                if group["momentum"] != 0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = d.detach().clone()
                    else:
                        state["momentum_buffer"].mul_(group["momentum"]).add_(d)
                    buf = state["momentum_buffer"]
                    d = d.add(buf, alpha=group["momentum"]) if group["nesterov"] else buf
                p.add_(d, alpha=-group["lr"])
        return loss
