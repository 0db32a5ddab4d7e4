"""Worker batches allocated in shared memory: the right tensor, shared where it must be,
and intact in the main process."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from datamodules.shared_memory import shared_empty, worker_batch


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8, torch.float64])
def test_shared_empty_is_a_contiguous_shared_tensor_of_the_shape(dtype):
    # Fails loudly if torch drops the private allocator it is built on.
    assert callable(getattr(torch.UntypedStorage, "_new_shared", None))
    t = shared_empty((2, 3, 5, 7), dtype)
    assert t.shape == (2, 3, 5, 7) and t.dtype == dtype and t.is_contiguous()
    assert t.is_shared() and t.untyped_storage().nbytes() == 2 * 3 * 5 * 7 * t.element_size()
    t.fill_(3)
    assert int(t.sum()) == 3 * t.numel()


def _collate(batch):
    out = worker_batch((len(batch), 4))
    out.copy_(torch.tensor(batch, dtype=torch.float32)[:, None].expand(-1, 4))
    return out, torch.tensor(out.is_shared())


def test_worker_batches_are_shared_in_workers_and_plain_in_the_main_process():
    assert not worker_batch((2, 4)).is_shared()
    loader = DataLoader(list(range(6)), batch_size=3, num_workers=1, collate_fn=_collate)
    batches = list(loader)
    assert [bool(shared) for _, shared in batches] == [True, True]
    values = torch.cat([b for b, _ in batches])
    assert torch.equal(values, torch.arange(6.0)[:, None].expand(-1, 4))
