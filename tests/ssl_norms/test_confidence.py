"""ssl_norms.confidence against independent references: scikit-learn, scipy, hand-worked cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import entropy as scipy_entropy
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

import callbacks._stats
from ssl_norms import confidence as C

# ---------------------------------------------------------------------------------------------
# OOD detection


def _cases():
    """(scores, labels) in numpy: continuous, heavily tied, and large (sigmoid-saturating)."""
    rng = np.random.default_rng(0)
    for i in range(30):
        n = int(rng.integers(2, 80))
        y = rng.integers(0, 2, n)
        y[0], y[1] = 0, 1  # both classes present
        if i % 3 == 0:
            s = rng.normal(size=n) + y
        elif i % 3 == 1:
            s = rng.integers(0, 4, n).astype(np.float64)  # many ties, across classes
        else:
            s = 40.0 + rng.integers(0, 5, n) * 1e-3 + y * 1e-3  # norms > 37: sigmoid would tie
        yield s, y


@pytest.mark.parametrize("case", list(range(30)))
def test_roc_auroc_aupr_match_sklearn_including_ties(case):
    s, y = list(_cases())[case]
    st, yt = torch.tensor(s, dtype=torch.float32 if case % 2 else torch.float64), torch.tensor(y)
    s = st.double().numpy()  # the reference sees the same (possibly float32-rounded) scores
    assert C.auroc(st, yt) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert C.aupr(st, yt) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    fpr, tpr, thr = sk_roc_curve(y, s, drop_intermediate=False)
    our_fpr, our_tpr, our_thr = C.roc_curve(st, yt.bool())
    np.testing.assert_allclose(our_fpr.numpy(), fpr, atol=1e-12)
    np.testing.assert_allclose(our_tpr.numpy(), tpr, atol=1e-12)
    np.testing.assert_array_equal(our_thr.numpy(), thr)


def test_all_tied_scores_are_chance():
    s = torch.full((10,), 3.0)
    y = torch.tensor([1] * 4 + [0] * 6)
    assert C.auroc(s, y) == 0.5 == roc_auc_score(y.numpy(), s.numpy())
    assert C.aupr(s, y) == pytest.approx(0.4)  # one threshold: precision 4/10 at recall 1
    assert C.fpr_at_tpr(s, y) == 1.0


def test_fpr95_hand_worked_with_ties():
    # 20 positives: 19 at 10, one at 1. ceil(0.95 * 20) = 19 positives needed -> t* = 10,
    # TPR exactly 0.95. Negatives 12, 10, 5, 0: those >= 10 are 12 and the tied 10 -> 2 / 4.
    pos = torch.tensor([10.0] * 19 + [1.0])
    neg = torch.tensor([12.0, 10.0, 5.0, 0.0])
    s = torch.cat([pos, neg])
    y = torch.cat([torch.ones(20), torch.zeros(4)])
    assert C.fpr_at_tpr(s, y, 0.95) == 0.5
    # 18 positives at 10 and 2 at 5: 19 are needed, the group at 10 gives only 18, so t* = 5
    # (TPR 1.0). Negatives 7, 6, 4: those >= 5 are 7 and 6 -> 2 / 3.
    pos = torch.tensor([10.0] * 18 + [5.0] * 2)
    neg = torch.tensor([7.0, 6.0, 4.0])
    s = torch.cat([pos, neg])
    y = torch.cat([torch.ones(20), torch.zeros(3)])
    assert C.fpr_at_tpr(s, y, 0.95) == pytest.approx(2 / 3)
    # A lower target is met at the tie group at 10 (18 / 20 = 0.9): no negative is >= 10.
    assert C.fpr_at_tpr(s, y, 0.9) == 0.0


def test_fpr95_matches_the_usual_roc_curve_formula():
    # The usual OOD code: the first ROC point (decreasing threshold) with TPR >= 0.95.
    rng = np.random.default_rng(1)
    for _ in range(20):
        y = np.r_[np.ones(200, int), np.zeros(150, int)]
        s = np.round(rng.normal(size=350) + y, 1)  # rounding makes ties
        fpr, tpr, _ = sk_roc_curve(y, s, drop_intermediate=False)
        ref = fpr[np.argmax(tpr >= 0.95)]
        assert C.fpr_at_tpr(torch.tensor(s), torch.tensor(y)) == pytest.approx(ref, abs=1e-15)


def test_ood_with_smaller_norms_is_detected():
    g = torch.Generator().manual_seed(0)
    id_norms = 10 + torch.randn(2000, generator=g)
    ood_norms = 4 + torch.randn(1500, generator=g)  # 6 std below: almost separable
    out = C.ood_detection(id_norms, ood_norms)
    y = np.r_[np.ones(2000), np.zeros(1500)]
    s = torch.cat([id_norms, ood_norms]).double().numpy()
    assert out["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert out["aupr"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert out["auroc"] > 0.999 and out["aupr"] > 0.999 and out["fpr95"] < 0.01
    # The same sets swapped (OOD with larger norms): the norm now ranks them the wrong way.
    swapped = C.ood_detection(ood_norms, id_norms)
    assert swapped["auroc"] < 0.001 and swapped["fpr95"] > 0.99


def test_ood_bad_input():
    good = torch.tensor([1.0, 2.0])
    with pytest.raises(ValueError, match="empty"):
        C.ood_detection(good, torch.tensor([]))
    with pytest.raises(ValueError, match="empty"):
        C.ood_detection(torch.tensor([]), good)
    with pytest.raises(ValueError, match="no OOD"):
        C.auroc(good, torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="no in-distribution"):
        C.aupr(good, torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="lengths differ"):
        C.roc_curve(good, torch.tensor([1, 0, 1]))
    with pytest.raises(ValueError, match="0/1"):
        C.auroc(good, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="NaN"):
        C.ood_detection(torch.tensor([1.0, math.nan]), good)
    with pytest.raises(ValueError, match="1-D"):
        C.ood_detection(torch.ones(2, 2), good)
    with pytest.raises(ValueError, match="tpr"):
        C.fpr_at_tpr(good, torch.tensor([1, 0]), 0.0)


# ---------------------------------------------------------------------------------------------
# Selective prediction


def test_aurc_hand_worked():
    # Norms 4 > 3 > 2 > 1 with correct, wrong, correct, wrong: risks 0, 1/2, 1/3, 2/4.
    norms = torch.tensor([1.0, 2.0, 3.0, 4.0])
    correct = torch.tensor([False, True, False, True])
    coverage, risk = C.risk_coverage_curve(norms, correct)
    np.testing.assert_allclose(coverage.numpy(), [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk.numpy(), [0, 1 / 2, 1 / 3, 1 / 2])
    assert C.aurc(norms, correct) == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 2) / 4)
    out = C.selective_prediction(norms, correct)
    np.testing.assert_allclose(out["accuracy"].numpy(), [1, 1 / 2, 2 / 3, 1 / 2])
    assert out["random_aurc"] == 0.5
    # Optimal order: both correct first -> risks 0, 0, 1/3, 1/2.
    assert out["optimal_aurc"] == pytest.approx((1 / 3 + 1 / 2) / 4)
    assert out["excess_aurc"] == pytest.approx(out["aurc"] - out["optimal_aurc"])


def test_aurc_ties_hand_worked():
    # Norms 2, 2, 1 with correct, wrong, correct. The two tie orders give risks (0, 1/2, 1/3)
    # and (1, 1/2, 1/3): the expectation is (1/2, 1/2, 1/3).
    norms = torch.tensor([2.0, 2.0, 1.0])
    correct = torch.tensor([1, 0, 1])
    _, risk = C.risk_coverage_curve(norms, correct)
    np.testing.assert_allclose(risk.numpy(), [1 / 2, 1 / 2, 1 / 3])
    assert C.aurc(norms, correct) == pytest.approx((1 / 2 + 1 / 2 + 1 / 3) / 3)


def _brute_force_expected_risks(norms: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Mean risk curve over every order sorted by decreasing norm (ties in every order)."""
    n = norms.size
    curves = []
    for perm in itertools.permutations(range(n)):
        if all(norms[perm[i]] >= norms[perm[i + 1]] for i in range(n - 1)):
            errors = np.cumsum(1 - correct[list(perm)])
            curves.append(errors / np.arange(1, n + 1))
    return np.mean(curves, axis=0)


