"""The names of every metric the monitors log, as code (README "What is logged").

One module defines them, so that the plots (``ssl_norms.plot``), the paper runners
(``ssl_norms.reproduce``) and the README's table cannot drift apart from what a run writes
into ``RUN_DIR/csv/metrics.csv``. Fixed names are constants; indexed families (a class, a
norm bucket, an OOD set, a split) are functions that build the name, each with a
:class:`Pattern` that recognises it.

``z`` is the loss-space embedding (SimCLR: projector output; SimSiam/BYOL: predictor
output), ``h`` the backbone features (paper Appendix C.1); ``<q>`` one of
``q05 q25 q50 q75 q95``; ``<split>`` ``bank`` (the un-augmented training set) or ``eval``;
``<name>`` an OOD set; ``<c>`` a class index; ``<i>`` a norm bucket 0-19; ``<s>`` ``z`` or ``h``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "QUANTILES",
    "SPLITS",
    "STEP_STATS",
    "TRAIN_LOSS",
    "TRAIN_LOSS_EPOCH",
    "LR_BASE",
    "LR_EFFECTIVE",
    "LR_EFFECTIVE_MEDIAN",
    "KNN_TOP1",
    "KNN_TOP5",
    "CSV_INDEX_COLUMNS",
    "Pattern",
    "PATTERNS",
    "step_norm",
    "split_norm",
    "split_hist",
    "class_mean",
    "ood_mean",
    "ood_ratio",
    "bucket_acc",
    "bucket_count",
    "CLASS_MEAN_TABLE",
    "CLASS_MEAN_BAR",
    "TRAIN_TAU",
    "ood_detection",
    "selective",
    "health_eval",
    "health_step",
    "is_known",
    "match",
]

QUANTILES = ("q05", "q25", "q50", "q75", "q95")
#: The statistics of a set of norms: mean, standard deviation and the quantiles.
STEP_STATS = ("mean", "std", *QUANTILES)
SPLITS = ("bank", "eval")
SPACES = ("z", "h")

TRAIN_LOSS = "train/loss"
#: The epoch mean of the loss (the SSL module logs it beside ``train/loss``).
TRAIN_LOSS_EPOCH = "train/loss_epoch"
LR_BASE = "lr/base"
LR_EFFECTIVE = "lr/effective"
LR_EFFECTIVE_MEDIAN = "lr/effective_median"
KNN_TOP1 = "knn/top1"
KNN_TOP5 = "knn/top5"
#: W&B only: the per-class mean norms as a table and a bar chart.
CLASS_MEAN_TABLE = "norm/class_mean_table"
CLASS_MEAN_BAR = "norm/class_mean_bar"
#: BYOL's EMA decay at each optimizer step.
TRAIN_TAU = "train/tau"
OOD_STATS = ("auroc", "aupr", "fpr95")
SELECTIVE_STATS = ("aurc", "random_aurc", "excess_aurc", "spearman")
HEALTH_EVAL = ("rankme", "uniformity", "l2_std")
HEALTH_STEP = ("alignment", "opposite_halves")
#: Columns every CSV logger row has besides the metrics.
CSV_INDEX_COLUMNS = ("epoch", "step")


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}: choose one of {list(allowed)}")


def step_norm(space: str, stat: str) -> str:
    """Per-step statistic of ||z|| or ||h|| over the batch: ``norm/z_mean``, ``norm/h_q95``."""
    _check(space, SPACES, "space")
    _check(stat, STEP_STATS, "statistic")
    return f"norm/{space}_{stat}"


def split_norm(split: str, stat: str, space: str = "z") -> str:
    """Evaluation statistic of a split's norms: ``norm/bank_mean`` (z), ``norm/eval_h_q50`` (h)."""
    _check(split, SPLITS, "split")
    _check(space, SPACES, "space")
    _check(stat, STEP_STATS, "statistic")
    infix = "" if space == "z" else "h_"
    return f"norm/{split}_{infix}{stat}"


