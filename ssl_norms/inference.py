"""The embedding norm as a confidence score at inference (paper Section 7; Section 5, Figs. 3-4).

The paper shows that an SSL embedding's norm encodes the network's confidence (smaller out
of distribution, larger where k-NN is right and humans agree) and proposes it as a
reliability score. A raw norm means little on its own (its scale depends on the run), so the
score here is its **percentile among the training norms**: the norms of the un-augmented SSL
training set (the k-NN bank), which :class:`callbacks.EvaluationPass` stores sorted in every
checkpoint it sees saved (``checkpoint["ssl_norms_reference_norms"]``, from the latest
evaluation).

    from ssl_norms.inference import NormConfidence

    scorer = NormConfidence.from_checkpoint("runs/x/checkpoints/last.ckpt")
    out = scorer(images)          # images: a batch [B, C, H, W], normalised as in training
    out.h, out.z                  # backbone features, loss-space embeddings
    out.norm                      # ||z|| per sample
    out.confidence                # percentile of ||z|| among the training norms, in [0, 100]

Exact definition of the percentile: :func:`norm_percentile`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from ssl_norms.checkpoint_io import load_checkpoint_file

__all__ = ["REFERENCE_KEY", "NormScore", "NormConfidence", "norm_percentile", "reference_norms"]

#: Checkpoint key of the training (bank) norms: ``{"z", "h"}`` sorted float32 tensors, plus
#: the ``epoch`` and ``step`` of the evaluation that measured them.
REFERENCE_KEY = "ssl_norms_reference_norms"


def norm_percentile(norms: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Percentile of each norm among the reference norms, in [0, 100] (float64).

    ``100 * (#{r < x} + #{r == x} / 2) / n`` over the ``n`` reference norms ``r``: ties count
    one half, as ``scipy.stats.percentileofscore(reference, x, kind="mean")``. 0 below every
    training norm, 100 above every one, about 50 at the training median.
    """
    ref = torch.as_tensor(reference).detach().double().cpu().flatten()
    if ref.numel() == 0:
        raise ValueError("the reference norms are empty: they must hold the training norms")
    ref = torch.sort(ref).values
    x = torch.as_tensor(norms).detach().double().cpu().flatten()
    below = torch.searchsorted(ref, x, right=False)
    upto = torch.searchsorted(ref, x, right=True)
    return 100.0 * (below + upto).double() / (2 * ref.numel())


@torch.no_grad()
def reference_norms(model: torch.nn.Module, loader, space: Literal["z", "h"] = "z") -> torch.Tensor:
    """The sorted norms of a model over a loader of ``x`` or ``(x, ...)`` batches (eval mode).

    For a checkpoint without stored norms: pass the un-augmented training set, e.g. a
    DataModule's ``bank_dataloader()``.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    parts = []
    try:
        for batch in loader:
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            h, z = _embed(model, x.to(device))
            parts.append((z if space == "z" else h).flatten(1).norm(dim=1).float().cpu())
    finally:
        model.train(was_training)
    if not parts:
        raise ValueError("the loader gave no batch: the reference needs the training images")
    return torch.sort(torch.cat(parts)).values


def _embed(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    h = model(x)
    z = model.project(h) if hasattr(model, "project") else model.embed(x)
    return h, z


@dataclass
class NormScore:
    """What :class:`NormConfidence` returns for a batch of B inputs (CPU tensors)."""

    h: torch.Tensor  #: [B, f] backbone features
    z: torch.Tensor  #: [B, d] loss-space embeddings (before normalisation)
    norm: torch.Tensor  #: [B] the norm that is scored (||z|| by default)
    confidence: torch.Tensor  #: [B] percentile of ``norm`` among the training norms, [0, 100]


class NormConfidence:
    """Embeddings and the norm-percentile confidence of a trained SSL model.

    Args:
        model: an ``ssl_norms.methods.SSLMethod`` (``forward(x) -> h``, ``project(h) -> z``)
            or any module with ``forward`` and ``embed``.
        reference: the training norms (any order): a tensor, or the dict stored in
            checkpoints (``{"z": ..., "h": ...}``), from which ``space`` is taken.
        space: ``"z"`` (loss space, where the paper measures) or ``"h"`` (backbone).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        reference: torch.Tensor | dict[str, Any],
        space: Literal["z", "h"] = "z",
    ) -> None:
        if space not in ("z", "h"):
            raise ValueError(f"space must be 'z' or 'h', got {space!r}")
        if isinstance(reference, dict):
            if space not in reference:
                raise ValueError(f"the reference holds {sorted(reference)}, not {space!r} norms")
            reference = reference[space]
        self.model = model
        self.space = space
        self.reference = torch.sort(torch.as_tensor(reference).detach().double().cpu()).values
        if self.reference.numel() == 0:
            raise ValueError("the reference norms are empty: they must hold the training norms")

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        space: Literal["z", "h"] = "z",
        map_location: str | torch.device = "cpu",
        model_class: type | None = None,
    ) -> NormConfidence:
        """The model and training norms of a checkpoint written by ``ssl-norms fit``.

        ``model_class`` (e.g. ``SimCLR``) is needed only for checkpoints of a plain
        ``Trainer.fit``, which do not name their method.

        Checkpoints are pickles: load only files you trust. Warns when the stored norms were
        measured at another step than the weights' (an intermediate checkpoint saved after
        the last evaluation); the final checkpoint of a run always matches.
        """
        from ssl_norms.methods import SSLMethod

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} not found")
        ckpt = load_checkpoint_file(path, map_location="cpu", mmap=True)
        stored = ckpt.get(REFERENCE_KEY)
        if stored is None:
            raise ValueError(
                f"{path} holds no training norms: it was saved before its run's first "
                "evaluation, or without callbacks.EvaluationPass. Compute them with "
                "ssl_norms.inference.reference_norms(model, datamodule.bank_dataloader()) and "
                "pass them to NormConfidence(model, reference)"
            )
        if int(stored.get("step", -1)) != int(ckpt.get("global_step", -1)):
            warnings.warn(
                f"{path}: the stored training norms were measured at step {stored.get('step')}"
                f", the weights are from step {ckpt.get('global_step')}: percentiles are "
                "approximate (use the run's final checkpoint, or reference_norms())",
                stacklevel=2,
            )
        model = (model_class or SSLMethod).load_from_checkpoint(path, map_location=map_location)
        model.eval()
        return cls(model, stored, space)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> NormScore:
        """Embeddings and confidence of a batch ``x`` (preprocessed as the evaluation loaders)."""
        self.model.eval()
        device = next(self.model.parameters()).device
        h, z = _embed(self.model, x.to(device))
        h, z = h.flatten(1).cpu(), z.flatten(1).cpu()
        norm = (z if self.space == "z" else h).norm(dim=1)
        return NormScore(h=h, z=z, norm=norm, confidence=norm_percentile(norm, self.reference))
