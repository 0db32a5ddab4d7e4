"""Figures 5/S3 and S4 from synthetic training logs."""

from __future__ import annotations

import csv
from pathlib import Path

from fake_runs import context, fail, finish, write_metrics

from ssl_norms.reproduce.curves import Fig5, FigS4, log_stops


def _curve_run(run_dir: Path, norms: dict[int, float], knn: dict[int, float]) -> None:
    """Two per-step rows per epoch (their mean is the epoch's norm) and a k-NN per epoch."""
    rows = []
    for epoch, norm in norms.items():
        for k, delta in enumerate((-0.5, 0.5)):
            rows.append(
                {
                    "epoch": epoch - 1,
                    "step": 10 * epoch + k,
                    "norm/z_mean": norm + delta,
                    "lr/effective": 0.1 / norm,
                }
            )
        if epoch in knn:
            rows.append({"epoch": epoch - 1, "step": 10 * epoch + 2, "knn/top1": knn[epoch]})
    write_metrics(run_dir, rows)
    finish(run_dir, max(norms))


def test_log_stops() -> None:
    assert log_stops(256) == (1, 2, 4, 8, 16, 32, 64, 128)
    assert log_stops(8) == (1, 2, 4) and log_stops(1) == ()


def test_fig5_stops_on_a_log_scale_only_where_the_configs_do_not_evaluate_every_epoch(
    tmp_path,
) -> None:
    paper = Fig5().requests(context(tmp_path / "p"))
    assert len(paper) == 12 and {r.until for r in paper} == {256}
    assert {r.stops for r in paper} == {(1, 2, 4, 8, 16, 32, 64, 128)}
    cpu = Fig5().requests(context(tmp_path / "c", profile="cpu"))
    assert len(cpu) == 6 and {r.stops for r in cpu} == {()} and {r.until for r in cpu} == {8}
    # SimSiam at its default weight decay shares the run of Figures 3 and 4 in the cpu profile.
    assert "simsiam-cifar10-e8" in {r.spec.slug for r in cpu}


def test_fig5_curves_and_readings(tmp_path: Path) -> None:
    ctx = context(tmp_path, profile="cpu")
    runs = {(p, label): spec for f, p, label, spec in Fig5().runs(ctx) if f.startswith("Figure 5")}
    epochs = range(1, 9)
    _curve_run(
        ctx.run_dir(runs["SimCLR", "wd 0"]), {e: 2.0 * e for e in epochs}, {e: 0.3 for e in epochs}
    )
    _curve_run(
        ctx.run_dir(runs["SimCLR", "wd 1e-5"]), {e: 3.0 for e in epochs}, {e: 0.4 for e in epochs}
    )
    _curve_run(
        ctx.run_dir(runs["SimCLR", "wd 5e-2"]),
        {e: 2.0 / e for e in epochs},
        {e: 0.1 for e in epochs},
    )
    _curve_run(
        ctx.run_dir(runs["SimSiam", "wd 0"]), {e: 5.0 for e in epochs}, {e: 0.2 for e in epochs}
    )
    fail(ctx.run_dir(runs["SimSiam", "wd 5e-2"]), "diverged", "at global step 40", step=40)
    section = Fig5().collect(ctx)
    assert (
        "Figure 5 (CIFAR-10), SimCLR: without weight decay the norm grows: yes (||z|| 2 at epoch "
        "1 -> 16 at epoch 8)" in section.readings
    )
    assert (
        "Figure 5 (CIFAR-10), SimCLR: weight decay 5e-2 ends with smaller norms than 0: yes (0.25 vs 16)"
        in section.readings
    )
    assert (
        "Figure 5 (CIFAR-10), SimCLR: the paper's moderate wd 1e-5 gives the best final k-NN: "
        "yes (wd 0 30.0, wd 1e-5 40.0, wd 5e-2 10.0)" in section.readings
    )
    assert (
        "Figure 5 (CIFAR-10), SimSiam: without weight decay the norm grows: no (||z|| 5 at epoch 1 -> 5 at epoch 8)"
        in section.readings
    )
    text = "\n".join(section.body)
    assert "| Figure 5 (CIFAR-10) | SimSiam | wd 5e-2 | - | - | diverged at step 40 |" in text
    assert "| Figure 5 (CIFAR-10) | SimCLR | wd 0 | 2 | 16 | 30.0 |" in text
    assert section.missing == ["Figure 5 (CIFAR-10) SimSiam wd 5e-4 (not run)"]
    assert (tmp_path / "out" / "fig5" / "fig5.png").stat().st_size > 1000
    with open(tmp_path / "out" / "fig5" / "fig5.csv", newline="") as file:
        rows = {(r["panel"], r["curve"]): r for r in csv.DictReader(file)}
    assert float(rows["SimCLR", "wd 0"]["norm_epoch4"]) == 8.0
    assert float(rows["SimCLR", "wd 0"]["knn_epoch8"]) == 30.0


def test_fig_s4_reads_the_cut_constants(tmp_path: Path) -> None:
    ctx = context(tmp_path, profile="cpu", datasets=("cifar10",))
    runs = FigS4().runs(ctx)
    assert len(runs) == 15
    slugs = {label: spec.slug for _, panel, label, spec in runs if panel == "SimCLR"}
    assert (
        slugs["c = 1"] == "simclr-cifar10-wd_5e-4-e8"
        and slugs["c = 0.5"] == "simclr-cifar10-wd_5e-4-c0.5-e8"
    )
    assert {
        spec.slug for _, panel, label, spec in runs if label == "c = 1" and panel != "SimCLR"
    } == {
        "simsiam-cifar10-e8",
        "byol-cifar10-e8",
    }
    for _, panel, label, spec in runs:
        c = float(label.split("= ")[1])
        if panel == "SimCLR":
            _curve_run(ctx.run_dir(spec), {1: 4.0 / c, 8: 4.0 / c}, {8: 0.3 + 0.01 * c})
    section = FigS4().collect(ctx)
    assert (
        "SimCLR: a larger cut constant starts with smaller norms: yes (first-epoch ||z||: "
        "c 0.5: 8, c 1: 4, c 2: 2, c 4: 1, c 8: 0.5)" in section.readings
    )
    assert (
        "SimCLR: cut-init (best c = 8, 38.0) beats c = 1 (31.0) at the last epoch: yes"
        in section.readings
    )
    assert len(section.missing) == 10
