"""``HealthMonitor``: the representation-health signals other SSL libraries watch, beside the norms.

- Each evaluation (:class:`callbacks.EvaluationPass`), on the eval split: the effective rank
  (RankMe, Garrido et al., 2023), the uniformity of Wang & Isola (2020) and the std of the
  l2-normalised embeddings (the collapse signal of SimSiam, Chen & He, 2021), for ``z`` and
  ``h``.
- Every n training steps, on the positive pairs of ``training_step``'s ``z`` (rows 0..B-1
  and B..2B-1 are the two views of the same samples): the alignment of Wang & Isola and the
  opposite-halves rate, the fraction of pairs more than pi/2 apart (paper Appendix C.2,
  Table S1). The evaluation pass has one view per sample, so the pair metrics come from
  training.

Definitions: ``ssl_norms.health`` and ``docs/confidence.md``. All in float64 on the CPU.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from callbacks._gather import all_gather_cat
from callbacks._logging import (
    StepBuffer,
    confirm_finite_step,
    log_scalars,
    log_step,
    optimizer_step_completes,
    train_step_logged,
)
from callbacks.evaluation import EvalFeatures, EvalMonitor
from ssl_norms import metric_names as M
from ssl_norms.health import alignment, l2_normalized_std, opposite_halves_rate, rankme, uniformity

__all__ = ["HealthMonitor", "spread_rows", "pair_health"]


def spread_rows(n: int, max_samples: int | None) -> torch.Tensor:
    """``min(n, max_samples)`` row indices spread evenly over ``0..n-1`` (all when None).

    Evenly spread rather than the first rows: a class-sorted split keeps every class.
    """
    if max_samples is None or n <= max_samples:
        return torch.arange(n)
    return torch.linspace(0, n - 1, max_samples, dtype=torch.float64).round().long().unique()


def pair_health(z1: torch.Tensor, z2: torch.Tensor) -> dict[str, float]:
    """``{"alignment", "opposite_halves"}`` of the positive pairs (rows of z1, z2).

    Pairs with a zero embedding (no direction) are left out; empty when none is left.
    """
    keep = (z1.flatten(1).norm(dim=1) > 0) & (z2.flatten(1).norm(dim=1) > 0)
    if not bool(keep.any()):
        return {}
    a, b = z1.flatten(1)[keep], z2.flatten(1)[keep]
    return {"alignment": alignment(a, b), "opposite_halves": opposite_halves_rate(a, b)}


class HealthMonitor(EvalMonitor):
    """Logs ``health/<metric>_<z|h>`` per evaluation, ``health/alignment`` and
    ``health/opposite_halves`` per step.

    Args:
        every_n_steps: the pair metrics every n optimizer steps (over every micro-batch of
            the logged step under gradient accumulation, gathered across ranks).
        spaces: ``"z"``, ``"h"`` or ``"both"``: the embeddings of the evaluation metrics.
        max_samples: evaluation metrics on at most this many eval samples, evenly spread
            over the split (uniformity costs N^2 d, RankMe an SVD of N x d); None: all.

    ``last_results`` (evaluation): ``{"z": {"rankme", "uniformity", "l2_std"}, "h": ...,
    "samples"}``; ``last_train_results`` (rank 0): the latest pair metrics.
    """

    per_step = True

    def __init__(
        self,
        every_n_steps: int = 50,
        spaces: Literal["z", "h", "both"] = "both",
        max_samples: int | None = 4096,
    ) -> None:
        super().__init__()
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        if spaces not in ("z", "h", "both"):
            raise ValueError(f"spaces must be 'z', 'h' or 'both', got {spaces!r}")
        if max_samples is not None and max_samples < 2:
            raise ValueError(f"max_samples must be >= 2 or None, got {max_samples}")
        self.every_n_steps = int(every_n_steps)
        self.spaces = ("z", "h") if spaces == "both" else (spaces,)
        self.max_samples = max_samples
        self.last_train_results: dict[str, float] = {}
        self._pairs = StepBuffer()

    # -- training: positive pairs ---------------------------------------------------
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not train_step_logged(trainer, self.every_n_steps):
            return
        z = outputs.get("z") if isinstance(outputs, dict) else None
        if z is not None:
            z = z.detach().flatten(1)
            if z.shape[0] % 2:
                raise ValueError(
                    f"training_step's z has {z.shape[0]} rows: HealthMonitor needs the two "
                    "views stacked, rows 0..B-1 then B..2B-1 (docs/contract.md)"
                )
            half = z.shape[0] // 2
            self._pairs.add(log_step(trainer), {"z1": z[:half], "z2": z[half:]})
        if not optimizer_step_completes(trainer):
            return
        pairs = self._pairs.pop()
        if not pairs:
            return
        confirm_finite_step(pl_module)  # before the outputs are read
        pairs = all_gather_cat(pl_module, pairs)
        if not trainer.is_global_zero:
            return
        self.last_train_results = pair_health(pairs["z1"], pairs["z2"])
        metrics = {M.health_step(k): v for k, v in self.last_train_results.items()}
        log_scalars(trainer, metrics, log_step(trainer))

    # -- evaluation -----------------------------------------------------------------
    def needs(self) -> dict[str, set[str]]:
        return {"eval": set(self.spaces)}

    def compute(self, features: EvalFeatures) -> dict[str, Any]:
        data = features.split("eval")
        rows = spread_rows(int(data["y"].shape[0]), self.max_samples)
        results: dict[str, Any] = {"samples": int(rows.numel())}
        for space in self.spaces:
            x = data[space][rows.to(data[space].device)].flatten(1).double().cpu()
            unit_ok = x.norm(dim=1) > 0  # the sphere metrics need a direction
            sphere = x[unit_ok]
            out: dict[str, float] = {}
            if bool((x != 0).any()):
                out["rankme"] = rankme(x)
            if sphere.shape[0] >= 2:
                out["uniformity"] = uniformity(sphere)
                out["l2_std"] = l2_normalized_std(sphere)
            results[space] = out
        return results

    def metrics(self, results: dict[str, Any]) -> dict[str, float]:
        return {
            M.health_eval(name, space): value
            for space in self.spaces
            for name, value in results.get(space, {}).items()
        }
