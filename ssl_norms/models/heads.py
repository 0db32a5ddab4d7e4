"""Projection and prediction heads (paper Appendix C.1; docs/definitions.md)."""

from __future__ import annotations

from torch import nn

__all__ = ["SimCLRProjector", "SimSiamProjector", "Predictor"]


class SimCLRProjector(nn.Sequential):
    """Linear - ReLU - Linear, with NO BatchNorm on the output (docs/definitions.md).

    An output BatchNorm would pin ||z|| near sqrt(dim) x its scale and hide the norm
    effects that the paper studies. ``hidden_batch_norm`` adds BN on the hidden layer only.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 2048,
        out_dim: int = 256,
        hidden_batch_norm: bool = False,
    ) -> None:
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim)]
        if hidden_batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers += [nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)]
        super().__init__(*layers)
        self.out_dim = out_dim


class SimSiamProjector(nn.Sequential):
    """``num_layers`` x (Linear + BatchNorm), ReLU between them (SimSiam, paper Appendix C.1).

    The output BatchNorm has no affine parameters by default, as in SimSiam's reference
    implementation (Chen & He 2021); BYOL keeps them (``output_affine=True``).
    """

    def __init__(
        self, in_dim: int, dim: int = 2048, num_layers: int = 3, output_affine: bool = False
    ) -> None:
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        layers: list[nn.Module] = []
        prev = in_dim
        for i in range(num_layers):
            last = i == num_layers - 1
            # The bias is redundant before BatchNorm.
            layers += [
                nn.Linear(prev, dim, bias=False),
                nn.BatchNorm1d(dim, affine=output_affine or not last),
            ]
            if not last:
                layers.append(nn.ReLU(inplace=True))
            prev = dim
        super().__init__(*layers)
        self.out_dim = dim


class Predictor(nn.Sequential):
    """Linear - BN - ReLU - Linear bottleneck (SimSiam/BYOL: 2048 - 512 - 2048)."""

    def __init__(self, in_dim: int = 2048, hidden_dim: int = 512, out_dim: int = 2048) -> None:
        super().__init__(
            nn.Linear(in_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )
        self.out_dim = out_dim
