"""A tiny SSL module and DataModule that follow docs/contract.md, for the callback tests.

Gaussian clusters in R^8 (4 classes); the module is an MLP with BatchNorm (so DDP ranks'
running statistics differ after training) and a linear projector. Odd split sizes (101,
51, 37) exercise the padding of ``DistributedSampler`` under 2 processes.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

DIM = 8
NUM_CLASSES = 4


def clusters(n: int, seed: int, shift: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(NUM_CLASSES, DIM, generator=torch.Generator().manual_seed(0)) * 3
    y = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    x = centers[y] + torch.randn(n, DIM, generator=g) + shift
    return x, y


class EvalSet(Dataset):
    """Un-augmented ``(x, y, idx)`` samples."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i], i


class TwoViewSet(EvalSet):
    """``([view1, view2], y, idx)`` with Gaussian noise as the augmentation."""

    def __getitem__(self, i: int):
        x = self.x[i]
        return [x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x)], self.y[i], i


class TinyDataModule(pl.LightningDataModule):
    def __init__(
        self,
        n_bank: int = 101,
        n_eval: int = 51,
        n_ood: int = 37,
        batch_size: int = 16,
        eval_batch_size: int = 16,
    ) -> None:
        super().__init__()
        self.n_bank, self.n_eval, self.n_ood, self.batch_size = n_bank, n_eval, n_ood, batch_size
        self.eval_batch_size = eval_batch_size
        self.num_classes = NUM_CLASSES
        self.eval_loader_names = ["bank", "eval", "ood/far"]

    def setup(self, stage: str | None = None) -> None:
        self.bank = clusters(self.n_bank, seed=1)
        self.eval = clusters(self.n_eval, seed=2)
        self.ood = clusters(self.n_ood, seed=3, shift=10.0)

    def train_dataloader(self):
        return DataLoader(
            TwoViewSet(*self.bank), batch_size=self.batch_size, shuffle=True, drop_last=True
        )

    def _eval_loaders(self):
        return [
            DataLoader(EvalSet(*data), batch_size=self.eval_batch_size)
            for data in (self.bank, self.eval, self.ood)
        ]

    def val_dataloader(self):
        return self._eval_loaders()

    def test_dataloader(self):
        return self._eval_loaders()


class TinySSL(pl.LightningModule):
    """MLP backbone (with BatchNorm) + linear projector; a SimCLR-like loss."""

    def __init__(self, lr: float = 0.05, gradscale_power: float = 0.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(
            nn.Linear(DIM, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 16)
        )
        self.projector = nn.Linear(16, 8)
        self.lr = lr
        self.gradscale_power = gradscale_power

    def forward(self, x):
        return self.backbone(x)

    def embed(self, x):
        return self.projector(self.backbone(x))

    def training_step(self, batch, batch_idx):
        (v1, v2), y, _ = batch
        h = self(torch.cat([v1, v2]))
        z = self.projector(h)
        zn = F.normalize(z, dim=1)
        sim = zn @ zn.T / 0.5
        sim.fill_diagonal_(float("-inf"))
        b = v1.shape[0]
        target = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
        loss = F.cross_entropy(sim, target)
        self.log("train/loss", loss)
        return {"loss": loss, "z": z.detach(), "h": h.detach(), "y": y}

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        x, y, idx = batch
        h = self(x)
        return {"h": h.detach(), "z": self.projector(h).detach(), "y": y, "idx": idx}

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        return self.validation_step(batch, batch_idx, dataloader_idx)

    def configure_optimizers(self):
        return torch.optim.SGD(
            [
                {"params": self.backbone.parameters(), "name": "backbone"},
                {"params": self.projector.parameters(), "name": "projector", "lr": self.lr * 3},
            ],
            lr=self.lr,
        )


class DumpResults(pl.Callback):
    """Writes the monitors' ``last_results`` from rank 0 after every evaluation epoch.

    With ``ddp_spawn`` the callbacks live in the child processes, so the test reads them
    back from this file. Place it after the monitors (callbacks run in list order).
    """

    def __init__(self, path: Path, monitors: dict[str, pl.Callback]) -> None:
        self.path = Path(path)
        self.monitors = monitors
        self.records: list[dict] = []

    def _dump(self, trainer) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        self.records.append({name: cb.last_results for name, cb in self.monitors.items()})
        self.path.write_bytes(pickle.dumps(self.records))

    def on_validation_end(self, trainer, pl_module) -> None:
        self._dump(trainer)

    def on_test_end(self, trainer, pl_module) -> None:
        self._dump(trainer)


def load_records(path: Path) -> list[dict]:
    return pickle.loads(Path(path).read_bytes())


def comparable(results: dict) -> str:
    """The results minus the step/epoch counters, as canonical JSON (exact floats)."""
    drop = {"step", "epoch"}

    def clean(obj):
        if isinstance(obj, dict):
            return {
                str(k): clean(v)
                for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))
                if k not in drop
            }
        if isinstance(obj, (list, tuple)):
            return [clean(v) for v in obj]
        return obj

    return json.dumps(clean(results), sort_keys=True)
