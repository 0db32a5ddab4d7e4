"""Batches that loader workers write straight into shared memory.

A tensor returned by a DataLoader worker reaches the main process through shared memory:
``torch.multiprocessing`` moves any other tensor there by allocating a segment and copying
it. A batch allocated in shared memory from the start skips that copy (about 75 ms of
a worker's 430 ms for 256 SimCLR view pairs at 128 px on one core, BENCHMARKS.md), which
is what PyTorch's own ``default_collate`` does for the batches it stacks in a worker.
"""

from __future__ import annotations

import math

import torch


def shared_empty(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An uninitialised contiguous CPU tensor of ``shape`` in shared memory.

    Uses ``UntypedStorage._new_shared``, the private allocator behind
    ``Tensor.share_memory_`` and ``default_collate`` (tested against the torch range in
    pyproject.toml by tests/datamodules/test_shared_memory.py); ``share_memory_`` on a new
    tensor would copy its (uninitialised) bytes into the segment.
    """
    storage = torch.UntypedStorage._new_shared(math.prod(shape) * dtype.itemsize)
    return torch.empty(0, dtype=dtype).set_(storage, 0, shape)


def worker_batch(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``shared_empty`` inside a DataLoader worker, a plain ``torch.empty`` elsewhere."""
    if torch.utils.data.get_worker_info() is not None:
        return shared_empty(shape, dtype)
    return torch.empty(shape, dtype=dtype)
