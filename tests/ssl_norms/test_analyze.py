"""``ssl-norms analyze`` on a checkpoint of a short real CIFAR-10 run (``ssl-norms fit`` with
``configs/cpu/cifar10.yaml``, shrunk) with Fashion-MNIST (28 px, greyscale) as the OOD set:
the report and every figure, the embeddings cached and reused, its numbers against
scikit-learn, and clear errors for another method, another width, an unknown OOD name and
an empty split."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ssl_norms import analyze
from ssl_norms.analyze import parse_ood
from ssl_norms.cli import main as cli_main
from ssl_norms.report import FIGURES

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(shared_data: Path, tmp_path_factory) -> Path:
    """One epoch of SimCLR, ResNet-18 at width 4, 8 images per class, Fashion-MNIST as OOD."""
    from ssl_norms.lightning_cli import run as fit

    tmp = tmp_path_factory.mktemp("analyze")
    fit(
        [
            "fit",
            "-c", str(REPO / "configs/base/simclr.yaml"),
            "-c", str(REPO / "configs/cpu/cifar10.yaml"),
            "--data.init_args.data_dir", str(shared_data / "cifar10"),
            "--data.init_args.ood", f"{{fashion_mnist: {shared_data / 'fashion_mnist'}}}",
            "--data.init_args.train_subset", "8",
            "--data.init_args.eval_subset", "8",
            "--data.init_args.batch_size", "16",
            "--data.init_args.eval_batch_size", "80",
            "--data.init_args.num_workers", "0",
            "--data.init_args.cache_dir", str(tmp / "decoded"),
            "--model.init_args.backbone_width", "4",
            "--trainer.max_epochs", "1",
            "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false",
            "--wandb", "disabled",
            "--run_dir", str(tmp / "run"),
        ]
    )  # fmt: skip
    return tmp / "run"


def analyze_args(run: Path, out: Path, *extra: str, config: Path | None = None) -> list[str]:
    return [
        "analyze",
        "-c", str(config or run / "config.yaml"),
        "--ckpt", str(run / "checkpoints" / "last.ckpt"),
        "--out", str(out),
        "--device", "cpu",
        "--bucket-min-count", "2",
        *extra,
    ]  # fmt: skip


def report_number(text: str, row: str, column: int) -> float:
    """Data column ``column`` (0 = the first after the row name) of a report table row."""
    line = next(ln for ln in text.splitlines() if ln.startswith(f"| {row} |"))
    return float(line.strip().strip("|").split("|")[column + 1])


@pytest.mark.slow
@pytest.mark.data
def test_analyze_writes_the_report_and_every_figure(run, tmp_path, capsys, monkeypatch):
    from sklearn.metrics import roc_auc_score

    out = tmp_path / "report"
    assert cli_main(analyze_args(run, out, "--ood", "fashion_mnist")) == 0
    report = (out / "report.md").read_text()
    for name in FIGURES:
        assert (out / name).read_bytes()[:8] == PNG, name
        assert f"({name})" in report, name
    assert str(out / "report.md") in capsys.readouterr().out

    cached = torch.load(out / "embeddings.pt", weights_only=True)["splits"]
    assert {k: len(v["y"]) for k, v in cached.items()} == {
        "bank": 80,
        "eval": 80,
        "ood/fashion_mnist": 80,
    }
    # The report's AUROC is scikit-learn's on the cached norms (eval split = positives).
    ev, ood = cached["eval"]["z_norm"].double(), cached["ood/fashion_mnist"]["z_norm"].double()
    labels = np.r_[np.ones(len(ev)), np.zeros(len(ood))]
    expected = roc_auc_score(labels, np.r_[ev.numpy(), ood.numpy()])
    assert report_number(report, "fashion_mnist", 0) == pytest.approx(expected, abs=5e-5)
    ratio = ev.mean().item() / cached["bank"]["z_norm"].double().mean().item()
    assert report_number(report, "eval", 2) == pytest.approx(ratio, abs=5e-5)
    assert "resized, greyscale is turned into 3 channels" in report

    # The training norms the run stored in its checkpoint are these bank norms, and the
    # inference API reads them from the same checkpoint (the class named by ssl-norms fit).
    from ssl_norms.inference import NormConfidence

    scorer = NormConfidence.from_checkpoint(run / "checkpoints" / "last.ckpt")
    torch.testing.assert_close(
        scorer.reference.float(), torch.sort(cached["bank"]["z_norm"]).values, rtol=1e-5, atol=0
    )

    # A second call reuses the embeddings: the model never runs again.
    def no_forward(*args, **kwargs):
        raise AssertionError("the embeddings were computed again")

    monkeypatch.setattr(analyze, "compute_embeddings", no_forward)
    (out / "report.md").unlink()
    assert cli_main(analyze_args(run, out, "--ood", "fashion_mnist")) == 0
    assert "reusing the embeddings" in capsys.readouterr().out
    assert (out / "report.md").read_text() == report


@pytest.mark.slow
@pytest.mark.data
def test_analyze_refuses_another_method_or_width_and_empty_splits(run, tmp_path, capsys):
    config = yaml.safe_load((run / "config.yaml").read_text())
    simsiam = {"backbone": "resnet18", "backbone_width": 4}
    other = {**config, "model": {"class_path": "ssl_norms.methods.SimSiam", "init_args": simsiam}}
    path = tmp_path / "simsiam.yaml"
    path.write_text(yaml.safe_dump(other))
    assert cli_main(analyze_args(run, tmp_path / "a", config=path)) == 1
    err = capsys.readouterr().err
    assert re.search(
        r"holds SimCLR \(backbone resnet18, backbone_width 4\), but the config builds SimSiam "
        r"\(backbone resnet18, backbone_width 4\)",
        err,
    )

    wide = yaml.safe_load((run / "config.yaml").read_text())
    wide["model"]["init_args"]["backbone_width"] = 8
    path.write_text(yaml.safe_dump(wide))
    assert cli_main(analyze_args(run, tmp_path / "b", config=path)) == 1
    err = capsys.readouterr().err
    assert "backbone_width 4" in err and "backbone_width 8" in err and "config.yaml" in err

    assert cli_main(analyze_args(run, tmp_path / "c", "--ood", "svhn")) == 1
    assert "--ood svhn=FOLDER" in capsys.readouterr().err

    # An OOD folder whose parquet holds no image: a clear error, no report.
    import pyarrow.parquet as pq

    empty = tmp_path / "empty_ood"
    empty.mkdir()
    source = Path(config["data"]["init_args"]["ood"]["fashion_mnist"])
    pq.write_table(pq.read_table(source / "test.parquet").slice(0, 0), empty / "test.parquet")
    assert cli_main(analyze_args(run, tmp_path / "d", "--ood", f"blank={empty}")) == 1
    assert "split 'ood/blank' is empty" in capsys.readouterr().err
    assert not (tmp_path / "d" / "report.md").exists()


def test_parse_ood_picks_adds_and_names_the_fix():
    configured = {"cifar100": "data", "svhn": "svhn_dir"}
    assert parse_ood(None, configured) == configured
    assert parse_ood(["svhn"], configured) == {"svhn": "svhn_dir"}
    assert parse_ood(["fashion_mnist=/x", "cifar100"], configured) == {
        "fashion_mnist": "/x",
        "cifar100": "data",
    }
    with pytest.raises(ValueError, match=r"configured: cifar100, svhn\); give its folder"):
        parse_ood(["mnist"], configured)


def test_extreme_rows_per_class():
    from ssl_norms.report import extreme_rows

    norms = torch.tensor([5.0, 1.0, 3.0, 9.0, 2.0, 7.0, 3.0])
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 0])
    assert extreme_rows(norms, labels, highest=True, per_class=2) == {0: [0, 2], 1: [3, 5]}
    assert extreme_rows(norms, labels, highest=False, per_class=3) == {0: [1, 2, 6], 1: [4, 5, 3]}


def _human_table(report: str, name: str) -> dict[str, tuple[int, float]]:
    """The rows of the report's bucket table of human label set ``name``."""
    lines = report.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| bucket") and name in ln)
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("| ["):
            break
        bucket, count, mean = (c.strip() for c in line.strip().strip("|").split("|"))
        rows[bucket] = (int(count), float(mean))
    return rows


