"""Helpers of the method tests (imported as ``method_helpers``): tiny data and models that
follow the batch contract (docs/contract.md).

Vector data with an MLP backbone keeps every Trainer-based test well under a second per
epoch on 2 cores; the real-image runs are in tests/ssl_norms/test_lightning_cli.py.
"""

from __future__ import annotations

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from ssl_norms.methods import BYOL, SimCLR, SimSiam

METHODS = {"simclr": SimCLR, "simsiam": SimSiam, "byol": BYOL}
# Small heads so that the tests stay fast; the defaults are exercised by the config tests.
SMALL_HEADS = {
    "simclr": dict(projector_hidden_dim=32, projector_out_dim=16),
    "simsiam": dict(projector_dim=32, predictor_hidden_dim=8),
    "byol": dict(projector_dim=32, predictor_hidden_dim=8),
}
IN_DIM = 12

# Tiny models gain nothing from intra-op threads, and the test machines share 2 cores.
torch.set_num_threads(1)


def make_method(name: str, **kwargs):
    """A method with the MLP backbone on IN_DIM-dimensional vectors and small heads."""
    options = dict(backbone="mlp", backbone_in_dim=IN_DIM, backbone_width=24, warmup_epochs=0.0)
    options.update(SMALL_HEADS[name])
    options.update(kwargs)
    return METHODS[name](**options)


class PairDataset(Dataset):
    """Deterministic two-view vectors: view k of sample i is x_i + fixed noise (no RNG at access)."""

    def __init__(
        self, n: int = 32, dim: int = IN_DIM, seed: int = 0, nan_from: int | None = None
    ) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, dim, generator=g)
        self.noise = 0.1 * torch.randn(2, n, dim, generator=g)
        self.y = torch.arange(n) % 4
        self.nan_from = nan_from

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        views = [self.x[i] + self.noise[0, i], self.x[i] + self.noise[1, i]]
        if self.nan_from is not None and i >= self.nan_from:
            views = [torch.full_like(v, float("nan")) for v in views]
        return views, self.y[i], torch.tensor(i)


class EvalDataset(PairDataset):
    def __getitem__(self, i: int):
        return self.x[i], self.y[i], torch.tensor(i)


class TinyDataModule(LightningDataModule):
    """Follows the contract: ``(views, y, idx)`` training batches, ``(x, y, idx)`` evaluation batches."""

    def __init__(self, n: int = 32, batch_size: int = 8, nan_from: int | None = None) -> None:
        super().__init__()
        self.n, self.batch_size, self.nan_from = n, batch_size, nan_from

    def train_dataloader(self) -> DataLoader:
        # No shuffling: the order is the same in an interrupted and an uninterrupted run.
        return DataLoader(
            PairDataset(self.n, nan_from=self.nan_from),
            batch_size=self.batch_size,
            shuffle=False,
            drop_last=True,
            # As the package's DataModules: pinned batches reach a GPU without a host wait.
            pin_memory=torch.cuda.is_available(),
        )

    def val_dataloader(self) -> list[DataLoader]:
        return [DataLoader(EvalDataset(self.n), batch_size=self.batch_size)]


def tiny_trainer(**kwargs):
    from lightning.pytorch import Trainer

    options = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        deterministic=True,
    )
    options.update(kwargs)
    return Trainer(**options)
