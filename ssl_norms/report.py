"""The report of ``ssl-norms analyze``: the norm as a confidence score, in figures and tables.

From the per-split embeddings of :func:`ssl_norms.analyze.compute_embeddings` (norms ‖z‖
and ||h||, labels, the bank's and eval split's features ``h``), written to ``DIR``:

- ``norm_violins.png``: ‖z‖ per split divided by the training (bank) mean, means as black
  bars (paper Fig. 3);
- ``bucket_accuracy.png``: k-NN accuracy per bucket of ‖z‖ / max ‖z‖ over the eval split,
  marker size = samples (Fig. 4 left);
- ``roc_curves.png``: ROC of ‖z‖ as an OOD score, eval split against each OOD set (Fig. 3);
- ``accuracy_coverage.png``: k-NN accuracy when the lowest norms are rejected first, against
  random rejection (Section 7);
- ``highest_norm_images.png`` / ``lowest_norm_images.png``: the 10 eval images of highest /
  lowest ‖z‖ per class (Fig. S6);
- ``human_labels.png`` (CIFAR-10 / CIFAR-100 with the human label files): the accuracy of
  the CIFAR-10N / CIFAR-100N consensus labels of the training images and the entropy of
  the CIFAR-10H labels of the test images per bucket of ‖z‖ / max ‖z‖ (Fig. 4 middle,
  right; ``ssl_norms.human_agreement``);
- ``report.md``: the numbers (``docs/confidence.md`` defines them) and the figures.

The k-NN is the library's (``ssl_norms.knn``): bank = training set, features h.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from ssl_norms.confidence import (
    bucket_accuracy,
    norm_relation,
    ood_detection,
    roc_curve,
    selective_prediction,
    spearman,
)
from ssl_norms.knn import knn_predict

__all__ = ["write_report", "extreme_rows", "FIGURES", "HUMAN_FIGURE"]

FIGURES = (
    "norm_violins.png",
    "bucket_accuracy.png",
    "roc_curves.png",
    "accuracy_coverage.png",
    "highest_norm_images.png",
    "lowest_norm_images.png",
)
#: Drawn when human labels could be aligned (CIFAR-10 / CIFAR-100 with their label files).
HUMAN_FIGURE = "human_labels.png"
PER_CLASS = 10
#: Names of the human label sets in the report.
HUMAN_NAMES = {"cifar10n": "CIFAR-10N", "cifar100n": "CIFAR-100N", "cifar10h": "CIFAR-10H"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plot_violins(splits: dict[str, dict], path: Path) -> Path:
    plt = _pyplot()
    bank_mean = splits["bank"]["z_norm"].double().mean().item()
    names = list(splits)
    values = [(splits[n]["z_norm"].double() / bank_mean).numpy() for n in names]
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 4))
    ax.violinplot(values, showextrema=False)
    for i, v in enumerate(values, start=1):
        ax.hlines(v.mean(), i - 0.25, i + 0.25, color="black", lw=2)
        ax.annotate(f"{v.mean():.2f}", (i + 0.27, v.mean()), va="center", fontsize=8)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=20)
    ax.set_ylabel("‖z‖ / mean training ‖z‖")
    ax.set_title("Embedding norms per split (paper Fig. 3)")
    return _save(fig, path)


def plot_buckets(buckets: dict[int, tuple[float, int]], num_buckets: int, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    xs = [(i + 0.5) / num_buckets for i in buckets]
    counts = [n for _, n in buckets.values()]
    sizes = [20 + 200 * n / max(counts) for n in counts]
    ax.scatter(xs, [a for a, _ in buckets.values()], s=sizes)
    ax.plot(xs, [a for a, _ in buckets.values()], lw=1)
    ax.set_xlim(0, 1)
    ax.set_xlabel("‖z‖ / max ‖z‖ (bucket centre)")
    ax.set_ylabel("k-NN accuracy")
    ax.set_title("Accuracy per norm bucket (paper Fig. 4 left)")
    return _save(fig, path)


def plot_human(relations: dict[str, dict], num_buckets: int, path: Path) -> Path:
    """One panel per human label set: its per-sample value per norm bucket (Fig. 4)."""
    from ssl_norms.human_agreement import QUANTITY, SPLIT

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(relations), figsize=(5 * len(relations), 4), squeeze=False)
    for ax, (which, relation) in zip(axes[0], relations.items(), strict=True):
        buckets = relation["buckets"]
        xs = [(i + 0.5) / num_buckets for i in buckets]
        ys = [m for m, _ in buckets.values()]
        counts = [n for _, n in buckets.values()]
        ax.scatter(xs, ys, s=[20 + 200 * n / max(counts) for n in counts])
        ax.plot(xs, ys, lw=1)
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"‖z‖ / max ‖z‖ ({SPLIT[which]} split, bucket centre)")
        ax.set_ylabel(QUANTITY[which])
        panel = "right" if which == "cifar10h" else "middle"
        ax.set_title(f"{HUMAN_NAMES[which]} (paper Fig. 4 {panel})")
    return _save(fig, path)


def _human_section(
    splits: dict[str, dict],
    human: dict[str, torch.Tensor | str] | None,
    num_buckets: int,
    min_count: int,
    out: Path,
) -> list[str]:
    from ssl_norms.human_agreement import QUANTITY, SPLIT

    lines = ["## The norm against human labels (Fig. 4 middle and right)", ""]
    if human is None:
        return lines + [
            "Human labels exist for CIFAR-10 (CIFAR-10N, CIFAR-10H) and CIFAR-100 (CIFAR-100N) "
            "only.",
            "",
        ]
    relations = {}
    for which, values in human.items():
        name = HUMAN_NAMES[which]
        if isinstance(values, str):
            lines += [f"- {name}: not available ({values})"]
            continue
        norms = splits[SPLIT[which]]["z_norm"]
        relation = norm_relation(norms, values, num_buckets, min_count)
        relations[which] = relation
        expected = "falls" if which == "cifar10h" else "rises"
        lines += [
            f"- {name}: {QUANTITY[which]} of the {SPLIT[which]} split "
            f"({len(values)} samples, mean {values.double().mean().item():.4f}); Spearman "
            f"correlation with ‖z‖: {_fmt(relation['spearman'])} (the paper: it {expected} "
            "with the norm)"
        ]
    lines.append("")
    shown = {w: r for w, r in relations.items() if r["buckets"]}
    for which, relation in shown.items():
        lines += [
            f"| bucket of ‖z‖ / max | samples | {HUMAN_NAMES[which]} {QUANTITY[which]} |",
            "|---|---|---|",
        ]
        lines += [
            f"| [{i / num_buckets:.2f}, {(i + 1) / num_buckets:.2f}) | {n} | {m:.4f} |"
            for i, (m, n) in relation["buckets"].items()
        ]
        lines.append("")
    (out / HUMAN_FIGURE).unlink(missing_ok=True)  # an earlier report's, into the same folder
    if shown:
        plot_human(shown, num_buckets, out / HUMAN_FIGURE)
        lines += [f"![human labels]({HUMAN_FIGURE})", ""]
    elif relations:
        lines += [
            f"No norm bucket holds more than {min_count} samples (lower it with "
            "--bucket-min-count).",
            "",
        ]
    return lines


def plot_roc(eval_norms: torch.Tensor, ood: dict[str, torch.Tensor], aurocs, path: Path):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for name, norms in ood.items():
        scores = torch.cat([eval_norms, norms])
        positive = torch.cat([torch.ones_like(eval_norms), torch.zeros_like(norms)])
        fpr, tpr, _ = roc_curve(scores, positive)
        ax.plot(fpr.numpy(), tpr.numpy(), label=f"{name} (AUROC {aurocs[name]:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="chance")
    ax.set_xlabel("false-positive rate (OOD accepted)")
    ax.set_ylabel("true-positive rate (eval accepted)")
    ax.set_title("‖z‖ as an OOD score")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_coverage(selective: dict[str, Any], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    cov, acc = selective["coverage"].numpy(), selective["accuracy"].numpy()
    ax.plot(cov, acc, label=f"reject lowest ‖z‖ first (AURC {selective['aurc']:.3f})")
    base = 1 - selective["random_aurc"]
    ax.axhline(base, color="grey", ls="--", lw=1, label=f"random rejection ({base:.3f})")
    ax.set_xlabel("coverage (fraction of eval samples kept)")
    ax.set_ylabel("k-NN accuracy of the kept samples")
    ax.set_title("Accuracy-coverage (selective prediction)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _eval_images(datamodule, rows: list[int]) -> list[torch.Tensor] | None:
    """uint8 [3, H, W] eval images (None for data sets without images)."""
    from torchvision.transforms.v2 import functional as F

    base = getattr(datamodule.eval_dataset, "base", None)
    if base is None:
        return None
    size = int(getattr(datamodule, "image_size", 32))
    images = []
    for i in rows:
        img = base[i][0]
        if not (isinstance(img, torch.Tensor) and img.dtype == torch.uint8 and img.ndim == 3):
            return None
        images.append(F.resize(img, [size, size], antialias=True))
    return images


def extreme_rows(
    norms: torch.Tensor, labels: torch.Tensor, highest: bool, per_class: int = PER_CLASS
) -> dict[int, list[int]]:
    """Per class, the rows of its ``per_class`` highest (or lowest) norms, most extreme first
    (ties in row order)."""
    picks = {}
    for c in sorted(int(c) for c in labels.unique()):
        rows = torch.nonzero(labels == c).flatten()
        order = torch.argsort(norms[rows], descending=highest, stable=True)
        picks[c] = rows[order[:per_class]].tolist()
    return picks


def plot_extreme_images(datamodule, eval_split: dict, highest: bool, path: Path) -> Path | None:
    by_class = extreme_rows(eval_split["z_norm"], eval_split["y"], highest)
    classes, picks = list(by_class), list(by_class.values())
    images = _eval_images(datamodule, [i for row in picks for i in row])
    if images is None:
        return None
    # One image of the whole grid (rows = classes): far faster than a subplot per image.
    size = images[0].shape[-1]
    canvas = torch.full(
        (3, len(classes) * (size + 2), PER_CLASS * (size + 2)), 255, dtype=torch.uint8
    )
    it = iter(images)
    for r, row in enumerate(picks):
        for k in range(len(row)):
            top, left = r * (size + 2) + 1, k * (size + 2) + 1
            canvas[:, top : top + size, left : left + size] = next(it)
    plt = _pyplot()
    names = list(getattr(datamodule, "class_names", []) or [])
    fig, ax = plt.subplots(figsize=(PER_CLASS * 0.7 + 1.5, len(classes) * 0.7 + 0.6))
    ax.imshow(canvas.permute(1, 2, 0).numpy())
    ax.set_yticks(
        [r * (size + 2) + size / 2 for r in range(len(classes))],
        [names[c] if c < len(names) else str(c) for c in classes],
        fontsize=8,
    )
    ax.set_xticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    which = "highest" if highest else "lowest"
    fig.suptitle(f"The {PER_CLASS} {which}-norm eval images per class (paper Fig. S6)")
    return _save(fig, path)


def _fmt(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def write_report(
    out: Path,
    splits: dict[str, dict],
    datamodule,
    knn: dict[str, Any],
    bucket_min_count: int = 50,
    title: str = "",
    num_buckets: int = 20,
    human: dict[str, torch.Tensor | str] | None = None,
) -> Path:
    """Compute the confidence metrics, draw the figures, write ``out/report.md``.

    ``human``: per human label set, its values aligned with the bank or eval split or why
    they are not available (``ssl_norms.analyze.human_labels``); None for a data set
    without human labels."""
    datamodule.setup("validate")
    bank, evals = splits["bank"], splits["eval"]
    ood = {k[len("ood/") :]: v["z_norm"] for k, v in splits.items() if k.startswith("ood/")}
    num_classes = int(max(bank["y"].max(), evals["y"].max())) + 1
    pred, _ = knn_predict(
        bank["h"], bank["y"], evals["h"], k=knn["k"], temperature=knn["temperature"],
        num_classes=num_classes, backend="auto",
    )  # fmt: skip
    correct = pred.cpu() == evals["y"]
    eval_norms = evals["z_norm"]
    detection = {name: ood_detection(eval_norms, norms) for name, norms in ood.items()}
    selective = selective_prediction(eval_norms, correct)
    buckets = bucket_accuracy(eval_norms, correct, num_buckets, bucket_min_count)
    rho = spearman(eval_norms, correct.double())

    figures: dict[str, Path | None] = {
        "norm_violins.png": plot_violins(splits, out / "norm_violins.png"),
        "bucket_accuracy.png": plot_buckets(buckets, num_buckets, out / "bucket_accuracy.png")
        if buckets
        else None,
        "roc_curves.png": plot_roc(
            eval_norms, ood, {n: d["auroc"] for n, d in detection.items()}, out / "roc_curves.png"
        )
        if ood
        else None,
        "accuracy_coverage.png": plot_coverage(selective, out / "accuracy_coverage.png"),
    }
    for name, highest in (("highest_norm_images.png", True), ("lowest_norm_images.png", False)):
        figures[name] = plot_extreme_images(datamodule, evals, highest, out / name)

    bank_mean = bank["z_norm"].double().mean().item()
    size = getattr(datamodule, "image_size", None)
    lines = [
        "# The embedding norm as a confidence score",
        "",
        f"Checkpoint: {title}" if title else "",
        "",
        "Definitions: docs/confidence.md of ssl-norms; paper: Draganov et al., ICML 2025, "
        "Section 5 and Figs. 3, 4, S6. Norms are ‖z‖ (the loss-space embedding).",
        "",
        "## Norms per split (Fig. 3)",
        "",
        "| split | samples | mean ‖z‖ | mean / training mean |",
        "|---|---|---|---|",
    ]
    for name, data in splits.items():
        mean = data["z_norm"].double().mean().item()
        lines.append(f"| {name} | {len(data['y'])} | {mean:.4f} | {mean / bank_mean:.4f} |")
    lines += ["", "![norm violins](norm_violins.png)", ""]
    if ood:
        lines += [
            f"OOD images are served by the DataModule at the training size ({size} px, RGB): "
            "other sizes are resized, greyscale is turned into 3 channels.",
            "",
            "## The norm as an OOD score (eval split = positives)",
            "",
            "| OOD set | AUROC | AUPR-In | FPR at 95% TPR |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {n} | {_fmt(d['auroc'])} | {_fmt(d['aupr'])} | {_fmt(d['fpr95'])} |"
            for n, d in detection.items()
        ]
        lines += ["", "![ROC curves](roc_curves.png)", ""]
    else:
        lines += ["No OOD set: pass --ood NAME=FOLDER for the OOD figures.", ""]
    lines += [
        "## k-NN correctness against the norm (Fig. 4 left, Section 7)",
        "",
        f"Weighted k-NN (k = {knn['k']}, T = {knn['temperature']}) of the eval split against "
        f"the training set: accuracy {correct.double().mean().item():.4f}.",
        "",
        f"- AURC (lowest norms rejected first): {_fmt(selective['aurc'])}; random rejection: "
        f"{_fmt(selective['random_aurc'])}; optimal: {_fmt(selective['optimal_aurc'])}",
        f"- Spearman correlation of ‖z‖ with correctness: {_fmt(rho)}",
        "",
        "![accuracy-coverage](accuracy_coverage.png)",
        "",
    ]
    if buckets:
        lines += [
            "| bucket of ‖z‖ / max | samples | k-NN accuracy |",
            "|---|---|---|",
        ]
        lines += [
            f"| [{i / num_buckets:.2f}, {(i + 1) / num_buckets:.2f}) | {n} | {a:.4f} |"
            for i, (a, n) in buckets.items()
        ]
        lines += ["", "![bucket accuracy](bucket_accuracy.png)", ""]
    else:
        lines += [
            f"No norm bucket holds more than {bucket_min_count} eval samples (lower it with "
            "--bucket-min-count).",
            "",
        ]
    lines += _human_section(splits, human, num_buckets, bucket_min_count, out)
    lines += ["## Highest- and lowest-norm eval images per class (Fig. S6)", ""]
    if figures["highest_norm_images.png"] is not None:
        lines += ["![highest](highest_norm_images.png)", "", "![lowest](lowest_norm_images.png)"]
    else:
        lines += ["This data set has no images."]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report
