"""``EmbeddingNormMonitor``: embedding norms during training and evaluation (issue 5, item 3).

- Training, every n steps: mean, std and quantiles of ||z|| (loss space, where the paper's
  theory holds; DESIGN §2) and ||h|| (backbone), read from ``training_step``'s outputs (no
  second forward pass) and gathered across ranks.
- Each evaluation epoch: the histogram of the per-sample norms over the bank and eval
  splits, the mean ||z|| per class of the bank (paper Fig. 2c) and, for every OOD loader,
  its mean ||z|| divided by the bank's (paper Fig. 3).
"""

from __future__ import annotations

from typing import Any

import torch

from callbacks._eval_outputs import (
    EvalLoopCallback,
    EvalOutputs,
    check_eval_outputs,
    eval_loader_names,
    num_eval_batches,
)
from callbacks._gather import all_gather_cat, sync_buffers_from_rank_zero
from callbacks._logging import (
    StepBuffer,
    log_epoch_metrics,
    log_histogram,
    log_scalars,
    log_step,
    optimizer_step_completes,
    train_step_logged,
)
from callbacks._stats import class_means, norm_histogram, norm_summary, ood_ratio
from ssl_norms.norms import embedding_norms

__all__ = ["EmbeddingNormMonitor", "HIST_SPLITS"]

HIST_SPLITS = ("bank", "eval")


class EmbeddingNormMonitor(EvalLoopCallback):
    """Logs ``norm/z_*``, ``norm/h_*`` per step and ``norm/<split>_*`` per evaluation.

    The per-step ``norm/z_*`` and ``norm/h_*`` are computed from ``training_step``'s outputs
    over every sample the logged optimizer step's gradient was summed over: with
    ``accumulate_grad_batches > 1`` the per-sample norms of each micro-batch of a logged
    step are buffered in ``on_train_batch_end`` (steps that are not logged buffer nothing),
    gathered across ranks and summarised once, when the optimizer step completes.

    Args:
        every_n_steps: training statistics every n optimizer steps.
        histogram_bins: bins of the evaluation histograms (over [min, max] of the norms).

    ``last_train_results`` (rank 0) holds the latest per-step statistics,
    ``{"z": {...}, "h": {...}}``; ``last_results`` (every rank) the latest evaluation
    ones: ``splits[<split>][<"z"|"h">]`` (summary dict), ``hist[<split>][<"z"|"h">]``
    (counts, edges), ``class_mean`` / ``class_mean_h`` (class -> mean norm, bank split),
    ``ood_ratio`` / ``ood_mean`` (OOD name -> value), ``sizes`` (split -> samples).
    The sanity-check pass is skipped.
    """

    def __init__(self, every_n_steps: int = 50, histogram_bins: int = 64) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = int(every_n_steps)
        self.histogram_bins = int(histogram_bins)
        self.last_train_results: dict[str, Any] = {}
        self.last_results: dict[str, Any] = {}
        self._outputs = EvalOutputs()
        self._active = False
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
        norms = all_gather_cat(pl_module, norms)
        if not trainer.is_global_zero:
            return
        metrics, results = {}, {}
        for key, values in norms.items():
            results[key] = norm_summary(values)
            metrics.update({f"norm/{key}_{stat}": v for stat, v in results[key].items()})
        self.last_train_results = results
        log_scalars(trainer, metrics, log_step(trainer))

    # -- evaluation -----------------------------------------------------------------
    def _start(self, trainer, pl_module) -> None:
        self._active = not trainer.sanity_checking
        if self._active:
            self._outputs.reset()
            sync_buffers_from_rank_zero(pl_module)

    def _collect(self, outputs, dataloader_idx: int) -> None:
        if not self._active:
            return
        outputs = check_eval_outputs(outputs)
        h = outputs["h"]
        z = outputs.get("z")
        self._outputs.add(
            dataloader_idx,
            {
                "z": embedding_norms(z if z is not None else h),
                "h": embedding_norms(h),
                "y": outputs["y"].long(),
                "idx": outputs["idx"].long(),
            },
        )

    def compute(
        self, splits: dict[str, dict[str, torch.Tensor]], num_classes: int | None = None
    ) -> dict:
        """Evaluation statistics of gathered per-split norms ``{split: {"z", "h", "y"}}``."""
        results: dict[str, Any] = {
            "splits": {},
            "hist": {},
            "sizes": {},
            "ood_ratio": {},
            "ood_mean": {},
        }
        for split, data in splits.items():
            results["sizes"][split] = int(data["z"].shape[0])
            results["splits"][split] = {key: norm_summary(data[key]) for key in ("z", "h")}
            if split in HIST_SPLITS:
                results["hist"][split] = {
                    key: tuple(t.tolist() for t in norm_histogram(data[key], self.histogram_bins))
                    for key in ("z", "h")
                }
        bank = splits.get("bank")
        if bank is not None:
            results["class_mean"] = class_means(bank["z"], bank["y"], num_classes)
            results["class_mean_h"] = class_means(bank["h"], bank["y"], num_classes)
            for split, data in splits.items():
                if split.startswith("ood/"):
                    name = split[len("ood/") :]
                    results["ood_ratio"][name] = ood_ratio(data["z"], bank["z"])
                    results["ood_mean"][name] = data["z"].double().mean().item()
        return results

    def _end(self, trainer, pl_module) -> None:
        if not self._active:
            return
        self._active = False
        n_loaders = len(num_eval_batches(trainer))
        names = eval_loader_names(trainer, n_loaders)
        splits = {name: self._outputs.gather(pl_module, i) for i, name in enumerate(names)}
        self._outputs.reset()
        results = None
        if trainer.is_global_zero:
            declared = getattr(getattr(trainer, "datamodule", None), "num_classes", None)
            results = self.compute(splits, declared if isinstance(declared, int) else None)
        results = trainer.strategy.broadcast(results, src=0)
        step = log_step(trainer)
        results.update(epoch=int(trainer.current_epoch), step=step)
        self.last_results = results
        self._log(trainer, pl_module, results, splits, step)

    def _log(self, trainer, pl_module, results: dict, splits: dict, step: int) -> None:
        metrics: dict[str, float] = {}
        for split, by_key in results["splits"].items():
            if split.startswith("ood/"):
                metrics[f"norm/{split}_mean"] = by_key["z"]["mean"]
                continue
            for key, summary in by_key.items():
                prefix = f"norm/{split}_" if key == "z" else f"norm/{split}_{key}_"
                metrics.update({prefix + stat: v for stat, v in summary.items()})
        for c, v in results.get("class_mean", {}).items():
            metrics[f"norm/class_mean/{c}"] = v
        for name, v in results["ood_ratio"].items():
            metrics[f"norm/ood_ratio/{name}"] = v
        log_epoch_metrics(pl_module, metrics)
        for split, by_key in results["hist"].items():
            for key, (counts, edges) in by_key.items():
                name = f"norm/{split}_hist" if key == "z" else f"norm/{split}_{key}_hist"
                log_histogram(
                    trainer,
                    name,
                    splits[split][key],
                    torch.tensor(counts),
                    torch.tensor(edges),
                    step,
                )
