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


def test_held_out_classes_are_served_as_an_ood_loader():
    from ssl_norms.simulate.latent_classes import sample_latent_classes

    plain = _dm()
    dm = _dm(ood_classes=2, n_ood=60)
    assert dm.eval_loader_names == ["bank", "eval", "ood/latent_holdout"]
    assert list(dm.ood_dataloaders()) == ["latent_holdout"] and len(dm.val_dataloader()) == 3
    # The in-distribution data does not change when held-out classes are added.
    assert torch.equal(plain.bank_dataset.base.x, dm.bank_dataset.base.x)
    assert torch.equal(plain.eval_dataset.base.x, dm.eval_dataset.base.x)
    x, y, idx = next(iter(dm.ood_dataloaders()["latent_holdout"]))
    assert x.shape == (60, 64) and idx.tolist() == list(range(60))
    assert torch.bincount(y).tolist() == [0] * 4 + [30, 30]  # labels 4, 5: never trained on
    again, _, _ = next(iter(dm.ood_dataloaders()["latent_holdout"]))
    assert torch.equal(x, again)  # un-augmented
    # Same generating matrix: the latent points are recovered on the unit sphere ...
    gen = sample_latent_classes(num_classes=4, n_samples=500, seed=0).generator
    latent = np.linalg.lstsq(gen.T, x.double().numpy().T, rcond=None)[0].T
    assert np.allclose(np.linalg.norm(latent, axis=1), 1.0, atol=1e-4)
    # ... around new centres, far from every training class.
    train_latent = np.linalg.lstsq(gen.T, dm.bank_dataset.base.x.double().numpy().T, rcond=None)[0]
    train_centres = np.stack(
        [train_latent.T[dm.bank_dataset.base.labels == c].mean(0) for c in range(4)]
    )
    for c in (4, 5):
        centre = latent[(y == c).numpy()].mean(0)
        assert np.max(train_centres @ centre / np.linalg.norm(train_centres, axis=1)) < 0.9
    # Reproducible from the seed, different for another seed.
    assert torch.equal(_dm(ood_classes=2, n_ood=60).ood_dataloaders()["latent_holdout"].dataset.base.x,
                       dm.ood_dataloaders()["latent_holdout"].dataset.base.x)  # fmt: skip
    assert _dm(ood_classes=1).hparams["ood_classes"] == 1
    assert len(_dm(ood_classes=3).ood_dataloaders()["latent_holdout"].dataset) == 100  # n_eval


def test_image_ood_sets_do_not_apply_to_vectors():
    with pytest.raises(
        ValueError, match="image OOD sets .*do not apply to vector data.*ood_classes"
    ):
        LatentClassesDataModule(ood={"cifar100": "data"})
    with pytest.raises(ValueError, match="ood_classes must be >= 0"):
        LatentClassesDataModule(ood_classes=-1)
    assert LatentClassesDataModule(ood={}).eval_loader_names == ["bank", "eval"]


def test_a_single_training_sample_in_a_class_is_a_clear_error():
    # 200 samples at [0.99, 0.01]: class 1 gets 1 training and 1 evaluation sample.
    with pytest.raises(
        ValueError, match="class 1 has a single training sample.*raise n_train.*imbalance"
    ):
        _dm(num_classes=2, class_probs=[0.99, 0.01], n_train=100, n_eval=100)
    dm = _dm(num_classes=2, class_probs=[0.98, 0.02], n_train=100, n_eval=100)
    assert dm.class_counts == [98, 2]
    (v1, v2), y, i = dm.train_dataset[int(np.flatnonzero(dm.bank_dataset.base.labels == 1)[0])]
    assert y == 1 and not torch.equal(v1, v2)
