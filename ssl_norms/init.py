"""Cut-initialisation (paper Sec. 6, Listing 1)."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["cut_init"]


@torch.no_grad()
def cut_init(module: nn.Module, c: float) -> nn.Module:
    """Divide every parameter of ``module`` (weights, biases, BatchNorm gamma and beta) by ``c``.

    Buffers (BatchNorm running statistics, counters) are left unchanged. In place; returns
    ``module``. Apply once at construction: never again on resume (the authors' code did).
    """
    if isinstance(c, bool) or not isinstance(c, (int, float)):
        raise ValueError(f"cut constant must be a number, got {c!r}")
    if not math.isfinite(c) or c <= 0:
        raise ValueError(
            f"cut constant must be a finite number > 0 (1 disables cut-initialisation), got {c}"
        )
    if c == 1:
        return module
    for param in module.parameters():
        param.div_(c)
    return module
