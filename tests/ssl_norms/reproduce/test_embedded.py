"""Table S1 and Figures 3, 4 and S6 from synthetic embeddings caches; the embeddings step's
pair cosines and row matching against hand-computed examples."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_runs import REPO, context, fail, finish, write_cache

from ssl_norms.reproduce.embedded import Fig3, Fig4, FigS6, TableS1, default_spec
from ssl_norms.reproduce.embeddings import pair_cosines

sys.path.insert(0, str(REPO / "tests" / "datamodules"))
from dm_files import cifar10h_counts, cifar10n_arrays, write_cifar10n  # noqa: E402

# ------------------------------------------------------------------ Table S1


class Identity(torch.nn.Module):
    """``embed`` returns the view itself; a BatchNorm whose statistics a train-mode pass moves."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = torch.nn.BatchNorm1d(2)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        self.bn(x)  # updates the running statistics in training mode
        return x


def test_the_angle_rate_of_positive_pairs_against_a_hand_computed_example() -> None:
    from ssl_norms.health import opposite_halves_rate

    v1 = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 2.0], [3.0, 1.0]])
    v2 = torch.tensor([[1.0, 1.0], [-1.0, 0.1], [1.0, 0.0], [-2.0, -1.0], [-1.0, 2.0]])
    # dot products: 1 (45 deg), -1 (obtuse), 0 (exactly pi/2: not counted), -4 (obtuse),
    # -1 (obtuse): 3 of 5 pairs beyond pi/2.
    loader = [([v1[:3], v2[:3]], None, None), ([v1[3:], v2[3:]], None, None)]
    model = Identity().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    z1, z2 = pair_cosines(model, loader, torch.device("cpu"))
    assert torch.equal(z1, v1) and torch.equal(z2, v2)
    assert opposite_halves_rate(z1, z2) == pytest.approx(3 / 5)
    assert not model.training
    for key, value in model.state_dict().items():  # BatchNorm statistics put back
        assert torch.equal(value, before[key]), key


