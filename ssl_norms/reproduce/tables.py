"""The k-NN tables: Tables 1, 2 and 3 (Section 6) and Table S2 (Appendix C.4).

Every cell is the weighted k-NN accuracy (k = 200, T = 0.1, backbone features, bank = the
un-augmented training set; the ``knn/top1`` the KNNMonitor logs) of one run at one epoch.
The runs train on the paper's 500-epoch schedule (``schedule_epochs``); Table 1 reads
epoch 100 of those runs and Table S2 epochs 100 and 500 of the same runs, as the paper
reports epoch-100 and epoch-500 numbers side by side (Table S2) and as its Section 6
describes Table 1 as the accuracy "after 100 epochs" of the runs it then continues to 500
in Table 2. So Table 1's (c = 1, default weight decay) cells and Table S2's batch-1024 cells
are Table 2's runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ssl_norms import metric_names as M
from ssl_norms.reproduce import paper
from ssl_norms.reproduce.base import (
    CellResult,
    Context,
    Runner,
    Section,
    cell_result,
    knn_at,
    last_evaluation,
    markdown_table,
    read_rows,
    versus,
    write_csv,
)
from ssl_norms.reproduce.runs import RunRequest, RunSpec

__all__ = ["GridCell", "KnnTable", "Table1", "Table2", "Table3", "TableS2", "intervention_spec"]

CAVEAT = (
    "The paper's numbers were produced with the authors' code, which squared the learning "
    "rate in its schedule, stepped the schedule per micro-batch without dividing the loss "
    "under gradient accumulation, re-applied cut-init on resume and evaluated Flowers k-NN on "
    "a random 768 of the 1,020 validation images; ssl-norms does none of that (README, "
    '"Reproducing the paper").'
)
DEFAULT_WD = {"simclr": "1e-6", "simsiam": "5e-4", "byol": "5e-4"}


@dataclass(frozen=True)
class GridCell:
    """One table cell: the run it reads, the epoch, the paper's value."""

    table: str  # sub-table title ("" for one table)
    row: str
    column: str
    dataset: str
    spec: RunSpec
    epoch: int
    paper: float | None


def intervention_spec(ctx: Context, method: str, dataset: str, overrides: tuple[str, ...]):
    """A Table 2 / 3 run: the method's defaults plus an intervention, on the table schedule."""
    return RunSpec(method, dataset, ctx.profile.schedule("table", dataset), overrides)


def wd_overrides(method: str, wd: str) -> tuple[str, ...]:
    """The weight-decay override of a run, none at the method's default (shares its run)."""
    return () if wd == DEFAULT_WD[method] else (f"wd_{wd}",)


