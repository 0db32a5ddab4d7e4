"""``ssl-norms reproduce table2|table3``: run the paper's k-NN tables and compare.

Each cell of a table is one ``ssl-norms fit`` composed from the shipped configs
(``configs/README.md``) in its own run folder ``RUNS/<table>/<method>-<variant>-<data>``.
A cell whose run finished is not run again; a cell with a ``last.ckpt`` but no result is
resumed from it; a cell folder left without a checkpoint (a run killed in its first epoch)
is moved aside to ``<cell>.incomplete-<N>`` and the cell starts again. When a cell fails
because its data is missing, the other cells on that data set are skipped (they would only
repeat the error). The final ``knn/top1`` of every run is collected into
``OUT/<table>.md`` and ``OUT/<table>.csv`` beside the paper's number.

Light on import: the runs are subprocesses, so this module never imports Lightning.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ssl_norms.cli import ERROR_FILE_ENV

__all__ = ["TABLES", "Cell", "Table", "cell_command", "final_knn_top1", "collect", "main"]

RESULT_FILE = "result.json"


@dataclass(frozen=True)
class Cell:
    method: str
    variant: str
    configs: tuple[str, ...]  # method base and overrides, relative to configs/

    def slug(self, dataset: str) -> str:
        variant = self.variant.split(" ")[0].lower()
        return f"{self.method.lower()}-{variant}-{dataset}"


@dataclass(frozen=True)
class Table:
    name: str
    caption: str
    datasets: dict[str, str]  # data config name -> column title
    rows: tuple[Cell, ...]
    paper: dict[tuple[str, str], tuple[float, ...]]  # (method, variant) -> one value per column


_ROWS = (
    Cell("SimCLR", "Default", ("base/simclr.yaml",)),
    Cell("SimCLR", "Cut (c = 3)", ("base/simclr.yaml", "overrides/cut.yaml")),
    Cell("SimCLR", "GradScale", ("base/simclr.yaml", "overrides/gradscale.yaml")),
    Cell("SimSiam", "Default", ("base/simsiam.yaml",)),
    Cell("SimSiam", "Cut (c = 9)", ("base/simsiam.yaml", "overrides/cut_simsiam.yaml")),
)

TABLES: dict[str, Table] = {
    "table2": Table(
        "table2",
        "k-NN accuracy (%) at epoch 500 on standard image datasets (paper Table 2)",
        {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet100": "ImageNet-100"},
        _ROWS,
        {
            ("SimCLR", "Default"): (85.2, 51.9, 59.4),
            ("SimCLR", "Cut (c = 3)"): (87.0, 52.6, 60.9),
            ("SimCLR", "GradScale"): (86.5, 54.0, 61.0),
            ("SimSiam", "Default"): (87.0, 61.1, 62.0),
            ("SimSiam", "Cut (c = 9)"): (89.0, 61.5, 67.2),
        },
    ),
    "table3": Table(
        "table3",
        "k-NN accuracy (%) at epoch 500 on class-imbalanced datasets (paper Table 3)",
        {
            "cifar10_unbalanced": "CIFAR-10 Unb.",
            "cifar100_unbalanced": "CIFAR-100 Unb.",
            "flowers_unbalanced": "Flowers Unb.",
        },
        _ROWS,
        {
            ("SimCLR", "Default"): (56.5, 24.3, 42.6),
            ("SimCLR", "Cut (c = 3)"): (61.1, 26.3, 61.6),
            ("SimCLR", "GradScale"): (61.3, 29.1, 47.2),
            ("SimSiam", "Default"): (47.0, 21.6, 22.5),
            ("SimSiam", "Cut (c = 9)"): (61.7, 31.5, 39.9),
        },
    ),
}

CAVEAT = (
    "The paper's numbers were produced with the authors' code, which squared the learning "
    "rate in its schedule, stepped the schedule per micro-batch without dividing the loss "
    "under gradient accumulation, re-applied cut-init on resume and evaluated Flowers k-NN "
    'on a random 768 of the 1,020 validation images; ssl-norms does none of that (README, "Reproducing the paper").'
)


def cell_command(
    cell: Cell, dataset: str, run_dir: Path, configs_dir: Path, extra: Sequence[str] = ()
) -> list[str]:
    """The ``ssl-norms fit`` argv of one cell (resuming from ``last.ckpt`` when there is one)."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.is_file() and (run_dir / "config.yaml").is_file():
        # The saved config already holds the extra flags of the interrupted run.
        return [
            "fit",
            "-c",
            str(run_dir / "config.yaml"),
            "--ckpt_path",
            str(last),
            "--run_dir",
            str(run_dir),
        ]
    argv = ["fit"]
    for name in (cell.configs[0], f"data/{dataset}.yaml", *cell.configs[1:]):
        argv += ["-c", str(configs_dir / name)]
    return [*argv, *extra, "--run_dir", str(run_dir), "--name", run_dir.name]