def split_hist(split: str, space: str = "z") -> str:
    """Histogram of a split's norms (W&B / TensorBoard only): ``norm/bank_hist``."""
    _check(split, SPLITS, "split")
    _check(space, SPACES, "space")
    return f"norm/{split}_hist" if space == "z" else f"norm/{split}_h_hist"


def class_mean(c: int | str) -> str:
    """Mean ||z|| of class ``c`` over the bank (paper Fig. 2c on real data)."""
    return f"norm/class_mean/{c}"


def ood_mean(name: str) -> str:
    """Mean ||z|| over the OOD set ``name``."""
    return f"norm/ood/{name}_mean"


def ood_ratio(name: str) -> str:
    """Mean ||z|| of the OOD set ``name`` over the bank's mean ||z|| (paper Fig. 3)."""
    return f"norm/ood_ratio/{name}"


def bucket_acc(i: int | str) -> str:
    """k-NN accuracy of norm bucket ``i`` (``||z|| / max ||z||``, paper Fig. 4 left)."""
    return f"knn/bucket_acc/{i}"


def bucket_count(i: int | str) -> str:
    """Number of eval samples in norm bucket ``i``."""
    return f"knn/bucket_count/{i}"


def ood_detection(stat: str, name: str) -> str:
    """The norm as an OOD score against the set ``name``: ``confidence/auroc/<name>`` (Fig. 3)."""
    _check(stat, OOD_STATS, "OOD statistic")
    return f"confidence/{stat}/{name}"


def selective(stat: str) -> str:
    """Selective prediction by the norm: ``confidence/aurc`` (Sec. 7, Fig. 4 left)."""
    _check(stat, SELECTIVE_STATS, "selective-prediction statistic")
    return f"confidence/{stat}"


def health_eval(metric: str, space: str) -> str:
    """A representation-health metric of the eval split: ``health/rankme_z``."""
    _check(metric, HEALTH_EVAL, "health metric")
    _check(space, SPACES, "space")
    return f"health/{metric}_{space}"


def health_step(metric: str) -> str:
    """A per-step metric of the positive pairs: ``health/opposite_halves`` (Table S1)."""
    _check(metric, HEALTH_STEP, "pair metric")
    return f"health/{metric}"


@dataclass(frozen=True)
class Pattern:
    """A metric name or family as the README writes it, how to recognise it, and its meaning.

    ``readme`` is the README table's spelling (``<c>``, ``<i>``, ``<name>`` for the
    variable part); ``regex`` matches every name of the family; ``when`` says when it is
    logged (``step``: every ``every_n_steps`` optimizer steps; ``eval``: every evaluation).
    """

    readme: str
    regex: str
    meaning: str
    when: str

    def matches(self, name: str) -> bool:
        return re.fullmatch(self.regex, name) is not None


_Q = "|".join(STEP_STATS)
_SPLIT = "|".join(SPLITS)

