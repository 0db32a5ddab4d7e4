"""Backbones: torchvision ResNets with the CIFAR stem and a width option, and an MLP.

Every backbone returns flat features ``h`` [N, out_dim] (the representation used for
k-NN, docs/contract.md) and exposes ``out_dim`` so that heads can be sized without a forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.models.resnet import ResNet as _TorchvisionResNet

__all__ = ["BACKBONES", "MLP", "ConvNet", "ResNet", "build_backbone", "feature_dim"]

_DEPTHS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], list[int]]] = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
}


class ResNet(_TorchvisionResNet):
    """A torchvision ResNet without its classifier, with a CIFAR stem and a base width.

    It reuses torchvision's blocks, ``_make_layer`` and forward; only the stem and the
    stage widths differ (paper App. C.1: 3x3 stride-1 stem without max-pool on 32 px images).

    Args:
        depth: 18, 34 or 50.
        width: channels of the first stage; the stages have width x (1, 2, 4, 8). 64 is
            the standard ResNet; 16 gives the CPU-sized ResNets (about 100-130 images/s for a SimCLR step on 2 cores).
        cifar_stem: 3x3 stride-1 first convolution and no max-pool (CIFAR, 32 px). False
            gives the standard 7x7 stride-2 stem with max-pool (Flowers, ImageNet-100).
        zero_init_residual: zero the last BatchNorm gamma of every residual branch, so
            each block starts as the identity (Goyal et al. 2017).
        in_channels: input channels.
    """

    def __init__(
        self,
        depth: int = 18,
        width: int = 64,
        cifar_stem: bool = True,
        zero_init_residual: bool = True,
        in_channels: int = 3,
    ) -> None:
        if depth not in _DEPTHS:
            raise ValueError(f"ResNet depth must be one of {sorted(_DEPTHS)}, got {depth}")
        if width < 1:
            raise ValueError(f"ResNet width must be >= 1, got {width}")
        block, layers = _DEPTHS[depth]
        # torchvision's __init__ hard-codes the widths 64..512: set up the attributes that
        # its `_make_layer` reads and build the stages ourselves.
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = width
        self.dilation = 1
        self.groups = 1
        self.base_width = 64  # bottleneck width = planes (torchvision's default)
        if cifar_stem:
            self.conv1 = nn.Conv2d(
                in_channels, width, kernel_size=3, stride=1, padding=1, bias=False
            )
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(
                in_channels, width, kernel_size=7, stride=2, padding=3, bias=False
            )
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, 2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * width, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Identity()  # features, not logits
        self.out_dim = 8 * width * block.expansion
        self.depth = depth
        # The same initialisation as torchvision's ResNet.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck) and m.bn3.weight is not None:
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock) and m.bn2.weight is not None:
                    nn.init.constant_(m.bn2.weight, 0)


class MLP(nn.Module):
    """A ReLU MLP backbone for vector data (the latent classes of paper Sec. 4.2).

    Args:
        in_dim: input dimension (64 for the latent-class observations).
        hidden_dims: widths of the hidden layers; the last one is ``out_dim``. The
            output goes through a ReLU too (it is a feature, the heads come after it).
        batch_norm: BatchNorm1d after every linear layer.
    """

    def __init__(
        self, in_dim: int, hidden_dims: Sequence[int] = (64, 64), batch_norm: bool = False
    ) -> None:
        super().__init__()
        if in_dim < 1 or not hidden_dims or any(d < 1 for d in hidden_dims):
            raise ValueError(
                f"MLP needs in_dim >= 1 and positive hidden_dims, got {in_dim} and {list(hidden_dims)}"
            )
        layers: list[nn.Module] = []
        prev = in_dim
        for dim in hidden_dims:
            layers.append(nn.Linear(prev, dim))
            if batch_norm:
                layers.append(nn.BatchNorm1d(dim))
            layers.append(nn.ReLU(inplace=True))
            prev = dim
        self.net = nn.Sequential(*layers)
        self.out_dim = prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class ConvNet(nn.Module):
    """A small ConvNet for CPU runs: ``depth`` x (3x3 conv - BN - ReLU - 2x2 max-pool), the
    width doubling each time, then global average pooling (several times faster
    than a width-16 ResNet-18 on 2 cores).

    Args:
        width: channels of the first convolution.
        depth: number of conv blocks.
        in_channels: input channels.
    """

    def __init__(self, width: int = 32, depth: int = 3, in_channels: int = 3) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"ConvNet needs width >= 1 and depth >= 1, got {width} and {depth}")
        layers: list[nn.Module] = []
        prev = in_channels
        for i in range(depth):
            out = width * 2**i
            layers += [
                nn.Conv2d(prev, out, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            prev = out
        self.net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_dim = prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


BACKBONES = ("resnet18", "resnet34", "resnet50", "convnet", "mlp")


def build_backbone(
    name: str,
    width: int = 64,
    cifar_stem: bool = True,
    zero_init_residual: bool = True,
    in_dim: int | None = None,
) -> nn.Module:
    """A backbone by name: ``resnet18``, ``resnet34``, ``resnet50``, ``convnet`` or ``mlp``.

    ``width`` is the ResNet base width, the ConvNet's first width, or the hidden width of
    the 2-layer MLP; ``in_dim`` is the MLP's input dimension (required for ``mlp``).
    """
    key = name.lower()
    if key.startswith("resnet") and key in BACKBONES:
        return ResNet(
            int(key[len("resnet") :]),
            width=width,
            cifar_stem=cifar_stem,
            zero_init_residual=zero_init_residual,
        )
    if key == "convnet":
        return ConvNet(width=width)
    if key == "mlp":
        if in_dim is None:
            raise ValueError(
                "backbone 'mlp' needs the input dimension: set `backbone_in_dim` (64 for the latent classes)"
            )
        return MLP(in_dim, hidden_dims=(width, width))
    raise ValueError(
        f"unknown backbone {name!r}: choose one of {list(BACKBONES)} or pass an nn.Module (class_path in a config)"
    )


@torch.no_grad()
def feature_dim(backbone: nn.Module, example_input: torch.Tensor | None = None) -> int:
    """The feature dimension of a backbone: its ``out_dim`` attribute, else one dry forward pass.

    Modules from a config (any ``nn.Module``) rarely carry ``out_dim``: then
    ``example_input`` (one sample, batch of 2 for BatchNorm) must be given.
    """
    out_dim = getattr(backbone, "out_dim", None)
    if isinstance(out_dim, int):
        return out_dim
    if example_input is None:
        raise ValueError(
            f"cannot tell the feature dimension of {type(backbone).__name__}: give it an `out_dim` "
            "attribute or set the method's `backbone_out_dim`"
        )
    was_training = backbone.training
    backbone.eval()
    try:
        return int(backbone(example_input).flatten(1).shape[1])
    finally:
        backbone.train(was_training)
