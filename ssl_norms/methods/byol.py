"""BYOL (Grill et al. 2020) with cut-initialisation and GradScale (paper Appendix C.1; docs/definitions.md)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ssl_norms import metric_names as M
from ssl_norms.gradscale import grad_scale
from ssl_norms.losses import symmetric_negative_cosine
from ssl_norms.methods.base import ParamGroup, SSLMethod, StepOutput
from ssl_norms.models.heads import Predictor, SimSiamProjector
from ssl_norms.schedules import byol_tau

__all__ = ["BYOL"]


class BYOL(SSLMethod):
    """BYOL: the online predictor regresses an EMA target's projection of the other view.

    Loss 1/2 [ -cos(p1, sg(t2)) - cos(p2, sg(t1)) ] (docs/definitions.md), heads as SimSiam
    (paper Appendix C.1). The target (backbone + projector) is an exponential moving average of the
    online network, ``target = tau * target + (1 - tau) * online`` after every OPTIMIZER
    step (not per micro-batch), with ``tau`` going from ``base_tau`` to 1 along a cosine
    over the training steps (``ssl_norms.schedules.byol_tau``). The target takes no
    gradient. Cut-initialisation divides the online network, then the target copies it.
    ``z`` of the contract is the online predictor output; GradScale acts on it.

    Args:
        projector_dim: width and output dimension of the projector.
        projector_layers: number of Linear + BN layers of the projector.
        predictor_hidden_dim: bottleneck width of the predictor.
        base_tau: the EMA decay at the first step (paper App. C.1: 0.99).
        lr: base learning rate (paper App. C.1: 0.2 for a 1,024 batch).
        weight_decay: paper App. C.1: 5e-4.
        **kwargs: the other arguments of :class:`~ssl_norms.methods.SSLMethod`.
    """

    def __init__(
        self,
        projector_dim: int = 2048,
        projector_layers: int = 3,
        predictor_hidden_dim: int = 512,
        base_tau: float = 0.99,
        lr: float = 0.2,
        weight_decay: float = 5e-4,
        **kwargs: Any,
    ) -> None:
        super().__init__(lr=lr, weight_decay=weight_decay, **kwargs)
        if not 0.0 <= base_tau <= 1.0:
            raise ValueError(f"base_tau must be in [0, 1], got {base_tau}")
        self.base_tau = base_tau
        self.projector = SimSiamProjector(
            self.feature_dim, projector_dim, projector_layers, output_affine=True
        )
        self.predictor = Predictor(projector_dim, predictor_hidden_dim, projector_dim)
        self.apply_cut_init()
        # The target starts as an exact copy of the (cut) online network.
        self.target_backbone = copy.deepcopy(self.backbone)
        self.target_projector = copy.deepcopy(self.projector)
        for p in self.target_parameters():
            p.requires_grad_(False)
        self.current_tau = base_tau
        self._total_steps: int | None = None
        self._last_ema_step = 0

    def target_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.target_backbone.parameters()
        yield from self.target_projector.parameters()

    def param_groups(self) -> dict[str, ParamGroup]:
        return {
            **super().param_groups(),
            "projector": ParamGroup(self.projector),
            "predictor": ParamGroup(self.predictor),
        }

    def project(self, h: torch.Tensor) -> torch.Tensor:
        return self.predictor(self.projector(h))

    def compute_loss(self, x1: torch.Tensor, x2: torch.Tensor) -> StepOutput:
        x = torch.cat([x1, x2])
        h = self.backbone(x)
        p = self.predictor(self.projector(h))
        p1, p2 = grad_scale(p, self.gradscale_power).chunk(2)
        with torch.no_grad():
            t1, t2 = self.target_projector(self.target_backbone(x)).chunk(2)
        loss = symmetric_negative_cosine(p1, p2, t1, t2)
        return StepOutput(loss=loss, z=p, h=h)

    # ------------------------------------------------------------------ EMA target
    def configure_optimizers(self) -> dict[str, Any]:
        config = super().configure_optimizers()
        self._total_steps, _ = self.schedule_lengths()
        return config

    def on_train_start(self) -> None:
        super().on_train_start()
        # On resume global_step is restored: updates continue from there.
        self._last_ema_step = self.trainer.global_step

    @torch.no_grad()
    def update_target(self, tau: float) -> None:
        """target <- tau * target + (1 - tau) * online, parameters only (the target's
        BatchNorm statistics follow its own forward passes)."""
        online = [*self.backbone.parameters(), *self.projector.parameters()]
        target = list(self.target_parameters())
        torch._foreach_lerp_(target, online, 1.0 - tau)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Under gradient accumulation most batches make no optimizer step: global_step
        # counts optimizer steps, so update only when it moved.
        step = self.trainer.global_step
        if step > self._last_ema_step:
            total = self._total_steps or max(1, int(self.trainer.estimated_stepping_batches))
            self.current_tau = byol_tau(step - 1, total, self.base_tau)
            self.update_target(self.current_tau)
            self._last_ema_step = step
            # Filled on the device: a Python number would be copied there from the host,
            # which waits for the GPU.
            tau = torch.full((), self.current_tau, device=self.device)
            self.log(M.TRAIN_TAU, tau, on_step=True, on_epoch=False)
