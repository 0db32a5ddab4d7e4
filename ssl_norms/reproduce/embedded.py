"""The results read from a trained model's embeddings: Table S1 and Figures 3, S5, 4 and S6.

They reuse the tables' runs (no training of their own, except BYOL for Table S1): the
paper's Figures 3 and 4 train "the same experimental setup" for 512 epochs and Figure S6
default SimCLR for 512 epochs; here they read the 500-epoch runs of Table 2 (a difference
of 2% of the schedule, which saves four runs of 512 epochs), at their last epoch. Table S1
reads epochs 1 and 16 of those runs (and of BYOL's) from the checkpoints kept at those
stops. The embeddings are computed once per checkpoint in a subprocess
(``python -m ssl_norms.reproduce.embeddings``) and cached in ``RUN/embeddings/``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ssl_norms.reproduce import paper
from ssl_norms.reproduce.base import (
    CellResult,
    Context,
    Runner,
    Section,
    cell_result,
    markdown_table,
    pyplot,
    save_figure,
    versus,
    write_csv,
)
from ssl_norms.reproduce.embeddings import cache_path, load
from ssl_norms.reproduce.runs import RunRequest, RunSpec
from ssl_norms.reproduce.tables import NAMES

__all__ = ["TableS1", "Fig3", "Fig4", "FigS6", "read_cache"]

TITLES = {
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "imagenet100": "ImageNet-100",
    "cifar10_unbalanced": "CIFAR-10 Unb.",
}


def default_spec(ctx: Context, method: str, dataset: str) -> RunSpec:
    return RunSpec(method, dataset, ctx.profile.schedule("table", dataset))


def read_cache(ctx: Context, spec: RunSpec, epoch: int):
    """``(meta, arrays)`` of the run's embeddings at ``epoch``, or None."""
    return load(cache_path(ctx.run_dir(spec), epoch))


def _missing_result(ctx: Context, spec: RunSpec, epoch: int) -> CellResult:
    result = cell_result(ctx.run_dir(spec), None, epoch, spec.schedule_epochs)
    if result.status == "failed" and result.text.startswith("no value"):
        return CellResult(None, "not run", "no embeddings yet")
    return result


# ------------------------------------------------------------------------------ Table S1


class TableS1(Runner):
    name = "table-s1"
    title = "Table S1: positive pairs at an angle above pi/2 after epochs 1 and 16"
    protocol = (
        "SimCLR, SimSiam and BYOL on ImageNet-100 and CIFAR-100 with their default settings, "
        "on the 500-epoch schedule, stopped after epochs 1 and 16 (their checkpoints kept): "
        "the fraction of training images whose two augmented views embed (z, the model in "
        "training mode as the loss sees it) at a negative cosine, "
        "`ssl_norms.health.opposite_halves_rate`, over a seeded sample of training images. "
        "The SimCLR and SimSiam runs are Table 2's."
    )

    ROWS = tuple((m, d) for m in ("simclr", "simsiam", "byol") for d in ("imagenet100", "cifar100"))

    def _epochs(self, ctx: Context, dataset: str) -> tuple[int, int]:
        return ctx.profile.early(ctx.profile.schedule("table", dataset))

    def requests(self, ctx: Context) -> list[RunRequest]:
        out = []
        for method, dataset in self.ROWS:
            if not ctx.in_scope(self.name, dataset):
                continue
            first, second = self._epochs(ctx, dataset)
            out.append(
                RunRequest(
                    default_spec(ctx, method, dataset),
                    until=second,
                    keep=(first, second),
                    embed=(first, second),
                    pairs=ctx.profile.pairs,
                )
            )
        return out

    def collect(self, ctx: Context) -> Section:
        section = self.section(ctx)
        rows, records, lines = [], [], []
        for method, dataset in self.ROWS:
            first, second = self._epochs(ctx, dataset)
            spec = default_spec(ctx, method, dataset)
            cells = []
            values = []
            for epoch, published in zip(
                (first, second), paper.TABLE_S1[(method, dataset)], strict=True
            ):
                if not ctx.shown(self.name, dataset, spec):
                    result = CellResult(
                        None, "out of scope", f"not in the {ctx.profile.name} profile"
                    )
                else:
                    cache = read_cache(ctx, spec, epoch)
                    if cache is not None and "pairs.rate" in cache[1]:
                        rate = 100.0 * float(cache[1]["pairs.rate"])
                        result = CellResult(rate, "ok", f"{rate:.1f}")
                    else:
                        result = _missing_result(ctx, spec, epoch)
                    if ctx.in_scope(self.name, dataset):
                        section.in_scope += 1
                        if result.status not in ("ok", "diverged"):
                            what = f"{NAMES[method]} {TITLES[dataset]} epoch {epoch}"
                            section.missing.append(what)
                cells.append(versus(result, published))
                values.append(result.value)
                records.append(
                    {
                        "method": method,
                        "dataset": dataset,
                        "epoch": epoch,
                        "ours": result.value,
                        "paper": published,
                        "status": result.status,
                        "detail": result.text,
                        "run": spec.slug,
                    }
                )
            rows.append([NAMES[method], TITLES[dataset], *cells])
            if None not in values:
                lines.append(
                    f"{NAMES[method]} on {TITLES[dataset]}: the rate falls from epoch {first} to "
                    f"{second}: {'yes' if values[1] < values[0] else 'no'} "
                    f"({values[0]:.1f}% -> {values[1]:.1f}%)"
                )
        first, second = self._epochs(ctx, "cifar100")
        section.body += markdown_table(
            ["method", "dataset", f"epoch {first} (paper: 1)", f"epoch {second} (paper: 16)"],
            rows,
        )
        section.body += ["", "Each cell: ours / paper (difference), in % of positive pairs."]
        section.readings += lines
        section.files.append(write_csv(self.out(ctx) / f"{self.name}.csv", records))
        return section