def test_risk_curve_ties_equal_the_mean_over_all_tie_orders():
    rng = np.random.default_rng(2)
    for _ in range(15):
        n = int(rng.integers(1, 8))
        norms = rng.integers(0, 3, n).astype(np.float64)
        correct = rng.integers(0, 2, n)
        _, risk = C.risk_coverage_curve(torch.tensor(norms), torch.tensor(correct))
        np.testing.assert_allclose(
            risk.numpy(), _brute_force_expected_risks(norms, correct), atol=1e-12
        )


def test_independent_norms_give_the_random_rejection_aurc():
    # Given the labels (E errors among N), a random order makes the risk at coverage n/N
    # hypergeometric with sd <= sqrt(p(1-p)/n), p = E/N. By the triangle inequality for sds,
    # sd(AURC) <= (1/N) sum_n sqrt(p(1-p)/n) <= 2 sqrt(p(1-p)/N) (sum n^-1/2 <= 2 sqrt N).
    # With N = 10^6 and p = 0.3 this is 9.2e-4; we allow 6 of them (Chebyshev: a random
    # seed fails with probability < 1/36, far less as the sum is close to Gaussian).
    n = 1_000_000
    g = torch.Generator().manual_seed(0)
    correct = torch.rand(n, generator=g) > 0.3
    norms = torch.rand(n, generator=g) * 5 + 1  # independent of correctness
    out = C.selective_prediction(norms, correct)
    p = 1 - correct.double().mean().item()
    assert out["random_aurc"] == pytest.approx(p)
    bound = 6 * 2 * math.sqrt(p * (1 - p) / n)
    assert abs(out["aurc"] - p) < bound
    # The bound discriminates: norms that carry correctness move the AURC far outside it.
    informative = norms + 2.0 * correct.double()
    assert C.aurc(informative, correct) < p - 20 * bound


