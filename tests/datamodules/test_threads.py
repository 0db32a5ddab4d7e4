"""one_thread: per-sample work on one intra-op thread, the previous count restored."""

from __future__ import annotations

import pytest
import torch

from datamodules.threads import one_thread


def test_one_thread_restores_the_count_even_on_error():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with one_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(KeyError), one_thread():
            raise KeyError("x")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