# ------------------------------------------------------------------------------ Figure 3


class _DefaultRuns(Runner):
    """A result read from the default runs of ``METHODS`` x ``DATASETS``."""

    DATASETS: tuple[str, ...] = ()
    METHODS: tuple[str, ...] = ()

    def _runs(self, ctx: Context, shown: bool = False):
        """``(method, dataset, spec, counted)`` of the runs in scope (and, when ``shown``, of
        the runs out of scope that exist: reported, not counted)."""
        for dataset in self.DATASETS:
            for method in self.METHODS:
                spec = default_spec(ctx, method, dataset)
                counted = ctx.in_scope(self.name, dataset)
                if counted or (shown and ctx.shown(self.name, dataset, spec)):
                    yield method, dataset, spec, counted


class Fig3(_DefaultRuns):
    name = "fig3"
    title = "Figures 3 and S5: embedding norms per split, over the training mean"
    protocol = (
        "SimCLR and SimSiam (default settings) trained on CIFAR-10 and on CIFAR-100 (Table 2's "
        "runs, 500 epochs where the paper trains 512); ||z|| of every sample of each split "
        "(un-augmented), divided by the mean over the training set: violins (Fig. 3) and "
        "means (Fig. S5). The other CIFAR's training and test splits are the "
        "out-of-distribution sets; the cpu profile, without the full CIFAR-100, uses "
        "Fashion-MNIST's test split and the 20 CIFAR-100 test images of ../shared/data."
    )
    DATASETS = ("cifar10", "cifar100")
    METHODS = ("simclr", "simsiam")

    def requests(self, ctx: Context) -> list[RunRequest]:
        return [
            RunRequest(
                spec,
                until=spec.schedule_epochs,
                embed=(spec.schedule_epochs,),
                extra=tuple(e.argument(ctx.data_folder) for e in ctx.profile.extra_sets(dataset)),
            )
            for method, dataset, spec, _ in self._runs(ctx)
        ]

    def collect(self, ctx: Context) -> Section:
        section = self.section(ctx)
        panels = []
        records = []
        for method, dataset, spec, counted in self._runs(ctx, shown=True):
            section.in_scope += counted
            epoch = spec.schedule_epochs
            cache = read_cache(ctx, spec, epoch)
            label = f"{NAMES[method]}, trained on {TITLES[dataset]}"
            if cache is None:
                result = _missing_result(ctx, spec, epoch)
                if counted:
                    section.missing.append(f"{label} ({result.text})")
                section.body.append(f"- {label}: {result.text}")
                continue
            meta, arrays = cache
            bank = arrays["bank.z_norm"].astype(np.float64)
            scale = bank.mean()
            splits = []
            for key, title in meta["splits"].items():
                name = {"train": f"{TITLES[dataset]} train", "test": f"{TITLES[dataset]} test"}.get(
                    title, title
                )
                ratio = arrays[f"{key}.z_norm"].astype(np.float64) / scale
                splits.append((name, ratio))
                records.append(
                    {
                        "method": method,
                        "trained_on": dataset,
                        "split": name,
                        "n": len(ratio),
                        "mean_ratio": round(float(ratio.mean()), 4),
                        "median_ratio": round(float(np.median(ratio)), 4),
                    }
                )
            for what, message in meta.get("missing", {}).items():
                section.notes.append(f"{what}: data not available ({message.splitlines()[0]})")
            panels.append((label, splits))
            test = splits[1][1].mean()
            section.readings.append(
                f"{label}: the test split's norms are below the training set's (the paper: "
                f"slightly below): {'yes' if test < 1 else 'no'} (mean ratio {test:.3f})"
            )
            # One reading per set: near-OOD (another CIFAR) and far-OOD (grayscale
            # Fashion-MNIST) can differ, and the paper's Fig. 3 has only the former.
            for other, ratio in splits[2:]:
                smaller = ratio.mean() < test
                section.readings.append(
                    f"{label}: {other} has smaller norms than the test split: "
                    f"{'yes' if smaller else 'no'} (mean ratio {ratio.mean():.2f} against "
                    f"{test:.2f})"
                )
        if panels:
            out = self.out(ctx)
            section.files.append(self._violins(panels, out / "fig3_violins.png"))
            section.files.append(self._bars(panels, out / "figS5_bars.png"))
            section.body += [
                "![Figure 3](./fig3/fig3_violins.png)",
                "",
                "![Figure S5](./fig3/figS5_bars.png)",
                "",
            ]
            section.body += markdown_table(
                ["model", "split", "n", "mean ||z|| / training mean", "median"],
                [
                    [
                        f"{NAMES[r['method']]} on {TITLES[r['trained_on']]}",
                        str(r["split"]),
                        str(r["n"]),
                        f"{r['mean_ratio']:.3f}",
                        f"{r['median_ratio']:.3f}",
                    ]
                    for r in records
                ],
            )
            section.body.append("")
        section.body.append(
            "The paper's Fig. 3 shows the CIFAR-10 test split slightly below the training "
            "set and the other CIFAR's splits well below it, in both directions."
        )
        section.files.append(write_csv(self.out(ctx) / "fig3.csv", records))
        return section

    @staticmethod
    def _violins(panels, path: Path) -> Path:
        plt = pyplot()
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
        for ax, (label, splits) in zip(axes[0], panels, strict=True):
            data = [r for _, r in splits]
            ax.violinplot(data, showextrema=False)
            for i, r in enumerate(data, start=1):
                ax.hlines(r.mean(), i - 0.3, i + 0.3, color="black", lw=2)
                ax.annotate(f"{r.mean():.2f}", (i + 0.32, r.mean()), va="center", fontsize=7)
            ax.set_xticks(
                range(1, len(data) + 1), [n for n, _ in splits], rotation=25, ha="right", fontsize=7
            )
            ax.set_ylabel("||z|| / training mean")
            ax.set_title(label, fontsize=9)
        return save_figure(fig, path)

    @staticmethod
    def _bars(panels, path: Path) -> Path:
        plt = pyplot()
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
        for ax, (label, splits) in zip(axes[0], panels, strict=True):
            means = [r.mean() for _, r in splits]
            ax.bar(range(len(means)), means, color="C0")
            ax.hlines(
                means, np.arange(len(means)) - 0.4, np.arange(len(means)) + 0.4, color="black"
            )
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
            ax.set_xticks(
                range(len(means)), [n for n, _ in splits], rotation=25, ha="right", fontsize=7
            )
            ax.set_ylabel("mean ||z|| / training mean")
            ax.set_title(label, fontsize=9)
        return save_figure(fig, path)


