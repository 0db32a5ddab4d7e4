"""``ssl-norms reproduce``: arguments, dry runs, missing data, exit status and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_runs import CONFIGS, fail, knn_run

from ssl_norms.reproduce import runs
from ssl_norms.reproduce.cli import RUNNERS, main

BASE = ["--configs", str(CONFIGS)]


def _args(tmp: Path, *more: str) -> list[str]:
    return [*more, *BASE, "--runs", str(tmp / "runs"), "--out", str(tmp / "out")]


def test_every_result_of_the_paper_has_a_runner() -> None:
    assert list(RUNNERS) == [
        "table1", "table2", "table3", "table-s1", "table-s2", "fig3", "fig4", "fig5", "fig-s4", "fig-s6",
    ]  # fmt: skip


def test_bad_arguments_are_clear_errors(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(_args(tmp_path, "table7"))
    assert info.value.code == 2
    assert "unknown result(s) ['table7']; choose from" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(_args(tmp_path, "table3", "--datasets", "cifar11"))
    assert "unknown data set(s) ['cifar11']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["table3", "--configs", str(tmp_path)])
    assert "no configs folder at" in capsys.readouterr().err


def test_dry_run_prints_every_fit_with_devices_nodes_and_data_dir(tmp_path: Path, capsys) -> None:
    code = main(
        _args(tmp_path, "all", "--dry-run", "--devices", "4", "--nodes", "2", "--data-dir", "/d")
        + ["--", "--trainer.precision", "16-mixed"]
    )
    assert code == 0
    out = capsys.readouterr().out
    fits = [line for line in out.splitlines() if "ssl-norms fit" in line]
    # The distinct runs of the paper profile: Tables 2 and 3 (15 + 15), Table 1 (32, two of
    # them Table 2's), Table S1 (BYOL's 2; SimCLR's and SimSiam's are Table 2's), Table S2 (6,
    # two of them Table 2's), Figure 5/S3 (12) and Figure S4 (15, one of them Figure 5's).
    slugs = {line.split("] ")[1].split(":")[0] for line in fits}
    assert len(slugs) == 15 + 15 + 30 + 2 + 4 + 12 + 14
    assert all(
        "--trainer.devices 4 --trainer.num_nodes 2 --trainer.strategy ddp --trainer.precision 16-mixed"
        in f
        and "--data.init_args.data_dir /d" in f
        for f in fits
    )
    # Table 2's SimCLR CIFAR-100 run stops where Tables S1 and 1 read it.
    chain = [f for f in fits if "] simclr-cifar100-e500:" in f]
    assert [f.split("epochs ")[1].split(":")[0] for f in chain] == [
        "0 -> 1",
        "1 -> 16",
        "16 -> 100",
        "100 -> 500",
    ]
    assert "--ckpt_path" in chain[1] and "--ckpt_path" not in chain[0]
    assert (
        "embeddings of epoch 500" in out
        and "--extremes 10" not in out.split("simclr-cifar100-e500")[1].split("\n[")[0]
    )
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


def test_a_missing_data_set_reads_data_not_available_and_the_other_rows_run(
    tmp_path, monkeypatch, capsys
) -> None:
    calls: list[list[str]] = []
    missing = {"cifar100_unbalanced"}

    def fit(argv, in_process=False):
        calls.append(argv)
        run_dir = Path(argv[argv.index("--run_dir") + 1])
        if any(d in run_dir.name for d in missing):
            return 1, {
                "type": "FileNotFoundError",
                "message": "cifar100 (train split) not found in /d.\nPut it there",
            }
        epochs = int(argv[argv.index("--trainer.max_epochs") + 1])
        knn_run(run_dir, {epochs: 0.5}, epochs=0)
        return 0, None

    monkeypatch.setattr(runs, "run_fit", fit)
    args = _args(tmp_path, "table3", "--datasets", "cifar10_unbalanced", "cifar100_unbalanced")
    assert main(args) == 1  # incomplete: a column has no data
    captured = capsys.readouterr()
    assert len(calls) == 6  # five cells on CIFAR-10 Unb., one attempt on CIFAR-100 Unb.
    assert captured.out.count("skipped, the data of cifar100_unbalanced is missing") == 4
    assert "the data of cifar100_unbalanced is missing; its other runs are skipped" in captured.err
    assert "table3: INCOMPLETE (5 missing" in captured.out
    report = (tmp_path / "out" / "REPORT.md").read_text()
    assert (
        "| SimSiam Default | 50.0 / 47.0 (+3.0) | data not available / 21.6 | not in the paper profile / 22.5 |"
        in report
    )
    assert (
        "> Data not available for cifar100_unbalanced: cifar100 (train split) not found in /d."
        in report
    )
    failure = json.loads(
        (
            tmp_path / "runs" / "paper" / "simclr-cifar100_unbalanced-e500" / "failure.json"
        ).read_text()
    )
    assert failure["kind"] == "data"
    # Once the data is there, a rerun runs those cells; the finished ones are skipped.
    calls.clear()
    missing.clear()
    assert main(args) == 0
    assert len(calls) == 5 and all(
        "cifar100_unbalanced" in c[c.index("--run_dir") + 1] for c in calls
    )


def test_the_report_and_the_exit_status(tmp_path: Path, capsys) -> None:
    from fake_runs import context

    from ssl_norms.reproduce.tables import Table3

    ctx = context(tmp_path, profile="cpu")
    for cell in Table3().cells(ctx):
        if cell.dataset == "cifar10_unbalanced":
            if cell.row == "SimCLR GradScale":
                fail(ctx.run_dir(cell.spec), "diverged", "at global step 151", step=151)
            else:
                knn_run(ctx.run_dir(cell.spec), {5: 0.3})
    args = _args(tmp_path, "table3", "--profile", "cpu", "--collect-only")
    assert main(args) == 0  # the cpu profile's Table 3 row is complete (a divergence is a result)
    out = capsys.readouterr().out
    assert "table3: complete" in out
    report = (tmp_path / "out" / "REPORT.md").read_text()
    assert "- **Profile**: `cpu`:" in report and "- **Commit**: `" in report
    assert "re-encoded as JPEG" in report and "partial (90 of 102 classes" in report
    assert "squared the learning rate" in report
    assert "| SimCLR GradScale | diverged at step 151 / 61.3 |" in report
    for runner in RUNNERS.values():
        assert f"## {runner.title}" in report
    assert "This profile does not run this result" in report  # e.g. Table 1 at the cpu size
    assert "At the `cpu` profile the cells read epoch 5 of 5" in report
    # Another result of the profile with nothing run yet: exit 1 and what is missing.
    assert main(_args(tmp_path, "fig5", "--profile", "cpu", "--collect-only")) == 1
    assert "fig5: INCOMPLETE (6 missing" in capsys.readouterr().out
    assert main(_args(tmp_path, "report", "--profile", "cpu")) == 1


@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
def test_the_cli_records_its_error_for_the_runner(tmp_path: Path, monkeypatch) -> None:
    from ssl_norms.cli import ERROR_FILE_ENV
    from ssl_norms.cli import main as cli_main
    from ssl_norms.reproduce.runs import classify_error

    error_file = tmp_path / "error.json"
    monkeypatch.setenv(ERROR_FILE_ENV, str(error_file))
    code = cli_main(
        [
            "fit",
            "-c", str(CONFIGS / "base" / "simclr.yaml"),
            "-c", str(CONFIGS / "data" / "cifar10.yaml"),
            "--data.init_args.data_dir", str(tmp_path / "nodata"),
            "--data.init_args.download", "false",
            "--model.init_args.backbone", "resnet18",
            "--model.init_args.backbone_width", "4",
            "--wandb", "disabled",
            "--runs_root", str(tmp_path / "runs"),
        ]
    )  # fmt: skip
    assert code == 1
    recorded = json.loads(error_file.read_text())
    assert (
        recorded["type"] == "FileNotFoundError" and str(tmp_path / "nodata") in recorded["message"]
    )
    assert classify_error(code, recorded).short() == "data not available"
