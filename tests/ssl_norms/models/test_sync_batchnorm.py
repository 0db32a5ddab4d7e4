"""GlobalBatchNorm on 2 processes (gloo) equals torch's BatchNorm on the concatenated batch:
outputs, input and parameter gradients, running statistics, in float64."""

from __future__ import annotations

import pytest
import torch
from gloo_spawn import run_on_ranks
from torch import nn

from ssl_norms.models.sync_batchnorm import GlobalBatchNorm, convert_sync_batchnorm

SHAPES = {"2d": (8, 3, 4, 5), "1d": (8, 6)}


def _inputs(kind: str, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(10 * step + len(kind))
    x = torch.randn(*SHAPES[kind], generator=g, dtype=torch.float64) + 3.0
    x[4:] *= 10  # rank 1's shard on another scale
    w = torch.randn(*SHAPES[kind], generator=g, dtype=torch.float64)
    return x, w


def _bn(kind: str, cls, momentum):
    channels = SHAPES[kind][1]
    if cls is None:
        cls = nn.BatchNorm2d if kind == "2d" else nn.BatchNorm1d
    bn = cls(channels, momentum=momentum, dtype=torch.float64)
    with torch.no_grad():
        bn.weight.copy_(torch.linspace(0.5, 2.0, channels, dtype=torch.float64))
        bn.bias.copy_(torch.linspace(-1.0, 1.0, channels, dtype=torch.float64))
    return bn


def _run(bn, kind: str, rows: slice, world: int):
    """Two training steps (a loss of the output), then an eval forward."""
    outs, grads = [], []
    for step in (0, 1):
        x, w = _inputs(kind, step)
        xr = x[rows].clone().requires_grad_(True)
        y = bn(xr)
        # Each rank's loss is the mean over its own shard; DDP averages the ranks' parameter
        # gradients, so the objective is the global mean. An input row's gradient then
        # sums every rank's loss (the all-reduce's backward): W times its share.
        (y * w[rows]).sum().div(xr.shape[0]).backward()
        outs.append(y.detach())
        grads.append(xr.grad / world)
    param_grads = [bn.weight.grad.clone(), bn.bias.grad.clone()]
    bn.eval()
    evaluated = bn(_inputs(kind, 2)[0][rows])
    return {
        "out": outs,
        "xgrad": grads,
        "pgrad": param_grads,
        "stats": [bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()],
        "eval": evaluated.detach(),
    }


CASES = [("2d", 0.1), ("1d", None)]  # momentum None: the cumulative average


def _ranks(rank: int, world: int):
    results = []
    for kind, momentum in CASES:
        n = SHAPES[kind][0] // world
        bn = _bn(kind, GlobalBatchNorm, momentum)
        results.append(_run(bn, kind, slice(rank * n, (rank + 1) * n), world))
    return results


@pytest.mark.slow
def test_two_processes_equal_batchnorm_on_the_global_batch():
    spawned = run_on_ranks(_ranks, 2)  # one spawn for both cases
    for case, (kind, momentum) in enumerate(CASES):
        _check(kind, momentum, [spawned[0][case], spawned[1][case]])


def _check(kind, momentum, ranks):
    ref = _run(_bn(kind, None, momentum), kind, slice(None), 1)
    for step in (0, 1):
        for key in ("out", "xgrad"):
            got = torch.cat([ranks[0][key][step], ranks[1][key][step]])
            assert torch.allclose(got, ref[key][step], rtol=1e-10, atol=1e-12), key
    for i in range(2):  # parameter gradients: the mean over ranks (DDP) is the global one
        got = (ranks[0]["pgrad"][i] + ranks[1]["pgrad"][i]) / 2
        assert torch.allclose(got, ref["pgrad"][i], rtol=1e-10, atol=1e-12)
    for rank in ranks:
        for got, want in zip(rank["stats"], ref["stats"], strict=True):
            assert torch.allclose(got.double(), want.double(), rtol=1e-10, atol=1e-12)
    assert torch.allclose(torch.cat([r["eval"] for r in ranks]), ref["eval"], rtol=1e-10)


def test_one_process_is_plain_batchnorm_and_conversion_keeps_parameters():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm1d(2)))
    params = {name: p for name, p in model.named_parameters()}
    keys = set(model.state_dict())
    convert_sync_batchnorm(model, cuda=False)
    assert isinstance(model[1], GlobalBatchNorm) and isinstance(model[2][0], GlobalBatchNorm)
    assert set(model.state_dict()) == keys  # checkpoints move between world sizes
    assert all(p is params[name] for name, p in model.named_parameters())  # optimizer stays valid
    x = torch.randn(5, 4, 6, 6)
    ref = nn.BatchNorm2d(4)
    assert torch.allclose(model[1](x), ref(x)) and torch.allclose(
        model[1].running_var, ref.running_var
    )
    cuda_model = convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(4)), cuda=True)
    assert isinstance(cuda_model[0], nn.SyncBatchNorm)  # torch's fused kernels on CUDA