def test_table_s1_reads_the_rate_of_each_kept_checkpoint(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    runner = TableS1()
    requests = {r.spec.slug: r for r in runner.requests(ctx)}
    assert len(requests) == 6
    simclr = default_spec(ctx, "simclr", "cifar100")
    assert requests[simclr.slug].until == 16 and requests[simclr.slug].keep == (1, 16)
    assert requests[simclr.slug].embed == (1, 16) and requests[simclr.slug].pairs == 10_000
    write_cache(ctx.run_dir(simclr), 1, {}, {"pairs.rate": np.float64(0.125)})
    write_cache(ctx.run_dir(simclr), 16, {}, {"pairs.rate": np.float64(0.01)})
    byol = default_spec(ctx, "byol", "imagenet100")
    fail(ctx.run_dir(byol), "data", "imagenet100 not found in data")
    section = runner.collect(ctx)
    text = "\n".join(section.body)
    assert "| SimCLR | CIFAR-100 | 12.5 / 11.0 (+1.5) | 1.0 / 1.0 (+0.0) |" in text
    assert "| BYOL | ImageNet-100 | data not available / 28.0 | data not available / 1.0 |" in text
    assert (
        "SimCLR on CIFAR-100: the rate falls from epoch 1 to 16: yes (12.5% -> 1.0%)"
        in section.readings
    )
    assert section.in_scope == 12 and len(section.missing) == 10


# ------------------------------------------------------------------ Figure 3


def test_fig3_norms_per_split_over_the_training_mean(tmp_path: Path) -> None:
    ctx = context(tmp_path, profile="cpu")
    runner = Fig3()
    requests = runner.requests(ctx)
    assert [r.spec.slug for r in requests] == ["simclr-cifar10-e8", "simsiam-cifar10-e8"]
    assert requests[0].extra == (
        "Fashion-MNIST test (OOD)=ood:test:../shared/data/fashion_mnist",
        "CIFAR-100, 20 test images (OOD)=ood:test:../shared/data/cifar100",
    )
    meta = {
        "splits": {"bank": "train", "eval": "test", "extra0": "Fashion-MNIST test (OOD)"},
        "missing": {
            "CIFAR-100, 20 test images (OOD)": "out-of-distribution set 'cifar100' not found in /x"
        },
    }
    arrays = {
        "bank.z_norm": np.array([1.0, 3.0], dtype=np.float32),  # mean 2
        "eval.z_norm": np.array([1.5, 2.3], dtype=np.float32),  # 0.95 of it
        "extra0.z_norm": np.array([0.5, 1.5, 1.0], dtype=np.float32),  # 0.5 of it
    }
    write_cache(ctx.run_dir(requests[0].spec), 8, meta, arrays)
    finish(ctx.run_dir(requests[0].spec), 8)
    section = runner.collect(ctx)
    text = "\n".join(section.body)
    assert "| SimCLR on CIFAR-10 | CIFAR-10 test | 2 | 0.950 | 0.950 |" in text
    assert "| SimCLR on CIFAR-10 | Fashion-MNIST test (OOD) | 3 | 0.500 | 0.500 |" in text
    assert (
        "SimCLR, trained on CIFAR-10: Fashion-MNIST test (OOD) has smaller norms than the "
        "test split: yes (mean ratio 0.50 against 0.95)" in section.readings
    )
    assert section.notes == [
        "CIFAR-100, 20 test images (OOD): data not available (out-of-distribution set 'cifar100' not found in /x)"
    ]
    assert (tmp_path / "out" / "fig3" / "fig3_violins.png").stat().st_size > 1000
    assert (tmp_path / "out" / "fig3" / "figS5_bars.png").is_file()
    assert section.missing == ["SimSiam, trained on CIFAR-10 (not run)"]


# ------------------------------------------------------------------ Figure 4


def _bucket_means(norms: np.ndarray, values: np.ndarray, min_count: int) -> dict[int, float]:
    """The paper's buckets, by hand: floor(20 * norm / max), the maximum in bucket 19."""
    buckets = np.minimum((norms / norms.max() * 20).astype(int), 19)
    return {
        int(b): float(values[buckets == b].mean())
        for b in np.unique(buckets)
        if (buckets == b).sum() > min_count
    }


def test_fig4_buckets_and_human_labels_in_their_published_format(tmp_path: Path) -> None:
    ctx = context(tmp_path, profile="cpu", human_labels=str(tmp_path / "labels"))
    rng = np.random.default_rng(0)
    arrays10n = cifar10n_arrays(seed=1)
    write_cifar10n(tmp_path / "labels" / "CIFAR-10_human.pt", arrays10n)
    np.save(tmp_path / "labels" / "cifar10h-counts.npy", cifar10h_counts(seed=2))
    clean = arrays10n["clean_label"]
    # The parquet layout: the training split sorted by class, then by original index.
    order = np.argsort(clean, kind="stable")
    n = 3000
    source = rng.choice(50_000, n, replace=False)
    consensus_ok = (arrays10n["aggre_label"] == clean)[order][source].astype(float)
    bank_norm = (1.0 + consensus_ok + rng.random(n)).astype(np.float32)
    y = rng.integers(0, 10, 2000)
    eval_norm = rng.random(2000).astype(np.float32) + 0.1
    pred = np.where(
        rng.random(2000) < eval_norm, y, (y + 1) % 10
    )  # right more often at large norms
    spec = default_spec(ctx, "simclr", "cifar10")
    write_cache(
        ctx.run_dir(spec),
        8,
        {"splits": {"bank": "train", "eval": "test"}},
        {
            "bank.z_norm": bank_norm,
            "eval.z_norm": eval_norm,
            "eval.y": y,
            "eval.knn_pred": pred,
            "bank.source_index": source,
            "eval.source_index": np.arange(2000),
            "train_full_labels": clean[order],
            "test_full_labels": np.sort(rng.integers(0, 10, 10_000)),  # class-sorted copy
        },
    )
    finish(ctx.run_dir(spec), 8)
    section = Fig4().collect(ctx)
    rows = __import__("csv").DictReader(open(tmp_path / "out" / "fig4" / "fig4.csv"))
    by_panel: dict[str, dict[int, float]] = {}
    for row in rows:
        if row["run"] == "SimCLR CIFAR-10":
            by_panel.setdefault(row["panel"], {})[int(row["bucket"])] = float(row["mean"])
    correct = (pred == y).astype(float)
    expected_left = _bucket_means(eval_norm.astype(np.float64), correct, 50)
    expected_middle = _bucket_means(bank_norm.astype(np.float64), consensus_ok, 50)
    assert by_panel["left"] == pytest.approx(
        {k: round(v, 4) for k, v in expected_left.items()}, abs=1e-4
    )
    assert by_panel["middle"] == pytest.approx(
        {k: round(v, 4) for k, v in expected_middle.items()}, abs=1e-4
    )
    assert "right" not in by_panel
    assert any(
        r.startswith("SimCLR CIFAR-10: k-NN accuracy rises with the norm: yes")
        for r in section.readings
    )
    assert any(
        r.startswith(
            "SimCLR CIFAR-10 (CIFAR10N): consensus label accuracy rises with the norm: yes"
        )
        for r in section.readings
    )
    assert section.notes == [
        "CIFAR10H: data not available (CIFAR-10H rows follow the original CIFAR-10 test order, "
        "which a copy sorted by class (the HF parquet files) does not keep: use the torchvision "
        "files (cifar-10-batches-py))"
    ]
    assert (tmp_path / "out" / "fig4" / "fig4.png").stat().st_size > 1000
    assert section.missing == ["SimSiam CIFAR-10 (not run)"]


def test_fig4_without_label_files_says_data_not_available(tmp_path: Path) -> None:
    ctx = context(tmp_path, profile="cpu", human_labels=str(tmp_path / "none"))
    spec = default_spec(ctx, "simclr", "cifar10")
    y = np.arange(200) % 10
    write_cache(
        ctx.run_dir(spec),
        8,
        {},
        {
            "bank.z_norm": np.ones(10, dtype=np.float32),
            "eval.z_norm": np.linspace(0.1, 1, 200).astype(np.float32),
            "eval.y": y,
            "eval.knn_pred": y,
            "bank.source_index": np.arange(10),
            "eval.source_index": np.arange(200),
            "train_full_labels": np.arange(50_000) % 10,
            "test_full_labels": np.arange(10_000) % 10,
        },
    )
    section = Fig4().collect(ctx)
    assert [n.split(":")[0] for n in section.notes] == ["CIFAR10H", "CIFAR10N"]
    assert all("not found" in n and "data not available" in n for n in section.notes)


# ------------------------------------------------------------------ Figure S6


def test_fig_s6_draws_the_extreme_images(tmp_path: Path) -> None:
    ctx = context(tmp_path, profile="cpu")
    spec = default_spec(ctx, "simclr", "cifar10")
    assert FigS6().requests(ctx)[0].extremes == 10
    images = np.random.default_rng(0).integers(0, 256, (10, 10, 3, 32, 32), dtype=np.uint8)
    write_cache(
        ctx.run_dir(spec),
        8,
        {"class_names": [f"class {c}" for c in range(10)]},
        {"extremes.high": images, "extremes.low": images[:, ::-1]},
    )
    section = FigS6().collect(ctx)
    assert section.complete and section.in_scope == 1
    assert (tmp_path / "out" / "fig-s6" / "figS6.png").stat().st_size > 10_000
