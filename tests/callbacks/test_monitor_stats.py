"""The monitors' statistics on synthetic features (paper Figs. 2c, 3 and 4 left)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from callbacks import EmbeddingNormMonitor, KNNMonitor
from callbacks._gather import all_gather_cat, dedup_by_index, gather_eval
from callbacks._stats import bucket_accuracy, class_means, norm_histogram, norm_summary, ood_ratio
from ssl_norms.knn import knn_predict
from ssl_norms.norms import embedding_norms


def vectors_with_norms(norms, dim=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(len(norms), dim, generator=g)
    return v / v.norm(dim=1, keepdim=True) * torch.tensor(norms, dtype=torch.float32)[:, None]


def test_per_class_means_and_ood_ratio_from_features():
    # Bank: class 0 norms 1, 2, 3 (mean 2), class 2 norm 4 (class 1 absent); OOD norms 5, 7.
    bank_z = vectors_with_norms([1.0, 4.0, 2.0, 3.0])
    bank_y = torch.tensor([0, 2, 0, 0])
    ood_z = vectors_with_norms([5.0, 7.0], seed=1)
    splits = {
        "bank": {"z": embedding_norms(bank_z), "h": embedding_norms(2 * bank_z), "y": bank_y},
        "eval": {
            "z": embedding_norms(bank_z[:2]),
            "h": embedding_norms(bank_z[:2]),
            "y": bank_y[:2],
        },
        "ood/far": {"z": embedding_norms(ood_z), "h": embedding_norms(ood_z), "y": torch.zeros(2)},
    }
    res = EmbeddingNormMonitor(histogram_bins=4).compute(splits)
    assert res["class_mean"] == pytest.approx({0: 2.0, 2: 4.0}, rel=1e-6)
    assert res["class_mean_h"] == pytest.approx({0: 4.0, 2: 8.0}, rel=1e-6)
    # OOD mean 6 over the bank's mean (1 + 4 + 2 + 3) / 4 = 2.5.
    assert res["ood_ratio"] == pytest.approx({"far": 6.0 / 2.5}, rel=1e-6)
    assert res["ood_mean"]["far"] == pytest.approx(6.0, rel=1e-6)
    assert res["sizes"] == {"bank": 4, "eval": 2, "ood/far": 2}
    assert set(res["hist"]) == {"bank", "eval"}  # histograms for bank and eval only
    counts, edges = res["hist"]["bank"]["z"]
    assert (
        counts == [1, 1, 1, 1]
        and edges[0] == pytest.approx(1.0)
        and edges[-1] == pytest.approx(4.0)
    )
    assert res["splits"]["bank"]["z"]["mean"] == pytest.approx(2.5, rel=1e-6)


def test_class_means_float64_and_num_classes():
    norms = torch.tensor([1.0, 3.0, 10.0])
    assert class_means(norms, torch.tensor([1, 1, 3]), num_classes=5) == {1: 2.0, 3: 10.0}
    assert ood_ratio(torch.tensor([3.0, 5.0]), torch.tensor([1.0, 3.0])) == 2.0


def test_summary_matches_numpy():
    x = torch.rand(1001, generator=torch.Generator().manual_seed(0)) * 7
    s = norm_summary(x)
    xs = x.double().numpy()
    assert s["mean"] == pytest.approx(xs.mean())
    assert s["std"] == pytest.approx(xs.std(ddof=1))
    for q in (5, 25, 50, 75, 95):
        assert s[f"q{q:02d}"] == pytest.approx(np.quantile(xs, q / 100))
    counts, edges = norm_histogram(x, bins=16)
    ref_counts, ref_edges = np.histogram(xs, bins=16, range=(xs.min(), xs.max()))
    assert counts.tolist() == ref_counts.tolist()
    np.testing.assert_allclose(edges.numpy(), ref_edges)


def test_bucket_accuracy_paper_buckets():
    # 20 buckets of 0.05 of norm / max; keep buckets with more than min_count samples.
    norms = torch.tensor([0.01] * 3 + [0.52] * 4 + [0.98] * 2 + [1.0])
    correct = torch.tensor([1, 0, 0] + [1, 1, 1, 0] + [0, 1] + [1], dtype=torch.bool)
    out = bucket_accuracy(norms, correct, num_buckets=20, min_count=2)
    # 0.01 -> bucket 0 (1/3), 0.52 -> bucket 10 (3/4), 0.98 and the max 1.0 -> bucket 19 (2/3).
    assert out == {0: (pytest.approx(1 / 3), 3), 10: (0.75, 4), 19: (pytest.approx(2 / 3), 3)}
    assert set(bucket_accuracy(norms, correct, min_count=3)) == {10}


def test_knn_monitor_compute_matches_knn_predict():
    g = torch.Generator().manual_seed(0)
    bank = {"h": torch.randn(200, 6, generator=g), "y": torch.randint(0, 3, (200,), generator=g)}
    queries = {"h": torch.randn(120, 6, generator=g), "y": torch.randint(0, 3, (120,), generator=g)}
    queries["norm"] = queries["h"].norm(dim=1)
    mon = KNNMonitor(k=10, bucket_accuracy=True, bucket_min_count=5, backend="torch")
    res = mon.compute(bank, queries, num_classes=3)
    pred, _ = knn_predict(bank["h"], bank["y"], queries["h"], k=10, num_classes=3, backend="torch")
    correct = pred == queries["y"]
    assert res["top1"] == pytest.approx(correct.double().mean().item())
    assert res["top5"] == 1.0  # 3 classes: always in the top 5
    expected = bucket_accuracy(queries["norm"], correct, 20, 5)
    assert res["bucket_acc"] == {i: a for i, (a, _) in expected.items()}
    assert sum(res["bucket_count"].values()) <= 120 and res["bucket_count"]


def test_dedup_keeps_one_row_per_index_in_order():
    # Two ranks' shards of 5 samples with DistributedSampler padding (index 0 repeated).
    gathered = {
        "idx": torch.tensor([0, 2, 4, 1, 3, 0]),
        "v": torch.tensor([10.0, 12.0, 14.0, 11.0, 13.0, 10.0]),
    }
    out = dedup_by_index(gathered)
    assert out["idx"].tolist() == [0, 1, 2, 3, 4]
    assert out["v"].tolist() == [10.0, 11.0, 12.0, 13.0, 14.0]


class TwoRanks:
    """Stands in for a LightningModule on rank 0 of 2: ``all_gather`` stacks this rank's
    tensor with rank 1's (given), as ``LightningModule.all_gather`` does under DDP."""

    def __init__(self, rank1: dict[str, torch.Tensor]) -> None:
        self._trainer = type("T", (), {"world_size": 2})()
        self.rank1 = rank1

    def all_gather(self, data):
        n1 = len(next(iter(self.rank1.values())))
        if isinstance(data, torch.Tensor):  # the shard sizes
            return torch.stack([data, torch.tensor([n1])])
        for key, t in data.items():  # equal shapes are all_gather's requirement
            assert t.shape[0] >= n1, key
        return {
            key: torch.stack(
                [t, torch.cat([self.rank1[key], t.new_zeros(t.shape[0] - n1, *t.shape[1:])])]
            )
            for key, t in data.items()
        }


def test_gather_of_unequal_shards_pads_then_trims():
    rank0 = {"idx": torch.tensor([0, 2, 4]), "h": torch.arange(6.0).view(3, 2)}
    rank1 = {"idx": torch.tensor([1]), "h": torch.tensor([[10.0, 11.0]])}
    out = all_gather_cat(TwoRanks(rank1), rank0)
    assert out["idx"].tolist() == [0, 2, 4, 1]
    assert out["h"].tolist() == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [10.0, 11.0]]
    ordered = gather_eval(TwoRanks(rank1), rank0)
    assert ordered["idx"].tolist() == [0, 1, 2, 4]


def test_summary_of_one_sample():
    s = norm_summary(torch.tensor([2.5]))
    assert s == {
        "mean": 2.5,
        "std": 0.0,
        "q05": 2.5,
        "q25": 2.5,
        "q50": 2.5,
        "q75": 2.5,
        "q95": 2.5,
    }
