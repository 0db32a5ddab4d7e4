"""ssl_norms.knn against a float64 brute-force reference (docs/definitions.md)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ssl_norms.knn import faiss_available, knn_accuracy, knn_predict, knn_search

BACKENDS = ["torch"] + (["faiss"] if faiss_available() else [])


def reference(bank, labels, queries, k, temperature, num_classes):
    """Brute force in float64: all similarities, sort, the k best, exp-weighted votes."""
    b = bank.double() / bank.double().norm(dim=1, keepdim=True)
    q = queries.double() / queries.double().norm(dim=1, keepdim=True)
    scores = torch.zeros(len(q), num_classes, dtype=torch.float64)
    for i in range(len(q)):
        sims = [(float(q[i] @ b[j]), j) for j in range(len(b))]
        sims.sort(key=lambda t: (-t[0], t[1]))
        for s, j in sims[:k]:
            scores[i, labels[j]] += math.exp(s / temperature)
    return scores.argmax(1), scores


def random_problem(n=300, m=80, d=16, c=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(c, d, generator=g)
    y = torch.randint(0, c, (n,), generator=g)
    bank = centers[y] + 0.8 * torch.randn(n, d, generator=g)
    yq = torch.randint(0, c, (m,), generator=g)
    queries = centers[yq] + 0.8 * torch.randn(m, d, generator=g)
    return bank, y, queries, yq


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", [1, 7, 40])
def test_matches_float64_reference(backend, k):
    bank, y, queries, _ = random_problem()
    t = 0.1
    ref_pred, ref_scores = reference(bank, y, queries, k, t, 5)
    pred, scores = knn_predict(bank, y, queries, k=k, temperature=t, num_classes=5, backend=backend)
    assert torch.equal(pred, ref_pred)
    # Returned scores are the formula's times exp(-1/T) (kept finite for small T).
    torch.testing.assert_close(scores.double() * math.exp(1 / t), ref_scores, rtol=1e-4, atol=1e-6)


def test_hand_computed_case():
    # Bank on the unit circle at 0, 90, 180 degrees (labels 0, 1, 1); query at 30 degrees.
    bank = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    labels = torch.tensor([0, 1, 1])
    query = torch.tensor([[math.cos(math.pi / 6), math.sin(math.pi / 6)]])
    # k = 2: neighbours 0 (cos 30 = 0.866) and 1 (cos 60 = 0.5).
    # score_0 = exp(0.866 / 0.5) = 5.65, score_1 = exp(0.5 / 0.5) = 2.72 -> class 0.
    pred, scores = knn_predict(bank, labels, query, k=2, temperature=0.5, backend="torch")
    assert pred.tolist() == [0]
    expected = torch.tensor([[math.exp(math.sqrt(3) / 2 / 0.5), math.exp(0.5 / 0.5)]]) * math.exp(
        -1 / 0.5
    )
    torch.testing.assert_close(scores, expected)
    # k = 3 adds the 180-degree point (cos = -0.866): score_1 = e^1 + e^-1.73 = 2.89 < 5.65.
    pred3, scores3 = knn_predict(bank, labels, query, k=3, temperature=0.5, backend="torch")
    assert pred3.tolist() == [0]
    assert scores3[0, 1] * math.exp(2) == pytest.approx(math.e + math.exp(-math.sqrt(3)), rel=1e-5)
    # A sharper temperature does not change the winner; a softer one lets class 1 win at k = 3
    # when its two votes outweigh one closer vote: T = 10 -> 1.09 vs 1.05 + 0.92.
    pred_soft, _ = knn_predict(bank, labels, query, k=3, temperature=10.0, backend="torch")
    assert pred_soft.tolist() == [1]


@pytest.mark.skipif(not faiss_available(), reason="faiss is not installed")
def test_faiss_and_chunked_torch_agree():
    bank, y, queries, _ = random_problem(n=3000, m=700, d=32, c=10, seed=3)
    p_faiss, s_faiss = knn_predict(bank, y, queries, k=50, backend="faiss")
    p_torch, s_torch = knn_predict(bank, y, queries, k=50, backend="torch", chunk_size=64)
    assert torch.equal(p_faiss, p_torch)
    torch.testing.assert_close(s_faiss, s_torch, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_k_larger_than_bank_is_clamped(backend):
    bank, y, queries, _ = random_problem(n=12, m=5)
    with pytest.warns(UserWarning, match="exceeds the bank size"):
        pred, scores = knn_predict(bank, y, queries, k=200, num_classes=5, backend=backend)
    pred_n, scores_n = knn_predict(bank, y, queries, k=12, num_classes=5, backend=backend)
    assert torch.equal(pred, pred_n)
    torch.testing.assert_close(scores, scores_n)
    ref_pred, _ = reference(bank, y, queries, 12, 0.1, 5)
    assert torch.equal(pred, ref_pred)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_are_deterministic(backend):
    bank, y, queries, _ = random_problem(n=50, m=10, seed=5)
    # Duplicate the bank with other labels: every query's nearest neighbour is tied between
    # index j (label y_j) and j + 50 (label (y_j + 1) % 5). The lower index must win.
    dup = torch.cat([bank, bank])
    labels = torch.cat([y, (y + 1) % 5])
    pred, _ = knn_predict(dup, labels, bank[:10], k=1, num_classes=5, backend=backend)
    assert torch.equal(pred, y[:10])
    # k = 3 on the duplicated bank: the third neighbour is one of a tied pair; the lower
    # index again, so the result equals the float64 reference with (sim desc, index asc).
    pred3, _ = knn_predict(dup, labels, queries, k=3, num_classes=5, backend=backend)
    ref3, _ = reference(dup, labels, queries, 3, 0.1, 5)
    assert torch.equal(pred3, ref3)


def test_class_score_tie_goes_to_smaller_class():
    bank = torch.tensor([[1.0, 1.0], [1.0, -1.0]])  # symmetric about the query
    query = torch.tensor([[1.0, 0.0]])
    pred, scores = knn_predict(
        bank, torch.tensor([3, 1]), query, k=2, num_classes=4, backend="torch"
    )
    assert scores[0, 1] == scores[0, 3]
    assert pred.tolist() == [1]


def test_top_k_accuracy_from_scores():
    scores = torch.tensor(
        [
            [0.10, 0.50, 0.20, 0.00, 0.30, 0.05],  # ranking 1 4 2 0 5 3
            [0.90, 0.01, 0.02, 0.03, 0.04, 0.10],  # ranking 0 5 4 3 2 1
            [0.10, 0.50, 0.20, 0.00, 0.30, 0.05],
            [0.90, 0.01, 0.02, 0.03, 0.04, 0.10],
        ]
    )
    labels = torch.tensor([1, 5, 3, 1])
    # top-1: only row 0. top-5: rows 0 and 1 (rank 2), not row 2 (class 3 ranks 6th),
    # not row 3 (class 1 ranks 6th).
    assert knn_accuracy(scores, labels, top_k=1) == pytest.approx(0.25)
    assert knn_accuracy(scores, labels, top_k=5) == pytest.approx(0.5)
    # k beyond the number of classes is clamped: everything is in the "top 10" of 6.
    assert knn_accuracy(scores, labels, top_k=10) == pytest.approx(1.0)


def test_backend_choice(monkeypatch):
    from ssl_norms import knn

    with pytest.raises(ValueError, match="backend must be"):
        knn_predict(
            torch.randn(4, 2),
            torch.zeros(4, dtype=torch.long),
            torch.randn(1, 2),
            k=2,
            backend="annoy",
        )
    monkeypatch.setattr(knn, "faiss_available", lambda: False)
    assert knn._resolve_backend("auto", torch.device("cpu")) == "torch"
    monkeypatch.setattr(knn, "faiss_available", lambda: True)
    monkeypatch.setattr(knn, "_faiss_gpus", lambda: 0)
    assert knn._resolve_backend("auto", torch.device("cpu")) == "faiss"
    # Features on a GPU that FAISS cannot use: the torch matmul runs where they are.
    assert knn._resolve_backend("auto", torch.device("cuda")) == "torch"


def _peak_rss_bytes() -> int:
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


@pytest.mark.parametrize("bank_kind", ["zero", "constant"])
def test_collapsed_bank_is_bounded_and_lowest_index(monkeypatch, bank_kind):
    """A collapsed bank (dead or constant features: a collapsed SimSiam/BYOL run) ties every
    row and puts every bank entry in the tie band. The re-ranking must stay bounded by its
    chunk budget (it once scored all rows x bank entries x dims at once: 18.6 GB for 3,000 x
    1,000 x 256) and still pick the lowest bank indices, in both backends."""
    from ssl_norms import knn

    n, m, d, k, c = 3000, 300, 256, 200, 5
    budget = 2**18  # smaller than the default: several re-ranking chunks per search
    monkeypatch.setattr(knn, "_TIE_CHUNK_ELEMENTS", budget)
    seen: list[tuple[int, int]] = []
    band_scores = knn._band_scores

    def spy(q, bank, band, cache):
        seen.append((q.shape[0], bank.shape[0]))
        return band_scores(q, bank, band, cache)

    monkeypatch.setattr(knn, "_band_scores", spy)
    g = torch.Generator().manual_seed(7)
    bank = torch.zeros(n, d) if bank_kind == "zero" else torch.full((n, d), 0.3)
    # Class 3 holds most of the first k bank entries and few of the others: any other
    # choice of k neighbours among the tied ones votes differently.
    labels = torch.randint(0, c, (n,), generator=g)
    labels[:k] = 3
    labels[k:][labels[k:] == 3] = 0
    queries = torch.randn(m, d, generator=g)
    # The lowest-index answer, computed independently: neighbours 0..k-1, all at the same
    # similarity (0 for the zero bank), so class 3 gets every vote.
    expected_idx = torch.arange(k).expand(m, k)
    rss_before = _peak_rss_bytes()
    preds = {}
    for backend in BACKENDS:
        seen.clear()
        _, idx = knn_search(bank, queries, k=k, backend=backend)
        assert torch.equal(idx, expected_idx), backend
        assert sum(t for t, _ in seen) == m  # every row was tied and re-ranked
        assert max(t * cols for t, cols in seen) <= budget  # in bounded chunks
        preds[backend], scores = knn_predict(
            bank, labels, queries, k=k, num_classes=c, backend=backend
        )
        assert torch.equal(preds[backend], torch.full((m,), 3))
        if bank_kind == "zero":
            torch.testing.assert_close(scores[:, 3], torch.full((m,), k * math.exp(-1 / 0.1)))
    assert all(torch.equal(p, preds["torch"]) for p in preds.values())
    # A coarse guard on memory (peak RSS only grows; the old code needed > 5 GiB here).
    assert _peak_rss_bytes() - rss_before < 512 * 2**20


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_duplicates_take_lowest_indices(backend):
    """Three distinct vectors repeated about 1,000 times each, interleaved: every row is tied and
    a third of the bank is in its band, so the float64 re-scoring goes through one GEMM,
    whose values for identical rows can differ with their position; the lowest indices
    must still win (the float64 brute-force reference breaks ties by index)."""
    g = torch.Generator().manual_seed(11)
    distinct = torch.randn(3, 24, generator=g)
    # Row j is distinct[j % 3]; 3,001 rows, so that the last one falls in the GEMM's edge
    # tile (measured: there it differs from its copies in the last bit).
    bank = distinct.repeat(1001, 1)[:3001]
    labels = torch.randint(0, 6, (bank.shape[0],), generator=g)
    queries = torch.randn(12, 24, generator=g)
    # Independently: the distinct vectors by float64 similarity, then their copies by index.
    sims = F.normalize(queries.double(), dim=1) @ F.normalize(distinct.double(), dim=1).T
    for k in (1, 50, 1500):
        _, idx = knn_search(bank, queries, k=k, backend=backend)
        for row, by_sim in zip(idx, sims.argsort(dim=1, descending=True), strict=True):
            expected = torch.cat([torch.arange(int(v), bank.shape[0], 3) for v in by_sim])[:k]
            assert torch.equal(row, expected), k
    pred, _ = knn_predict(bank, labels, queries, k=50, num_classes=6, backend=backend)
    assert torch.equal(pred, reference(bank, labels, queries, 50, 0.1, 6)[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("backend", ["auto", "faiss", "torch"])
def test_cuda_features_stay_on_the_device_and_predict_as_on_cpu(backend):
    if backend == "faiss" and not faiss_available():
        pytest.skip("needs faiss")
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(5, 64, generator=g)
    y = torch.randint(0, 5, (3000,), generator=g)
    bank = centers[y] + torch.randn(3000, 64, generator=g)
    yq = torch.randint(0, 5, (500,), generator=g)
    queries = centers[yq] + torch.randn(500, 64, generator=g)
    bank[100] = bank[7]  # a duplicate: the tie rule must hold on the GPU too
    cpu_pred, cpu_scores = knn_predict(bank, y, queries, k=20, num_classes=5, backend="torch")
    pred, scores = knn_predict(
        bank.cuda(), y.cuda(), queries.cuda(), k=20, num_classes=5, backend=backend
    )
    assert pred.is_cuda and scores.is_cuda
    assert torch.equal(pred.cpu(), cpu_pred)
    torch.testing.assert_close(scores.cpu(), cpu_scores, rtol=1e-4, atol=1e-6)


def test_torch_backend_holds_one_chunk_of_similarities_at_a_time(monkeypatch):
    import weakref

    alive_at_matmul: list[int] = []
    chunks: list[weakref.ref] = []
    original = torch.Tensor.__matmul__

    def matmul(a, b):
        alive_at_matmul.append(sum(ref() is not None for ref in chunks))
        out = original(a, b)
        chunks.append(weakref.ref(out))
        return out

    monkeypatch.setattr(torch.Tensor, "__matmul__", matmul)
    g = torch.Generator().manual_seed(0)
    bank, queries = torch.randn(500, 16, generator=g), torch.randn(95, 16, generator=g)
    sims, idx = knn_search(bank, queries, k=5, backend="torch", chunk_size=10)
    assert len(alive_at_matmul) >= 10  # one matmul per chunk of 10 queries
    # When a chunk's similarities are computed, no earlier chunk's are still held.
    assert max(alive_at_matmul) == 0
    monkeypatch.undo()
    want = torch.topk(F.normalize(queries, dim=1) @ F.normalize(bank, dim=1).T, 5, dim=1)
    torch.testing.assert_close(sims, want.values)
    assert torch.equal(idx, want.indices)
