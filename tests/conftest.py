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