def test_selective_bad_input():
    with pytest.raises(ValueError, match="empty"):
        C.aurc(torch.tensor([]), torch.tensor([]))
    with pytest.raises(ValueError, match="lengths differ"):
        C.selective_prediction(torch.ones(3), torch.ones(2))
    with pytest.raises(ValueError, match="0/1"):
        C.aurc(torch.ones(2), torch.tensor([0.5, 1.0]))


# ---------------------------------------------------------------------------------------------
# Buckets and rank correlation


def test_bucket_mean_matches_a_loop_and_bucket_accuracy_is_shared():
    rng = np.random.default_rng(3)
    norms = rng.gamma(5.0, 1.0, 3000)
    values = rng.normal(size=3000)
    out = C.bucket_mean(torch.tensor(norms), torch.tensor(values), 20, 50)
    ratio = norms / norms.max()
    ref = {}
    for i in range(20):
        inside = (ratio >= i / 20) & (ratio < (i + 1) / 20) if i < 19 else ratio >= 19 / 20
        if inside.sum() > 50:
            ref[i] = (values[inside].mean(), int(inside.sum()))
    assert out.keys() == ref.keys() and len(ref) > 5
    for i, (mean, count) in ref.items():
        assert out[i][1] == count
        assert out[i][0] == pytest.approx(mean, abs=1e-12)
    # The monitors' import path still works, and it is the same function.
    assert callbacks._stats.bucket_accuracy is C.bucket_accuracy
    correct = torch.tensor(values > 0)
    acc = C.bucket_accuracy(torch.tensor(norms), correct)
    assert acc == C.bucket_mean(torch.tensor(norms), correct.double())