def set_aside_incomplete(run_dir: Path) -> Path | None:
    """Move a cell folder that holds a run but no ``last.ckpt`` to ``<cell>.incomplete-<N>``.

    Such a folder (a run killed before its first checkpoint) cannot be resumed, and a new
    fit refuses a folder that holds another run. Returns the new place, or None.
    """
    held = [n for n in ("config.yaml", "csv/metrics.csv") if (run_dir / n).is_file()]
    if not held or (run_dir / "checkpoints" / "last.ckpt").is_file():
        return None
    n = 1
    while (target := run_dir.with_name(f"{run_dir.name}.incomplete-{n}")).exists():
        n += 1
    run_dir.rename(target)
    return target


def is_data_failure(error: dict[str, str] | None) -> bool:
    """Whether a failed fit's recorded error is missing data (shared by a data set's cells).

    The data modules raise ``FileNotFoundError`` for missing data (docs/contract.md); a
    missing checkpoint is a cell's own problem.
    """
    return bool(
        error
        and error.get("type") == "FileNotFoundError"
        and not str(error.get("message", "")).startswith("checkpoint ")
    )


def _run_cell(command: list[str]) -> tuple[int, dict[str, str] | None]:
    """Run one fit; its exit code and the error it recorded (``SSL_NORMS_ERROR_FILE``)."""
    with tempfile.TemporaryDirectory(prefix="ssl-norms-reproduce-") as tmp:
        error_file = Path(tmp) / "error.json"
        env = {**os.environ, ERROR_FILE_ENV: str(error_file)}
        code = subprocess.call([sys.executable, "-m", "ssl_norms.cli", *command[1:]], env=env)
        try:
            error = json.loads(error_file.read_text())
        except (OSError, ValueError):
            error = None
    return code, error


def final_knn_top1(run_dir: Path) -> tuple[float, int] | None:
    """The last logged ``knn/top1`` of a run (as a fraction) and its epoch, or None."""
    last: tuple[float, int] | None = None
    for path in sorted(run_dir.glob("**/metrics.csv")):
        with open(path, newline="") as file:
            for row in csv.DictReader(file):
                value = row.get("knn/top1") or ""
                if value:
                    last = (float(value), int(float(row.get("epoch") or -1)))
    return last


def collect(table: Table, runs_dir: Path, datasets: Sequence[str]) -> list[dict[str, object]]:
    """One record per cell: method, variant, dataset, ours (%), epoch, paper (%), run folder."""
    columns = list(table.datasets)
    records = []
    for cell in table.rows:
        for dataset in datasets:
            run_dir = runs_dir / cell.slug(dataset)
            found = final_knn_top1(run_dir)
            records.append(
                {
                    "method": cell.method,
                    "variant": cell.variant,
                    "dataset": dataset,
                    "ours": None if found is None else round(100 * found[0], 2),
                    "epoch": None if found is None else found[1],
                    "paper": table.paper[(cell.method, cell.variant)][columns.index(dataset)],
                    "run_dir": str(run_dir),
                }
            )
    return records


def to_markdown(table: Table, records: list[dict[str, object]], datasets: Sequence[str]) -> str:
    by_cell = {(r["method"], r["variant"], r["dataset"]): r for r in records}
    lines = [
        f"# {table.caption}",
        "",
        "Each cell: ours (paper). Ours is the last `knn/top1` of the run (weighted k-NN, k = 200,",
        "T = 0.1, backbone features), with the epoch it was measured at when that is not the last.",
        "",
        "| method | variant | " + " | ".join(table.datasets[d] for d in datasets) + " |",
        "|---|---|" + "---|" * len(datasets),
    ]
    for cell in table.rows:
        values = []
        for dataset in datasets:
            r = by_cell[(cell.method, cell.variant, dataset)]
            ours = "-" if r["ours"] is None else f"{r['ours']:.1f} (ep {r['epoch']})"
            values.append(f"{ours} ({r['paper']:.1f})")
        lines.append(f"| {cell.method} | {cell.variant} | " + " | ".join(values) + " |")
    lines += ["", CAVEAT, ""]
    return "\n".join(lines)


