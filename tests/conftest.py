"""Shared fixtures. Tests that need ../shared/data skip with a reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SSL_NORMS_DATA", REPO.parent / "shared" / "data")).resolve()

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real offline data (../shared/data); skips when it is not on this machine."""
    if not (SHARED_DATA / "cifar10" / "train.parquet").is_file():
        pytest.skip(
            f"real data not found at {SHARED_DATA} (set SSL_NORMS_DATA to the shared/data folder)"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture
def busy_gpu():
    """``busy(seconds)`` queues about ``seconds`` of work on the current CUDA stream (a
    spinning kernel) and returns an event recorded behind it. While ``event.query()`` is
    False the host has not waited for the GPU since: this catches every wait, also the
    driver's own (a copy staged from pageable memory), which torch's sync debug mode does
    not see."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    torch.cuda._sleep(10**6)  # loads the kernel, so that the timing below is the GPU's clock
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    torch.cuda._sleep(10**7)
    end.record()
    end.synchronize()
    cycles_per_ms = 10**7 / max(start.elapsed_time(end), 1e-3)

    def busy(seconds: float):
        torch.cuda._sleep(int(seconds * 1000 * cycles_per_ms))
        done = torch.cuda.Event()
        done.record()
        return done

    return busy
