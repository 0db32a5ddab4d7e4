"""``ssl-norms plot RUN_DIR``: PNG plots of a run's CSV logs, for users without W&B.

Reads every ``metrics.csv`` under RUN_DIR (``RUN_DIR/csv/metrics.csv`` for ``ssl-norms
fit``) and writes into ``RUN_DIR/plots/`` (one sub-folder per file when there are several):

- ``norms.png``: ||z|| and ||h|| during training (mean, 25-75 % and 5-95 % bands) with the
  evaluation means of the bank and eval splits;
- ``effective_lr.png``: ``lr/base``, ``lr/effective`` and ``lr/effective_median`` (paper Theorem 3.4: lr ||z||^(p-2));
- ``knn.png``: ``knn/top1`` and ``knn/top5``;
- ``norm_distributions.png``: the last evaluation's norm quantiles per split (box plots of
  q05/q25/q50/q75/q95, the CSV form of the histograms);
- ``class_means.png``: ``norm/class_mean/<c>`` over time and at the last evaluation
  (paper Fig. 2c), with ``norm/ood_ratio/<name>`` when logged (Fig. 3);
- ``bucket_accuracy.png``: the last ``knn/bucket_acc/<i>`` (paper Fig. 4 left).

Plots whose metrics are absent are skipped. Light: no Lightning import.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import re
import sys
from pathlib import Path

from ssl_norms import metric_names as M

__all__ = ["MetricsFileError", "main", "read_metrics", "plot_metrics"]

Series = dict[str, list[tuple[float, float]]]
QUANTILES = M.QUANTILES


class MetricsFileError(ValueError):
    """A ``metrics.csv`` that is not a CSV text file at all (binary, not UTF-8, no header)."""


def read_metrics(path: Path, skipped: list[int] | None = None) -> Series:
    """``{column: [(step, value), ...]}`` from a Lightning CSVLogger file (empty cells skipped).

    Malformed rows (another number of fields than the header, as a line cut off by a killed
    run leaves, or a value that is not a number) are left out; their line numbers are
    appended to ``skipped`` when a list is given.

    Raises:
        MetricsFileError: the file is binary, not UTF-8 text, or has no header.
    """
    data = path.read_bytes()
    if b"\x00" in data:
        raise MetricsFileError(f"{path} is not a CSV text file (it holds binary data)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise MetricsFileError(
            f"{path} is not a CSV text file (not UTF-8 at byte {error.start})"
        ) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        raise MetricsFileError(f"{path} is empty or has no header line")
    series: Series = {}
    try:
        for row_number, row in enumerate(reader):
            if None in row or any(v is None for v in row.values()):
                if skipped is not None:
                    skipped.append(reader.line_num)
                continue
            values: list[tuple[str, float]] = []
            bad = False
            for key, text_value in row.items():
                if key == "epoch" or text_value == "":
                    continue
                try:
                    values.append((key, float(text_value)))
                except ValueError:
                    bad = True
                    break
            if bad:
                if skipped is not None:
                    skipped.append(reader.line_num)
                continue
            steps = dict(values)
            step = steps.pop("step", float(row_number))
            for key, value in steps.items():
                series.setdefault(key, []).append((step, value))
    except csv.Error as error:
        raise MetricsFileError(f"{path} is not a readable CSV file: {error}") from None
    for values in series.values():
        values.sort(key=lambda t: t[0])
    return series


def _xy(series: Series, key: str) -> tuple[list[float], list[float]]:
    pts = series.get(key, [])
    return [p[0] for p in pts], [p[1] for p in pts]


def _last(series: Series, key: str) -> float | None:
    pts = series.get(key)
    return pts[-1][1] if pts else None


def _indexed(series: Series, prefix: str) -> list[tuple[str, str]]:
    """(suffix, column) for columns ``prefix<suffix>``, suffixes in natural order."""
    found = [(key[len(prefix) :], key) for key in series if key.startswith(prefix)]
    return sorted(found, key=lambda t: (int(t[0]) if t[0].isdigit() else math.inf, t[0]))


def _plot_norms(plt, series: Series, out: Path) -> Path | None:
    spaces = [s for s in ("z", "h") if M.step_norm(s, "mean") in series]
    if not spaces:
        return None
    fig, axes = plt.subplots(1, len(spaces), figsize=(6 * len(spaces), 4), squeeze=False)
    for ax, space in zip(axes[0], spaces, strict=True):
        x, mean = _xy(series, M.step_norm(space, "mean"))
        ax.plot(x, mean, label="batch mean", color="C0")
        for lo, hi, alpha in (("q05", "q95", 0.15), ("q25", "q75", 0.3)):
            xl, yl = _xy(series, M.step_norm(space, lo))
            xh, yh = _xy(series, M.step_norm(space, hi))
            if yl and len(yl) == len(yh):
                ax.fill_between(xl, yl, yh, alpha=alpha, color="C0", label=f"{lo}-{hi}")
        for i, split in enumerate(M.SPLITS):
            xs, ys = _xy(series, M.split_norm(split, "mean", space))
            if ys:
                ax.plot(xs, ys, "o--", color=f"C{i + 1}", label=f"{split} mean (evaluation)")
        ax.set(
            xlabel="step",
            ylabel=f"||{space}||",
            title=f"||{space}|| ({'loss space' if space == 'z' else 'backbone'})",
        )
        ax.legend(fontsize=8)
    return _save(plt, fig, out / "norms.png")


def _plot_effective_lr(plt, series: Series, out: Path) -> Path | None:
    keys = [k for k in (M.LR_BASE, M.LR_EFFECTIVE, M.LR_EFFECTIVE_MEDIAN) if k in series]
    if not keys:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in keys:
        ax.plot(*_xy(series, key), label=key)
    if all(v > 0 for key in keys for _, v in series[key]):
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="learning rate", title="effective learning rate lr ||z||^(p-2)")
    ax.legend(fontsize=8)
    return _save(plt, fig, out / "effective_lr.png")


def _plot_knn(plt, series: Series, out: Path) -> Path | None:
    keys = [k for k in (M.KNN_TOP1, M.KNN_TOP5) if k in series]
    if not keys:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in keys:
        ax.plot(*_xy(series, key), "o-", label=key)
    ax.set(xlabel="step", ylabel="accuracy", title="weighted k-NN accuracy", ylim=(0, 1.02))
    ax.legend(fontsize=8)
    return _save(plt, fig, out / "knn.png")


def _plot_distributions(plt, series: Series, out: Path) -> Path | None:
    boxes = []
    for split in M.SPLITS:
        for space in ("z", "h"):
            qs = [_last(series, M.split_norm(split, q, space)) for q in QUANTILES]
            if any(q is None for q in qs):
                continue
            mean = _last(series, M.split_norm(split, "mean", space))
            stats = dict(whislo=qs[0], q1=qs[1], med=qs[2], q3=qs[3], whishi=qs[4], fliers=[])
            stats["label"] = f"{split} ||{space}||"
            if mean is not None:
                stats["mean"] = mean
            boxes.append(stats)
    if not boxes:
        return None
    fig, ax = plt.subplots(figsize=(1.8 * len(boxes) + 2, 4))
    ax.bxp(boxes, showmeans=all("mean" in b for b in boxes))
    ax.set(ylabel="norm", title="last evaluation: norm quantiles (whiskers 5-95 %)")
    return _save(plt, fig, out / "norm_distributions.png")


def _plot_class_means(plt, series: Series, out: Path) -> Path | None:
    classes = _indexed(series, M.class_mean(""))
    ood = _indexed(series, M.ood_ratio(""))
    if not classes and not ood:
        return None
    panels = (1 if classes else 0) * 2 + (1 if ood else 0)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), squeeze=False)
    axes = list(axes[0])
    if classes:
        ax = axes.pop(0)
        for c, key in classes:
            ax.plot(*_xy(series, key), "o-", label=f"class {c}")
        ax.set(xlabel="step", ylabel="mean ||z||", title="mean norm per class (bank)")
        ax.legend(fontsize=7)
        ax = axes.pop(0)
        ax.bar([c for c, _ in classes], [_last(series, key) for _, key in classes])
        ax.set(xlabel="class", ylabel="mean ||z||", title="last evaluation (Fig. 2c)")
    if ood:
        ax = axes.pop(0)
        ax.bar([n for n, _ in ood], [_last(series, key) for _, key in ood], color="C3")
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set(ylabel="mean ||z|| OOD / bank", title="OOD norm ratio (Fig. 3)")
    return _save(plt, fig, out / "class_means.png")


def _plot_buckets(plt, series: Series, out: Path) -> Path | None:
    buckets = _indexed(series, M.bucket_acc(""))
    if not buckets:
        return None
    # Only the buckets of the last evaluation (earlier ones may hold other buckets).
    last_step = max(series[key][-1][0] for _, key in buckets)
    pts = [(int(i), series[key][-1][1]) for i, key in buckets if series[key][-1][0] == last_step]
    counts = {int(i): _last(series, M.bucket_count(i)) for i, _ in buckets}
    n = 20
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [(i + 0.5) / n for i, _ in pts]
    sizes = [
        max(10.0, 200.0 * (counts.get(i) or 1) / max(c or 1 for c in counts.values()))
        for i, _ in pts
    ]
    ax.scatter(xs, [acc for _, acc in pts], s=sizes)
    ax.plot(xs, [acc for _, acc in pts], lw=0.8)
    ax.set(
        xlabel="||z|| / max ||z||",
        ylabel="k-NN accuracy",
        title="accuracy per norm bucket (Fig. 4 left)",
    )
    return _save(plt, fig, out / "bucket_accuracy.png")


def _save(plt, fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_metrics(series: Series, out: Path) -> list[Path]:
    """Draw every plot whose metrics are present; returns the PNG paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for draw in (
        _plot_norms,
        _plot_effective_lr,
        _plot_knn,
        _plot_distributions,
        _plot_class_means,
        _plot_buckets,
    ):
        path = draw(plt, series, out)
        if path is not None:
            written.append(path)
    return written


