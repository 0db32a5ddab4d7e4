"""``ConfidenceMonitor``: the norm as a confidence score, watched during training (paper Sec. 5).

On the shared evaluation pass (:class:`callbacks.EvaluationPass`), every n evaluations:

- OOD detection with the norm as the score (Fig. 3): the eval split (in-distribution, the
  positives) against each OOD loader: AUROC, AUPR-In and the FPR at 95% TPR;
- selective prediction (Section 7): the area under the risk-coverage curve when the
  lowest-norm eval samples are rejected first, with the k-NN predictions of the same pass
  (``KNNMonitor``: no second k-NN), next to random rejection, and the rank correlation of
  the norm with k-NN correctness (Fig. 4 left).

Definitions: ``ssl_norms.confidence`` and ``docs/confidence.md``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from callbacks.evaluation import EvalFeatures, EvalMonitor
from ssl_norms import metric_names as M
from ssl_norms.confidence import ood_detection, selective_prediction, spearman

__all__ = ["ConfidenceMonitor"]


class ConfidenceMonitor(EvalMonitor):
    """Logs ``confidence/auroc|aupr|fpr95/<name>`` and ``confidence/aurc`` (and companions).

    Args:
        every_n_evaluations: compute at every n-th evaluation of the run (and always at the
            final one, and in ``validate``/``test``).
        space: the norm used as the score: ``"z"`` (loss space, the paper's) or ``"h"``.
        aurc: also the selective-prediction metrics from ``KNNMonitor``'s predictions (a
            ``KNNMonitor`` must then be in ``trainer.callbacks``).

    ``last_results``: ``ood`` (name -> ``{"auroc", "aupr", "fpr95"}``), and with ``aurc``:
    ``aurc``, ``random_aurc``, ``optimal_aurc``, ``excess_aurc``, ``spearman`` (NaN when
    k-NN correctness is constant), ``eval_size``.
    """

    def __init__(
        self,
        every_n_evaluations: int = 1,
        space: Literal["z", "h"] = "z",
        aurc: bool = True,
    ) -> None:
        super().__init__()
        if every_n_evaluations < 1:
            raise ValueError(f"every_n_evaluations must be >= 1, got {every_n_evaluations}")
        if space not in ("z", "h"):
            raise ValueError(f"space must be 'z' or 'h', got {space!r}")
        self.every_n_evaluations = int(every_n_evaluations)
        self.space = space
        self.aurc = bool(aurc)

    def consumes(self) -> tuple[str, ...]:
        return ("knn/correct",) if self.aurc else ()

    def due(self, features: EvalFeatures) -> bool:
        return features.final or (features.evaluation + 1) % self.every_n_evaluations == 0

    def compute(self, features: EvalFeatures) -> dict[str, Any]:
        key = f"{self.space}_norm"
        eval_norms = features.split("eval")[key]
        results: dict[str, Any] = {"ood": {}, "eval_size": int(eval_norms.shape[0])}
        for name, data in features.ood.items():
            results["ood"][name] = ood_detection(eval_norms, data[key])
        if self.aurc:
            correct = features.shared["knn/correct"]
            sel = selective_prediction(eval_norms, correct)
            results.update(
                {k: sel[k] for k in ("aurc", "random_aurc", "optimal_aurc", "excess_aurc")}
            )
            results["spearman"] = spearman(eval_norms, correct.double())
        return results

    def metrics(self, results: dict[str, Any]) -> dict[str, float]:
        metrics = {
            M.ood_detection(stat, name): value
            for name, by_stat in results["ood"].items()
            for stat, value in by_stat.items()
        }
        for stat in ("aurc", "random_aurc", "excess_aurc", "spearman"):
            value = results.get(stat)
            if value is not None and not math.isnan(value):  # NaN: correctness is constant
                metrics[M.selective(stat)] = value
        return metrics