# ------------------------------------------------------------------------------ Figure 4


class Fig4(_DefaultRuns):
    name = "fig4"
    title = "Figure 4: the norm as confidence (k-NN accuracy and human labels per norm bucket)"
    protocol = (
        "Table 2's default SimCLR and SimSiam runs at their last epoch. ||z|| / max ||z|| "
        "in 20 buckets of 0.05; buckets with more than 50 samples. Left: k-NN accuracy of the "
        "test split (k = 200, T = 0.1, backbone features, bank = training set). Middle: "
        "accuracy of the CIFAR-10N / CIFAR-100N consensus labels of the training images. "
        "Right: entropy of the CIFAR-10H human labels of the test images. The label files are "
        "read from --human-labels (default: the data folder) in their published formats."
    )
    DATASETS = ("cifar10", "cifar100", "imagenet100")
    METHODS = ("simclr", "simsiam")

    def requests(self, ctx: Context) -> list[RunRequest]:
        return [
            RunRequest(
                spec,
                until=spec.schedule_epochs,
                embed=(spec.schedule_epochs,),
                human_index=dataset in ("cifar10", "cifar100"),
            )
            for method, dataset, spec, _ in self._runs(ctx)
        ]

    def collect(self, ctx: Context) -> Section:
        import torch

        from ssl_norms.confidence import norm_relation
        from ssl_norms.human_agreement import QUANTITY, SPLIT, human_values_or_reasons

        section = self.section(ctx)
        min_count = ctx.profile.bucket_min_count
        panels: dict[str, list] = {"left": [], "middle": [], "right": []}
        unavailable: dict[str, str] = {}
        records = []
        for method, dataset, spec, counted in self._runs(ctx, shown=True):
            section.in_scope += counted
            epoch = spec.schedule_epochs
            label = f"{NAMES[method]} {TITLES[dataset]}"
            cache = read_cache(ctx, spec, epoch)
            if cache is None:
                result = _missing_result(ctx, spec, epoch)
                if counted:
                    section.missing.append(f"{label} ({result.text})")
                section.body.append(f"- {label}: {result.text}")
                continue
            _, arrays = cache
            norms = torch.as_tensor(arrays["eval.z_norm"]).double()
            correct = torch.as_tensor(arrays["eval.knn_pred"] == arrays["eval.y"]).double()
            jobs = [("left", label, "k-NN accuracy", norms, correct)]
            human = human_values_or_reasons(dataset, ctx.human_label_folder, arrays)
            for which, values in human.items():
                if isinstance(values, str):
                    unavailable[which] = values
                    continue
                panel = "right" if which == "cifar10h" else "middle"
                what = QUANTITY[which]
                x = torch.as_tensor(arrays[f"{SPLIT[which]}.z_norm"]).double()
                jobs.append((panel, f"{label} ({which.upper()})", what, x, values))
            for panel, name, what, x, values in jobs:
                relation = norm_relation(x, values, 20, min_count)
                buckets = relation["buckets"]
                panels[panel].append((name, buckets))
                for i, (mean, count) in buckets.items():
                    records.append(
                        {
                            "panel": panel,
                            "run": label,
                            "quantity": what,
                            "bucket": i,
                            "norm_over_max": (i + 0.5) / 20,
                            "mean": round(mean, 4),
                            "count": count,
                            "spearman": relation["spearman"],
                        }
                    )
                rho = relation["spearman"]
                if len(buckets) >= 2 and not math.isnan(rho):
                    lo, hi = buckets[min(buckets)][0], buckets[max(buckets)][0]
                    if panel == "right":
                        ok = rho < 0
                        claim = "human labels agree more (lower entropy) at larger norms"
                    else:
                        ok = rho > 0
                        claim = f"{what} rises with the norm"
                    section.readings.append(
                        f"{name}: {claim}: {'yes' if ok else 'no'} (Spearman {rho:+.2f} between "
                        f"||z|| and {what}; lowest bucket {lo:.2f}, highest {hi:.2f}, "
                        f"{len(buckets)} buckets over {min_count} samples)"
                    )
                elif len(buckets) < 2:
                    section.readings.append(
                        f"{name}: fewer than 2 buckets hold over {min_count} samples: no trend to read"
                    )
        for which, message in sorted(unavailable.items()):
            section.notes.append(f"{which.upper()}: data not available ({message})")
        out = self.out(ctx)
        if any(panels.values()):
            section.files.append(self._plot(panels, unavailable, out / "fig4.png"))
            section.body += ["![Figure 4](./fig4/fig4.png)", ""]
        section.files.append(write_csv(out / "fig4.csv", records))
        return section

    @staticmethod
    def _plot(panels, unavailable, path: Path) -> Path:
        plt = pyplot()
        fig, axes = plt.subplots(1, 3, figsize=(14, 4))
        titles = {
            "left": ("k-NN accuracy", "Fig. 4 left"),
            "middle": ("consensus label accuracy", "Fig. 4 middle (CIFAR-10N / 100N)"),
            "right": ("human label entropy", "Fig. 4 right (CIFAR-10H)"),
        }
        for ax, (panel, curves) in zip(axes, panels.items(), strict=True):
            ylabel, title = titles[panel]
            for name, buckets in curves:
                xs = [(i + 0.5) / 20 for i in buckets]
                ys = [m for m, _ in buckets.values()]
                counts = [c for _, c in buckets.values()]
                top = max(counts) if counts else 1
                ax.plot(xs, ys, lw=0.8)
                ax.scatter(xs, ys, s=[max(8.0, 120.0 * c / top) for c in counts], label=name)
            if not curves:
                missing = [
                    m for k, m in unavailable.items() if (k == "cifar10h") == (panel == "right")
                ]
                ax.text(
                    0.5, 0.5, "data not available", ha="center", va="center", transform=ax.transAxes
                )
                if missing:
                    ax.text(
                        0.5,
                        0.4,
                        missing[0][:60],
                        ha="center",
                        va="center",
                        fontsize=6,
                        transform=ax.transAxes,
                    )
            else:
                ax.legend(fontsize=7)
            ax.set(xlabel="||z|| / max ||z||", ylabel=ylabel, title=title, xlim=(0, 1))
        return save_figure(fig, path)


