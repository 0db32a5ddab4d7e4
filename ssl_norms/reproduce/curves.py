"""Curves over training: Figures 5 and S3 (weight decay) and Figure S4 (cut constant).

Read from each run's ``csv/metrics.csv``: the training batches' mean ||z|| and the
effective learning rate ``lr * ||z||^(p-2)`` (the per-step monitors), averaged per epoch,
and the k-NN accuracy of each evaluation, against the epoch on a log scale (the paper:
epochs 1 to 256). The runs train 256 epochs; where the configs evaluate k-NN only every
n epochs (the paper's size), the runs stop at epochs 1, 2, 4, ..., 128 on their 256-epoch
schedule so that an evaluation falls on each (the evaluation loop runs at the last epoch of
every fit).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ssl_norms import metric_names as M
from ssl_norms.reproduce.base import (
    Context,
    Runner,
    Section,
    cell_result,
    markdown_table,
    per_epoch,
    pyplot,
    read_rows,
    save_figure,
    write_csv,
)
from ssl_norms.reproduce.runs import RunRequest, RunSpec
from ssl_norms.reproduce.tables import DEFAULT_WD, NAMES, wd_overrides

__all__ = ["Fig5", "FigS4", "log_stops"]


def log_stops(schedule: int) -> tuple[int, ...]:
    """Epochs 1, 2, 4, ... below ``schedule``."""
    out, e = [], 1
    while e < schedule:
        out.append(e)
        e *= 2
    return tuple(out)


class _Curves(Runner):
    """Runs whose per-epoch curves are plotted: subclasses list ``(panel, label, spec)``."""

    def runs(self, ctx: Context) -> list[tuple[str, str, str, RunSpec]]:
        """``(figure, panel, curve label, spec)`` of every run of the figure."""
        raise NotImplementedError

    def requests(self, ctx: Context) -> list[RunRequest]:
        out = []
        for _, _, _, spec in self.runs(ctx):
            if not ctx.in_scope(self.name, spec.dataset):
                continue
            stops = log_stops(spec.schedule_epochs) if ctx.profile.log_stops else ()
            out.append(RunRequest(spec, until=spec.schedule_epochs, stops=stops))
        return out

    def curves(self, ctx: Context):
        """Per figure and panel: ``[(label, spec, {metric: {epoch: value}}, cell)]``."""
        figures: dict[str, dict[str, list]] = {}
        for figure, panel, label, spec in self.runs(ctx):
            if not ctx.shown(self.name, spec.dataset, spec):
                continue
            rows = read_rows(ctx.run_dir(spec))
            series = {
                "norm": per_epoch(rows, M.step_norm("z", "mean")),
                "knn": {e: 100 * v for e, v in per_epoch(rows, M.KNN_TOP1).items()},
                "lr": per_epoch(rows, M.LR_EFFECTIVE),
            }
            final = series["knn"].get(spec.schedule_epochs)
            cell = cell_result(ctx.run_dir(spec), final, spec.schedule_epochs, spec.schedule_epochs)
            cell = replace(cell, counted=ctx.in_scope(self.name, spec.dataset))
            figures.setdefault(figure, {}).setdefault(panel, []).append((label, spec, series, cell))
        return figures

    def plot(self, figure: str, panels: dict[str, list], rows: tuple[str, ...], path: Path) -> Path:
        from matplotlib.ticker import FuncFormatter, NullFormatter

        plt = pyplot()
        ylabels = {"norm": "mean ||z|| (training)", "knn": "k-NN top-1 (%)", "lr": "effective lr"}
        fig, axes = plt.subplots(
            len(rows), len(panels), figsize=(4.5 * len(panels), 3.2 * len(rows)), squeeze=False
        )
        for j, (panel, curves) in enumerate(panels.items()):
            for i, what in enumerate(rows):
                ax = axes[i][j]
                for label, _, series, _ in curves:
                    points = sorted(series[what].items())
                    if points:
                        ax.plot(
                            [e for e, _ in points], [v for _, v in points], "o-", ms=3, label=label
                        )
                ax.set_xscale("log", base=2)
                positive = [v for _, _, s, _ in curves for v in s[what].values() if v > 0]
                if what in ("norm", "lr") and positive:
                    ax.set_yscale("log")
                    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                    # Minor labels only where there is no decade tick to read (they would
                    # overlap over several decades).
                    narrow = max(positive) < 10 * min(positive)
                    ax.yaxis.set_minor_formatter(
                        FuncFormatter(lambda v, _: f"{v:g}") if narrow else NullFormatter()
                    )
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.set(xlabel="epoch", ylabel=ylabels[what])
                if i == 0:
                    ax.set_title(panel)
                    if ax.get_legend_handles_labels()[0]:
                        ax.legend(fontsize=7)
        fig.suptitle(figure, fontsize=10)
        return save_figure(fig, path)

    def table(self, section: Section, figures) -> list[dict]:
        records = []
        rows = []
        for figure, panels in figures.items():
            for panel, curves in panels.items():
                for label, spec, series, cell in curves:
                    section.in_scope += cell.counted
                    if cell.counted and cell.status not in ("ok", "diverged"):
                        section.missing.append(f"{figure} {panel} {label} ({cell.text})")
                    norms = series["norm"]
                    first = norms[min(norms)] if norms else None
                    last = norms[max(norms)] if norms else None
                    rows.append(
                        [
                            figure,
                            panel,
                            label,
                            "-" if first is None else f"{first:.3g}",
                            "-" if last is None else f"{last:.3g}",
                            cell.text,
                        ]
                    )
                    records.append(
                        {
                            "figure": figure,
                            "panel": panel,
                            "curve": label,
                            "run": spec.slug,
                            "status": cell.status,
                            **{f"norm_epoch{e}": round(v, 5) for e, v in norms.items()},
                            **{f"knn_epoch{e}": round(v, 3) for e, v in series["knn"].items()},
                            **{f"lr_epoch{e}": v for e, v in series["lr"].items()},
                        }
                    )
        section.body += markdown_table(
            ["figure", "model", "curve", "||z|| first epoch", "||z|| last epoch", "final k-NN (%)"],
            rows,
        )
        section.body.append("")
        return records


WEIGHT_DECAYS = {"simclr": ("0", "1e-5", "5e-2"), "simsiam": ("0", "5e-4", "5e-2")}
PAPER_GOOD_WD = {"simclr": "1e-5", "simsiam": "5e-4"}


class Fig5(_Curves):
    name = "fig5"
    title = "Figures 5 and S3: weight decay, embedding norms and k-NN accuracy over training"
    protocol = (
        "SimCLR with weight decay 0 / 1e-5 / 5e-2 and SimSiam with 0 / 5e-4 / 5e-2, 256 "
        "epochs, on CIFAR-10 (Fig. 5) and the imbalanced CIFAR-10 (Fig. S3, with the "
        "effective learning rate). The SimSiam 5e-4 run is its default (shared with Fig. S4)."
    )
    DATASETS = {"cifar10": "Figure 5 (CIFAR-10)", "cifar10_unbalanced": "Figure S3 (CIFAR-10 Unb.)"}

    def runs(self, ctx: Context):
        out = []
        for dataset, figure in self.DATASETS.items():
            schedule = ctx.profile.schedule("curves", dataset)
            for method, decays in WEIGHT_DECAYS.items():
                for wd in decays:
                    spec = RunSpec(method, dataset, schedule, wd_overrides(method, wd))
                    out.append((figure, NAMES[method], f"wd {wd}", spec))
        return out

    def collect(self, ctx: Context) -> Section:
        section = self.section(ctx)
        figures = self.curves(ctx)
        out = self.out(ctx)
        for figure, panels in figures.items():
            rows = ("norm", "knn", "lr") if "S3" in figure else ("norm", "knn")
            name = "figS3.png" if "S3" in figure else "fig5.png"
            section.files.append(self.plot(figure, panels, rows, out / name))
            section.body += [f"![{figure}](./fig5/{name})", ""]
            for panel, curves in panels.items():
                section.readings += self._readings(figure, panel, curves)
        section.files.append(write_csv(out / "fig5.csv", self.table(section, figures)))
        return section

    @staticmethod
    def _readings(figure: str, panel: str, curves) -> list[str]:
        by = {label: (series, cell) for label, _, series, cell in curves}
        lines = []
        zero = by.get("wd 0")
        if zero and len(zero[0]["norm"]) >= 2:
            n = zero[0]["norm"]
            e0, e1 = min(n), max(n)
            lines.append(
                f"{figure}, {panel}: without weight decay the norm grows: "
                f"{'yes' if n[e1] > n[e0] else 'no'} (||z|| {n[e0]:.3g} at epoch {e0} -> "
                f"{n[e1]:.3g} at epoch {e1})"
            )
        big = by.get("wd 5e-2")
        if zero and big and zero[0]["norm"] and big[0]["norm"]:
            a = zero[0]["norm"][max(zero[0]["norm"])]
            b = big[0]["norm"][max(big[0]["norm"])]
            lines.append(
                f"{figure}, {panel}: weight decay 5e-2 ends with smaller norms than 0: "
                f"{'yes' if b < a else 'no'} ({b:.3g} vs {a:.3g})"
            )
        finals = {label: s[1].value for label, s in by.items() if s[1].value is not None}
        method = "simclr" if panel == "SimCLR" else "simsiam"
        good = f"wd {PAPER_GOOD_WD[method]}"
        if good in finals and len(finals) == 3:
            best = max(finals, key=finals.get)
            shown = ", ".join(f"{k} {v:.1f}" for k, v in finals.items())
            lines.append(
                f"{figure}, {panel}: the paper's moderate {good} gives the best final k-NN: "
                f"{'yes' if best == good else 'no'} ({shown})"
            )
        return lines


class FigS4(_Curves):
    name = "fig-s4"
    title = "Figure S4: the cut constant, embedding norms and k-NN accuracy over training"
    protocol = (
        "SimCLR, SimSiam and BYOL on CIFAR-10 at weight decay 5e-4 with cut constants 0.5, "
        "1, 2, 4, 8 (the paper's text names c > 1 and c < 1 but not the values; these are "
        "Table 1's plus one below 1), 256 epochs. SimSiam's and BYOL's c = 1 runs are their "
        "defaults (SimSiam's is Fig. 5's)."
    )
    CUTS = (0.5, 1.0, 2.0, 4.0, 8.0)

    def runs(self, ctx: Context):
        out = []
        dataset = "cifar10"
        schedule = ctx.profile.schedule("curves", dataset)
        for method in ("simclr", "simsiam", "byol"):
            overrides = () if DEFAULT_WD[method] == "5e-4" else ("wd_5e-4",)
            for c in self.CUTS:
                spec = RunSpec(
                    method, dataset, schedule, overrides, cut_constant=None if c == 1 else c
                )
                out.append(("Figure S4 (CIFAR-10, wd 5e-4)", NAMES[method], f"c = {c:g}", spec))
        return out

    def collect(self, ctx: Context) -> Section:
        section = self.section(ctx)
        figures = self.curves(ctx)
        out = self.out(ctx)
        for figure, panels in figures.items():
            section.files.append(self.plot(figure, panels, ("norm", "knn"), out / "figS4.png"))
            section.body += [f"![{figure}](./fig-s4/figS4.png)", ""]
            for panel, curves in panels.items():
                first = []
                for label, _, series, _ in curves:
                    n = series["norm"]
                    if n:
                        first.append((float(label.split("= ")[1]), n[min(n)]))
                if len(first) >= 2:
                    first.sort()
                    falling = all(b[1] < a[1] for a, b in zip(first, first[1:], strict=False))
                    shown = ", ".join(f"c {c:g}: {v:.3g}" for c, v in first)
                    section.readings.append(
                        f"{panel}: a larger cut constant starts with smaller norms: "
                        f"{'yes' if falling else 'no'} (first-epoch ||z||: {shown})"
                    )
                finals = {
                    float(label.split("= ")[1]): cell.value
                    for label, _, _, cell in curves
                    if cell.value is not None
                }
                if 1.0 in finals and any(c > 1 for c in finals):
                    best = max((c for c in finals if c > 1), key=finals.get)
                    section.readings.append(
                        f"{panel}: cut-init (best c = {best:g}, {finals[best]:.1f}) beats c = 1 "
                        f"({finals[1.0]:.1f}) at the last epoch: "
                        f"{'yes' if finals[best] > finals[1.0] else 'no'}"
                    )
        section.files.append(write_csv(out / "figS4.csv", self.table(section, figures)))
        return section