def test_buckets_bad_input():
    with pytest.raises(ValueError, match="every norm is 0"):
        C.norm_buckets(torch.zeros(3))
    with pytest.raises(ValueError, match="non-negative"):
        C.norm_buckets(torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="lengths differ"):
        C.bucket_accuracy(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match="empty"):
        C.bucket_accuracy(torch.tensor([]), torch.tensor([]))


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(4)
    for i in range(20):
        n = int(rng.integers(3, 300))
        x = rng.integers(0, 6, n).astype(float) if i % 2 else rng.normal(size=n)
        y = (rng.random(n) < 0.5 + 0.05 * x).astype(float) if i % 2 else x + rng.normal(size=n)
        ref = spearmanr(x, y).statistic
        assert C.spearman(torch.tensor(x), torch.tensor(y)) == pytest.approx(ref, abs=1e-12)
    assert math.isnan(C.spearman(torch.tensor([1.0, 2.0, 3.0]), torch.ones(3)))
    with pytest.raises(ValueError, match="lengths differ"):
        C.spearman(torch.ones(3), torch.ones(2))


def test_norm_relation_sees_a_monotone_trend():
    g = torch.Generator().manual_seed(5)
    norms = torch.rand(20000, generator=g) * 10
    correct = torch.rand(20000, generator=g) < norms / 10  # P(correct) = norm / max
    out = C.norm_relation(norms, correct.double())
    accs = [acc for acc, _ in out["buckets"].values()]
    assert len(accs) == 20 and all(b > a for a, b in zip(accs[:-3], accs[3:], strict=True))
    ref = spearmanr(norms.numpy(), correct.numpy()).statistic
    assert out["spearman"] == pytest.approx(ref, abs=1e-12) and out["spearman"] > 0.5


# ---------------------------------------------------------------------------------------------
# Human labels


def test_label_entropy_matches_scipy():
    rng = np.random.default_rng(6)
    counts = rng.integers(0, 6, (50, 10))
    counts[:, 0] += 1  # no empty row
    counts[0] = [0] * 9 + [51]  # unanimous: entropy 0
    ours = C.label_entropy(torch.tensor(counts))
    ref = scipy_entropy(counts, axis=1)  # normalises rows, nats
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-12)
    assert ours[0] == 0.0
    probs = torch.tensor(counts / counts.sum(1, keepdims=True))
    np.testing.assert_allclose(
        C.label_entropy(probs, base=2).numpy(), scipy_entropy(counts, base=2, axis=1), atol=1e-12
    )
    np.testing.assert_allclose(
        C.majority_agreement(torch.tensor(counts)).numpy(),
        counts.max(1) / counts.sum(1),
        atol=1e-15,
    )
    with pytest.raises(ValueError, match="sum to 0"):
        C.label_entropy(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="non-negative"):
        C.label_entropy(torch.tensor([[1.0, -1.0]]))
    with pytest.raises(ValueError, match="2-D"):
        C.label_entropy(torch.ones(3))


def test_annotator_agreement_hand_worked():
    annotations = torch.tensor([[1, 1, 1], [1, 2, 1], [3, 2, 0]])
    clean = torch.tensor([1, 2, 4])
    np.testing.assert_allclose(C.annotator_agreement(annotations, clean).numpy(), [1, 1 / 3, 0])
    consensus = torch.tensor([1, 1, 4])
    np.testing.assert_allclose(C.annotator_agreement(consensus, clean).numpy(), [1, 0, 1])
    with pytest.raises(ValueError, match="lengths differ"):
        C.annotator_agreement(annotations, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="empty"):
        C.annotator_agreement(torch.zeros(0, 3, dtype=torch.long), torch.zeros(0))