# ------------------------------------------------------------------------------ Figure S6


class FigS6(Runner):
    name = "fig-s6"
    title = "Figure S6: the 10 highest- and lowest-norm images per class"
    protocol = (
        "Default SimCLR on CIFAR-10 (Table 2's run, 500 epochs where the paper trains 512): "
        "the test images of each class with the largest and the smallest ||z||."
    )
    K = 10

    def requests(self, ctx: Context) -> list[RunRequest]:
        if not ctx.in_scope(self.name, "cifar10"):
            return []
        spec = default_spec(ctx, "simclr", "cifar10")
        return [
            RunRequest(
                spec, until=spec.schedule_epochs, embed=(spec.schedule_epochs,), extremes=self.K
            )
        ]

    def collect(self, ctx: Context) -> Section:
        section = self.section(ctx)
        spec = default_spec(ctx, "simclr", "cifar10")
        if not ctx.shown(self.name, "cifar10", spec):
            return section
        section.in_scope = int(ctx.in_scope(self.name, "cifar10"))
        cache = read_cache(ctx, spec, spec.schedule_epochs)
        if cache is None or "extremes.high" not in cache[1]:
            result = _missing_result(ctx, spec, spec.schedule_epochs)
            if section.in_scope:
                section.missing.append(f"SimCLR CIFAR-10 ({result.text})")
            section.body.append(f"SimCLR CIFAR-10: {result.text}")
            return section
        meta, arrays = cache
        path = self._plot(arrays, meta["class_names"], self.out(ctx) / "figS6.png")
        section.files.append(path)
        section.body += [
            "![Figure S6](./fig-s6/figS6.png)",
            "",
            "Left: the highest-norm test images of each class; right: the lowest. The paper "
            "finds the former prototypical and the latter obscure; judge by eye.",
        ]
        return section

    @staticmethod
    def _plot(arrays, class_names, path: Path) -> Path:
        plt = pyplot()
        high, low = arrays["extremes.high"], arrays["extremes.low"]
        if "extremes.count" in arrays:  # classes with fewer than K test images
            shown = max(1, int(arrays["extremes.count"].min()))
            high, low = high[:, :shown], low[:, :shown]
        classes, k = high.shape[:2]
        fig, axes = plt.subplots(1, 2, figsize=(2 + 0.6 * k * 2, 0.7 * classes + 1))
        for ax, images, title in ((axes[0], high, "highest ||z||"), (axes[1], low, "lowest ||z||")):
            rows = [
                np.concatenate(list(images[c].transpose(0, 2, 3, 1)), axis=1)
                for c in range(classes)
            ]
            ax.imshow(np.concatenate(rows, axis=0))
            size = images.shape[-1]
            ax.set_yticks(
                [size * (c + 0.5) for c in range(classes)], class_names[:classes], fontsize=7
            )
            ax.set_xticks([])
            ax.set_title(title)
        return save_figure(fig, path)
