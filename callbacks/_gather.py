"""Gathering evaluation outputs across DDP ranks, exactly (DESIGN §3, docs/contract.md).

``DistributedSampler`` gives every rank ``ceil(n / world)`` samples, padding with repeats of
the first indices. Gathering every rank's shard, dropping repeated dataset indices ``idx``
and sorting by ``idx`` gives the same tensors in the same order for any number of
processes, so k-NN accuracy and norm statistics do not depend on it.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["all_gather_cat", "dedup_by_index", "gather_eval", "sync_buffers_from_rank_zero"]


def _world_size(pl_module) -> int:
    trainer = getattr(pl_module, "_trainer", None)
    return int(trainer.world_size) if trainer is not None else 1


def all_gather_cat(pl_module, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Concatenate every rank's tensors (rank order) along dim 0; shards may differ in length.

    ``all_gather`` needs equal shapes, so shard sizes are gathered first and every shard is
    zero-padded to the largest before the gather, then trimmed. Collective: every rank calls.
    """
    if _world_size(pl_module) == 1:
        return tensors
    first = next(iter(tensors.values()))
    n = first.shape[0]
    sizes = pl_module.all_gather(torch.tensor([n], device=first.device)).flatten().tolist()
    m = max(sizes)
    padded = {
        key: torch.cat([t, t.new_zeros((m - n, *t.shape[1:]))]) if m > n else t
        for key, t in tensors.items()
    }
    gathered = pl_module.all_gather(padded)  # each [world, m, ...]
    return {
        key: torch.cat([g[r, : sizes[r]] for r in range(len(sizes))]) for key, g in gathered.items()
    }


def dedup_by_index(tensors: dict[str, torch.Tensor], key: str = "idx") -> dict[str, torch.Tensor]:
    """Keep one row per dataset index (the first met) and sort the rows by index."""
    idx = tensors[key]
    order = torch.argsort(idx, stable=True)
    sorted_idx = idx[order]
    keep = torch.ones_like(sorted_idx, dtype=torch.bool)
    keep[1:] = sorted_idx[1:] != sorted_idx[:-1]
    rows = order[keep]
    return {name: t[rows] for name, t in tensors.items()}


def gather_eval(pl_module, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Gather one evaluation split from all ranks, drop sampler padding, sort by ``idx``."""
    return dedup_by_index(all_gather_cat(pl_module, tensors))


def sync_buffers_from_rank_zero(pl_module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    Each rank updates its running statistics from its own batches, so after training they
    differ between ranks, and evaluation (BatchNorm in eval mode) would make a sample's
    features depend on which rank it was sharded to, hence on the number of processes.
    Plain DDP happens to broadcast buffers on the first forward after a training forward,
    but not with ``broadcast_buffers=False`` nor for strategies that do not route
    evaluation through DDP's forward; this explicit sync is cheap and always holds. Rank
    0's statistics are the ones DDP broadcasts anyway. Collective: every rank calls.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    with torch.no_grad():
        for buf in pl_module.buffers():
            dist.broadcast(buf, src=0)