class KnnTable(Runner):
    """A table of k-NN accuracies; subclasses list the cells."""

    columns_title = "dataset"

    def cells(self, ctx: Context) -> list[GridCell]:
        raise NotImplementedError

    def requests(self, ctx: Context) -> list[RunRequest]:
        return [
            RunRequest(c.spec, until=c.epoch)
            for c in self.cells(ctx)
            if ctx.in_scope(self.name, c.dataset)
        ]

    def results(self, ctx: Context) -> list[tuple[GridCell, CellResult]]:
        out = []
        for cell in self.cells(ctx):
            if not ctx.shown(self.name, cell.dataset, cell.spec):
                text = f"not in the {ctx.profile.name} profile"
                out.append((cell, CellResult(None, "out of scope", text)))
                continue
            run_dir = ctx.run_dir(cell.spec)
            value = knn_at(read_rows(run_dir), cell.epoch)
            value = None if value is None else 100.0 * value
            result = cell_result(run_dir, value, cell.epoch, cell.spec.schedule_epochs)
            if not ctx.in_scope(self.name, cell.dataset):
                result = replace(result, counted=False)
            out.append((cell, result))
        return out

    def collect(self, ctx: Context) -> Section:
        section = self.section(ctx)
        results = self.results(ctx)
        records = []
        for table in dict.fromkeys(c.table for c, _ in results):
            part = [(c, r) for c, r in results if c.table == table]
            columns = list(dict.fromkeys(c.column for c, _ in part))
            rows = list(dict.fromkeys(c.row for c, _ in part))
            by = {(c.row, c.column): (c, r) for c, r in part}
            if table:
                section.body += [f"**{table}**", ""]
            section.body += markdown_table(
                ["", *columns],
                [
                    [
                        row,
                        *(
                            versus(by[row, col][1], by[row, col][0].paper)
                            if (row, col) in by
                            else ""
                            for col in columns
                        ),
                    ]
                    for row in rows
                ],
            )
            section.body.append("")
        for cell, result in results:
            if result.status != "out of scope" and result.counted:
                section.in_scope += 1
                if result.status not in ("ok", "diverged"):
                    section.missing.append(f"{cell.table} {cell.row} / {cell.column}".strip())
            records.append(
                {
                    "table": cell.table,
                    "row": cell.row,
                    "column": cell.column,
                    "dataset": cell.dataset,
                    "epoch": cell.epoch,
                    "ours": None if result.value is None else round(result.value, 2),
                    "paper": cell.paper,
                    "difference": None
                    if result.value is None or cell.paper is None
                    else round(result.value - cell.paper, 2),
                    "status": result.status,
                    "detail": result.text,
                    "run": cell.spec.slug,
                }
            )
        epochs = sorted({(c.epoch, c.spec.schedule_epochs) for c, _ in results})
        if ctx.profile.name != "paper":
            shown = ", ".join(f"epoch {e} of {s}" for e, s in epochs)
            section.body += [
                f"At the `{ctx.profile.name}` profile the cells read {shown} (the paper's "
                "epochs scaled to the profile's schedule).",
                "",
            ]
        section.body += [
            "Each cell: ours / paper (difference), k-NN top-1 in %. "
            f"Run folders: `{ctx.runs_dir}/<run>`; every cell's run is in "
            f"[`{self.name}.csv`](./{self.name}/{self.name}.csv).",
            "",
            CAVEAT,
        ]
        failures = {
            c.dataset: r.failure for c, r in results if r.status == "data" and r.failure is not None
        }
        section.notes += [
            f"Data not available for {d}: {f.first_line()}" for d, f in sorted(failures.items())
        ]
        section.readings += self.readings(ctx, results)
        section.files.append(write_csv(self.out(ctx) / f"{self.name}.csv", records))
        (self.out(ctx) / f"{self.name}.md").write_text(section.markdown("../"))
        return section

    def readings(self, ctx: Context, results) -> list[str]:
        return []


def _compare(results, method: str, variant: str, base: str, column: str):
    by = {(c.row, c.column): (c, r) for c, r in results}
    a = by.get((f"{method} {variant}", column))
    b = by.get((f"{method} {base}", column))
    if not a or not b or a[1].value is None or b[1].value is None:
        return None
    if a[0].paper is None or b[0].paper is None:
        return None
    return a[1].value - b[1].value, a[0].paper - b[0].paper


NAMES = {"simclr": "SimCLR", "simsiam": "SimSiam", "byol": "BYOL"}


def _intervention_readings(results) -> list[str]:
    """Whether each intervention helps as in the paper, per column (from the numbers)."""
    lines = []
    columns = list(dict.fromkeys(c.column for c, _ in results))
    for method, variant, _ in paper.INTERVENTIONS:
        if variant == "Default":
            continue
        for column in columns:
            found = _compare(results, NAMES[method], variant, "Default", column)
            if found is None:
                continue
            ours, theirs = found
            agree = "yes" if (ours > 0) == (theirs > 0) else "no"
            lines.append(
                f"{NAMES[method]} {variant} vs Default on {column}: {ours:+.1f} points "
                f"(paper {theirs:+.1f}); same direction as the paper: {agree}"
            )
    diverged = [f"{c.row} on {c.column} ({r.text})" for c, r in results if r.status == "diverged"]
    if diverged:
        lines.append("Diverged: " + "; ".join(diverged))
    return lines


class _InterventionTable(KnnTable):
    values: dict[tuple[str, str], dict[str, float]] = {}
    datasets: dict[str, str] = {}

    def cells(self, ctx: Context) -> list[GridCell]:
        out = []
        for method, variant, overrides in paper.INTERVENTIONS:
            for dataset, title in self.datasets.items():
                spec = intervention_spec(ctx, method, dataset, overrides)
                out.append(
                    GridCell(
                        "",
                        f"{NAMES[method]} {variant}",
                        title,
                        dataset,
                        spec,
                        spec.schedule_epochs,
                        self.values[(method, variant)][dataset],
                    )
                )
        return out

    def readings(self, ctx: Context, results) -> list[str]:
        return _intervention_readings(results)


