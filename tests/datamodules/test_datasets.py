"""Two-view training sets: views differ, a seed makes an epoch reproducible (any num_workers),
and with 2 ranks the shards are disjoint and cover the training set."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dm_files import (
    class_major_labels,
    encode,
    random_images,
    write_cifar10_pickles,
    write_hf_parquet,
)
from torch.utils.data import DistributedSampler

from datamodules import CIFAR10DataModule
from datamodules.datasets import sample_seed
from datamodules.sampler import GlobalBatchSampler


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10_pickles(root, class_major_labels([8] * 10), class_major_labels([3] * 10))
    return str(root)


def _dm(root, **kw) -> CIFAR10DataModule:
    dm = CIFAR10DataModule(
        root, **{"batch_size": 16, "eval_batch_size": 32, "num_workers": 0, **kw}
    )
    dm.setup()
    return dm


def _epoch(dm, epoch: int):
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)  # what Lightning does each epoch
    return list(loader)


def test_two_views_of_one_image_differ(tiny_cifar):
    dm = _dm(tiny_cifar)
    (v1, v2), y, idx = next(iter(dm.train_dataloader()))
    assert v1.shape == v2.shape == (16, 3, 32, 32) and v1.dtype == torch.float32
    assert all(not torch.equal(a, b) for a, b in zip(v1, v2, strict=True))
    assert len(dm.train_dataloader()) == 80 // 16  # drop_last, every image once


def test_seed_makes_an_epoch_reproducible_with_and_without_workers(tiny_cifar):
    a = _epoch(_dm(tiny_cifar, seed=3), 2)
    b = _epoch(_dm(tiny_cifar, seed=3, num_workers=2), 2)
    assert len(a) == len(b) == 5
    for (va, ya, ia), (vb, yb, ib) in zip(a, b, strict=True):
        assert torch.equal(ia, ib) and torch.equal(ya, yb)
        assert torch.equal(va[0], vb[0]) and torch.equal(va[1], vb[1])
    other_epoch = _epoch(_dm(tiny_cifar, seed=3), 3)
    assert not torch.equal(other_epoch[0][2], a[0][2])  # new order
    other_seed = _epoch(_dm(tiny_cifar, seed=4), 2)
    assert not torch.equal(other_seed[0][0][0], a[0][0][0])


def test_augmentation_leaves_the_global_rng_alone(tiny_cifar):
    dm = _dm(tiny_cifar)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    dm.train_dataset[0]
    assert torch.equal(torch.rand(3), expected)


def test_views_of_one_sample_depend_on_seed_epoch_index_only(tiny_cifar):
    ds = _dm(tiny_cifar, seed=1).train_dataset
    ds.set_epoch(5)
    first = ds[7][0][0]
    ds[3], ds[9]  # other samples in between change nothing
    assert torch.equal(ds[7][0][0], first)
    ds.set_epoch(6)
    assert not torch.equal(ds[7][0][0], first)
    assert len({sample_seed(0, e, i) for e in range(20) for i in range(200)}) == 4000


def test_two_ranks_shard_disjointly_and_cover(tiny_cifar):
    dm = _dm(tiny_cifar)
    n = len(dm.train_dataset)
    shards = []
    for rank in (0, 1):  # what train_dataloader() builds on each of 2 processes
        sampler = GlobalBatchSampler(n, dm.batch_size, num_replicas=2, rank=rank, seed=0)
        sampler.set_epoch(1)
        shards.append(list(sampler))
    used = n // dm.batch_size * dm.batch_size
    assert len(shards[0]) == len(shards[1]) == used // 2
    assert set(shards[0]).isdisjoint(shards[1]) and len(set(shards[0]) | set(shards[1])) == used


def test_eval_shards_cover_with_padding_tracked_by_idx(tiny_cifar):
    dm = _dm(tiny_cifar)
    bank = dm.bank_dataset
    idx = []
    for rank in (0, 1):
        sampler = DistributedSampler(bank, num_replicas=2, rank=rank, shuffle=False)
        idx += [bank[i][2] for i in sampler]
    assert sorted(set(idx)) == list(range(len(bank)))


def test_loaders_and_class_stats(tiny_cifar, tmp_path):
    # A Fashion-MNIST-like OOD set: 28 px greyscale PNGs, 3 per class, HF parquet.
    grey = random_images(30, size=28, seed=6)[:, :1]
    write_hf_parquet(
        tmp_path / "fm" / "test.parquet", [encode(g) for g in grey], np.arange(30) % 10
    )
    dm = _dm(
        tiny_cifar, ood={"fashion_mnist": str(tmp_path / "fm"), "c10": tiny_cifar}, eval_subset=2
    )
    assert dm.eval_loader_names == ["bank", "eval", "ood/fashion_mnist", "ood/c10"]
    loaders = dm.val_dataloader()
    assert len(loaders) == 4 and list(dm.ood_dataloaders()) == ["fashion_mnist", "c10"]
    x, y, idx = next(iter(loaders[2]))
    # Greyscale 28 px served as 3 x 32 x 32, equal channels, eval_subset per class.
    assert x.shape == (20, 3, 32, 32) and len(loaders[2].dataset) == 20
    raw = loaders[2].dataset.base.images
    assert torch.equal(raw[:, 0], raw[:, 1]) and torch.equal(raw[:, 1], raw[:, 2])
    assert dm.class_counts == [8] * 10 and len(dm.eval_dataset) == 20
    bx, by, bidx = next(iter(dm.bank_dataloader()))
    assert bidx.tolist() == list(range(32)) and torch.equal(by, dm.bank_dataset.base.labels[:32])
    # Un-augmented: the bank sample is the normalised stored image.
    img = dm.bank_dataset.base.images[0].float() / 255
    mean, std = (torch.tensor(s).view(3, 1, 1) for s in dm.stats)
    assert torch.allclose(bx[0], (img - mean) / std, atol=1e-5)
    assert np.isclose(float(bx.mean()), 0.0, atol=0.5)


def test_setup_is_required_and_batch_size_checked(tiny_cifar):
    dm = CIFAR10DataModule(tiny_cifar, num_workers=0, batch_size=1000)
    with pytest.raises(RuntimeError, match="setup"):
        _ = dm.class_counts
    dm.setup()
    with pytest.raises(ValueError, match="batch_size"):
        dm.train_dataloader()


def test_persistent_workers_see_each_new_epoch(tiny_cifar):
    dm = _dm(tiny_cifar, seed=2, num_workers=2)
    loader = dm.train_dataloader()
    assert loader.persistent_workers
    epochs = []
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)
        epochs.append(list(loader))
    fresh = _epoch(_dm(tiny_cifar, seed=2), 1)  # epoch 1 computed in the main process
    for (va, _, ia), (vb, _, ib) in zip(epochs[1], fresh, strict=True):
        assert torch.equal(ia, ib) and torch.equal(va[0], vb[0]) and torch.equal(va[1], vb[1])
    assert not torch.equal(epochs[0][0][0][0], epochs[1][0][0][0])
