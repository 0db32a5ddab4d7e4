"""The NaN guard: a run stops at the first non-finite loss, overflowing embedding norm or
non-finite gradient, with a message that names the step and the likely cause, and saves
nothing after it (docs/contract.md, "The NaN guard").

Each check is a small tensor computed where the step runs: how many of [the loss,
||Z||_F, ||H||_F] are not finite after the forward pass, and how many gradient norms are
not finite before the optimizer step, summed over the processes so that every process
stops at the same point. Reading a check on the host is a device sync. When:

- ``before_step``: each step's checks are read before its optimizer step, so the bad
  update never happens. On a GPU the host then waits for the GPU twice per step and cannot
  queue the next step's work meanwhile (BENCHMARKS.md measures the cost).
- ``next_step``: each check is copied to the host as soon as the GPU has computed it (a
  copy queued right behind it, with an event) and read during the next step's forward
  pass, when that copy is long done: no wait. It is also read wherever the run would save
  or read that step's results first: before a checkpoint is written, before validation,
  before a monitor reads a step's outputs, at the end of each epoch and of training. The
  bad update is applied in memory, but nothing is saved after it: every later save raises
  the same error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from ssl_norms.distributed import all_reduce_sum

__all__ = ["FiniteGuard", "Timing"]

Timing = Literal["before_step", "next_step"]


@dataclass
class _Check:
    """One unread check: ``bad`` counts the non-finite values (summed over processes)."""

    bad: torch.Tensor  # forward: [loss, norms]; gradients: [gradients]
    where: str
    loss: torch.Tensor | None = None  # a forward check keeps what its message reports
    z: torch.Tensor | None = None
    h: torch.Tensor | None = None
    host: torch.Tensor | None = None  # on a GPU: ``bad`` copied to pinned host memory ...
    copied: torch.cuda.Event | None = None  # ... once this event has passed

    def send_to_host(self) -> None:
        """Queue the copy of ``bad`` to the host now, behind the work that computes it.
        Reading ``bad`` itself later would be a copy queued behind all the work queued by
        then (the next step's forward): the host would wait for that too."""
        if self.bad.device.type == "cuda":
            self.host = torch.empty(self.bad.shape, dtype=self.bad.dtype, pin_memory=True)
            self.host.copy_(self.bad, non_blocking=True)
            self.copied = torch.cuda.Event()
            self.copied.record()

    def counts(self) -> torch.Tensor:
        """``bad`` on the host (waits for the copy, or syncs when none was queued)."""
        if self.copied is not None:
            self.copied.synchronize()
            return self.host
        return self.bad.cpu()


class FiniteGuard:
    """The checks of one run, read on the host when ``timing`` says (module docstring)."""

    def __init__(self, timing: Timing) -> None:
        if timing not in ("before_step", "next_step"):
            raise ValueError(f"timing must be 'before_step' or 'next_step', got {timing!r}")
        self.timing: Timing = timing
        self.error: str | None = None  # "next_step": the divergence, raised at every save
        self._unread: list[_Check] = []

    def after_forward(
        self,
        loss: torch.Tensor,
        z: torch.Tensor | None,
        h: torch.Tensor | None,
        where: str,
        owner: str,
        cause: Callable[[], str],
    ) -> None:
        """Checks the loss and the batch's total norms ||Z||_F, ||H||_F (in float32 at least:
        inf as soon as one row's squared norm overflows). A normalised loss (InfoNCE, cosine)
        stays finite while ||z|| runs off to inf, so the norms are checked with it."""
        values = [loss.detach().float().reshape(1)]
        for emb in (z, h):
            if emb is not None:
                dtype = torch.promote_types(emb.dtype, torch.float32)  # half precision: float32
                norm = torch.linalg.vector_norm(emb.detach(), dtype=dtype)
                values.append(norm.float().reshape(1))
        bad = ~torch.isfinite(torch.cat(values))
        # [the loss is not finite, how many norms overflow]: the message names the first.
        bad = torch.stack([bad[0], bad[1:].sum()]).float()
        detached = [t.detach() if t is not None else None for t in (loss, z, h)]
        self._add(_Check(all_reduce_sum(bad), where, *detached), owner, cause)

    def before_optimizer_step(
        self, grads: Sequence[torch.Tensor], where: str, owner: str, cause: Callable[[], str]
    ) -> None:
        """Checks the gradients: one fused norm per parameter, one count for all."""
        if not grads:
            return
        norms = torch.stack(torch._foreach_norm(list(grads))).float()
        bad = (~torch.isfinite(norms)).sum(dtype=torch.float32).reshape(1)
        self._add(_Check(all_reduce_sum(bad), where), owner, cause)

    def _add(self, check: _Check, owner: str, cause: Callable[[], str]) -> None:
        self._unread.append(check)
        if self.timing == "before_step":
            self.raise_if_diverged(owner, cause)
        else:
            check.send_to_host()

    def raise_if_diverged(self, owner: str, cause: Callable[[], str]) -> None:
        """Reads every unread check (a device sync when there is one) and raises
        ``FloatingPointError`` at the first that failed, or again after a divergence."""
        if self.error is None and self._unread:
            unread, self._unread = self._unread, []
            for check in unread:
                counts = check.counts()
                if float(counts.sum()) > 0:
                    message = self._message(check, counts, owner, cause())
                    if self.timing == "next_step":
                        # The bad update is in the weights: refuse every later save too.
                        self.error = message
                    raise FloatingPointError(message)
        if self.error is not None:
            raise FloatingPointError(self.error)

    def _message(self, check: _Check, counts: torch.Tensor, owner: str, cause: str) -> str:
        if self.timing == "before_step":
            stop = "Stopped before the optimizer step, so saved checkpoints hold finite weights."
        else:
            stop = (
                "Stopped before anything was saved after that step (the guard reads its "
                "checks one step late on this device), so saved checkpoints hold finite "
                "weights."
            )
        if check.loss is None:
            return f"{owner}: non-finite gradients {check.where}. Likely cause: {cause}. {stop}"
        loss = check.loss.item()
        if counts[0] > 0:
            return (
                f"{owner}: the loss is {loss} on this process (not finite on at least one) "
                f"{check.where}. Likely cause: {cause}. {stop}"
            )
        norms = ", ".join(
            f"max ||{name}|| = {emb.double().norm(dim=1).max().item():.3g}"
            for name, emb in (("z", check.z), ("h", check.h))
            if emb is not None
        )
        return (
            f"{owner}: the embedding norms diverged ({norms} on this process; their squares "
            f"overflow float32 on at least one) {check.where}, while the normalised loss is "
            f"still {loss:.4g}. Likely cause: {cause}. {stop}"
        )
