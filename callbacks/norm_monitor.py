"""``EmbeddingNormMonitor``: embedding norms during training and evaluation (paper Secs. 3-5).

- Training, every n steps: mean, std and quantiles of ||z|| (loss space, where the paper's
  theory holds) and ||h|| (backbone), read from ``training_step``'s outputs (no second
  forward pass) and gathered across ranks.
- Each evaluation (:class:`callbacks.EvaluationPass`): the histogram of the per-sample norms
  over the bank and eval splits, the mean ||z|| per class of the bank (paper Fig. 2c; also a
  W&B table and bar chart) and, for every OOD loader, its mean ||z|| divided by the bank's
  (paper Fig. 3).
"""

from __future__ import annotations

from typing import Any

import torch

from callbacks._gather import all_gather_cat
from callbacks._logging import (
    StepBuffer,
    confirm_finite_step,
    log_histogram,
    log_scalars,
    log_step,
    optimizer_step_completes,
    train_step_logged,
)
from callbacks._stats import class_means, norm_histogram, norm_summary, ood_ratio
from callbacks._wandb import log_wandb_media, wandb_runs
from callbacks.evaluation import EvalFeatures, EvalMonitor
from ssl_norms import metric_names as M
from ssl_norms.norms import embedding_norms

__all__ = ["EmbeddingNormMonitor", "HIST_SPLITS"]

HIST_SPLITS = ("bank", "eval")


class EmbeddingNormMonitor(EvalMonitor):
    """Logs ``norm/z_*``, ``norm/h_*`` per step and ``norm/<split>_*`` per evaluation.

    The per-step ``norm/z_*`` and ``norm/h_*`` are computed from ``training_step``'s outputs
    over every sample the logged optimizer step's gradient was summed over: with
    ``accumulate_grad_batches > 1`` the per-sample norms of each micro-batch of a logged
    step are buffered in ``on_train_batch_end`` (steps that are not logged buffer nothing),
    gathered across ranks and summarised once, when the optimizer step completes.

    The evaluation statistics come from :class:`callbacks.EvaluationPass` (without one in
    ``trainer.callbacks``, only the per-step statistics are logged).

    Args:
        every_n_steps: training statistics every n optimizer steps.
        histogram_bins: bins of the evaluation histograms (over [min, max] of the norms).

    ``last_train_results`` (rank 0) holds the latest per-step statistics,
    ``{"z": {...}, "h": {...}}``; ``last_results`` (every rank) the latest evaluation
    ones: ``splits[<split>][<"z"|"h">]`` (summary dict), ``hist[<split>][<"z"|"h">]``
    (counts, edges), ``class_mean`` / ``class_mean_h`` (class -> mean norm, bank split),
    ``ood_ratio`` / ``ood_mean`` (OOD name -> value), ``sizes`` (split -> samples).
    """

    per_step = True

    def __init__(self, every_n_steps: int = 50, histogram_bins: int = 64) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        super().__init__()
        self.every_n_steps = int(every_n_steps)
        self.histogram_bins = int(histogram_bins)
        self.last_train_results: dict[str, Any] = {}
        self._train = StepBuffer()

    # -- training -------------------------------------------------------------------
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not train_step_logged(trainer, self.every_n_steps):
            return
        if isinstance(outputs, dict):
            norms = {
                key: embedding_norms(outputs[key])
                for key in ("z", "h")
                if outputs.get(key) is not None
            }
            if norms:
                self._train.add(log_step(trainer), norms)
        if not optimizer_step_completes(trainer):
            return
        norms = self._train.pop()  # every micro-batch of this optimizer step
        if not norms:
            return
        confirm_finite_step(pl_module)  # before the outputs are read
        norms = all_gather_cat(pl_module, norms)
        if not trainer.is_global_zero:
            return
        metrics, results = {}, {}
        for key, values in norms.items():
            results[key] = norm_summary(values)
            metrics.update({M.step_norm(key, stat): v for stat, v in results[key].items()})
        self.last_train_results = results
        log_scalars(trainer, metrics, log_step(trainer))

    # -- evaluation -----------------------------------------------------------------
    def compute(self, features: EvalFeatures) -> dict[str, Any]:
        """Evaluation statistics of the gathered per-split norms ``z_norm``, ``h_norm``."""
        results: dict[str, Any] = {
            "splits": {},
            "hist": {},
            "sizes": {},
            "ood_ratio": {},
            "ood_mean": {},
        }
        for split, data in features.splits.items():
            norms = {"z": data["z_norm"], "h": data["h_norm"]}
            results["sizes"][split] = int(norms["z"].shape[0])
            results["splits"][split] = {key: norm_summary(v) for key, v in norms.items()}
            if split in HIST_SPLITS:
                results["hist"][split] = {
                    key: tuple(t.tolist() for t in norm_histogram(v, self.histogram_bins))
                    for key, v in norms.items()
                }
        bank = features.splits.get("bank")
        if bank is not None:
            n = features.num_classes
            results["class_mean"] = class_means(bank["z_norm"], bank["y"], n)
            results["class_mean_h"] = class_means(bank["h_norm"], bank["y"], n)
            results["class_count"] = {c: int((bank["y"] == c).sum()) for c in results["class_mean"]}
            for name, data in features.ood.items():
                results["ood_ratio"][name] = ood_ratio(data["z_norm"], bank["z_norm"])
                results["ood_mean"][name] = data["z_norm"].double().mean().item()
        return results

    def metrics(self, results: dict[str, Any]) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for split, by_key in results["splits"].items():
            if split.startswith("ood/"):
                metrics[M.ood_mean(split[len("ood/") :])] = by_key["z"]["mean"]
                continue
            for key, summary in by_key.items():
                metrics.update({M.split_norm(split, stat, key): v for stat, v in summary.items()})
        for c, v in results.get("class_mean", {}).items():
            metrics[M.class_mean(c)] = v
        for name, v in results["ood_ratio"].items():
            metrics[M.ood_ratio(name)] = v
        return metrics

    def log_media(self, trainer, results: dict, features: EvalFeatures, step: int) -> None:
        for split, by_key in results["hist"].items():
            for key, (counts, edges) in by_key.items():
                name = M.split_hist(split, key)
                values = features.splits[split][f"{key}_norm"]
                log_histogram(
                    trainer, name, values, torch.tensor(counts), torch.tensor(edges), step
                )
        if results.get("class_mean") and wandb_runs(trainer):
            log_wandb_media(trainer, class_mean_chart(results, features.class_names), step)


def class_mean_chart(results: dict[str, Any], class_names: list[str] | None) -> dict[str, Any]:
    """Per-class mean norms of the bank as a ``wandb.Table`` and its bar chart (Fig. 2c).

    Columns ``class``, ``name``, ``mean_z``, ``mean_h``, ``count``; logged as
    ``norm/class_mean_table`` and ``norm/class_mean_bar`` at every evaluation.
    """
    import wandb

    rows = []
    for c, mean_z in results["class_mean"].items():
        name = class_names[c] if class_names and c < len(class_names) else str(c)
        rows.append([c, name, mean_z, results["class_mean_h"][c], results["class_count"][c]])
    table = wandb.Table(columns=["class", "name", "mean_z", "mean_h", "count"], data=rows)
    bar = wandb.plot.bar(table, "name", "mean_z", title="mean ||z|| per class (bank)")
    return {M.CLASS_MEAN_TABLE: table, M.CLASS_MEAN_BAR: bar}
