"""SimCLR (Chen et al. 2020) with cut-initialisation and GradScale (paper Sec. 6, DESIGN §3-4)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ssl_norms.gradscale import grad_scale
from ssl_norms.losses import info_nce
from ssl_norms.methods.base import SSLMethod, StepOutput
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

    def online_network(self) -> Iterator[nn.Module]:
        yield self.backbone
        yield self.projector

    def scheduled_modules(self) -> dict[str, nn.Module]:
        return {"projector": self.projector}

    def project(self, h: torch.Tensor) -> torch.Tensor:
        return self.projector(h)

    def compute_loss(self, x1: torch.Tensor, x2: torch.Tensor) -> StepOutput:
        if x1.shape[0] < 2:
            # One pair has no negatives: InfoNCE is exactly 0 and nothing is learned. The
            # negatives are the other pairs of the same process, so this holds per process.
            raise ValueError(
                f"SimCLR needs at least 2 pairs per batch and process (its negatives are the "
                f"other pairs), got {x1.shape[0]}: raise data.init_args.batch_size"
            )
        # One backbone pass over both views: BatchNorm sees the 2B images together.
        h = self.backbone(torch.cat([x1, x2]))
        z = self.projector(h)
        z1, z2 = z.chunk(2)
        loss = info_nce(
            grad_scale(z1, self.gradscale_power),
            grad_scale(z2, self.gradscale_power),
            self.temperature,
        )
        return StepOutput(loss=loss, z=z, h=h)
