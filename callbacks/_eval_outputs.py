"""Per-loader buffers of the evaluation outputs ``{"h", "z", "y", "idx"}`` (docs/contract.md).

The validation/test dataloaders are ``[bank, eval, *ood]`` in the order of
``datamodule.eval_loader_names``; :class:`callbacks.EvaluationPass` collects what its
monitors need from ``on_validation_batch_end`` / ``on_test_batch_end`` and gathers it once
at epoch end.
"""

from __future__ import annotations

import torch

from callbacks._gather import gather_eval

__all__ = [
    "EvalOutputs",
    "eval_loader_names",
    "num_eval_batches",
    "check_eval_outputs",
]


def num_eval_batches(trainer) -> list[int]:
    """Batches per evaluation loader of the running loop (validation or test)."""
    n = trainer.num_test_batches if trainer.testing else trainer.num_val_batches
    return list(n) if isinstance(n, (list, tuple)) else [n]


def eval_loader_names(trainer, num_loaders: int) -> list[str]:
    """``datamodule.eval_loader_names`` or, without it, ``["bank", "eval", "ood/2", ...]``."""
    names = getattr(getattr(trainer, "datamodule", None), "eval_loader_names", None)
    if names is not None and len(names) >= num_loaders:
        return list(names)[:num_loaders]
    default = ["bank", "eval"] + [f"ood/{i}" for i in range(2, max(2, num_loaders))]
    return default[:num_loaders]


def check_eval_outputs(outputs) -> dict:
    """The evaluation step's output, or a clear error when it breaks the contract."""
    if not isinstance(outputs, dict) or not {"h", "y", "idx"} <= outputs.keys():
        got = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
        raise RuntimeError(
            "the evaluation monitors need validation_step/test_step to return "
            f"{{'h', 'z', 'y', 'idx'}} for every (x, y, idx) batch (docs/contract.md); got {got}"
        )
    return outputs


class EvalOutputs:
    """Collects named tensors per dataloader index during one evaluation epoch."""

    def __init__(self) -> None:
        # Plain dicts: callbacks are pickled into ddp_spawn's processes.
        self._buffers: dict[int, dict[str, list[torch.Tensor]]] = {}

    def reset(self) -> None:
        self._buffers.clear()

    def add(self, dataloader_idx: int, tensors: dict[str, torch.Tensor]) -> None:
        buf = self._buffers.setdefault(dataloader_idx, {})
        for key, value in tensors.items():
            buf.setdefault(key, []).append(value.detach())

    def gather(self, pl_module, dataloader_idx: int) -> dict[str, torch.Tensor]:
        """All ranks' rows of one loader, padding duplicates dropped, sorted by ``idx``.

        Collective: every rank must call it for the same loaders in the same order; under
        ``DistributedSampler`` every rank sees at least one batch of every non-empty loader.
        """
        buf = self._buffers.get(dataloader_idx)
        if not buf:
            raise RuntimeError(
                f"no evaluation outputs were collected for dataloader {dataloader_idx}: "
                "validation_step/test_step must return {'h', 'z', 'y', 'idx'}"
            )
        local = {key: torch.cat(parts) for key, parts in buf.items()}
        return gather_eval(pl_module, local)
