"""SimCLR (Chen et al. 2020) with cut-initialisation and GradScale (paper Sec. 6, DESIGN §3-4)."""

from __future__ import annotations

from typing import Any

import torch

from ssl_norms.distributed import gather_rows, rank_and_world
from ssl_norms.gradscale import grad_scale
from ssl_norms.losses import info_nce
from ssl_norms.methods.base import ParamGroup, SSLMethod, StepOutput
from ssl_norms.models.heads import SimCLRProjector

__all__ = ["SimCLR"]


class SimCLR(SSLMethod):
    """SimCLR: InfoNCE (NT-Xent) between the projector outputs of two views.

    ``z`` is the projector output (Linear-ReLU-Linear, no output BatchNorm: DESIGN §4);
    GradScale acts on both projector outputs just before the loss normalises them.
    Defaults follow DESIGN §4 (lr 0.6, weight decay 1e-6, temperature 0.5).

    Args:
        projector_hidden_dim: hidden width of the projector.
        projector_out_dim: dimension of z (paper: 256; the authors' runs used 128).
        projector_hidden_batch_norm: BatchNorm on the projector's hidden layer (never on
            its output).
        temperature: InfoNCE temperature (DESIGN §3: 0.5 on CIFAR).
        **kwargs: the backbone, optimizer, schedule, ``cut_constant`` and
            ``gradscale_power`` arguments of :class:`~ssl_norms.methods.SSLMethod`.
    """

    def __init__(
        self,
        projector_hidden_dim: int = 2048,
        projector_out_dim: int = 256,
        projector_hidden_batch_norm: bool = False,
        temperature: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.projector = SimCLRProjector(
            self.feature_dim,
            projector_hidden_dim,
            projector_out_dim,
            hidden_batch_norm=projector_hidden_batch_norm,
        )
        self.apply_cut_init()

    def param_groups(self) -> dict[str, ParamGroup]:
        return {**super().param_groups(), "projector": ParamGroup(self.projector)}

    def project(self, h: torch.Tensor) -> torch.Tensor:
        return self.projector(h)

    def compute_loss(self, x1: torch.Tensor, x2: torch.Tensor) -> StepOutput:
        world = rank_and_world()[1]
        if x1.shape[0] * world < 2:
            # One pair has no negatives: InfoNCE is exactly 0 and nothing is learned. The
            # negatives are the other pairs of the global batch (all processes).
            raise ValueError(
                f"SimCLR needs at least 2 pairs per global batch (its negatives are the other "
                f"pairs), got {x1.shape[0] * world}: raise data.init_args.batch_size"
            )
        # One backbone pass over both views: BatchNorm sees the 2B images together.
        h = self.backbone(torch.cat([x1, x2]))
        z = self.projector(h)
        # GradScale on this process's rows, before the loss normalises them.
        z1, z2 = grad_scale(z, self.gradscale_power).chunk(2)
        # Under DDP every anchor meets the 2B - 1 others of the GLOBAL batch; gather_rows
        # returns every rank's rows with exact gradients (ssl_norms/distributed.py).
        keys1, offset = gather_rows(z1)
        keys2, _ = gather_rows(z2)
        loss = info_nce(z1, z2, self.temperature, keys1=keys1, keys2=keys2, offset=offset)
        return StepOutput(loss=loss, z=z, h=h)
