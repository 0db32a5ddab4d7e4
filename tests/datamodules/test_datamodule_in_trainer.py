"""The DataModules inside a Lightning Trainer: per-epoch seeding reaches the dataset, every
training image is visited once per epoch, and under DDP the ranks split the global batches
of a 1-process run."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from distributed_exit import LeaveTogether
from dm_files import class_major_labels, write_cifar10_pickles

from datamodules import CIFAR10DataModule, LatentClassesDataModule


class Recorder(L.LightningModule):
    """Records (epoch, idx, a fingerprint of view 1) of every training batch."""

    def __init__(self, dim: int, out: str | None = None):
        super().__init__()
        self.layer = torch.nn.Linear(dim, 2)
        self.out = out
        self.seen: list[tuple[int, list[int], list[float]]] = []

    def training_step(self, batch, batch_idx):
        (v1, v2), y, idx = batch
        assert v1.shape == v2.shape and y.shape == idx.shape
        self.seen.append((self.current_epoch, idx.tolist(), v1.flatten(1).sum(1).tolist()))
        return self.layer(v1.flatten(1)).pow(2).mean()

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        x, y, idx = batch
        assert x.dtype == torch.float32 and idx.dtype == torch.int64

    def on_train_end(self):
        if self.out is not None:
            with open(f"{self.out}.rank{self.global_rank}.json", "w") as fh:
                json.dump(self.seen, fh)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _trainer(**kw) -> L.Trainer:
    return L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, num_sanity_val_steps=0, **kw)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10_pickles(root, class_major_labels([8] * 10), class_major_labels([2] * 10))
    return str(root)


def _fit(root, batch_size: int = 16, **kw) -> Recorder:
    dm = CIFAR10DataModule(root, batch_size=batch_size, eval_batch_size=32, num_workers=0, seed=5)
    model = Recorder(3 * 32 * 32)
    _trainer(**kw).fit(model, datamodule=dm)
    return model


def test_fit_epochs_are_new_views_and_reproducible(tiny_cifar):
    a, b = _fit(tiny_cifar), _fit(tiny_cifar)
    assert a.seen == b.seen  # the same seed gives the same run
    by_epoch = {e: {} for e in (0, 1)}
    for epoch, idx, fp in a.seen:
        by_epoch[epoch].update(zip(idx, fp, strict=True))
    assert sorted(by_epoch[0]) == sorted(by_epoch[1]) == list(range(80))  # each image once
    changed = sum(by_epoch[0][i] != by_epoch[1][i] for i in range(80))
    assert changed == 80  # Lightning's set_epoch reached the augmentations


def test_latent_classes_fit():
    dm = LatentClassesDataModule(n_train=64, n_eval=16, batch_size=16)
    model = Recorder(64)
    _trainer(limit_val_batches=1).fit(model, datamodule=dm)
    assert len(model.seen) == 8 and {e for e, _, _ in model.seen} == {0, 1}


@pytest.mark.slow
def test_two_ranks_see_the_global_batches_of_one_process(tiny_cifar, tmp_path):
    """batch_size is global: rank r's t-th batch is its half of the 1-process batch t, the
    same samples with the same views (per-sample seeds), in the same order."""
    one = _fit(tiny_cifar, batch_size=8).seen
    out = str(tmp_path / "seen")
    dm = CIFAR10DataModule(tiny_cifar, batch_size=8, eval_batch_size=32, num_workers=0, seed=5)
    _trainer(
        strategy="ddp_spawn",
        accelerator="cpu",
        devices=2,
        limit_val_batches=0,
        callbacks=[LeaveTogether()],
    ).fit(Recorder(3 * 32 * 32, out=out), datamodule=dm)
    ranks = [json.load(open(f"{out}.rank{r}.json")) for r in (0, 1)]
    assert len(one) == len(ranks[0]) == len(ranks[1]) == 20  # 2 epochs x 80 / 8
    for t, (epoch, idx, fp) in enumerate(one):
        (e0, idx0, fp0), (e1, idx1, fp1) = ranks[0][t], ranks[1][t]
        assert e0 == e1 == epoch and idx0 + idx1 == idx and len(idx0) == 4
        assert fp0 + fp1 == pytest.approx(fp, rel=1e-6)


def test_batch_not_divisible_by_the_world_size_is_refused(tiny_cifar):
    dm = CIFAR10DataModule(tiny_cifar, batch_size=10, num_workers=0)
    dm.trainer = type("T", (), {"world_size": 4, "global_rank": 1, "accumulate_grad_batches": 1})()
    dm.setup("fit")
    with pytest.raises(ValueError, match=r"batch_size 10 is the global batch of all 4 processes"):
        dm.train_dataloader()
