"""EpochSampler: a seeded permutation per epoch that tells the dataset its epoch."""

from __future__ import annotations

from datamodules.sampler import EpochSampler


def test_permutation_seeded_by_seed_and_epoch():
    told = []
    s = EpochSampler(50, seed=1, on_epoch=told.append)
    first = list(s)
    assert sorted(first) == list(range(50)) and first != list(range(50))
    second = list(s)  # advances by itself outside Lightning
    assert told == [0, 1] and second != first
    s.set_epoch(0)
    assert list(s) == first and told[-1] == 0
    assert list(EpochSampler(50, seed=2)) != first
    assert list(EpochSampler(5, shuffle=False)) == [0, 1, 2, 3, 4] and len(s) == 50
