"""The embedding norm as a confidence score (paper Section 5, Figs. 3-4, and Section 7).

Section 5 shows that the norm of an SSL embedding encodes the network's confidence: it is
smaller out of distribution (Fig. 3), it rises with k-NN accuracy (Fig. 4 left) and with
human agreement (Fig. 4 middle and right); the discussion (Section 7) proposes it as a
reliability score at inference. These functions measure each of those claims.

Conventions shared by every function:

- Inputs are 1-D torch tensors of equal length (CPU or GPU, any float dtype; booleans or
  0/1 integers for correctness and in-distribution flags). All arithmetic is float64 on
  the CPU; outputs are Python floats, small dicts, or float64 CPU tensors.
- A larger norm means more confident: in-distribution samples are the positives of the OOD
  metrics, and selective prediction rejects the smallest norms first.
- Ties are handled exactly, never by an arbitrary sort order: tied scores share one
  threshold (ROC, precision-recall), one average rank (Spearman), and the expected risk over
  every order of the tied samples (selective prediction).
- Empty inputs, mismatched lengths, non-finite values, labels other than 0/1, and OOD inputs
  with a single class raise ``ValueError`` naming the problem.

Exact definitions, with their sources, are in ``docs/confidence.md``.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "roc_curve",
    "auroc",
    "aupr",
    "fpr_at_tpr",
    "ood_detection",
    "risk_coverage_curve",
    "aurc",
    "selective_prediction",
    "norm_buckets",
    "bucket_mean",
    "bucket_accuracy",
    "spearman",
    "norm_relation",
    "label_entropy",
    "annotator_agreement",
    "majority_agreement",
]


# ---------------------------------------------------------------------------------------------
# Input checks


def _vector(x: torch.Tensor, name: str) -> torch.Tensor:
    """``x`` as a non-empty, finite, 1-D float64 CPU tensor, or a ValueError naming it."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per sample), got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty: pass at least one sample")
    out = x.detach().to(device="cpu", dtype=torch.float64)
    if not torch.isfinite(out).all():
        bad = int((~torch.isfinite(out)).sum())
        raise ValueError(f"{name} has {bad} NaN or infinite values: drop or fix those samples")
    return out


def _binary(x: torch.Tensor, name: str) -> torch.Tensor:
    """``x`` (bool or 0/1) as a 1-D float64 CPU tensor of 0.0 and 1.0."""
    out = _vector(x, name)
    if not ((out == 0) | (out == 1)).all():
        raise ValueError(f"{name} must hold only 0/1 (or False/True) values")
    return out


def _same_length(**tensors: torch.Tensor) -> None:
    lengths = {k: int(v.shape[0]) for k, v in tensors.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k}: {n}" for k, n in lengths.items())
        raise ValueError(f"inputs must have one value per sample; lengths differ ({shown})")


def _both_classes(positive: torch.Tensor) -> tuple[int, int]:
    n_pos = int(positive.sum())
    n_neg = positive.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        which = "in-distribution (positive)" if n_pos == 0 else "OOD (negative)"
        raise ValueError(
            f"OOD metrics need both classes, but there is no {which} sample: pass the "
            "in-distribution norms and the norms of a non-empty OOD set"
        )
    return n_pos, n_neg


# ---------------------------------------------------------------------------------------------
# OOD detection (paper Section 5, "Embedding Norms Encode Novelty", Fig. 3)