class Table2(_InterventionTable):
    name = "table2"
    title = "Table 2: k-NN accuracy at epoch 500, balanced data"
    protocol = (
        "SimCLR and SimSiam, default / cut-initialised (c = 3, 9) / GradScale (p = 1, lr / 6, "
        "100 warm-up epochs), 500 epochs, k-NN at the last epoch; one run per cell "
        "(`configs/base`, `configs/data`, `configs/overrides`)."
    )
    values = paper.TABLE2
    datasets = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet100": "ImageNet-100"}


class Table3(_InterventionTable):
    name = "table3"
    title = "Table 3: k-NN accuracy at epoch 500, class-imbalanced data"
    protocol = (
        "As Table 2 on the exponentially imbalanced CIFAR-10 (5000 x 1.5^-i images in class "
        "i) and CIFAR-100 (500 x 1.034^-i), and on Flowers102 trained on its long-tailed test "
        "split and evaluated on its validation split."
    )
    values = paper.TABLE3
    datasets = {
        "cifar10_unbalanced": "CIFAR-10 Unb.",
        "cifar100_unbalanced": "CIFAR-100 Unb.",
        "flowers_unbalanced": "Flowers Unb.",
    }

    def readings(self, ctx: Context, results) -> list[str]:
        lines = super().readings(ctx, results)
        # Frequent classes have larger norms (Section 5): the last evaluation's mean ||z|| per
        # class of the default runs against the class sizes of the run's training set.
        import torch

        from ssl_norms.confidence import spearman

        for cell, result in results:
            if cell.row not in ("SimCLR Default", "SimSiam Default") or result.value is None:
                continue
            run_dir = ctx.run_dir(cell.spec)
            sizes = cifar_class_sizes(run_dir, cell.dataset)
            means = last_evaluation(read_rows(run_dir), M.class_mean(""))
            pairs = (
                [(sizes[int(k.rsplit("/", 1)[1])], v) for k, v in means.items()] if sizes else []
            )
            if len({n for n, _ in pairs}) < 3:
                continue  # no class sizes, or (nearly) balanced at this profile's subset
            rho = spearman(
                torch.tensor([float(n) for n, _ in pairs], dtype=torch.float64),
                torch.tensor([v for _, v in pairs], dtype=torch.float64),
            )
            if math.isnan(rho):
                continue
            lines.append(
                f"Frequent classes have larger norms ({cell.row}, {cell.column}): "
                f"{'yes' if rho > 0 else 'no'} (Spearman {rho:.2f} between class size and "
                "mean ||z||)"
            )
        return lines


#: Images per class of the full CIFAR training sets (before the exponential split).
CIFAR_PER_CLASS = {"cifar10_unbalanced": (5000, 10, 1.5), "cifar100_unbalanced": (500, 100, 1.034)}


def cifar_class_sizes(run_dir, dataset: str) -> list[int] | None:
    """Class sizes of an imbalanced CIFAR run's training set, from its ``config.yaml``
    (``imbalance_factor`` and ``train_subset``), or None for other data sets."""
    import yaml

    from datamodules.imbalance import exponential_counts

    if dataset not in CIFAR_PER_CLASS:
        return None
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except OSError:
        return None
    args = (config.get("data") or {}).get("init_args") or {}
    n_max, classes, factor = CIFAR_PER_CLASS[dataset]
    sizes = exponential_counts(n_max, float(args.get("imbalance_factor") or factor), classes)
    cap = args.get("train_subset")
    return [min(n, int(cap)) for n in sizes] if cap else sizes


