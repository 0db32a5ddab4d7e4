"""The losses against explicit float64 loop implementations (docs/definitions.md)."""

from __future__ import annotations

import math

import pytest
import torch

from ssl_norms.losses import (
    info_nce,
    negative_cosine,
    supervised_info_nce,
    symmetric_negative_cosine,
)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b) / math.sqrt(float(a @ a) * float(b @ b))


def info_nce_loop(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    z = torch.cat([z1, z2]).double()
    n2 = z.shape[0]
    n = n2 // 2
    total = 0.0
    for a in range(n2):
        pos = a + n if a < n else a - n
        denom = sum(math.exp(_cos(z[a], z[k]) / t) for k in range(n2) if k != a)
        total += -math.log(math.exp(_cos(z[a], z[pos]) / t) / denom)
    return total / n2


def supervised_loop(z: torch.Tensor, y: torch.Tensor, t: float) -> float:
    z = z.double()
    n = z.shape[0]
    losses = []
    for a in range(n):
        positives = [p for p in range(n) if p != a and y[p] == y[a]]
        if not positives:
            continue
        denom = sum(math.exp(_cos(z[a], z[k]) / t) for k in range(n) if k != a)
        losses.append(
            -sum(math.log(math.exp(_cos(z[a], z[p]) / t) / denom) for p in positives)
            / len(positives)
        )
    return sum(losses) / len(losses)


@pytest.mark.parametrize("n,d,t", [(1, 3, 0.5), (4, 2, 0.5), (7, 16, 0.1), (16, 5, 1.0)])
def test_info_nce_matches_loop(n: int, d: int, t: float) -> None:
    g = torch.Generator().manual_seed(n * 100 + d)
    # Unnormalised inputs with very different norms: the loss must only see directions.
    z1 = (
        torch.randn(n, d, generator=g, dtype=torch.float64)
        * torch.rand(n, 1, generator=g, dtype=torch.float64)
        * 10
    )
    z2 = torch.randn(n, d, generator=g, dtype=torch.float64) * 3
    assert float(info_nce(z1, z2, temperature=t)) == pytest.approx(
        info_nce_loop(z1, z2, t), rel=1e-10
    )


def test_info_nce_is_scale_invariant_and_float32_close() -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)
    ref = info_nce_loop(z1, z2, 0.5)
    assert float(info_nce(z1 * 100, z2 * 0.01)) == pytest.approx(ref, rel=1e-5)


def test_info_nce_perfect_alignment_lower_than_random() -> None:
    z = torch.eye(4, dtype=torch.float64)
    aligned = float(info_nce(z, z, temperature=0.5))
    # Each anchor: positive cos 1, 6 others with cos 0 -> -log(e^2 / (e^2 + 6)).
    assert aligned == pytest.approx(-math.log(math.exp(2) / (math.exp(2) + 6)), rel=1e-12)


@pytest.mark.parametrize("n,d,classes,t", [(6, 3, 2, 1.0), (12, 8, 3, 0.5), (9, 4, 4, 0.2)])
def test_supervised_info_nce_matches_loop(n: int, d: int, classes: int, t: float) -> None:
    g = torch.Generator().manual_seed(n + d)
    z = torch.randn(n, d, generator=g, dtype=torch.float64) * 4
    y = torch.randint(0, classes, (n,), generator=g)
    y[0] = y[1]  # at least one positive pair
    assert float(supervised_info_nce(z, y, temperature=t)) == pytest.approx(
        supervised_loop(z, y, t), rel=1e-10
    )


def test_supervised_info_nce_without_positive_raises() -> None:
    with pytest.raises(ValueError, match="no sample in the batch has a positive"):
        supervised_info_nce(torch.randn(3, 2), torch.tensor([0, 1, 2]))


def test_negative_cosine_value_and_stop_gradient() -> None:
    g = torch.Generator().manual_seed(1)
    p = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    z = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    loss = negative_cosine(p, z)
    expected = -sum(_cos(p[i].detach(), z[i].detach()) for i in range(5)) / 5
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-12)
    loss.backward()
    assert z.grad is None  # stop-gradient on the target
    assert p.grad is not None and float(p.grad.abs().sum()) > 0


def test_symmetric_negative_cosine() -> None:
    g = torch.Generator().manual_seed(2)
    p1, p2, z1, z2 = (torch.randn(4, 3, generator=g, dtype=torch.float64) for _ in range(4))
    expected = 0.5 * (
        -sum(_cos(p1[i], z2[i]) for i in range(4)) / 4
        - sum(_cos(p2[i], z1[i]) for i in range(4)) / 4
    )
    assert float(symmetric_negative_cosine(p1, p2, z1, z2)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "call",
    [
        lambda: info_nce(torch.randn(3, 2), torch.randn(4, 2)),
        lambda: info_nce(torch.randn(3, 2), torch.randn(3, 2), temperature=0.0),
        lambda: negative_cosine(torch.randn(3, 2), torch.randn(3, 3)),
        lambda: supervised_info_nce(torch.randn(3, 2), torch.tensor([0, 0])),
    ],
)
def test_bad_shapes_raise(call) -> None:
    with pytest.raises(ValueError):
        call()
