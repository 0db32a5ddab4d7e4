"""The smoke profile of the runners end to end on the real ../shared/data (tiny runs).

Table 3's CIFAR-10 Unb. row, then Tables 1, 2, S1, S2 and Figures 3/S5, 4, 5 and S6 on
CIFAR-10 with CIFAR-100 and ImageNet-100 asked for too (not in ../shared/data: their rows
read "data not available", the others run). Figure S4 (15 more runs of the same kind as
Figure 5's) is covered by the synthetic-run tests. The fits run in this process
(``--in-process``: one import of Lightning for all of them).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from fake_runs import CONFIGS

from ssl_norms import metric_names
from ssl_norms.reproduce.cli import main
from ssl_norms.reproduce.embeddings import load

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]


def _args(tmp: Path, data: Path, *names: str) -> list[str]:
    return [
        *names,
        "--profile", "smoke",
        "--configs", str(CONFIGS),
        "--runs", str(tmp / "runs"),
        "--out", str(tmp / "out"),
        "--data-dir", str(data),
        "--in-process",
        "--", "--data.init_args.cache_dir", str(tmp / "decoded"), "--wandb", "disabled",
    ]  # fmt: skip


def test_the_smoke_profile_end_to_end(shared_data: Path, tmp_path: Path, capsys) -> None:
    table3 = _args(tmp_path, shared_data, "table3")
    table3.insert(table3.index("--in-process"), "--datasets")
    table3.insert(table3.index("--in-process"), "cifar10_unbalanced")
    assert main(table3) == 0
    out = capsys.readouterr().out
    assert "table3: complete" in out

    names = ["table1", "table2", "table-s1", "table-s2", "fig3", "fig4", "fig5", "fig-s6"]
    rest = _args(tmp_path, shared_data, *names)
    where = rest.index("--in-process")
    rest[where:where] = ["--datasets", "cifar10", "cifar100", "imagenet100"]
    assert main(rest) == 1  # CIFAR-100 and ImageNet-100 are not in ../shared/data
    captured = capsys.readouterr()
    assert "the data of cifar100 is missing; its other runs are skipped" in captured.err
    assert "the data of imagenet100 is missing" in captured.err
    for name in ("fig3", "fig5", "fig-s6", "table2", "table1"):
        assert f"{name}: INCOMPLETE" in captured.out or f"{name}: complete" in captured.out

    report = (tmp_path / "out" / "REPORT.md").read_text()
    section = report.split("## Table 3")[1].split("\n## ")[0]
    for row, value in (
        ("SimCLR Default", 56.5),
        ("SimCLR GradScale", 61.3),
        ("SimSiam Cut (c = 9)", 61.7),
    ):
        line = next(x for x in section.splitlines() if x.startswith(f"| {row} |"))
        ours, paper = line.split("|")[2].strip().split(" / ")
        assert 0.0 <= float(ours) <= 100.0 and paper.startswith(f"{value:.1f} (")
    table2 = report.split("## Table 2")[1].split("\n## ")[0]
    for line in table2.splitlines():
        if line.startswith("| SimCLR") or line.startswith("| SimSiam"):
            cells = [c.strip() for c in line.split("|")[2:5]]
            assert float(cells[0].split(" / ")[0]) >= 0  # CIFAR-10: a value
            assert cells[1].startswith("data not available /") and cells[2].startswith(
                "data not available /"
            )
    assert "Data not available for cifar100: cifar100 (train split) not found" in report
    s1 = report.split("## Table S1")[1].split("\n## ")[0]
    assert s1.count("data not available") == 12

    # Figure 3: CIFAR-10 against Fashion-MNIST and the 20 CIFAR-100 images, both methods.
    with open(tmp_path / "out" / "fig3" / "fig3.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    splits = {(r["method"], r["split"]): r for r in rows}
    for method in ("simclr", "simsiam"):
        assert float(splits[method, "CIFAR-10 train"]["mean_ratio"]) == pytest.approx(1.0, abs=1e-3)
        assert int(splits[method, "CIFAR-10 test"]["n"]) == 80
        assert int(splits[method, "CIFAR-100, 20 test images (OOD)"]["n"]) == 20
        assert int(splits[method, "Fashion-MNIST test (OOD)"]["n"]) == 10_000
    for png in (
        "fig3/fig3_violins.png",
        "fig3/figS5_bars.png",
        "fig4/fig4.png",
        "fig5/fig5.png",
        "fig-s6/figS6.png",
    ):
        assert (tmp_path / "out" / png).stat().st_size > 1000, png
    fig4 = report.split("## Figure 4")[1].split("\n## ")[0]
    assert "CIFAR10N: data not available" in fig4 and "CIFAR10H: data not available" in fig4
    assert "SimCLR CIFAR-10: k-NN accuracy rises with the norm:" in fig4
    fig5 = report.split("## Figures 5 and S3")[1].split("\n## ")[0]
    assert "without weight decay the norm grows:" in fig5

    # Every column a run logged is a metric the README documents.
    runs = tmp_path / "runs" / "smoke"
    columns = set()
    for path in runs.glob("*/csv/metrics.csv"):
        with open(path, newline="") as file:
            columns |= set(next(csv.reader(file)))
    unknown = sorted(
        c for c in columns - set(metric_names.CSV_INDEX_COLUMNS) if not metric_names.is_known(c)
    )
    assert unknown == [] and any(c.startswith("knn/bucket_acc/") for c in columns)

    # The embeddings step's Table S1 pairs on a real checkpoint.
    from ssl_norms.reproduce.embeddings import main as embed

    cache = tmp_path / "pairs.npz"
    assert (
        embed(
            [
                str(runs / "simclr-cifar10-e2"),
                "--epoch",
                "2",
                "--pairs",
                "40",
                "--k",
                "5",
                "--out",
                str(cache),
            ]
        )
        == 0
    )
    _, arrays = load(cache)
    assert arrays["pairs.cos"].shape == (40,)
    assert float(arrays["pairs.rate"]) == pytest.approx(float(np.mean(arrays["pairs.cos"] < 0)))

    # A second call finds every run finished and trains nothing; it tries the missing data
    # sets again (they may have been put in place), once each.
    assert main(rest) == 1
    out = capsys.readouterr().out
    trained = [
        line.split("] ")[1].split(":")[0] for line in out.splitlines() if "epochs 0 ->" in line
    ]
    assert sorted(trained) == ["byol-cifar100-e2", "byol-imagenet100-e2"]
    assert out.count("finished earlier") == 10
