"""Backbones and heads (paper Appendix C.1)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ssl_norms.models import (
    MLP,
    ConvNet,
    Predictor,
    ResNet,
    SimCLRProjector,
    SimSiamProjector,
    build_backbone,
    feature_dim,
)


@pytest.mark.parametrize(
    ("depth", "width", "out_dim"), [(18, 16, 128), (18, 64, 512), (50, 8, 256)]
)
def test_resnet_feature_sizes(depth: int, width: int, out_dim: int) -> None:
    net = ResNet(depth, width=width).eval()
    assert net.out_dim == out_dim
    with torch.no_grad():
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, out_dim)


def test_resnet18_width64_matches_torchvision_parameter_count() -> None:
    from torchvision.models import resnet18

    ours = ResNet(18, width=64, cifar_stem=False)
    theirs = resnet18()
    n_fc = sum(p.numel() for p in theirs.fc.parameters())
    assert (
        sum(p.numel() for p in ours.parameters())
        == sum(p.numel() for p in theirs.parameters()) - n_fc
    )


def test_cifar_stem_keeps_resolution_and_standard_stem_downsamples() -> None:
    cifar, standard = ResNet(18, width=8, cifar_stem=True), ResNet(18, width=8, cifar_stem=False)
    assert (
        cifar.conv1.kernel_size == (3, 3)
        and cifar.conv1.stride == (1, 1)
        and isinstance(cifar.maxpool, nn.Identity)
    )
    assert (
        standard.conv1.kernel_size == (7, 7)
        and standard.conv1.stride == (2, 2)
        and isinstance(standard.maxpool, nn.MaxPool2d)
    )
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        stem = lambda net: net.maxpool(net.relu(net.bn1(net.conv1(x))))  # noqa: E731
        assert stem(cifar.eval()).shape[-1] == 32 and stem(standard.eval()).shape[-1] == 8


def test_zero_init_residual() -> None:
    net = ResNet(18, width=8, zero_init_residual=True)
    assert all(
        block.bn2.weight.abs().sum() == 0 for layer in (net.layer1, net.layer4) for block in layer
    )
    net = ResNet(50, width=8, zero_init_residual=True)
    assert all(block.bn3.weight.abs().sum() == 0 for block in net.layer2)
    net = ResNet(18, width=8, zero_init_residual=False)
    assert all(block.bn2.weight.abs().sum() > 0 for block in net.layer1)


def test_build_backbone_by_name_and_errors() -> None:
    assert build_backbone("ResNet18", width=4).out_dim == 32
    assert build_backbone("resnet50", width=4).out_dim == 128
    mlp = build_backbone("mlp", width=32, in_dim=64)
    assert isinstance(mlp, MLP) and mlp(torch.randn(3, 64)).shape == (3, 32)
    with pytest.raises(ValueError, match="unknown backbone 'vit'"):
        build_backbone("vit")
    with pytest.raises(ValueError, match="needs the input dimension"):
        build_backbone("mlp")
    with pytest.raises(ValueError, match="depth"):
        ResNet(101)


def test_feature_dim_of_any_module() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 7))
    assert feature_dim(net, torch.randn(2, 3, 4)) == 7
    with pytest.raises(ValueError, match="out_dim"):
        feature_dim(net)


def test_heads() -> None:
    proj = SimCLRProjector(32, 64, 16)
    assert [type(m) for m in proj] == [nn.Linear, nn.ReLU, nn.Linear]  # no BN on the output
    assert proj(torch.randn(4, 32)).shape == (4, 16)
    siam = SimSiamProjector(32, 64, num_layers=3)
    assert (
        sum(isinstance(m, nn.Linear) for m in siam) == 3
        and sum(isinstance(m, nn.BatchNorm1d) for m in siam) == 3
    )
    assert isinstance(siam[-1], nn.BatchNorm1d)
    pred = Predictor(64, 16, 64)
    assert pred(torch.randn(4, 64)).shape == (4, 64) and pred[0].out_features == 16


def test_convnet() -> None:
    net = build_backbone("convnet", width=8)
    assert isinstance(net, ConvNet) and net.out_dim == 32  # 8 x 2^2
    with torch.no_grad():
        assert net.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 32)
    with pytest.raises(ValueError, match="width >= 1"):
        ConvNet(width=0)