#: Every metric family the monitors log, in the README table's order.
PATTERNS: tuple[Pattern, ...] = (
    Pattern(
        "norm/z_mean, norm/z_std, norm/z_q05 ... q95",
        rf"norm/z_({_Q})",
        "per-step ||z|| over the batch (loss space: SimCLR projector output, SimSiam/BYOL "
        "predictor output)",
        "step",
    ),
    Pattern("norm/h_*", rf"norm/h_({_Q})", "the same for the backbone features h", "step"),
    Pattern(
        "lr/base, lr/effective, lr/effective_median",
        r"lr/(base|effective|effective_median)",
        "backbone lr and the batch mean / median of lr * ||z_i||^(p-2) (Theorem 3.4, "
        "p = GradScale power)",
        "step",
    ),
    Pattern(
        "knn/top1, knn/top5",
        r"knn/top[15]",
        "weighted k-NN (k = 200, T = 0.1) of the eval split against the un-augmented SSL "
        "training set",
        "eval",
    ),
    Pattern(
        "knn/bucket_acc/<i>, knn/bucket_count/<i>",
        r"knn/bucket_(acc|count)/\d+",
        "accuracy and size of bucket i of norm / max norm over the eval split: the norm as a "
        "confidence score (Fig. 4 left)",
        "eval",
    ),
    Pattern(
        "norm/<split>_mean, norm/<split>_std, norm/<split>_q05 ... q95, norm/<split>_h_*",
        rf"norm/({_SPLIT})_(h_)?({_Q})",
        "per-sample ||z|| (and ||h||) of the bank and eval splits at each evaluation: the CSV "
        "form of the histograms norm/<split>_hist and norm/<split>_h_hist (W&B, TensorBoard)",
        "eval",
    ),
    Pattern(
        "norm/class_mean/<c>",
        r"norm/class_mean/\d+",
        "mean ||z|| per class over the training set (Fig. 2c on real data)",
        "eval",
    ),
    Pattern(
        "norm/ood/<name>_mean, norm/ood_ratio/<name>",
        r"norm/ood/.+_mean|norm/ood_ratio/.+",
        "mean ||z|| of an out-of-distribution set, and its ratio to the training mean (Fig. 3)",
        "eval",
    ),
    Pattern(
        "norm/class_mean_table, norm/class_mean_bar",
        r"norm/class_mean_(table|bar)",
        "W&B only: the per-class mean norms as a table and a bar chart at each evaluation",
        "eval",
    ),
    Pattern(
        "confidence/auroc/<name>, confidence/aupr/<name>, confidence/fpr95/<name>",
        r"confidence/(auroc|aupr|fpr95)/.+",
        "the norm ||z|| as an out-of-distribution score: the eval split against each OOD set "
        "(Fig. 3)",
        "eval",
    ),
    Pattern(
        "confidence/aurc, confidence/random_aurc, confidence/excess_aurc, confidence/spearman",
        r"confidence/(aurc|random_aurc|excess_aurc|spearman)",
        "selective prediction: area under the risk-coverage curve of the k-NN when the lowest "
        "norms are rejected first, the same for random rejection, the excess over the optimum; "
        "rank correlation of the norm with k-NN correctness (Sec. 7, Fig. 4 left)",
        "eval",
    ),
    Pattern(
        "health/rankme_<s>, health/uniformity_<s>, health/l2_std_<s>",
        r"health/(rankme|uniformity|l2_std)_(z|h)",
        "effective rank (RankMe), uniformity (Wang & Isola), std of the l2-normalised embeddings "
        "(collapse signal) of the eval split, for s = z and h",
        "eval",
    ),
    Pattern(
        "health/alignment, health/opposite_halves",
        r"health/(alignment|opposite_halves)",
        "per step: alignment of the positive pairs, and the fraction of pairs more than pi/2 "
        "apart (Table S1)",
        "step",
    ),
    Pattern(
        "train/loss, train/loss_epoch",
        r"train/loss(_epoch)?",
        "the SSL loss per step, and its epoch mean",
        "step",
    ),
    Pattern(
        "train/tau",
        r"train/tau",
        "BYOL: the EMA decay of the target at each optimizer step",
        "step",
    ),
)

#: Histograms (W&B and TensorBoard only; the CSV gets their quantile columns instead).
HISTOGRAM_PATTERN = re.compile(rf"norm/({_SPLIT})_(h_)?hist")


def match(name: str) -> Pattern | None:
    """The family of a logged metric name, or None for a name the monitors never log."""
    for pattern in PATTERNS:
        if pattern.matches(name):
            return pattern
    return None


def is_known(name: str) -> bool:
    """Whether ``name`` is a metric the monitors log (a histogram or a CSV column)."""
    return match(name) is not None or HISTOGRAM_PATTERN.fullmatch(name) is not None
