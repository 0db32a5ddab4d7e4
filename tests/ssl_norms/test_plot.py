"""``ssl-norms plot RUN_DIR`` on a hand-written CSVLogger file (no Lightning needed)."""

from __future__ import annotations

import csv
import sys

from ssl_norms.cli import main as cli_main
from ssl_norms.plot import read_metrics

QS = ("q05", "q25", "q50", "q75", "q95")


def write_run(run_dir):
    """Rows as Lightning's CSVLogger writes them: one per step and logging call, blanks."""
    step_cols = [f"norm/{s}_{q}" for s in ("z", "h") for q in ("mean", "std", *QS)]
    step_cols += ["lr/base", "lr/effective", "lr/effective_median"]
    eval_cols = ["knn/top1", "knn/top5", "norm/bank_mean", "norm/eval_mean"]
    eval_cols += [f"norm/{sp}_{q}" for sp in ("bank", "eval") for q in QS]
    eval_cols += ["norm/class_mean/0", "norm/class_mean/1", "norm/ood_ratio/svhn"]
    eval_cols += [
        "knn/bucket_acc/3",
        "knn/bucket_count/3",
        "knn/bucket_acc/12",
        "knn/bucket_count/12",
    ]
    columns = ["epoch", "step", "train/loss", *step_cols, *eval_cols]
    rows = []
    for step in range(0, 40, 5):
        row = {"epoch": step // 10, "step": step, "train/loss": 3 - step / 20}
        row.update({c: 1.0 + step / 10 + i / 100 for i, c in enumerate(step_cols)})
        rows.append(row)
        if step % 10 == 5:
            ev = {"epoch": step // 10, "step": step}
            ev.update({c: 0.5 + step / 100 + i / 1000 for i, c in enumerate(eval_cols)})
            rows.append(ev)
    (run_dir / "csv").mkdir(parents=True)
    with open(run_dir / "csv" / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def test_plot_writes_every_png(tmp_path, capsys):
    write_run(tmp_path)
    assert cli_main(["plot", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    names = ["norms", "effective_lr", "knn", "norm_distributions", "class_means", "bucket_accuracy"]
    for name in names:
        path = tmp_path / "plots" / f"{name}.png"
        assert path.read_bytes()[:4] == b"\x89PNG", name
        assert f"wrote {path}" in out


def test_plot_imports_no_lightning(tmp_path):
    import subprocess

    write_run(tmp_path)
    code = (
        "import sys; from ssl_norms.plot import main; "
        f"assert main([{str(tmp_path)!r}]) == 0; "
        "assert 'lightning' not in sys.modules and 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_read_metrics_skips_blanks(tmp_path):
    write_run(tmp_path)
    series = read_metrics(tmp_path / "csv" / "metrics.csv")
    assert [s for s, _ in series["knn/top1"]] == [5.0, 15.0, 25.0, 35.0]
    assert len(series["norm/z_mean"]) == 8


def test_missing_metrics_is_a_clear_error(tmp_path, capsys):
    assert cli_main(["plot", str(tmp_path)]) == 2
    assert "no metrics.csv under" in capsys.readouterr().err
    assert cli_main(["plot", str(tmp_path / "nope")]) == 2
    assert not (tmp_path / "plots").exists()


def test_a_binary_metrics_file_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "metrics.csv").write_bytes(bytes(range(256)) * 4)
    assert cli_main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert (
        f"{tmp_path / 'csv' / 'metrics.csv'} is not a CSV text file (it holds binary data)" in err
    )
    assert "Traceback" not in err and not (tmp_path / "plots").exists()
    (tmp_path / "csv" / "metrics.csv").write_bytes("step,x\n0,\xe9t\xe9\n".encode("latin-1"))
    assert cli_main(["plot", str(tmp_path)]) == 2
    assert "not UTF-8" in capsys.readouterr().err


def test_a_half_written_row_is_skipped_with_a_warning(tmp_path, capsys):
    """A row cut off by a killed run was plotted silently (its last value cut short)."""
    write_run(tmp_path)
    metrics = tmp_path / "csv" / "metrics.csv"
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join(lines) + "\n" + "3,40,0.0001")  # cut after three fields
    assert cli_main(["plot", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert f"skipped 1 malformed row(s) of {metrics} (line {len(lines) + 1})" in captured.err
    skipped: list[int] = []
    series = read_metrics(metrics, skipped)
    assert skipped == [len(lines) + 1]
    assert 40.0 not in [step for step, _ in series["train/loss"]]
    assert (tmp_path / "plots" / "norms.png").is_file()
