"""Pure schedule functions (docs/definitions.md) against hand-computed values."""

from __future__ import annotations

import math

import pytest

from ssl_norms.schedules import byol_tau, warmup_cosine


def test_warmup_is_linear_and_never_zero() -> None:
    assert [warmup_cosine(s, total_steps=100, warmup_steps=4) for s in range(4)] == [
        0.25,
        0.5,
        0.75,
        1.0,
    ]


def test_cosine_values() -> None:
    # total 10, warm-up 2: decay over 8 steps; step 6 is half way (cos(pi/2) = 0).
    assert warmup_cosine(2, 10, 2, min_ratio=0.1) == pytest.approx(1.0)
    assert warmup_cosine(6, 10, 2, min_ratio=0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert warmup_cosine(4, 10, 2, min_ratio=0.0) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    assert warmup_cosine(10, 10, 2, min_ratio=0.1) == pytest.approx(0.1)  # the end
    assert warmup_cosine(50, 10, 2, min_ratio=0.1) == pytest.approx(0.1)  # past the end
    assert warmup_cosine(0, 10, 0, min_ratio=0.0) == 1.0  # no warm-up: starts at the peak


def test_schedule_is_monotone_after_warmup() -> None:
    values = [warmup_cosine(s, 1000, 100, 1e-3) for s in range(100, 1000)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_byol_tau_goes_from_base_to_one() -> None:
    assert byol_tau(0, 100, 0.99) == pytest.approx(0.99)
    assert byol_tau(50, 100, 0.99) == pytest.approx(0.995)
    assert byol_tau(100, 100, 0.99) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: warmup_cosine(0, 0), "total_steps"),
        (lambda: warmup_cosine(0, 10, min_ratio=1.5), "min_ratio"),
        (lambda: byol_tau(0, 10, base_tau=1.2), "base_tau"),
    ],
)
def test_bad_arguments(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
