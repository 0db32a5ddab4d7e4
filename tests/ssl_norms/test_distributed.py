"""The gathered losses on 2 processes (gloo) equal the single-process ones, in float64.

The global batch is split in 2 shards with very different scales (rank 1's rows x 10). Each
rank computes the loss of its own anchors against the gathered global batch; the mean of
the ranks' losses is the global loss, and after DDP's gradient averaging every row (and
every parameter) gets exactly the single-process gradient: the gather's backward sums the
ranks' gradients, and the factor W it introduces is the one DDP divides by.
"""

from __future__ import annotations

import pytest
import torch
from gloo_spawn import run_on_ranks
from torch.nn.parallel import DistributedDataParallel

from ssl_norms.distributed import all_reduce_sum, gather_rows, rank_and_world
from ssl_norms.losses import info_nce, supervised_info_nce

pytestmark = pytest.mark.slow

B, D, T = 8, 5, 0.5


def _batch():
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(B, D, generator=g, dtype=torch.float64)
    z2 = torch.randn(B, D, generator=g, dtype=torch.float64)
    z1[B // 2 :] *= 10  # rank 1's rows: uneven values across ranks
    z2[B // 2 :] *= 10
    x = torch.randn(2 * B, 3, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 3, 3, 1, 2, 0, 1, 2, 3, 3])
    return z1, z2, x, labels


def _linear():
    g = torch.Generator().manual_seed(1)
    layer = torch.nn.Linear(3, D, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(D, 3, generator=g, dtype=torch.float64))
        layer.bias.copy_(torch.randn(D, generator=g, dtype=torch.float64))
    return layer


def _ranks(rank: int, world: int):
    assert rank_and_world() == (rank, world)
    z1, z2, x, labels = _batch()
    n = B // world
    rows = slice(rank * n, (rank + 1) * n)
    out = {}
    # InfoNCE on leaf rows: the mean of the ranks' losses is the global loss; each rank's
    # row gradient, divided by W (DDP's averaging), is the single-process one.
    a1 = z1[rows].clone().requires_grad_(True)
    a2 = z2[rows].clone().requires_grad_(True)
    k1, offset = gather_rows(a1)
    k2, _ = gather_rows(a2)
    loss = info_nce(a1, a2, T, keys1=k1, keys2=k2, offset=offset)
    loss.backward()
    out["info_nce"] = (loss.detach(), a1.grad / world, a2.grad / world)
    # The same through a DDP-wrapped parameter: DDP averages, nothing else rescales.
    model = DistributedDataParallel(_linear())
    xr = torch.cat([x[:B][rows], x[B:][rows]])
    z = model(xr)
    z1r, z2r = z.chunk(2)
    k1, offset = gather_rows(z1r)
    k2, _ = gather_rows(z2r)
    info_nce(z1r, z2r, T, keys1=k1, keys2=k2, offset=offset).backward()
    out["ddp_grads"] = [p.grad.clone() for p in model.parameters()]
    # Supervised InfoNCE: every anchor has a positive, so the shards' means weigh equally.
    zs = torch.cat([z1, z2])
    ys = labels
    n2 = zs.shape[0] // world
    srows = slice(rank * n2, (rank + 1) * n2)
    a = zs[srows].clone().requires_grad_(True)
    keys, offset = gather_rows(a)
    keys_y, _ = gather_rows(ys[srows])
    sloss = supervised_info_nce(a, ys[srows], 0.7, keys=keys, key_labels=keys_y, offset=offset)
    sloss.backward()
    out["supervised"] = (sloss.detach(), a.grad / world)
    # all_reduce_sum: the value and the summed gradient.
    v = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    (
        all_reduce_sum(v * (rank + 1)) * torch.tensor([3.0, 5.0], dtype=torch.float64)
    ).sum().backward()
    out["all_reduce"] = v.grad.clone()
    return out


def test_two_processes_equal_one_in_float64():
    z1, z2, x, labels = _batch()
    ranks = run_on_ranks(_ranks, 2)

    # InfoNCE
    r1, r2 = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    loss = info_nce(r1, r2, T)
    loss.backward()
    assert torch.allclose((ranks[0]["info_nce"][0] + ranks[1]["info_nce"][0]) / 2, loss, rtol=1e-12)
    assert ranks[0]["info_nce"][0] != ranks[1]["info_nce"][0]  # the shards' losses differ
    for view, grad in ((1, r1.grad), (2, r2.grad)):
        got = torch.cat([ranks[0]["info_nce"][view], ranks[1]["info_nce"][view]])
        assert torch.allclose(got, grad, rtol=1e-12, atol=1e-15)

    # Through DDP: the parameter gradients of rank 0 and 1 equal the single-process ones.
    layer = _linear()
    z = layer(x)
    info_nce(*z.chunk(2), T).backward()
    for rank in ranks:
        for got, want in zip(rank["ddp_grads"], layer.parameters(), strict=True):
            assert torch.allclose(got, want.grad, rtol=1e-12, atol=1e-15)

    # Supervised InfoNCE
    zs = torch.cat([z1, z2]).requires_grad_(True)
    sloss = supervised_info_nce(zs, labels, 0.7)
    sloss.backward()
    assert torch.allclose(
        (ranks[0]["supervised"][0] + ranks[1]["supervised"][0]) / 2, sloss, rtol=1e-12
    )
    got = torch.cat([ranks[0]["supervised"][1], ranks[1]["supervised"][1]])
    assert torch.allclose(got, zs.grad, rtol=1e-12, atol=1e-15)

    # all_reduce_sum(v * (r + 1)) summed over ranks = 3 v; each rank's gradient of its own
    # input is the sum over both ranks' losses: (r + 1) * 2 * [3, 5].
    for r, rank in enumerate(ranks):
        want = (r + 1) * 2 * torch.tensor([3.0, 5.0], dtype=torch.float64)
        assert torch.equal(rank["all_reduce"], want)


def test_without_a_process_group_gather_is_the_identity():
    x = torch.randn(3, 2)
    assert gather_rows(x)[0] is x and gather_rows(x)[1] == 0
    assert all_reduce_sum(x) is x
    assert rank_and_world() == (0, 1)


def test_global_keys_default_is_the_plain_loss():
    z1, z2, _, labels = _batch()
    plain = info_nce(z1, z2, T)
    assert torch.equal(info_nce(z1, z2, T, keys1=z1, keys2=z2, offset=0), plain)
    # A shard's anchors against the whole batch, shards averaged: the plain loss.
    halves = [
        info_nce(z1[i : i + 4], z2[i : i + 4], T, keys1=z1, keys2=z2, offset=i) for i in (0, 4)
    ]
    assert torch.allclose(sum(halves) / 2, plain, rtol=1e-12)
    with pytest.raises(ValueError, match="not rows of keys"):
        info_nce(z1[:4], z2[:4], T, keys1=z1, keys2=z2, offset=6)
    with pytest.raises(ValueError, match="both keys1 and keys2"):
        info_nce(z1, z2, T, keys1=z1)
