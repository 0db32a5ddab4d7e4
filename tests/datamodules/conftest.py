"""Fixtures for the datamodules tests: the real CIFAR-10 decoded at most once per session
(through the DataModules' own ``cache_dir``). File writers live in ``dm_files``."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def decode_cache(tmp_path_factory) -> str:
    """One decoded-image cache per session: the real CIFAR-10 is decoded once."""
    return str(tmp_path_factory.mktemp("decoded"))


@pytest.fixture(scope="session")
def real_cifar10(shared_data, decode_cache):
    """The real CIFAR-10 train and test splits (decoded once, session-wide)."""
    from datamodules.cifar import load_cifar_split

    return {s: load_cifar_split("cifar10", shared_data, s, decode_cache) for s in ("train", "test")}
