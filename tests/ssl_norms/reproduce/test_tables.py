"""The k-NN tables (Tables 1, 2, 3, S2) collected from synthetic run folders."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from fake_runs import context, fail, finish, knn_run, write_metrics

from ssl_norms.reproduce import paper
from ssl_norms.reproduce.runs import RunSpec
from ssl_norms.reproduce.tables import Table1, Table2, Table3, TableS2, cifar_class_sizes


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_table3_every_cell_beside_the_paper_and_failures_read_as_such(tmp_path: Path) -> None:
    ctx = context(tmp_path, datasets=("cifar10_unbalanced", "cifar100_unbalanced"))
    table = Table3()
    cells = {(c.row, c.dataset): c for c in table.cells(ctx)}
    assert len(cells) == 15
    ours = {
        "SimCLR Default": 0.52,
        "SimCLR Cut (c = 3)": 0.571,
        "SimSiam Default": 0.40,
        "SimSiam Cut (c = 9)": 0.55,
    }
    for row, value in ours.items():
        spec = cells[(row, "cifar10_unbalanced")].spec
        assert spec.schedule_epochs == 500
        knn_run(ctx.run_dir(spec), {10: 0.1, 500: value})
    # GradScale logged a k-NN value at epoch 10 and then diverged: never shown as a result.
    gradscale = ctx.run_dir(cells[("SimCLR GradScale", "cifar10_unbalanced")].spec)
    knn_run(gradscale, {10: 0.232}, epochs=0)
    fail(gradscale, "diverged", "non-finite gradients at global step 151 (epoch 1)", step=151)
    for row in ours:
        fail(
            ctx.run_dir(cells[(row, "cifar100_unbalanced")].spec),
            "data",
            "cifar100 (train split) not found in /data.\nPut the files ...",
        )
    # One CIFAR-100 cell interrupted (a checkpoint, no progress) rather than missing data.
    interrupted = ctx.run_dir(cells[("SimCLR GradScale", "cifar100_unbalanced")].spec)
    (interrupted / "checkpoints").mkdir(parents=True)
    (interrupted / "checkpoints" / "last.ckpt").write_bytes(b"x")

    section = table.collect(ctx)
    text = "\n".join(section.body)
    assert (
        "| SimCLR Default | 52.0 / 56.5 (-4.5) | data not available / 24.3 | not in the paper profile / 42.6 |"
        in text
    )
    assert "| SimCLR Cut (c = 3) | 57.1 / 61.1 (-4.0) |" in text
    assert (
        "| SimCLR GradScale | diverged at step 151 / 61.3 | interrupted (epoch 0 of 500) / 29.1 |"
        in text
    )
    assert "23.2" not in text
    assert section.notes == [
        "Data not available for cifar100_unbalanced: cifar100 (train split) not found in /data."
    ]
    assert section.in_scope == 10 and not section.complete
    assert sorted(section.missing) == sorted(
        [f"{row} / CIFAR-100 Unb." for row in [*ours, "SimCLR GradScale"]]
    )
    # Readings from the numbers: cut - default = +5.1 (paper +4.6), SimSiam +15.0 (+14.7).
    assert (
        "SimCLR Cut (c = 3) vs Default on CIFAR-10 Unb.: +5.1 points (paper +4.6); same direction as the paper: yes"
        in section.readings
    )
    assert (
        "SimSiam Cut (c = 9) vs Default on CIFAR-10 Unb.: +15.0 points (paper +14.7); same direction as the paper: yes"
        in section.readings
    )
    assert "Diverged: SimCLR GradScale on CIFAR-10 Unb. (diverged at step 151)" in section.readings
    rows = _csv(tmp_path / "out" / "table3" / "table3.csv")
    (cut,) = [
        r for r in rows if r["row"] == "SimCLR Cut (c = 3)" and r["dataset"] == "cifar10_unbalanced"
    ]
    assert (float(cut["ours"]), float(cut["paper"]), float(cut["difference"])) == (57.1, 61.1, -4.0)
    assert cut["epoch"] == "500" and cut["status"] == "ok"
    (gs,) = [
        r for r in rows if r["row"] == "SimCLR GradScale" and r["dataset"] == "cifar10_unbalanced"
    ]
    assert (gs["ours"], gs["status"], gs["detail"]) == ("", "diverged", "diverged at step 151")
    assert (tmp_path / "out" / "table3" / "table3.md").read_text().startswith("## Table 3")


def test_a_complete_table_counts_a_divergence_as_a_result(tmp_path: Path) -> None:
    ctx = context(tmp_path, datasets=("cifar10",))
    table = Table2()
    for cell in table.cells(ctx):
        if cell.dataset != "cifar10":
            continue
        if cell.row == "SimCLR GradScale":
            fail(ctx.run_dir(cell.spec), "diverged", "at global step 9", step=9)
        else:
            knn_run(ctx.run_dir(cell.spec), {500: 0.8})
    section = table.collect(ctx)
    assert section.complete and section.in_scope == 5


def test_frequent_classes_reading_uses_the_runs_class_sizes(tmp_path: Path) -> None:
    ctx = context(tmp_path, datasets=("cifar10_unbalanced",))
    table = Table3()
    (cell,) = [
        c
        for c in table.cells(ctx)
        if c.row == "SimCLR Default" and c.dataset == "cifar10_unbalanced"
    ]
    run_dir = ctx.run_dir(cell.spec)
    (run_dir).mkdir(parents=True)
    (run_dir / "config.yaml").write_text(
        "data:\n  init_args:\n    imbalance_factor: 1.5\n    train_subset: null\n"
    )
    assert cifar_class_sizes(run_dir, "cifar10_unbalanced") == [
        5000,
        3333,
        2222,
        1481,
        987,
        658,
        438,
        292,
        195,
        130,
    ]
    # Class means ordered as the sizes except classes 8 and 9 swapped: Spearman 1 - 6*2/990.
    means = {f"norm/class_mean/{c}": 20.0 - c for c in range(10)}
    means["norm/class_mean/8"], means["norm/class_mean/9"] = 11.0, 12.0
    write_metrics(run_dir, [{"epoch": 499, "step": 5, "knn/top1": 0.5, **means}])
    finish(run_dir, 500)
    readings = table.collect(ctx).readings
    expected = 1 - 6 * 2 / (10 * (100 - 1))
    assert (
        f"Frequent classes have larger norms (SimCLR Default, CIFAR-10 Unb.): yes (Spearman {expected:.2f} between class size and mean ||z||)"
        in readings
    )
    # At a subset that balances the classes there is nothing to read.
    (run_dir / "config.yaml").write_text("data:\n  init_args:\n    train_subset: 8\n")
    assert not any("Frequent" in r for r in table.collect(ctx).readings)


def test_table1_reads_epoch_100_of_the_500_epoch_runs_and_shares_table2s(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    cells = Table1().cells(ctx)
    assert len(cells) == 32 and {c.epoch for c in cells} == {100}
    assert {c.spec.schedule_epochs for c in cells} == {500}
    table2 = {c.spec.slug for c in Table2().cells(ctx)}
    shared = [c for c in cells if c.spec.slug in table2]
    assert sorted((c.table, c.row, c.column) for c in shared) == [
        ("SimCLR on CIFAR-100", "c = 1", "wd 1e-6 (default)"),
        ("SimSiam on ImageNet-100", "c = 1", "wd 5e-4 (default)"),
    ]
    for cell in cells:
        c = int(cell.row.split("= ")[1])
        # Each run logs a value at epoch 100 and a different one later: epoch 100's is read.
        knn_run(ctx.run_dir(cell.spec), {100: (cell.paper + c / 10) / 100, 500: 0.99})
    section = Table1().collect(ctx)
    assert section.complete and section.in_scope == 32
    text = "\n".join(section.body)
    assert (
        "| c = 8 | 37.9 / 37.1 (+0.8) | 37.6 / 36.8 (+0.8) | 38.7 / 37.9 (+0.8) | 38.1 / 37.3 (+0.8) |"
        in text
    )
    assert (
        "SimSiam on ImageNet-100, wd 1e-3: cut-init (best c = 8, 54.0) beats c = 1 (44.8): yes"
        in section.readings
    )


def test_table_s2_reads_epochs_100_and_500_of_one_run_per_cell(tmp_path: Path) -> None:
    for profile, shared_column in (("paper", "batch 1024"), ("cpu", "batch 256")):
        ctx = context(tmp_path / profile, profile=profile, datasets=("cifar100",))
        cells = TableS2().cells(ctx)
        assert len(cells) == 12 and len({c.spec.slug for c in cells}) == 6
        schedule = ctx.profile.schedule("table", "cifar100")
        late = {c.epoch for c in cells if c.row.startswith("epoch 500")}
        early = {c.epoch for c in cells if c.row.startswith("epoch 100")}
        assert late == {schedule} and early == {ctx.profile.scaled(100, 500, schedule)}
        table2 = {c.spec.slug: c.row for c in Table2().cells(ctx) if c.dataset == "cifar100"}
        shared = {c.column for c in cells if c.spec.slug in table2}
        assert shared == {shared_column}, profile
    ctx = context(tmp_path / "paper", datasets=("cifar100",))
    for cell in TableS2().cells(ctx):
        batch = int(cell.column.split()[1])
        if cell.row.startswith("epoch 100"):
            knn_run(
                ctx.run_dir(cell.spec),
                {100: batch / 10_000, 500: batch / 2000 + 0.01 * ("Cut" in cell.row)},
            )
    section = TableS2().collect(ctx)
    text = "\n".join(section.body)
    assert (
        "| epoch 100: Default | 2.6 / 46.1 (-43.5) | 5.1 / 41.2 (-36.1) | 10.2 / 32.6 (-22.4) |"
        in text
    )
    assert (
        "| epoch 500: Cut (c = 9) | 13.8 / 59.4 (-45.6) | 26.6 / 58.9 (-32.3) | 52.2 / 61.5 (-9.3) |"
        in text
    )
    assert section.complete
    assert (
        "batch 512, epoch 500: cut - default = +1.0 (paper -1.5); same direction: no"
        in section.readings
    )


@pytest.mark.parametrize("profile", ["paper", "cpu", "smoke"])
def test_every_cell_of_every_table_composes_existing_configs(profile: str, tmp_path: Path) -> None:
    from ssl_norms.reproduce.runs import FitOptions, fresh_command

    ctx = context(tmp_path, profile=profile)
    options = FitOptions(
        ctx.configs_dir,
        lambda spec: ctx.profile.configs_for(spec.method, spec.dataset, spec.overrides),
    )
    for table in (Table1(), Table2(), Table3(), TableS2()):
        for cell in table.cells(ctx):
            argv = fresh_command(cell.spec, tmp_path / "r", cell.epoch, options)
            files = [argv[i + 1] for i, a in enumerate(argv) if a == "-c"]
            assert all(Path(f).is_file() for f in files), files
            assert 1 <= cell.epoch <= cell.spec.schedule_epochs
            assert cell.paper is not None


def test_paper_values_are_the_published_ones() -> None:
    assert paper.TABLE3[("simclr", "Cut (c = 3)")]["flowers_unbalanced"] == 61.6
    assert paper.TABLE2[("simsiam", "Cut (c = 9)")]["imagenet100"] == 67.2
    assert paper.TABLE1_SIMSIAM[(8, "1e-3")] == 53.2 and len(paper.TABLE1_SIMCLR) == 16
    assert paper.TABLE_S1[("byol", "imagenet100")] == (28.0, 1.0)
    assert paper.TABLE_S2[(100, "Default", 1024)] == 32.6 and len(paper.TABLE_S2) == 12
    assert RunSpec("simclr", "cifar10", 500).slug == "simclr-cifar10-e500"
