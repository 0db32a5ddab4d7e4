"""Learning-rate and EMA schedules as pure functions of the optimizer step (docs/definitions.md).

The learning rate is ``base_lr x warmup_cosine(step, ...)``: a multiplier, so the base
rate is never applied twice (the authors' code multiplied an absolute rate by the base
rate again, docs/definitions.md). ``step`` counts OPTIMIZER steps, which keeps the schedule right
under gradient accumulation: Lightning steps an ``interval: "step"`` scheduler once per
optimizer step, not per micro-batch.
"""

from __future__ import annotations

import math

__all__ = ["byol_tau", "warmup_cosine"]


def warmup_cosine(
    step: int, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0
) -> float:
    """Multiplier of the base learning rate for the update made at optimizer step ``step`` (0-based).

    Linear warm-up over ``warmup_steps`` updates, ``(step + 1) / warmup_steps`` (so the first
    update does not have a zero learning rate), then a cosine from 1 down to ``min_ratio``:
    ``min_ratio + (1 - min_ratio) * (1 + cos(pi * t)) / 2`` with
    ``t = (step - warmup_steps) / (total_steps - warmup_steps)``. Steps past the end keep
    ``min_ratio``.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0.0 <= min_ratio <= 1.0:
        raise ValueError(f"min_ratio must be in [0, 1], got {min_ratio}")
    warmup_steps = max(0, min(warmup_steps, total_steps))
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = total_steps - warmup_steps
    if decay_steps <= 0:
        return 1.0
    t = min(1.0, (step - warmup_steps) / decay_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def byol_tau(step: int, total_steps: int, base_tau: float = 0.99) -> float:
    """BYOL's EMA decay after optimizer step ``step`` (0-based): cosine from ``base_tau`` to 1.

    ``tau = 1 - (1 - base_tau) * (1 + cos(pi * step / total_steps)) / 2`` (Grill et al. 2020).
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0.0 <= base_tau <= 1.0:
        raise ValueError(f"base_tau must be in [0, 1], got {base_tau}")
    t = min(1.0, max(0.0, step / total_steps))
    return 1.0 - (1.0 - base_tau) * 0.5 * (1.0 + math.cos(math.pi * t))