def _threshold_counts(
    scores: torch.Tensor, positive: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Distinct scores in decreasing order and the cumulative (TP, FP) counts at each.

    Threshold ``t`` accepts every sample with ``score >= t``, so tied scores are accepted
    together. Counts are exact integers (int64). We count here rather than call torchmetrics:
    its binary metrics treat scores outside [0, 1] as logits and apply a sigmoid, which
    saturates typical norms (> 37 in float64) into artificial ties.
    """
    order = torch.argsort(scores, descending=True, stable=True)
    sorted_scores = scores[order]
    pos = positive[order].long()
    thresholds, counts = torch.unique_consecutive(sorted_scores, return_counts=True)
    ends = torch.cumsum(counts, 0) - 1  # last position of each tie group
    tp = torch.cumsum(pos, 0)[ends]
    fp = (ends + 1) - tp
    return thresholds, tp, fp


def roc_curve(
    scores: torch.Tensor, positive: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ROC curve of ``scores`` for the ``positive`` (1 / True) class.

    Args:
        scores: [N] confidence scores (the embedding norms); larger means more positive.
        positive: [N] bool or 0/1; 1 marks positives (in-distribution samples for OOD).

    Returns:
        ``(fpr, tpr, thresholds)``, float64 tensors of length ``K + 1`` for ``K`` distinct
        scores: the point ``(0, 0)`` at threshold ``+inf``, then one point per distinct score
        in decreasing order (accept ``score >= threshold``). This is scikit-learn's
        ``roc_curve(..., drop_intermediate=False)``.
    """
    s = _vector(scores, "scores")
    y = _binary(positive, "positive")
    _same_length(scores=s, positive=y)
    n_pos, n_neg = _both_classes(y)
    thresholds, tp, fp = _threshold_counts(s, y)
    zero = torch.zeros(1, dtype=torch.float64)
    tpr = torch.cat([zero, tp.double() / n_pos])
    fpr = torch.cat([zero, fp.double() / n_neg])
    return fpr, tpr, torch.cat([torch.full((1,), math.inf, dtype=torch.float64), thresholds])


def auroc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """Area under the ROC curve (trapezoidal rule over every distinct threshold).

    Equals the probability that a random positive scores higher than a random negative,
    counting ties as one half (the Mann-Whitney U statistic divided by ``P * N``), and
    scikit-learn's ``roc_auc_score``. Inputs as in :func:`roc_curve`.
    """
    s = _vector(scores, "scores")
    y = _binary(positive, "positive")
    _same_length(scores=s, positive=y)
    n_pos, n_neg = _both_classes(y)
    _, tp, fp = _threshold_counts(s, y)
    tp = torch.cat([torch.zeros(1, dtype=torch.long), tp]).double()
    fp = torch.cat([torch.zeros(1, dtype=torch.long), fp]).double()
    area = ((fp[1:] - fp[:-1]) * (tp[1:] + tp[:-1]) / 2).sum()
    return float(area / (n_pos * n_neg))


def aupr(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """Area under the precision-recall curve of the positives, as average precision.

    ``AP = sum_k (R_k - R_{k-1}) P_k`` over the distinct thresholds in decreasing order, with
    ``R_k`` the recall and ``P_k`` the precision when accepting ``score >= t_k`` (no
    interpolation): scikit-learn's ``average_precision_score``. With the in-distribution
    samples as positives this is "AUPR-In". Inputs as in :func:`roc_curve`.
    """
    s = _vector(scores, "scores")
    y = _binary(positive, "positive")
    _same_length(scores=s, positive=y)
    n_pos, _ = _both_classes(y)
    _, tp, fp = _threshold_counts(s, y)
    precision = tp.double() / (tp + fp).double()
    recall_step = torch.diff(tp, prepend=torch.zeros(1, dtype=torch.long)).double() / n_pos
    return float((recall_step * precision).sum())


def fpr_at_tpr(scores: torch.Tensor, positive: torch.Tensor, tpr: float = 0.95) -> float:
    """False-positive rate at the largest threshold whose true-positive rate reaches ``tpr``.

    With ``P`` positives, the threshold ``t*`` is the largest distinct score such that at
    least ``ceil(tpr * P)`` positives have ``score >= t*``; the result is the fraction of
    negatives with ``score >= t*``. Tied scores are accepted together (no random split of a
    tie), so the TPR at ``t*`` may exceed ``tpr``. Since FPR and TPR both fall as the
    threshold rises, this is the smallest FPR among thresholds with TPR >= ``tpr``: the usual
    "FPR at 95% TPR" of OOD detection (in-distribution samples as positives).
    """
    if not 0.0 < tpr <= 1.0:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    s = _vector(scores, "scores")
    y = _binary(positive, "positive")
    _same_length(scores=s, positive=y)
    n_pos, n_neg = _both_classes(y)
    _, tp, fp = _threshold_counts(s, y)
    # Integer comparison: tp / P >= tpr in floating point can miss e.g. 19 / 20 vs 0.95.
    needed = math.ceil(tpr * n_pos - 1e-9)
    k = int(torch.nonzero(tp >= needed)[0, 0])  # tp is non-decreasing; the last reaches P
    return float(fp[k]) / n_neg


def ood_detection(id_norms: torch.Tensor, ood_norms: torch.Tensor) -> dict[str, float]:
    """The norm as an OOD detector (paper Fig. 3): in-distribution norms are the positives.

    Args:
        id_norms: [N_in] norms of the in-distribution evaluation split (e.g. CIFAR-10 test).
        ood_norms: [N_out] norms of one OOD set (e.g. CIFAR-100 or Fashion-MNIST).

    Returns:
        ``{"auroc", "aupr", "fpr95"}``: :func:`auroc`, :func:`aupr` (AUPR-In) and
        :func:`fpr_at_tpr` at 95% TPR. A perfect detector gives 1, 1, 0; chance gives 0.5,
        ``N_in / (N_in + N_out)``, 0.95.
    """
    a = _vector(id_norms, "id_norms")
    b = _vector(ood_norms, "ood_norms")
    scores = torch.cat([a, b])
    positive = torch.cat([torch.ones_like(a), torch.zeros_like(b)])
    return {
        "auroc": auroc(scores, positive),
        "aupr": aupr(scores, positive),
        "fpr95": fpr_at_tpr(scores, positive, 0.95),
    }


# ---------------------------------------------------------------------------------------------
# Selective prediction (paper Section 7: the norm as a reliability score at inference)


def risk_coverage_curve(
    norms: torch.Tensor, correct: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Selective risk at every coverage when the lowest-norm samples are rejected first.

    Args:
        norms: [N] embedding norms (the confidence score).
        correct: [N] bool or 0/1, whether each prediction (e.g. k-NN) is correct.

    Returns:
        ``(coverage, risk)``, float64 tensors of length N: ``coverage[n-1] = n / N`` and
        ``risk[n-1]`` the error rate among the ``n`` samples with the largest norms, for
        n = 1..N (accuracy is ``1 - risk``). When a coverage splits a group of tied norms,
        the risk is its expectation over every order of the tied samples: taking ``j`` of a
        tie group of ``g`` samples with ``e`` errors adds ``e * j / g`` errors.
    """
    x = _vector(norms, "norms")
    ok = _binary(correct, "correct")
    _same_length(norms=x, correct=ok)
    n = x.numel()
    order = torch.argsort(x, descending=True, stable=True)
    err = 1.0 - ok[order]
    _, group, size = torch.unique_consecutive(x[order], return_inverse=True, return_counts=True)
    group_errors = torch.zeros(size.numel(), dtype=torch.float64).index_add_(0, group, err)
    ends = torch.cumsum(size, 0)
    errors_before = torch.cumsum(group_errors, 0) - group_errors  # errors in earlier groups
    position = torch.arange(1, n + 1, dtype=torch.float64)
    taken = position - (ends - size)[group].double()  # j: how many of this group are taken
    cumulative = errors_before[group] + group_errors[group] * taken / size[group].double()
    return position / n, cumulative / position


def aurc(norms: torch.Tensor, correct: torch.Tensor) -> float:
    """Area under the risk-coverage curve: the mean selective risk over coverages n / N.

    ``AURC = (1 / N) * sum_{n=1}^{N} risk(n / N)``, with ``risk`` from
    :func:`risk_coverage_curve` (Geifman et al., 2019). Lower is better; rejecting at
    random gives, in expectation, the overall error rate.
    """
    _, risk = risk_coverage_curve(norms, correct)
    return float(risk.mean())


def selective_prediction(norms: torch.Tensor, correct: torch.Tensor) -> dict[str, object]:
    """Accuracy against coverage when the lowest norms are rejected first, and its AURC.

    Args:
        norms: [N] embedding norms; correct: [N] bool or 0/1 correctness of the predictions.

    Returns:
        A dict with
        - ``coverage``, ``accuracy``: float64 tensors [N], the accuracy of the ``n`` largest
          norms at coverage ``n / N`` (ties as in :func:`risk_coverage_curve`);
        - ``aurc``: :func:`aurc`;
        - ``random_aurc``: the expected AURC of rejection in random order, which equals the
          overall error rate ``E / N`` (every coverage has expected risk ``E / N``);
        - ``optimal_aurc``: the AURC when every error is rejected first,
          ``(1 / N) sum_n max(0, n - C) / n`` with ``C = N - E`` correct samples;
        - ``excess_aurc``: ``aurc - optimal_aurc`` (E-AURC of Geifman et al., 2019).
    """
    coverage, risk = risk_coverage_curve(norms, correct)
    ok = _binary(correct, "correct")
    n = ok.numel()
    n_correct = float(ok.sum())
    position = torch.arange(1, n + 1, dtype=torch.float64)
    optimal = float(((position - n_correct).clamp(min=0) / position).mean())
    value = float(risk.mean())
    return {
        "coverage": coverage,
        "accuracy": 1.0 - risk,
        "aurc": value,
        "random_aurc": (n - n_correct) / n,
        "optimal_aurc": optimal,
        "excess_aurc": value - optimal,
    }


# ---------------------------------------------------------------------------------------------
# Norm buckets and rank correlation (paper Fig. 4)


def norm_buckets(norms: torch.Tensor, num_buckets: int = 20) -> torch.Tensor:
    """Bucket index [N] (int64) of each ``norm / max norm`` (paper Section 5, Fig. 4).

    Bucket ``i`` holds ratios in ``[i / num_buckets, (i + 1) / num_buckets)``; the maximum
    (ratio 1) goes to the last bucket. The paper uses 20 buckets of 0.05.
    """
    if num_buckets < 1:
        raise ValueError(f"num_buckets must be at least 1, got {num_buckets}")
    x = _vector(norms, "norms")
    if (x < 0).any():
        raise ValueError("norms must be non-negative (they are ||z||)")
    top = x.max()
    if top <= 0:
        raise ValueError("every norm is 0: norm / max norm is undefined")
    return ((x / top) * num_buckets).floor().long().clamp_(0, num_buckets - 1)


def bucket_mean(
    norms: torch.Tensor,
    values: torch.Tensor,
    num_buckets: int = 20,
    min_count: int = 50,
) -> dict[int, tuple[float, int]]:
    """Mean of a per-sample value in each bucket of ``norm / max norm`` (paper Fig. 4).

    Buckets as in :func:`norm_buckets`. Returns ``{i: (mean, count)}`` for the buckets with
    more than ``min_count`` samples, in increasing ``i`` (the paper: 20 buckets, more than 50
    samples). ``values`` is e.g. correctness (Fig. 4 left), consensus-label correctness
    (middle) or the entropy of human labels (right).
    """
    v = _vector(values, "values")
    x = _vector(norms, "norms")
    _same_length(norms=x, values=v)
    bucket = norm_buckets(x, num_buckets)
    counts = torch.bincount(bucket, minlength=num_buckets)
    sums = torch.bincount(bucket, weights=v, minlength=num_buckets)
    return {
        i: ((sums[i] / counts[i]).item(), int(counts[i]))
        for i in range(num_buckets)
        if counts[i] > min_count
    }


def bucket_accuracy(
    norms: torch.Tensor,
    correct: torch.Tensor,
    num_buckets: int = 20,
    min_count: int = 50,
) -> dict[int, tuple[float, int]]:
    """Accuracy per bucket of ``norm / max norm`` (paper Fig. 4 left).

    Bucket i holds ratios in [i / num_buckets, (i + 1) / num_buckets) (the maximum, ratio 1,
    goes to the last bucket). Returns ``{i: (accuracy, count)}`` for buckets with more than
    ``min_count`` samples (the paper: 20 buckets of 0.05, more than 50 samples).
    """
    return bucket_mean(norms, _binary(correct, "correct"), num_buckets, min_count)


def _midranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1..N of a float64 vector, tied values sharing their average rank."""
    order = torch.argsort(x, stable=True)
    _, group, size = torch.unique_consecutive(x[order], return_inverse=True, return_counts=True)
    ends = torch.cumsum(size, 0).double()
    average = ends - (size.double() - 1) / 2  # mean of the ranks ends-size+1 .. ends
    ranks = torch.empty_like(x)
    ranks[order] = average[group]
    return ranks


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman's rank correlation: the Pearson correlation of the average ranks.

    Tied values share their average rank, as in ``scipy.stats.spearmanr``. Returns NaN when
    either input is constant (the correlation is undefined), as scipy does. For the norm
    against correctness (Fig. 4 left) pass ``correct`` as ``y``.
    """
    a = _vector(x, "x")
    b = _vector(y, "y")
    _same_length(x=a, y=b)
    ra = _midranks(a)
    rb = _midranks(b)
    ra = ra - ra.mean()
    rb = rb - rb.mean()
    denom = torch.sqrt((ra * ra).sum() * (rb * rb).sum())
    if denom == 0:
        return math.nan
    return float((ra * rb).sum() / denom)


def norm_relation(
    norms: torch.Tensor,
    values: torch.Tensor,
    num_buckets: int = 20,
    min_count: int = 50,
) -> dict[str, object]:
    """How a per-sample quantity varies with the norm (paper Fig. 4, every panel).

    Returns ``{"buckets": bucket_mean(...), "spearman": spearman(norms, values)}``: the
    per-bucket means of ``values`` as plotted in Fig. 4 and one rank correlation summarising
    the trend (positive when the value rises with the norm).
    """
    return {
        "buckets": bucket_mean(norms, values, num_buckets, min_count),
        "spearman": spearman(norms, values),
    }


# ---------------------------------------------------------------------------------------------
# Human labels (paper Fig. 4 middle: CIFAR-10N / CIFAR-100N; right: CIFAR-10H)


def label_entropy(distribution: torch.Tensor, base: float = math.e) -> torch.Tensor:
    """Shannon entropy of each row of human label counts or probabilities (Fig. 4 right).

    Args:
        distribution: [N, C] non-negative counts (e.g. CIFAR-10H's ``cifar10h-counts.npy``)
            or probabilities; each row is divided by its sum first.
        base: logarithm base; the default gives nats (``math.log(C)`` at most). The paper
            does not state one; the base rescales every value equally, so trends are alike.

    Returns:
        [N] float64 entropies ``-sum_c p_c log p_c`` with ``0 log 0 = 0``: 0 when every
        annotator chose the same class.
    """
    p = _distribution(distribution)
    logs = torch.where(p > 0, torch.log(p), torch.zeros_like(p))
    return -(p * logs).sum(1) / math.log(base)


def _distribution(distribution: torch.Tensor) -> torch.Tensor:
    if not isinstance(distribution, torch.Tensor) or distribution.ndim != 2:
        shape = tuple(distribution.shape) if isinstance(distribution, torch.Tensor) else None
        raise ValueError(f"distribution must be a 2-D tensor [N, C], got shape {shape}")
    if distribution.shape[0] == 0 or distribution.shape[1] == 0:
        raise ValueError("distribution is empty: pass at least one sample and one class")
    d = distribution.detach().to(device="cpu", dtype=torch.float64)
    if not torch.isfinite(d).all() or (d < 0).any():
        raise ValueError("distribution must hold finite, non-negative counts or probabilities")
    total = d.sum(1, keepdim=True)
    if (total == 0).any():
        raise ValueError(f"{int((total == 0).sum())} rows of distribution sum to 0 (no labels)")
    return d / total


def annotator_agreement(annotations: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Fraction of annotators whose label equals the reference label, per sample (Fig. 4).

    Args:
        annotations: [N] or [N, A] integer labels from A annotators (CIFAR-10N:
            ``random_label1..3``; a consensus label such as ``aggre_label`` as [N]).
        reference: [N] integer reference labels (the clean CIFAR label).

    Returns:
        [N] float64 in [0, 1]. With the consensus label as ``annotations`` it is 1 where the
        consensus is right and 0 where it is wrong: the "accuracy of consensus labels" of
        Fig. 4 (middle) per sample.
    """
    if not isinstance(annotations, torch.Tensor) or annotations.ndim not in (1, 2):
        raise ValueError("annotations must be a tensor [N] or [N, A] of integer labels")
    a = annotations.detach().cpu()
    a = a[:, None] if a.ndim == 1 else a
    r = reference.detach().cpu()
    if r.ndim != 1:
        raise ValueError(f"reference must be 1-D [N], got shape {tuple(r.shape)}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError("annotations are empty: pass at least one sample and one annotator")
    _same_length(annotations=a, reference=r)
    return (a == r[:, None]).double().mean(1)


def majority_agreement(distribution: torch.Tensor) -> torch.Tensor:
    """Fraction of annotators who chose the most chosen class, per sample.

    ``distribution`` is [N, C] counts or probabilities (rows normalised first); returns [N]
    float64 ``max_c p_c`` in ``[1 / C, 1]``, a plainer agreement score than
    :func:`label_entropy` (which Fig. 4 right plots).
    """
    return _distribution(distribution).max(1).values
