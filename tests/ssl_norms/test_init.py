"""Cut-initialisation (paper Listing 1): every parameter / c, buffers untouched."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from ssl_norms.init import cut_init


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)
    )
    net.train()
    net(torch.randn(2, 3, 8, 8))  # non-trivial running statistics and counter
    return net


@pytest.mark.parametrize("c", [0.5, 3.0, 9.0])
def test_divides_every_parameter_and_leaves_buffers(c: float) -> None:
    net = _net()
    before = copy.deepcopy(net)
    assert cut_init(net, c) is net
    params_before = dict(before.named_parameters())
    names = [name for name, _ in net.named_parameters()]
    assert {"1.weight", "1.bias", "0.bias", "4.weight"} <= set(
        names
    )  # BN gamma/beta and biases included
    for name, p in net.named_parameters():
        ref = params_before[name].detach().double() / c
        torch.testing.assert_close(p.detach().double(), ref, rtol=1e-6, atol=0)
    for (name, buf), (_, buf0) in zip(net.named_buffers(), before.named_buffers(), strict=True):
        assert torch.equal(buf, buf0), name


@pytest.mark.parametrize("c", [0, -1.0, math.inf, math.nan, True, "3"])
def test_bad_constant_raises(c) -> None:
    with pytest.raises(ValueError, match="cut constant"):
        cut_init(_net(), c)