def _slug(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(path)).strip("_") or "run"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ssl-norms plot",
        description="Draw norm, effective-lr and k-NN curves and the last norm histograms "
        "from a run's CSV logs (RUN_DIR/**/metrics.csv) into PNG files.",
    )
    parser.add_argument("run_dir", type=Path, help="run folder (holds csv/metrics.csv)")
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: RUN_DIR/plots)"
    )
    args = parser.parse_args(argv)
    run_dir: Path = args.run_dir
    if not run_dir.is_dir():
        print(f"ssl-norms plot: {run_dir} is not a folder", file=sys.stderr)
        return 2
    out = args.out if args.out is not None else run_dir / "plots"
    files = sorted(p for p in run_dir.rglob("metrics.csv") if out not in p.parents)
    if not files:
        print(
            f"ssl-norms plot: no metrics.csv under {run_dir} (runs of `ssl-norms fit` write "
            "RUN_DIR/csv/metrics.csv; a CSVLogger must be among the loggers)",
            file=sys.stderr,
        )
        return 2
    total, bad_files = 0, 0
    for file in files:
        target = out if len(files) == 1 else out / _slug(file.parent.relative_to(run_dir))
        skipped: list[int] = []
        try:
            series = read_metrics(file, skipped)
        except MetricsFileError as error:
            print(f"ssl-norms plot: error: {error}", file=sys.stderr)
            bad_files += 1
            continue
        if skipped:
            lines = ", ".join(map(str, skipped[:5])) + (" ..." if len(skipped) > 5 else "")
            print(
                f"ssl-norms plot: warning: skipped {len(skipped)} malformed row(s) of {file} "
                f"(line {lines}); a run killed while writing leaves a cut-off last line, which "
                "`ssl-norms fit` repairs when it resumes the run",
                file=sys.stderr,
            )
        written = plot_metrics(series, target)
        if not written:
            print(f"{file}: no known metrics to plot")
        for path in written:
            print(f"wrote {path}")
        total += len(written)
    if bad_files == len(files):
        return 2
    return 0 if total else 1


if __name__ == "__main__":
    raise SystemExit(main())
