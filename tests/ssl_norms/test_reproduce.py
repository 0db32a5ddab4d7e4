"""``ssl-norms reproduce``: the cells' commands, resuming, collecting and the report."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ssl_norms import reproduce
from ssl_norms.cli import ERROR_FILE_ENV
from ssl_norms.reproduce import (
    TABLES,
    cell_command,
    collect,
    final_knn_top1,
    main,
    set_aside_incomplete,
    to_markdown,
)

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"


def _write_metrics(run_dir: Path, rows: list[dict[str, str]]) -> None:
    (run_dir / "csv").mkdir(parents=True)
    keys = sorted({k for r in rows for k in r})
    with open(run_dir / "csv" / "metrics.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def test_every_cell_composes_existing_configs_in_order() -> None:
    for table in TABLES.values():
        assert len(table.rows) == 5 and all(
            len(v) == len(table.datasets) for v in table.paper.values()
        )
        for cell in table.rows:
            for dataset in table.datasets:
                argv = cell_command(cell, dataset, Path("/tmp/none"), CONFIGS)
                files = [argv[i + 1] for i, a in enumerate(argv) if a == "-c"]
                assert all(Path(f).is_file() for f in files), files
                # method base, then the data, then the intervention (later files win)
                assert files[0].endswith(cell.configs[0]) and files[1].endswith(
                    f"data/{dataset}.yaml"
                )
                assert [f.split("configs/")[-1] for f in files[2:]] == list(cell.configs[1:])
    assert TABLES["table3"].paper[("SimCLR", "Cut (c = 3)")] == (61.1, 26.3, 61.6)


def test_an_interrupted_cell_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    cell = TABLES["table3"].rows[1]
    run_dir = tmp_path / cell.slug("cifar10_unbalanced")
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (run_dir / "config.yaml").write_text("model: {}\n")
    argv = cell_command(
        cell, "cifar10_unbalanced", run_dir, CONFIGS, extra=["--trainer.max_epochs", "2"]
    )
    assert argv == [
        "fit",
        "-c",
        str(run_dir / "config.yaml"),
        "--ckpt_path",
        str(run_dir / "checkpoints" / "last.ckpt"),
        "--run_dir",
        str(run_dir),
    ]


def test_collect_reads_the_last_knn_value_and_reports_beside_the_paper(tmp_path: Path) -> None:
    table = TABLES["table3"]
    run_dir = tmp_path / "table3" / "simclr-cut-cifar10_unbalanced"
    _write_metrics(
        run_dir,
        [
            {"epoch": "9", "step": "10", "knn/top1": "0.25"},
            {"epoch": "9", "step": "11", "train/loss": "3.2"},  # no k-NN on this row
            {"epoch": "19", "step": "20", "knn/top1": "0.5125"},
            {"epoch": "19", "step": "21", "train/loss": "3.0"},
        ],
    )
    assert final_knn_top1(run_dir) == (0.5125, 19)
    assert final_knn_top1(tmp_path / "nothing") is None
    records = collect(table, tmp_path / "table3", ["cifar10_unbalanced"])
    assert len(records) == 5
    (cut,) = [r for r in records if r["variant"] == "Cut (c = 3)"]
    assert cut["ours"] == 51.25 and cut["epoch"] == 19 and cut["paper"] == 61.1
    assert all(r["ours"] is None for r in records if r is not cut)
    md = to_markdown(table, records, ["cifar10_unbalanced"])
    assert "| SimCLR | Cut (c = 3) | 51.2 (ep 19) (61.1) |" in md
    assert "| SimSiam | Default | - (47.0) |" in md
    assert "squared the learning rate" in md  # the caveat about the authors' faults


def test_collect_only_writes_markdown_and_csv(tmp_path: Path, capsys) -> None:
    _write_metrics(
        tmp_path / "runs" / "table2" / "simsiam-default-cifar10",
        [{"epoch": "499", "knn/top1": "0.87"}],
    )
    code = main(
        [
            "table2",
            "--runs",
            str(tmp_path / "runs"),
            "--out",
            str(tmp_path / "out"),
            "--configs",
            str(CONFIGS),
            "--collect-only",
        ]
    )
    assert code == 0
    rows = list(csv.DictReader(open(tmp_path / "out" / "table2" / "table2.csv")))
    assert len(rows) == 15
    (cell,) = [
        r
        for r in rows
        if r["method"] == "SimSiam" and r["variant"] == "Default" and r["dataset"] == "cifar10"
    ]
    assert float(cell["ours"]) == 87.0 and float(cell["paper"]) == 87.0
    assert (tmp_path / "out" / "table2" / "table2.md").is_file()


def test_bad_arguments_are_clear_errors(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["table3", "--datasets", "cifar10", "--configs", str(CONFIGS), "--dry-run"])
    assert info.value.code == 2
    assert "unknown dataset(s) ['cifar10'] for table3" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(
            [
                "table3",
                "--cells",
                "simclr-best-cifar10_unbalanced",
                "--configs",
                str(CONFIGS),
                "--dry-run",
            ]
        )
    assert "unknown cell(s)" in capsys.readouterr().err


@pytest.mark.slow
def test_one_real_cell_on_cpu(shared_data: Path, tmp_path: Path) -> None:
    """One Table 3 cell end to end on the real imbalanced CIFAR-10 (tiny: 20 images per class)."""
    fit_args = [
        "-c", str(CONFIGS / "cpu" / "table3.yaml"),
        "--data.init_args.data_dir", str(shared_data),
        "--data.init_args.train_subset", "20",
        "--data.init_args.eval_subset", "20",
        "--data.init_args.num_workers", "0",
        "--data.init_args.batch_size", "32",
        "--trainer.max_epochs", "1",
        "--wandb", "disabled",
    ]  # fmt: skip
    command = [
        sys.executable, "-m", "ssl_norms.cli", "reproduce", "table3",
        "--cells", "simclr-cut-cifar10_unbalanced", "--datasets", "cifar10_unbalanced",
        "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--configs", str(CONFIGS),
        "--", *fit_args,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "table3" / "simclr-cut-cifar10_unbalanced"
    saved = json.loads((run_dir / "result.json").read_text())
    assert 0.0 <= saved["knn_top1"] <= 1.0 and saved["epoch"] == 0
    assert "cut_constant: 3.0" in (run_dir / "config.yaml").read_text()
    md = (tmp_path / "out" / "table3" / "table3.md").read_text()
    assert f"{100 * saved['knn_top1']:.1f} (ep 0) (61.1)" in md
    # A second call skips the finished cell.
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert again.returncode == 0 and "finished earlier, skipped" in again.stdout


def _fake_fits(monkeypatch, error: dict[str, str] | None) -> list[list[str]]:
    """Replace the fit subprocesses: each records the given error as the CLI does and fails."""
    calls: list[list[str]] = []

    def call(command, env=None):
        calls.append(command)
        if error is not None:
            Path(env[ERROR_FILE_ENV]).write_text(json.dumps(error))
        return 1

    monkeypatch.setattr(reproduce.subprocess, "call", call)
    return calls


TWO_CELLS = ["--cells", "simclr-default-cifar10_unbalanced", "simclr-cut-cifar10_unbalanced"]


def test_one_missing_data_set_fails_once_not_for_every_cell(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """Each cell repeated the same data failure with 'rerun to resume it'."""
    missing = {"type": "FileNotFoundError", "message": "CIFAR-10 not found in /nowhere"}
    calls = _fake_fits(monkeypatch, missing)
    args = ["table3", "--datasets", "cifar10_unbalanced", *TWO_CELLS, "--configs", str(CONFIGS)]
    assert main([*args, "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 1
    assert len(calls) == 1
    captured = capsys.readouterr()
    assert "the data of cifar10_unbalanced is missing; its other cells are skipped" in captured.err
    assert "simclr-cut-cifar10_unbalanced: skipped, the data of cifar10_unbalanced is missing" in (
        captured.out
    )
    assert "rerun to resume" not in captured.err


def test_a_cell_that_fails_on_its_own_does_not_stop_the_others(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    calls = _fake_fits(monkeypatch, {"type": "FloatingPointError", "message": "loss is nan"})
    args = ["table3", "--datasets", "cifar10_unbalanced", *TWO_CELLS, "--configs", str(CONFIGS)]
    assert main([*args, "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 1
    assert len(calls) == 2
    assert capsys.readouterr().err.count("failed (exit 1); rerun to start it again") == 2


@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
def test_the_cli_records_its_error_for_reproduce(tmp_path: Path, monkeypatch) -> None:
    from ssl_norms.cli import main as cli_main

    error_file = tmp_path / "error.json"
    monkeypatch.setenv(ERROR_FILE_ENV, str(error_file))
    code = cli_main(
        [
            "fit",
            "-c", str(CONFIGS / "base" / "simclr.yaml"),
            "-c", str(CONFIGS / "data" / "cifar10.yaml"),
            "--data.init_args.data_dir", str(tmp_path / "nodata"),
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
    assert reproduce.is_data_failure(recorded)
    assert not reproduce.is_data_failure(
        {"type": "FileNotFoundError", "message": "checkpoint x does not exist"}
    )


def test_a_cell_folder_without_a_checkpoint_is_set_aside(tmp_path: Path) -> None:
    """A cell killed in its first epoch left a folder a new fit would refuse to reuse."""
    cell = tmp_path / "simclr-default-cifar10_unbalanced"
    (cell / "csv").mkdir(parents=True)
    (cell / "config.yaml").write_text("model: {}\n")
    moved = set_aside_incomplete(cell)
    assert moved == tmp_path / "simclr-default-cifar10_unbalanced.incomplete-1"
    assert not cell.exists() and (moved / "config.yaml").is_file()
    (cell / "checkpoints").mkdir(parents=True)
    (cell / "config.yaml").write_text("model: {}\n")
    (cell / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert set_aside_incomplete(cell) is None and cell.is_dir()  # resumable: left in place