@pytest.mark.slow
@pytest.mark.data
def test_analyze_human_labels_per_norm_bucket(run, shared_data, tmp_path, capsys, monkeypatch):
    """CIFAR-10N consensus accuracy per norm bucket of the training images, against a
    brute-force alignment written here (pixels matched image by image, the class-sorted
    parquet order undone by hand); CIFAR-10H is refused with its reason on the class-sorted
    test split; a missing folder is an error and absent files are named in the report."""
    import sys

    from scipy.stats import spearmanr

    from datamodules.cifar import load_cifar_split

    sys.path.insert(0, str(REPO / "tests" / "datamodules"))
    from dm_files import cifar10h_counts, write_cifar10n

    full = load_cifar_split("cifar10", shared_data / "cifar10", "train", None)
    sorted_labels = full.labels.numpy()
    rng = np.random.default_rng(3)
    # The files follow the original CIFAR order; the parquet copy is that order sorted by
    # class (stably), so any order with the same class counts is a consistent "original".
    clean = rng.permutation(sorted_labels)
    noisy = {f"random_label{i}": np.where(rng.random(clean.size) < 0.8, clean, (clean + i) % 10)
             for i in (1, 2, 3)}  # fmt: skip
    aggre = np.where(rng.random(clean.size) < 0.6, clean, (clean + 1) % 10)
    labels_dir = tmp_path / "labels"
    write_cifar10n(
        labels_dir / "CIFAR-10_human.pt",
        {"clean_label": clean, "aggre_label": aggre, "worse_label": noisy["random_label1"],
         **noisy},
    )  # fmt: skip
    np.save(labels_dir / "cifar10h-counts.npy", cifar10h_counts(seed=4))

    out = tmp_path / "report"
    assert cli_main(analyze_args(run, out, "--human-labels", str(labels_dir))) == 0
    report = (out / "report.md").read_text()
    assert (out / "human_labels.png").read_bytes()[:8] == PNG
    assert "(human_labels.png)" in report

    # The bank's images, found in the full split by brute force, then in the files' order.
    model, dm, _ = analyze.load_model_and_data(
        analyze.read_configs([str(run / "config.yaml")]), run / "checkpoints/last.ckpt", None
    )
    dm.setup("validate")
    bank = dm.bank_dataset.base
    original = np.argsort(clean, kind="stable")  # parquet row -> original index
    expected = []
    for image, label in zip(bank.images, bank.labels.tolist(), strict=True):
        candidates = np.flatnonzero(sorted_labels == label)
        same = (full.images[candidates] == image).flatten(1).all(1).numpy()
        row = candidates[np.flatnonzero(same)[0]]
        expected.append(float(aggre[original[row]] == clean[original[row]]))
    expected = np.array(expected)

    norms = torch.load(out / "embeddings.pt", weights_only=True)["splits"]["bank"]["z_norm"]
    norms = norms.double().numpy()
    buckets = np.minimum((norms / norms.max() * 20).astype(int), 19)
    by_hand = {
        f"[{b / 20:.2f}, {(b + 1) / 20:.2f})": (int((buckets == b).sum()),
                                                 expected[buckets == b].mean())
        for b in np.unique(buckets) if (buckets == b).sum() > 2
    }  # fmt: skip
    table = _human_table(report, "CIFAR-10N")
    assert table.keys() == by_hand.keys()
    for key, (count, mean) in by_hand.items():
        assert table[key][0] == count and table[key][1] == pytest.approx(mean, abs=5e-5), key
    rho = spearmanr(norms, expected).statistic
    line = next(ln for ln in report.splitlines() if ln.startswith("- CIFAR-10N:"))
    assert f"mean {expected.mean():.4f}" in line
    assert float(line.split("Spearman correlation with ‖z‖: ")[1].split()[0]) == pytest.approx(
        rho, abs=5e-5
    )
    assert "- CIFAR-10H: not available (CIFAR-10H rows follow the original CIFAR-10 test " in report

    # No label files in the folder: the report says what is missing and where to get it,
    # without matching the run's samples to the full splits first.
    empty = tmp_path / "no_labels"
    empty.mkdir()
    from ssl_norms import human_agreement

    def no_matching(datamodule):
        raise AssertionError("the samples were matched although no label file exists")

    monkeypatch.setattr(human_agreement, "human_label_rows", no_matching)
    assert cli_main(analyze_args(run, tmp_path / "r2", "--human-labels", str(empty))) == 0
    report = (tmp_path / "r2" / "report.md").read_text()
    line = next(ln for ln in report.splitlines() if ln.startswith("- CIFAR-10N:"))
    assert "not available" in line and "CIFAR-10_human.pt" in line
    assert not (tmp_path / "r2" / "human_labels.png").exists()

    # A folder that does not exist: an error before anything is computed.
    missing = tmp_path / "nowhere"
    assert cli_main(analyze_args(run, tmp_path / "r3", "--human-labels", str(missing))) == 1
    assert f"--human-labels {missing}: no such folder" in capsys.readouterr().err
    assert not (tmp_path / "r3").exists()
