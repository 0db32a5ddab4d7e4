"""The monitors' statistics on synthetic features (paper Figs. 2c, 3 and 4 left)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from callbacks import EmbeddingNormMonitor, EvalFeatures, KNNMonitor
from callbacks._gather import all_gather_cat, dedup_by_index, gather_eval, pack_rows, unpack_rows
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

    def split(z, h, y):
        return {"z_norm": embedding_norms(z), "h_norm": embedding_norms(h), "y": y}

    splits = {
        "bank": split(bank_z, 2 * bank_z, bank_y),
        "eval": split(bank_z[:2], bank_z[:2], bank_y[:2]),
        "ood/far": split(ood_z, ood_z, torch.zeros(2, dtype=torch.long)),
    }
    res = EmbeddingNormMonitor(histogram_bins=4).compute(EvalFeatures(splits))
    assert res["class_mean"] == pytest.approx({0: 2.0, 2: 4.0}, rel=1e-6)
    assert res["class_mean_h"] == pytest.approx({0: 4.0, 2: 8.0}, rel=1e-6)
    assert res["class_count"] == {0: 3, 2: 1}
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
    queries["h_norm"] = queries["h"].norm(dim=1)
    mon = KNNMonitor(
        k=10, bucket_accuracy=True, bucket_min_count=5, backend="torch", bucket_space="h"
    )
    features = EvalFeatures({"bank": bank, "eval": queries}, num_classes=3)
    res = mon.compute(features)
    pred, _ = knn_predict(bank["h"], bank["y"], queries["h"], k=10, num_classes=3, backend="torch")
    correct = pred == queries["y"]
    assert res["top1"] == pytest.approx(correct.double().mean().item())
    assert res["top5"] == 1.0  # 3 classes: always in the top 5
    expected = bucket_accuracy(queries["h_norm"], correct, 20, 5)
    assert res["bucket_acc"] == {i: a for i, (a, _) in expected.items()}
    assert sum(res["bucket_count"].values()) <= 120 and res["bucket_count"]
    # The per-sample predictions go to the same pass's ConfidenceMonitor.
    assert torch.equal(features.shared["knn/pred"], pred)
    assert torch.equal(features.shared["knn/correct"], correct)


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
        self.trainer = type("T", (), {"world_size": 2})()
        self.rank1 = rank1

    def all_gather(self, data):
        n1 = len(next(iter(self.rank1.values())))
        if isinstance(data, torch.Tensor):  # the shard sizes
            return torch.stack([data, torch.tensor([n1])])
        # gather_eval sends a split's tensors packed as one "rows" byte tensor.
        packed = pack_rows(dict(sorted(self.rank1.items())))[0]  # keys sorted, as it does
        rank1 = {"rows": packed} if "rows" in data else self.rank1
        for key, t in data.items():  # equal shapes are all_gather's requirement
            assert t.shape[0] >= n1, key
        return {
            key: torch.stack(
                [t, torch.cat([rank1[key], t.new_zeros(t.shape[0] - n1, *t.shape[1:])])]
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
    assert ordered["h"].tolist() == [[0.0, 1.0], [10.0, 11.0], [2.0, 3.0], [4.0, 5.0]]


def test_packed_rows_round_trip_bit_for_bit():
    # One byte tensor carries a split's tensors of every dtype and shape through a gather.
    g = torch.Generator().manual_seed(0)
    tensors = {
        "h": torch.randn(5, 3, 2, generator=g),
        "z": torch.randn(5, 4, generator=g).to(torch.bfloat16),
        "x64": torch.randn(5, generator=g).double(),
        "idx": torch.tensor([4, 0, 3, 1, 2]),
        "flag": torch.tensor([True, False, True, True, False]),
    }
    tensors["h"][0, 0, 0] = float("nan")  # bits, not values: NaN and -0.0 survive too
    tensors["h"][1, 0, 0] = -0.0
    packed, layout = pack_rows(tensors)
    assert packed.dtype == torch.uint8 and packed.shape == (5, 24 + 8 + 8 + 8 + 1)
    back = unpack_rows(packed, layout)
    for key, t in tensors.items():
        assert back[key].dtype == t.dtype and back[key].shape == t.shape, key
        assert (
            torch.equal(back[key].view(torch.uint8), t.view(torch.uint8))
            if t.dtype != torch.bool
            else torch.equal(back[key], t)
        )
    # Rows move together: a gathered, reordered packed tensor unpacks row by row.
    again = unpack_rows(packed[[2, 0]], layout)
    assert again["idx"].tolist() == [3, 4] and torch.equal(again["z"], tensors["z"][[2, 0]])
    with pytest.raises(ValueError, match="rows"):
        pack_rows({"a": torch.zeros(2), "b": torch.zeros(3)})


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
