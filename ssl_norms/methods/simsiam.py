"""SimSiam (Chen & He 2021) with cut-initialisation and GradScale (paper Sec. 6, Appendix C.1; docs/definitions.md)."""

from __future__ import annotations

from typing import Any

import torch

from ssl_norms.gradscale import grad_scale
from ssl_norms.losses import symmetric_negative_cosine
from ssl_norms.methods.base import ParamGroup, SSLMethod, StepOutput
from ssl_norms.models.heads import Predictor, SimSiamProjector

__all__ = ["SimSiam"]


class SimSiam(SSLMethod):
    """SimSiam: 1/2 [ -cos(p1, sg(z2)) - cos(p2, sg(z1)) ] (docs/definitions.md).

    Projector 3 x (Linear + BN), predictor 2048-512-2048 (paper Appendix C.1). The loss-space
    embedding ``z`` of the contract is the PREDICTOR output (the space of the paper's
    theory); GradScale acts on it. The predictor is trained at a fixed learning rate in
    its own parameter group ``"predictor"``, outside the schedule (Chen & He 2021, Sec. 4.3).

    Args:
        projector_dim: width and output dimension of the projector.
        projector_layers: number of Linear + BN layers of the projector.
        predictor_hidden_dim: bottleneck width of the predictor.
        predictor_lr: the predictor's fixed learning rate; ``None`` uses ``lr``.
        lr: base learning rate (paper App. C.1: 0.2 for a 1,024 batch).
        weight_decay: paper App. C.1: 5e-4.
        nesterov: paper App. C.1: Nesterov momentum.
        **kwargs: the other arguments of :class:`~ssl_norms.methods.SSLMethod`.
    """

    def __init__(
        self,
        projector_dim: int = 2048,
        projector_layers: int = 3,
        predictor_hidden_dim: int = 512,
        predictor_lr: float | None = None,
        lr: float = 0.2,
        weight_decay: float = 5e-4,
        nesterov: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(lr=lr, weight_decay=weight_decay, nesterov=nesterov, **kwargs)
        if predictor_lr is not None and predictor_lr <= 0:
            raise ValueError(f"predictor_lr must be > 0 (or None for lr), got {predictor_lr}")
        self.predictor_lr = float(lr if predictor_lr is None else predictor_lr)
        self.projector = SimSiamProjector(self.feature_dim, projector_dim, projector_layers)
        self.predictor = Predictor(projector_dim, predictor_hidden_dim, projector_dim)
        self.apply_cut_init()

    def param_groups(self) -> dict[str, ParamGroup]:
        return {
            **super().param_groups(),
            "projector": ParamGroup(self.projector),
            "predictor": ParamGroup(self.predictor, fixed_lr=self.predictor_lr),
        }

    def project(self, h: torch.Tensor) -> torch.Tensor:
        return self.predictor(self.projector(h))

    def compute_loss(self, x1: torch.Tensor, x2: torch.Tensor) -> StepOutput:
        h = self.backbone(torch.cat([x1, x2]))
        proj = self.projector(h)
        p = self.predictor(proj)
        p1, p2 = grad_scale(p, self.gradscale_power).chunk(2)
        z1, z2 = proj.chunk(2)
        loss = symmetric_negative_cosine(p1, p2, z1, z2)
        return StepOutput(loss=loss, z=p, h=h)
