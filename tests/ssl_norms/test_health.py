"""ssl_norms.health against float64 formulas written here, and embeddings with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist

from ssl_norms import health as H


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _rankme_ref(z: np.ndarray, eps: float = 1e-7) -> float:
    s = np.linalg.svd(z, compute_uv=False)
    p = s / s.sum() + eps
    return float(np.exp(-(p * np.log(p)).sum()))


@pytest.fixture(scope="module")
def views():
    rng = np.random.default_rng(0)
    z1 = rng.normal(size=(300, 16)) * rng.uniform(0.5, 3.0, size=(300, 1))
    z2 = z1 + 0.7 * rng.normal(size=(300, 16))
    return z1, z2


def test_rankme_matches_the_formula(views):
    z1, _ = views
    assert H.rankme(torch.tensor(z1, dtype=torch.float32)) == pytest.approx(
        _rankme_ref(z1.astype(np.float32).astype(np.float64)), rel=1e-10
    )
    low = z1[:, :3] @ np.random.default_rng(1).normal(size=(3, 16))  # rank 3
    assert H.rankme(torch.tensor(low)) == pytest.approx(_rankme_ref(low), rel=1e-10)
    assert 1.0 < H.rankme(torch.tensor(low)) < 3.0 + 1e-3


def test_rankme_known_answers():
    # k equal singular values: p_k = 1/k + eps, so RankMe = k up to eps.
    q, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(200, 8)))
    for k in (1, 4, 8):
        assert H.rankme(torch.tensor(5.0 * q[:, :k])) == pytest.approx(k, rel=1e-4)
    # Collapse: every row the same vector -> one non-zero singular value. The eps on the
    # other m - 1 values adds at most (m - 1) eps (1 - ln eps) to the entropy.
    z = torch.tensor([[0.3, -1.2, 2.0, 0.5]]).repeat(500, 1)
    bound = 3 * 1e-7 * (1 - math.log(1e-7)) + 1e-9
    assert abs(H.rankme(z) - 1.0) < bound
    with pytest.raises(ValueError, match="zero"):
        H.rankme(torch.zeros(4, 3))


def test_alignment_and_uniformity_match_the_formulas(views):
    z1, z2 = views
    u1, u2 = _unit(z1), _unit(z2)
    for alpha in (2.0, 1.0):
        ref = np.mean(np.linalg.norm(u1 - u2, axis=1) ** alpha)
        assert H.alignment(torch.tensor(z1), torch.tensor(z2), alpha) == pytest.approx(ref)
    for t in (2.0, 0.5):
        ref = np.log(np.mean(np.exp(-t * pdist(u1) ** 2)))
        assert H.uniformity(torch.tensor(z1), t) == pytest.approx(ref, rel=1e-12)
        # Blocks smaller than N give the same value (pairs split across blocks).
        assert H.uniformity(torch.tensor(z1), t, block_rows=7) == pytest.approx(ref, rel=1e-12)


def test_alignment_uniformity_known_answers():
    z = torch.randn(50, 8, generator=torch.Generator().manual_seed(3))
    assert H.alignment(z, 2.5 * z) == pytest.approx(0.0, abs=1e-12)  # same directions
    assert H.alignment(z, -z) == pytest.approx(4.0)  # antipodal: ||2u||^2
    collapsed = torch.tensor([[1.0, 2.0, 2.0]]).repeat(40, 1)
    assert H.uniformity(collapsed) == pytest.approx(0.0, abs=1e-12)
    # Two antipodal points: the only pair is at squared distance 4 -> log exp(-2 * 4) = -8.
    assert H.uniformity(torch.tensor([[0.0, 3.0], [0.0, -1.0]])) == pytest.approx(-8.0)


def test_l2_normalized_std_matches_the_formula(views):
    z1, _ = views
    ref = np.std(_unit(z1), axis=0, ddof=1).mean()
    assert H.l2_normalized_std(torch.tensor(z1, dtype=torch.float16)) == pytest.approx(
        np.std(_unit(z1.astype(np.float16).astype(np.float64)), axis=0, ddof=1).mean()
    )
    assert H.l2_normalized_std(torch.tensor(z1)) == pytest.approx(ref, rel=1e-12)


def test_collapse_and_isotropic_known_answers():
    # One direction, many norms (float64: float32 inputs would differ in direction by 1e-7).
    scale = torch.linspace(1, 4, 1000, dtype=torch.float64).unsqueeze(1)
    collapsed = torch.tensor([[0.5, -2.0, 1.0, 3.0]], dtype=torch.float64) * scale
    assert H.l2_normalized_std(collapsed) < 1e-12
    assert H.rankme(collapsed) == pytest.approx(1.0, abs=1e-4)
    # Isotropic Gaussian: each coordinate of a uniform unit vector has variance 1/d, so the
    # std is about 1/sqrt(d); each per-dimension sample std has relative error about
    # 1/sqrt(2N) = 0.5% at N = 20000, and the mean over d dims averages it further: 2% is
    # a wide margin.
    d = 64
    g = torch.Generator().manual_seed(4)
    z = torch.randn(20000, d, generator=g) * 7.0
    assert H.l2_normalized_std(z) == pytest.approx(1 / math.sqrt(d), rel=0.02)
    assert H.rankme(z) > 0.95 * d  # full rank, nearly equal singular values


def test_opposite_halves_rate_hand_worked():
    # Pair angles, by hand: (1,0)/(0,1) exactly pi/2 -> not counted; (1,0)/(-1,0.1) about
    # 174 deg -> counted; (1,1)/(1,-0.5) about 72 deg -> not; (0,2)/(0.1,-3) about 178 deg
    # -> counted; (3,4)/(-4,3.1) cos = (-12 + 12.4) / (5 * 5.06) > 0 -> not. Rate 2 / 5.
    z1 = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 2.0], [3.0, 4.0]])
    z2 = torch.tensor([[0.0, 1.0], [-1.0, 0.1], [1.0, -0.5], [0.1, -3.0], [-4.0, 3.1]])
    angles = np.arccos(np.sum(_unit(z1.numpy()) * _unit(z2.numpy()), axis=1).clip(-1, 1))
    assert (angles > np.pi / 2 + 1e-12).tolist() == [False, True, False, True, False]
    assert H.opposite_halves_rate(z1, z2) == pytest.approx(2 / 5)
    assert H.opposite_halves_rate(z1, z1) == 0.0
    assert H.opposite_halves_rate(z1, -z1) == 1.0


def test_health_bad_input():
    z = torch.randn(5, 3)
    with pytest.raises(ValueError, match="2-D"):
        H.rankme(torch.randn(5))
    with pytest.raises(ValueError, match="at least 1"):
        H.rankme(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="at least 2"):
        H.uniformity(torch.randn(1, 3))
    with pytest.raises(ValueError, match="shapes differ"):
        H.alignment(z, torch.randn(4, 3))
    with pytest.raises(ValueError, match="zero rows"):
        H.opposite_halves_rate(z, torch.cat([torch.zeros(1, 3), z[1:]]))
    with pytest.raises(ValueError, match="zero rows"):
        H.l2_normalized_std(torch.cat([torch.zeros(1, 3), z]))
    with pytest.raises(ValueError, match="NaN"):
        H.alignment(z, torch.full((5, 3), math.nan))