class Table1(KnnTable):
    name = "table1"
    title = "Table 1: k-NN accuracy at epoch 100, cut constant x weight decay"
    protocol = (
        "SimCLR on CIFAR-100 and SimSiam on ImageNet-100 with cut constant c in {1, 2, 4, 8} and "
        "four weight decays each; the runs follow the 500-epoch schedule and are read at epoch "
        "100 (they stop there unless another result needs them longer), so the default-weight-"
        "decay c = 1 cells are Table 2's runs at epoch 100."
    )

    GRIDS = (
        ("simclr", "cifar100", "SimCLR on CIFAR-100", paper.TABLE1_SIMCLR),
        ("simsiam", "imagenet100", "SimSiam on ImageNet-100", paper.TABLE1_SIMSIAM),
    )

    def cells(self, ctx: Context) -> list[GridCell]:
        out = []
        for method, dataset, title, values in self.GRIDS:
            schedule = ctx.profile.schedule("table", dataset)
            epoch = ctx.profile.scaled(100, 500, schedule)
            for (c, wd), value in values.items():
                spec = RunSpec(
                    method,
                    dataset,
                    schedule,
                    wd_overrides(method, wd),
                    cut_constant=None if c == 1 else float(c),
                )
                column = f"wd {wd}" + (" (default)" if wd == DEFAULT_WD[method] else "")
                out.append(GridCell(title, f"c = {c}", column, dataset, spec, epoch, value))
        return out

    def readings(self, ctx: Context, results) -> list[str]:
        lines = []
        for _, _, title, _ in self.GRIDS:
            part = [(c, r) for c, r in results if c.table == title]
            for column in dict.fromkeys(c.column for c, _ in part):
                by = {c.row: r for c, r in part if c.column == column}
                base = by.get("c = 1")
                cuts = [(row, r) for row, r in by.items() if row != "c = 1" and r.value is not None]
                if base is None or base.value is None or not cuts:
                    continue
                best_row, best = max(cuts, key=lambda t: t[1].value)
                lines.append(
                    f"{title}, {column}: cut-init (best {best_row}, {best.value:.1f}) beats c = 1 "
                    f"({base.value:.1f}): {'yes' if best.value > base.value else 'no'}"
                )
        return lines


class TableS2(KnnTable):
    name = "table-s2"
    title = "Table S2: SimSiam batch size x cut-initialisation, epochs 100 and 500"
    protocol = (
        "SimSiam on CIFAR-100 (the paper does not name the data set; its batch-1024 values "
        "match Table 2's SimSiam CIFAR-100 cells) with batches of 256 x 1, 2 and 4 "
        "accumulated micro-batches, default and c = 9. Epochs 100 and 500 are read from one "
        "run per column and variant, on the 500-epoch schedule; the batch-1024 runs are Table "
        "2's. At the cpu and smoke sizes the micro-batch is the profile's batch_size."
    )

    def cells(self, ctx: Context) -> list[GridCell]:
        dataset = "cifar100"
        schedule = ctx.profile.schedule("table", dataset)
        base_accumulate = ctx.profile.accumulate  # the run of Table 2 has no override
        out = []
        for (epoch, variant, batch), value in paper.TABLE_S2.items():
            k = batch // 256
            overrides = ("cut_simsiam",) if variant.startswith("Cut") else ()
            spec = RunSpec(
                "simsiam",
                dataset,
                schedule,
                overrides,
                accumulate=None if k == base_accumulate else k,
            )
            at = ctx.profile.scaled(epoch, 500, schedule)
            out.append(
                GridCell(
                    "", f"epoch {epoch}: {variant}", f"batch {batch}", dataset, spec, at, value
                )
            )
        return out

    def readings(self, ctx: Context, results) -> list[str]:
        lines = []
        by = {(c.row, c.column): r for c, r in results}
        for batch in (256, 512, 1024):
            for epoch in (100, 500):
                d = by.get((f"epoch {epoch}: Default", f"batch {batch}"))
                c = by.get((f"epoch {epoch}: Cut (c = 9)", f"batch {batch}"))
                p_d = paper.TABLE_S2[(epoch, "Default", batch)]
                p_c = paper.TABLE_S2[(epoch, "Cut (c = 9)", batch)]
                if d and c and d.value is not None and c.value is not None:
                    agree = (c.value > d.value) == (p_c > p_d)
                    lines.append(
                        f"batch {batch}, epoch {epoch}: cut - default = {c.value - d.value:+.1f} "
                        f"(paper {p_c - p_d:+.1f}); same direction: {'yes' if agree else 'no'}"
                    )
        return lines