def write_report(
    table: Table, records: list[dict[str, object]], datasets: Sequence[str], out: Path
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    md, csv_path = out / f"{table.name}.md", out / f"{table.name}.csv"
    md.write_text(to_markdown(table, records, datasets))
    with open(csv_path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    return [md, csv_path]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:  # everything after `--` goes to every `ssl-norms fit`
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(
        prog="ssl-norms reproduce",
        description="Run the paper's k-NN tables (one ssl-norms fit per cell) and compare with the paper. "
        "Arguments after `--` are added to every fit, e.g. `-- -c configs/cpu/table3.yaml`.",
    )
    parser.add_argument("table", choices=sorted(TABLES))
    parser.add_argument("--runs", default="runs", help="parent of the run folders (default: runs)")
    parser.add_argument(
        "--out", default="results", help="where TABLE.md and TABLE.csv go (default: results/TABLE)"
    )
    parser.add_argument("--datasets", nargs="+", help="a subset of the table's columns")
    parser.add_argument(
        "--cells", nargs="+", help="a subset of cells by slug, e.g. simclr-cut-cifar10_unbalanced"
    )
    parser.add_argument("--configs", default="configs", help="the configs folder")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--collect-only", action="store_true", help="only collect finished runs")
    args = parser.parse_args(argv)

    table = TABLES[args.table]
    datasets = args.datasets or list(table.datasets)
    unknown = [d for d in datasets if d not in table.datasets]
    if unknown:
        parser.error(
            f"unknown dataset(s) {unknown} for {table.name}; choose from {list(table.datasets)}"
        )
    configs_dir = Path(args.configs)
    if not (configs_dir / "base").is_dir():
        parser.error(
            f"no configs folder at {configs_dir.resolve()} (run from the repository root or pass --configs)"
        )
    runs_dir = Path(args.runs) / table.name
    cells = [(c, d) for c in table.rows for d in datasets]
    if args.cells:
        known = {c.slug(d) for c, d in cells}
        missing = sorted(set(args.cells) - known)
        if missing:
            parser.error(f"unknown cell(s) {missing}; known: {sorted(known)}")
        cells = [(c, d) for c, d in cells if c.slug(d) in args.cells]

    failed: list[str] = []
    missing_data: dict[str, str] = {}  # data set -> the cell whose failure showed it
    if not args.collect_only:
        for i, (cell, dataset) in enumerate(cells, 1):
            run_dir = runs_dir / cell.slug(dataset)
            tag = f"[{i}/{len(cells)}] {run_dir.name}"
            if (run_dir / RESULT_FILE).is_file():
                print(f"{tag}: finished earlier, skipped", flush=True)
                continue
            if dataset in missing_data:
                print(
                    f"{tag}: skipped, the data of {dataset} is missing (see {missing_data[dataset]})",
                    flush=True,
                )
                failed.append(run_dir.name)
                continue
            if not args.dry_run:
                moved = set_aside_incomplete(run_dir)
                if moved is not None:
                    print(f"{tag}: no checkpoint in {run_dir}; moved it to {moved}", flush=True)
            command = ["ssl-norms", *cell_command(cell, dataset, run_dir, configs_dir, extra)]
            print(f"{tag}: {shlex.join(command)}", flush=True)
            if args.dry_run:
                continue
            code, error = _run_cell(command)
            if code != 0:
                failed.append(run_dir.name)
                if is_data_failure(error):
                    missing_data[dataset] = run_dir.name
                    print(
                        f"ssl-norms reproduce: {run_dir.name} failed: the data of {dataset} is "
                        f"missing; its other cells are skipped. Put the data in place (the message "
                        "above says where) and rerun",
                        file=sys.stderr,
                    )
                    continue
                resumable = (run_dir / "checkpoints" / "last.ckpt").is_file()
                print(
                    f"ssl-norms reproduce: {run_dir.name} failed (exit {code}); rerun to "
                    + ("resume it from its last checkpoint" if resumable else "start it again"),
                    file=sys.stderr,
                )
                continue
            found = final_knn_top1(run_dir)
            (run_dir / RESULT_FILE).write_text(
                json.dumps(
                    {"knn_top1": found[0] if found else None, "epoch": found[1] if found else None}
                )
                + "\n"
            )
    if args.dry_run:
        return 0
    records = collect(table, runs_dir, datasets)
    out = Path(args.out) / table.name
    for path in write_report(table, records, datasets, out):
        print(f"wrote {path}")
    print(to_markdown(table, records, datasets))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
