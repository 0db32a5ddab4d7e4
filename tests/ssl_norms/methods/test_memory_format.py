"""``channels_last`` (the default) trains the contiguous model: same loss, gradients and
features up to float32 round-off, same checkpoints; vector backbones are untouched; and a
backbone whose strided 1x1 convolution oneDNN cannot run in channels-last stays contiguous."""

from __future__ import annotations

import warnings

import pytest
import torch
from method_helpers import METHODS, SMALL_HEADS
from torch import nn

from ssl_norms.models.memory_format import channels_last_hazard

CL = torch.channels_last


def _pair(name: str, **kwargs):
    """The same weights in the two memory formats (a width-8 ResNet-18 with the CIFAR stem:
    width 4 would keep the contiguous format, see the hazard tests below)."""
    options = dict(backbone="resnet18", backbone_width=8, **SMALL_HEADS[name], **kwargs)
    torch.manual_seed(0)
    nhwc = METHODS[name](channels_last=True, **options)
    nchw = METHODS[name](channels_last=False, **options)
    nchw.load_state_dict(nhwc.state_dict())
    return nhwc, nchw


def test_channels_last_converts_the_backbone_and_keeps_the_state_dict(method_name):
    nhwc, nchw = _pair(method_name)
    conv = nhwc.backbone.conv1.weight
    assert conv.is_contiguous(memory_format=CL) and not conv.is_contiguous()
    assert nchw.backbone.conv1.weight.is_contiguous()
    assert list(nhwc.state_dict()) == list(nchw.state_dict())
    for key, value in nhwc.state_dict().items():
        assert torch.equal(value, nchw.state_dict()[key]), key


def test_channels_last_gives_the_contiguous_loss_and_gradients(method_name):
    nhwc, nchw = _pair(method_name)
    g = torch.Generator().manual_seed(1)
    views = [torch.randn(8, 3, 32, 32, generator=g) for _ in range(2)]
    results = {}
    for label, model in (("nhwc", nhwc), ("nchw", nchw)):
        model.train()
        step = model.compute_loss(*(model._memory_format(v) for v in views))
        model.zero_grad()
        step.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results[label] = (step.loss.detach(), step.z.detach(), grads)
    loss_a, z_a, grads_a = results["nhwc"]
    loss_b, z_b, grads_b = results["nchw"]
    # Another convolution algorithm: the same maths, another summation order.
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(z_a, z_b, rtol=1e-4, atol=1e-5)
    assert grads_a.keys() == grads_b.keys() and grads_a
    # Per parameter, relative to its own scale, with a floor for gradients that vanish in
    # exact arithmetic (a bias before BatchNorm): round-off of the largest gradient.
    floor = 1e-5 * max(g.abs().max() for g in grads_b.values())
    for name, grad in grads_a.items():
        err = (grad - grads_b[name]).abs().max()
        assert err <= 1e-3 * grads_b[name].abs().max() + floor, name


def test_channels_last_eval_features_match(method_name):
    nhwc, nchw = _pair(method_name)
    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    batch = (x, torch.zeros(6, dtype=torch.long), torch.arange(6))
    nhwc.eval()
    nchw.eval()
    with torch.no_grad():
        a, b = nhwc.validation_step(batch, 0), nchw.validation_step(batch, 0)
    torch.testing.assert_close(a["h"], b["h"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a["z"], b["z"], rtol=1e-4, atol=1e-5)


def test_vector_inputs_pass_unchanged():
    model = METHODS["simclr"](
        backbone="mlp", backbone_in_dim=12, backbone_width=8, **SMALL_HEADS["simclr"]
    )
    x = torch.randn(4, 12)
    assert model._memory_format(x) is x


@pytest.mark.parametrize("flag", [True, False])
def test_the_option_is_a_saved_hyperparameter(flag):
    model = METHODS["simclr"](
        backbone="resnet18", backbone_width=4, channels_last=flag, **SMALL_HEADS["simclr"]
    )
    assert model.hparams.channels_last is flag
    assert model.hparams.compile_backbone is False


def test_a_strided_1x1_convolution_with_few_input_channels_is_a_hazard():
    """oneDNN's AVX2 channels-last weight gradient fails for strided 1x1 convolutions with
    fewer than 8 input channels; every other convolution is fine."""
    assert channels_last_hazard(nn.Sequential(nn.Conv2d(8, 16, 1, stride=2))) is None
    assert channels_last_hazard(nn.Sequential(nn.Conv2d(4, 8, 1, stride=1))) is None
    assert channels_last_hazard(nn.Sequential(nn.Conv2d(3, 8, 3, stride=2))) is None
    hazard = channels_last_hazard(nn.Sequential(nn.ReLU(), nn.Conv2d(4, 8, 1, stride=2)))
    assert hazard is not None and "'1'" in hazard and "4 input channels" in hazard


def test_a_width_4_resnet_stays_contiguous_with_a_warning():
    with pytest.warns(UserWarning, match=r"channels_last=True is not applied: .*layer2"):
        model = METHODS["simclr"](
            backbone="resnet18", backbone_width=4, channels_last=True, **SMALL_HEADS["simclr"]
        )
    assert model.hparams.channels_last is True  # what was asked for, on record
    assert model.backbone.conv1.weight.is_contiguous()
    x = torch.randn(2, 3, 8, 8).contiguous(memory_format=CL)
    assert model._memory_format(x).is_contiguous()
    # Width 8 has no such convolution: channels-last applies, with no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        wide = METHODS["simclr"](backbone="resnet18", backbone_width=8, **SMALL_HEADS["simclr"])
    assert wide.backbone.conv1.weight.is_contiguous(memory_format=CL)
