"""Gathering evaluation outputs across DDP ranks, exactly (docs/contract.md, "Batches").

``DistributedSampler`` gives every rank ``ceil(n / world)`` samples, padding with repeats of
the first indices. Gathering every rank's shard, dropping repeated dataset indices ``idx``
and sorting by ``idx`` gives the same tensors in the same order for any number of
processes, so k-NN accuracy and norm statistics do not depend on it.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = [
    "all_gather_cat",
    "dedup_by_index",
    "gather_eval",
    "pack_rows",
    "unpack_rows",
    "sync_buffers_from_rank_zero",
]


def _world_size(pl_module) -> int:
    try:
        trainer = pl_module.trainer
    except (AttributeError, RuntimeError):  # not attached to a Trainer: one process
        return 1
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


def pack_rows(tensors: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[tuple]]:
    """The rows of every tensor side by side as raw bytes: one uint8 tensor ``[n, bytes]``.

    Tensors of any dtypes and trailing shapes (same device, same number of rows ``n``) are
    reinterpreted bit for bit, so one collective moves them all and :func:`unpack_rows`
    gives back exactly the same values. Returns the packed tensor and its layout.
    """
    parts, layout = [], []
    n = next(iter(tensors.values())).shape[0]
    for key, t in tensors.items():
        if t.shape[0] != n:
            raise ValueError(f"{key} has {t.shape[0]} rows, the other tensors {n}")
        flat = t.detach().contiguous().reshape(n, -1)
        raw = flat.view(torch.uint8) if flat.dtype != torch.bool else flat.to(torch.uint8)
        parts.append(raw)
        layout.append((key, t.dtype, tuple(t.shape[1:]), raw.shape[1]))
    return torch.cat(parts, dim=1), layout


def unpack_rows(packed: torch.Tensor, layout: list[tuple]) -> dict[str, torch.Tensor]:
    """The tensors of :func:`pack_rows` from (a gather of) its packed rows."""
    out, offset = {}, 0
    n = packed.shape[0]
    for key, dtype, tail, width in layout:
        raw = packed[:, offset : offset + width].contiguous()
        offset += width
        values = raw.to(torch.bool) if dtype == torch.bool else raw.view(dtype)
        out[key] = values.reshape(n, *tail)
    return out


def gather_eval(pl_module, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Gather one evaluation split from all ranks, drop sampler padding, sort by ``idx``.

    All the split's tensors travel packed in one uint8 tensor: two collectives per split
    (the shard sizes, then the rows), whatever the number of tensors.
    """
    if _world_size(pl_module) == 1:
        return dedup_by_index(tensors)
    # Sorted keys: every rank must pack in the same order (a set's order differs by process).
    packed, layout = pack_rows(dict(sorted(tensors.items())))
    gathered = all_gather_cat(pl_module, {"rows": packed})["rows"]
    return dedup_by_index(unpack_rows(gathered, layout))


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
