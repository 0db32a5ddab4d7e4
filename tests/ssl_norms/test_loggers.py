"""The resumable CSV logger: a cut-off last line repaired, rows after the checkpoint dropped."""

from __future__ import annotations

import csv
from pathlib import Path

from ssl_norms.loggers import ResumableCSVLogger, repair_metrics_csv


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", "\r\n").encode())  # as Lightning's csv writer does
    return path


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as file:
        return list(csv.reader(file))


def test_a_cut_off_last_line_no_longer_breaks_the_resumed_run(tmp_path: Path) -> None:
    """The resumed run's first row joined the cut-off line (too many fields), and the next
    new column died in Lightning's header rewrite: "dict contains fields not in fieldnames: None"."""
    metrics = tmp_path / "csv" / "metrics.csv"
    _write(metrics, "epoch,step,train/loss\n0,0,1.5\n0,1,1.25\n")
    metrics.write_bytes(metrics.read_bytes() + b"0,2,1.1")  # killed in the middle of a row
    logger = ResumableCSVLogger(save_dir=str(tmp_path), name="csv", version="")
    logger.log_metrics({"epoch": 0, "train/loss": 1.0}, step=2)
    logger.save()
    logger.log_metrics({"epoch": 0, "knn/top1": 0.5}, step=3)  # a new column: header rewrite
    logger.save()
    rows = _rows(metrics)
    assert rows[0] == ["epoch", "knn/top1", "step", "train/loss"]
    assert rows[1:] == [
        ["0", "", "0", "1.5"],
        ["0", "", "1", "1.25"],
        ["0", "", "2", "1.0"],
        ["0", "0.5", "3", ""],
    ]


def test_rows_at_and_after_the_checkpoint_step_are_dropped(tmp_path: Path) -> None:
    metrics = _write(
        tmp_path / "metrics.csv",
        "epoch,step,a,b\n" + "".join(f"{s // 4},{s},{s},\n" for s in range(10)) + "1,7,,0.5\n",
    )
    repair = repair_metrics_csv(metrics, drop_from_step=6)
    assert repair.after_checkpoint == 5 and not repair.cut_line and repair.malformed == 0
    rows = _rows(metrics)
    assert rows[0] == ["epoch", "step", "a", "b"]
    assert [r[1] for r in rows[1:]] == ["0", "1", "2", "3", "4", "5"]


def test_a_sound_file_is_left_as_it_is(tmp_path: Path) -> None:
    text = "epoch,step,a\n0,0,1\n0,1,2\n"
    metrics = _write(tmp_path / "metrics.csv", text)
    before = metrics.read_bytes()
    mtime = metrics.stat().st_mtime_ns
    repair = repair_metrics_csv(metrics, drop_from_step=5)
    assert not repair.changed and repair.header == ["epoch", "step", "a"]
    assert metrics.read_bytes() == before and metrics.stat().st_mtime_ns == mtime


def test_a_cut_off_header_leaves_an_empty_file_and_malformed_rows_go(tmp_path: Path) -> None:
    half_header = tmp_path / "a.csv"
    half_header.write_bytes(b"epoch,st")
    assert repair_metrics_csv(half_header).cut_line and half_header.read_bytes() == b""
    malformed = _write(tmp_path / "b.csv", "epoch,step,a\n0,0,1\n0,1\n0,2,3\n")
    repair = repair_metrics_csv(malformed)
    assert repair.malformed == 1 and [r[1] for r in _rows(malformed)[1:]] == ["0", "2"]
