"""EpochSampler: a seeded permutation per epoch that tells the dataset its epoch."""

from __future__ import annotations

from collections import Counter

import pytest

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


@pytest.mark.parametrize("n, world_size", [(101, 2), (10, 3), (18, 4)])
def test_ddp_epoch_covers_every_index_with_at_most_world_size_minus_1_repeats(n, world_size):
    """The training loader as Lightning shards it under DDP, built without spawning processes.

    Lightning's data connector (``_process_dataloader`` -> ``_get_distributed_sampler``) gives
    a training loader ``shuffle=True`` and wraps our custom sampler in
    ``DistributedSamplerWrapper(sampler, num_replicas, rank, shuffle=True, seed=0)``
    (``drop_last=False``): it pads the epoch to a multiple of world_size with the first
    ``-n % world_size`` indices again, then rank r takes every world_size-th one.
    """
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
    from lightning.pytorch.trainer.connectors.data_connector import _get_distributed_sampler
    from lightning.pytorch.trainer.states import RunningStage
    from lightning.pytorch.utilities.data import _update_dataloader

    from datamodules import LatentClassesDataModule

    batch_size = 4
    epochs = {}
    for epoch in (0, 1):
        shards, batches = [], []
        for rank in range(world_size):  # one DataModule per process, as under DDP
            dm = LatentClassesDataModule(num_classes=2, n_train=n, n_eval=4, batch_size=batch_size)
            dm.setup("fit")
            loader = dm.train_dataloader()
            sampler = _get_distributed_sampler(
                loader, shuffle=True, overfit_batches=0, mode=RunningStage.TRAINING,
                num_replicas=world_size, rank=rank,
            )  # fmt: skip
            assert type(sampler) is DistributedSamplerWrapper and not sampler.drop_last
            sampler.set_epoch(epoch)  # Lightning does this each epoch; forwarded to ours
            shards.append(list(sampler))
            assert isinstance(sampler.dataset._sampler, EpochSampler)
            assert dm.train_dataset.epoch == epoch  # the augmentation seeds see the epoch
            sampler.set_epoch(epoch)
            ddp_loader = _update_dataloader(loader, sampler, mode=RunningStage.TRAINING)
            batches.append([i for _, _, idx in ddp_loader for i in idx.tolist()])
        seen = [i for shard in shards for i in shard]
        counts = Counter(seen)
        pad = -n % world_size
        # Every index at least once; exactly `pad` extra draws, each a different index.
        assert set(seen) == set(range(n)) and len(seen) == n + pad
        assert all(len(s) == (n + pad) // world_size for s in shards)
        assert sum(c - 1 for c in counts.values()) == pad <= world_size - 1
        assert max(counts.values()) <= 2
        # The loader's drop_last=True then drops each rank's last partial batch.
        per_rank = (n + pad) // world_size
        assert all(len(b) == per_rank // batch_size * batch_size for b in batches)
        assert all(b == s[: len(b)] for b, s in zip(batches, shards, strict=True))
        epochs[epoch] = shards
    assert epochs[0] != epochs[1]  # a new permutation each epoch
