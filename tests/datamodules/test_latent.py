"""LatentClassesDataModule: the paper's supervised-InfoNCE views from latent classes (Sec. 4.2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from datamodules import LatentClassesDataModule


def _dm(**kw) -> LatentClassesDataModule:
    dm = LatentClassesDataModule(**{"n_train": 400, "n_eval": 100, "batch_size": 32, **kw})
    dm.setup("fit")
    return dm


def test_batches_follow_the_contract():
    dm = _dm()
    views, y, idx = next(iter(dm.train_dataloader()))
    assert len(views) == 2 and views[0].shape == views[1].shape == (32, 64)
    assert views[0].dtype == torch.float32 and y.dtype == idx.dtype == torch.int64
    x, y_eval, idx_eval = next(iter(dm.eval_dataloader()))
    assert x.shape == (100, 64) and idx_eval.tolist() == list(range(100))
    assert dm.eval_loader_names == ["bank", "eval"] and len(dm.val_dataloader()) == 2
    assert len(dm.bank_dataset) == 400 and dm.num_classes == 4


def test_second_view_is_another_sample_of_the_same_class():
    dm = _dm()
    train = dm.train_dataset
    x, labels = train.base.x, train.base.labels
    for i in range(0, 400, 7):
        (v1, v2), y, idx = train[i]
        assert torch.equal(v1, x[i]) and not torch.equal(v2, v1)
        j = int(torch.nonzero((x == v2).all(dim=1))[0])
        assert labels[j] == labels[i] == y and j != i
    # The partner changes with the epoch and is reproducible for a given one.
    train.set_epoch(0)
    first = [train[i][0][1] for i in range(20)]
    train.set_epoch(1)
    second = [train[i][0][1] for i in range(20)]
    train.set_epoch(0)
    again = [train[i][0][1] for i in range(20)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert sum(not torch.equal(a, b) for a, b in zip(first, second, strict=True)) > 10


def test_imbalance_ratio_gives_the_papers_class_frequencies():
    dm = _dm(n_train=1500, n_eval=300, imbalance_ratio=2.0)
    assert dm.class_counts == [800, 400, 200, 100]  # 1/2, 1/4, 1/8, 1/16 normalised
    eval_counts = torch.bincount(dm.eval_dataset.base.labels).tolist()
    assert min(eval_counts) >= 1 and sum(eval_counts) == 300


def test_train_and_eval_share_centres_but_not_samples():
    dm = _dm(noise_std=0.01)
    tr, ev = dm.bank_dataset.base, dm.eval_dataset.base
    # Same class centres: eval samples sit next to the train samples of their class.
    for c in range(4):
        mean_tr, mean_ev = tr.x[tr.labels == c].mean(0), ev.x[ev.labels == c].mean(0)
        assert torch.allclose(mean_tr, mean_ev, atol=0.2 * mean_tr.norm())
    assert not any((ev.x[:5, None] == tr.x[None]).all(-1).any(-1))


def test_seed_makes_the_data_and_epochs_reproducible():
    a, b, c = _dm(seed=1), _dm(seed=1), _dm(seed=2)
    ba, bb, bc = (next(iter(d.train_dataloader())) for d in (a, b, c))
    assert torch.equal(ba[2], bb[2]) and torch.equal(ba[0][1], bb[0][1])
    assert not torch.equal(ba[0][0], bc[0][0])


def test_two_ranks_cover_the_training_set_disjointly():
    dm = _dm()
    shards = [
        set(DistributedSampler(dm.train_dataset, num_replicas=2, rank=r, seed=0)) for r in (0, 1)
    ]
    assert shards[0].isdisjoint(shards[1]) and shards[0] | shards[1] == set(range(400))


def test_bad_input():
    with pytest.raises(ValueError, match="imbalance_ratio"):
        _dm(imbalance_ratio=0.5)
    with pytest.raises(ValueError, match="no evaluation sample"):
        _dm(n_train=1000, n_eval=1, imbalance_ratio=4.0)
    with pytest.raises(ValueError, match="n_train"):
        LatentClassesDataModule(n_train=0)


def test_hyperparameters_are_saved():
    dm = LatentClassesDataModule(num_classes=3, noise_std=1.0, class_probs=[0.5, 0.3, 0.2])
    assert dm.hparams["noise_std"] == 1.0 and dm.hparams["class_probs"] == [0.5, 0.3, 0.2]
    assert np.isclose(sum(_dm(num_classes=3, class_probs=[5, 3, 2]).class_probs_), 1.0)
