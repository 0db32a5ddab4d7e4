"""GlobalBatchSampler: one permutation per (seed, epoch), global batches split over processes."""

from __future__ import annotations

import pytest
import torch

from datamodules.sampler import GlobalBatchSampler


def test_permutation_seeded_by_seed_and_epoch():
    told = []
    s = GlobalBatchSampler(50, 10, seed=1, on_epoch=told.append)
    first = list(s)
    assert sorted(first) == list(range(50)) and first != list(range(50))
    second = list(s)  # advances by itself outside Lightning
    assert told == [0, 1] and second != first
    s.set_epoch(0)
    assert list(s) == first and told[-1] == 0
    assert list(GlobalBatchSampler(50, 10, seed=2)) != first
    assert list(GlobalBatchSampler(5, 5, shuffle=False)) == [0, 1, 2, 3, 4] and len(s) == 50


@pytest.mark.parametrize(
    "n, batch, world, accumulate", [(101, 8, 2, 1), (100, 12, 3, 2), (37, 4, 4, 3)]
)
def test_world_size_splits_the_global_batches_of_one_process(n, batch, world, accumulate):
    """Rank r's t-th batch is rows r*B/W .. (r+1)*B/W of the single-process batch t, for every
    world size; epochs hold whole optimizer steps (a multiple of ``accumulate`` batches)."""
    for epoch in (0, 3):
        one = GlobalBatchSampler(n, batch, seed=7, accumulate=accumulate)
        one.set_epoch(epoch)
        global_batches = torch.tensor(list(one)).view(-1, batch)
        steps = n // (batch * accumulate)
        assert global_batches.shape[0] == steps * accumulate == one.num_batches
        assert len(set(global_batches.flatten().tolist())) == global_batches.numel()  # no repeats
        per = batch // world
        for rank in range(world):
            shard = GlobalBatchSampler(n, batch, world, rank, seed=7, accumulate=accumulate)
            shard.set_epoch(epoch)
            got = torch.tensor(list(shard)).view(-1, per)
            assert len(shard) == got.numel()
            assert torch.equal(got, global_batches[:, rank * per : (rank + 1) * per])


def test_the_first_global_batches_follow_the_epoch_permutation():
    s = GlobalBatchSampler(20, 6, seed=3)
    s.set_epoch(2)
    assert list(s) == s.global_order(2)[:18].tolist()  # 3 whole batches, the last 2 dropped


def test_errors_name_the_problem_and_the_fix():
    with pytest.raises(ValueError, match="batch_size 10 is the global batch of all 4 processes"):
        GlobalBatchSampler(100, 10, num_replicas=4, rank=0)
    with pytest.raises(ValueError, match="make no optimizer step.*accumulate_grad_batches 4"):
        GlobalBatchSampler(30, 8, accumulate=4)
    with pytest.raises(ValueError, match="rank"):
        GlobalBatchSampler(30, 8, num_replicas=2, rank=2)


def _taken(epoch: int, batches: int) -> dict:
    """The state of a 48-sample, batch-8 sampler whose loop took ``batches`` of ``epoch``."""
    s = GlobalBatchSampler(48, 8, seed=4)
    s.set_epoch(epoch)
    iter(s)
    for _ in range(batches):
        s.take_batch()
    return s.state_dict()


@pytest.mark.parametrize("world", [1, 2])
def test_a_restored_position_continues_the_cut_epoch_on_every_rank(world):
    """The state of a pass cut after 3 of 6 global batches: every rank continues epoch 2 at
    global batch 3 (its rows of the single-process batches 3..5), then epoch 3 is whole."""
    one = GlobalBatchSampler(48, 8, seed=4)
    one.set_epoch(2)
    uncut = torch.tensor(list(one)).view(6, 8)
    state = _taken(epoch=2, batches=3)
    assert (state["epoch"], state["batches"], state["finished"]) == (2, 3, False)
    per = 8 // world
    for rank in range(world):
        shard = GlobalBatchSampler(48, 8, world, rank, seed=4)
        shard.load_state_dict(state)
        shard.load_state_dict(state)  # idempotent
        rest = torch.tensor(list(shard)).view(3, per)
        assert torch.equal(rest, uncut[3:, rank * per : (rank + 1) * per])
        assert shard.state_dict()["batches"] == 3  # the skipped batches count as taken
        whole = GlobalBatchSampler(48, 8, world, rank, seed=4)
        whole.set_epoch(3)
        assert list(shard) == list(whole)  # the next epoch is whole


def test_a_finished_epoch_continues_with_the_next_and_a_changed_batch_is_refused():
    finished = _taken(epoch=5, batches=6)
    assert finished["finished"]
    fresh = GlobalBatchSampler(48, 16, seed=4)  # another batch size is fine at an epoch's end
    fresh.load_state_dict(finished)
    assert fresh.epoch == 6
    # With limit_train_batches the loop takes fewer batches per epoch than the sampler has.
    limited = GlobalBatchSampler(48, 8, seed=4)
    iter(limited)
    limited.take_batch(epoch_length=2)
    assert not limited.state_dict()["finished"]
    limited.take_batch(epoch_length=2)
    assert limited.state_dict()["finished"]
    cut = {**finished, "batches": 2, "finished": False}
    with pytest.raises(ValueError, match=r"stopped after 2 of the 6 global batches of epoch 5.*"
                       r"num_batches 6 in the checkpoint, 3 now, batch_size 8 in the checkpoint, "
                       r"16 now"):  # fmt: skip
        GlobalBatchSampler(48, 16, seed=4).load_state_dict(cut)
    assert GlobalBatchSampler(48, 8, seed=4).load_state_dict({"epoch": None}) is None
