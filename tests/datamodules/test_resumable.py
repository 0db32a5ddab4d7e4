"""Mid-epoch resume: a run cut inside an epoch continues that epoch at the next global
batch, so that it trains the batches, and ends with the weights, of the uninterrupted run."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from dm_files import class_major_labels, write_cifar10_pickles
from lightning.pytorch.callbacks import ModelCheckpoint

from datamodules import CIFAR10DataModule
from datamodules.resumable import ResumableDataLoader


class Recorder(L.LightningModule):
    """A linear layer on view 1, recording (epoch, batch_idx, idx) of every training batch."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(3 * 32 * 32, 2)
        self.seen: list[tuple[int, int, list[int]]] = []

    def training_step(self, batch, batch_idx):
        (v1, _), _, idx = batch
        self.seen.append((self.current_epoch, batch_idx, idx.tolist()))
        return self.layer(v1.flatten(1)).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)


class Killed(RuntimeError):
    pass


class KillAt(L.Callback):
    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            raise Killed


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10_pickles(root, class_major_labels([8] * 10), class_major_labels([2] * 10))
    return str(root)


MODES = {
    "per-image": dict(augment_on="loader"),
    "loader_batched, 1 worker": dict(augment_on="loader_batched", num_workers=1),
    "data_on_device": dict(augment_on="device", data_on_device=True),
}


def _fit(root, folder, options, ckpt=None, kill=None, batch_size=8, every_step=True):
    dm = CIFAR10DataModule(root, batch_size=batch_size, eval_batch_size=32, seed=5,
                           **{"num_workers": 0, **options})  # fmt: skip
    torch.manual_seed(0)
    model = Recorder()
    # Every optimizer step (on a batch's end), or as the CLI's default: at each epoch's end.
    when = dict(every_n_train_steps=1) if every_step else dict(save_on_train_epoch_end=True)
    checkpoints = ModelCheckpoint(dirpath=folder, save_last=True, enable_version_counter=False,
                                  **when)  # fmt: skip
    trainer = L.Trainer(max_epochs=2, accumulate_grad_batches=2, logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, deterministic=True,
                        callbacks=[checkpoints] + ([kill] if kill else []))  # fmt: skip
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt)
    return model, trainer


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize(
    "cut_at, taken, every_step",
    [(5, 4, True), (0, 10, True), (3, 10, False)],
    ids=["mid-epoch", "last-batch", "epoch-end"],
)
def test_a_cut_run_resumes_at_the_next_batch_with_the_uninterrupted_weights(
    tiny_cifar, tmp_path, mode, cut_at, taken, every_step
):
    """Killed before batch ``cut_at`` of epoch 1, the last checkpoint is at the optimizer
    step after batch ``taken - 1`` of epoch 1 (``taken`` 10: the end of epoch 0, saved at
    the last batch's end or at the epoch's end). Lightning hands the loader its state only
    for the first two; the DataModule's state serves all three. Loader workers draw indices
    as soon as the resumed loader is iterated: from the right epoch."""
    # 80 images, batch 8: 10 batches per epoch, 5 optimizer steps of 2 batches.
    full, full_trainer = _fit(tiny_cifar, tmp_path / "full", MODES[mode], every_step=every_step)
    assert [(e, b) for e, b, _ in full.seen] == [(e, b) for e in (0, 1) for b in range(10)]
    with pytest.raises(Killed):
        _fit(tiny_cifar, tmp_path / "cut", MODES[mode], kill=KillAt(1, cut_at),
             every_step=every_step)  # fmt: skip
    saved = torch.load(tmp_path / "cut" / "last.ckpt", weights_only=False)
    epoch = 1 if taken < 10 else 0
    assert saved["global_step"] == 5 * epoch + taken // 2
    state = saved["CIFAR10DataModule"]["train_sampler"]
    assert (state["epoch"], state["batches"], state["finished"]) == (epoch, taken, taken == 10)

    resumed, trainer = _fit(tiny_cifar, tmp_path / "cut", MODES[mode],
                            ckpt=str(tmp_path / "cut" / "last.ckpt"), every_step=every_step)  # fmt: skip
    start = 10 + taken % 10
    assert [(e, b) for e, b, _ in resumed.seen] == [(1, b) for b in range(start - 10, 10)]
    assert resumed.seen == full.seen[start:]  # the same samples, batch by batch
    assert trainer.global_step == full_trainer.global_step == 10
    for key, value in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


def test_a_mid_epoch_resume_with_other_batches_is_refused(tiny_cifar, tmp_path):
    with pytest.raises(Killed):
        _fit(tiny_cifar, tmp_path, MODES["per-image"], kill=KillAt(0, 5))
    with pytest.raises(ValueError, match=r"stopped after 4 of the 10 global batches of epoch 0"):
        _fit(tiny_cifar, tmp_path, MODES["per-image"], ckpt=str(tmp_path / "last.ckpt"),
             batch_size=16)  # fmt: skip


def test_the_training_loaders_are_resumable_and_evaluation_loaders_plain(tiny_cifar):
    from lightning.fabric.utilities.types import _Stateful  # what Lightning checks

    for options in MODES.values():
        dm = CIFAR10DataModule(tiny_cifar, batch_size=8, **{"num_workers": 0, **options})
        dm.setup()
        loader = dm.train_dataloader()
        assert isinstance(loader, ResumableDataLoader) and isinstance(loader, _Stateful)
        assert not isinstance(dm.eval_dataloader(), _Stateful)
