"""``KNNMonitor``: weighted k-NN accuracy of the backbone features (paper Section 6, Tables 1-3).

Bank = loader ``"bank"`` (the un-augmented SSL training set), queries = loader ``"eval"``,
features ``h`` as gathered once by :class:`callbacks.EvaluationPass` (independent of the
number of processes). Optionally the accuracy per bucket of norm / max norm (paper Fig. 4
left). Its per-sample predictions go to the same pass's ``ConfidenceMonitor`` (AURC).
"""

from __future__ import annotations

from typing import Any, Literal

from callbacks._stats import bucket_accuracy
from callbacks.evaluation import EvalFeatures, EvalMonitor
from ssl_norms import metric_names as M
from ssl_norms.knn import knn_accuracy, knn_predict

__all__ = ["KNNMonitor"]


class KNNMonitor(EvalMonitor):
    """Logs ``knn/top1``, ``knn/top5`` (and ``knn/bucket_acc/<i>``, ``knn/bucket_count/<i>``).

    Runs on :class:`callbacks.EvaluationPass`'s schedule (which needs to be in
    ``trainer.callbacks`` too).

    Args:
        k: neighbours of the weighted k-NN (Wu et al., 2018, as in the paper); clamped to
            the bank size.
        temperature: of the weighted vote ``exp(cos / T)``.
        bucket_accuracy: also log the accuracy per bucket of ``||.|| / max ||.||`` over the
            evaluation split (paper Fig. 4 left).
        backend: ``"auto"`` (FAISS when installed, a GPU index when FAISS sees a GPU),
            ``"faiss"`` or ``"torch"`` (chunked matmul); see :func:`ssl_norms.knn.knn_predict`.
        num_buckets: 20 buckets of 0.05 (the paper's choice).
        bucket_min_count: buckets are kept when they hold more than this many samples (50).
        bucket_space: the norm that defines the buckets: ``"z"`` (loss space, where the
            paper's theory lives) or ``"h"`` (backbone features, the k-NN's input).
        chunk_size: queries per matmul of the torch backend (default: automatic).

    ``last_results`` holds ``top1``, ``top5``, ``bucket_acc``/``bucket_count`` (dicts by
    bucket), ``bank_size``, ``eval_size``, ``epoch``, ``step``; ``history`` lists them all.
    """

    provides = ("knn/pred", "knn/correct")

    def __init__(
        self,
        k: int = 200,
        temperature: float = 0.1,
        bucket_accuracy: bool = False,
        backend: Literal["auto", "faiss", "torch"] = "auto",
        num_buckets: int = 20,
        bucket_min_count: int = 50,
        bucket_space: Literal["z", "h"] = "z",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        if bucket_space not in ("z", "h"):
            raise ValueError(f"bucket_space must be 'z' or 'h', got {bucket_space!r}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = int(k)
        self.temperature = float(temperature)
        self.bucket_accuracy = bool(bucket_accuracy)
        self.backend = backend
        self.num_buckets = int(num_buckets)
        self.bucket_min_count = int(bucket_min_count)
        self.bucket_space = bucket_space
        self.chunk_size = chunk_size

    def needs(self) -> dict[str, set[str]]:
        return {"bank": {"h"}, "eval": {"h"}}

    def compute(self, features: EvalFeatures) -> dict[str, Any]:
        """k-NN of the eval split against the bank; shares the predictions in the pass."""
        bank, queries = features.split("bank"), features.split("eval")
        num_classes = int(max(bank["y"].max().item(), queries["y"].max().item())) + 1
        if features.num_classes is not None:
            num_classes = max(num_classes, features.num_classes)
        pred, scores = knn_predict(
            bank["h"],
            bank["y"],
            queries["h"],
            k=self.k,
            temperature=self.temperature,
            num_classes=num_classes,
            backend=self.backend,
            chunk_size=self.chunk_size,
        )
        y = queries["y"].to(scores.device)
        correct = pred.to(y.device) == y
        features.shared.setdefault("knn/pred", pred.cpu())
        features.shared.setdefault("knn/correct", correct.cpu())
        results: dict[str, Any] = {
            "top1": knn_accuracy(scores, y, top_k=1),
            "top5": knn_accuracy(scores, y, top_k=5),
            "bank_size": int(bank["h"].shape[0]),
            "eval_size": int(queries["h"].shape[0]),
        }
        if self.bucket_accuracy:
            norms = queries[f"{self.bucket_space}_norm"]
            buckets = bucket_accuracy(norms, correct, self.num_buckets, self.bucket_min_count)
            results["bucket_acc"] = {i: acc for i, (acc, _) in buckets.items()}
            results["bucket_count"] = {i: n for i, (_, n) in buckets.items()}
        return results

    def metrics(self, results: dict[str, Any]) -> dict[str, float]:
        metrics = {M.KNN_TOP1: results["top1"], M.KNN_TOP5: results["top5"]}
        for i, acc in results.get("bucket_acc", {}).items():
            metrics[M.bucket_acc(i)] = acc
            metrics[M.bucket_count(i)] = float(results["bucket_count"][i])
        return metrics
