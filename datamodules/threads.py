"""Per-sample image work runs on one intra-op thread.

Measured on the 2-core development machines (torch 2.14, OpenMP): two SimCLR views of a
32 px image take 21 ms with 2 intra-op threads and 1.5 ms with 1 (thread-pool start-up on
tiny tensors, worse under load); a 49 KB ``Tensor.copy_`` took 5 ms. DataLoader workers
already use 1 thread; this guard gives the same to ``num_workers=0`` and to decoding.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["one_thread"]


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(1)``; restore the previous count after."""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
