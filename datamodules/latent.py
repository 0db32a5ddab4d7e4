"""Latent classes as a DataModule (paper Sec. 4.2 / Appendix B.2, DESIGN §5).

A fixed pool is drawn once by ``ssl_norms.simulate.latent_classes.sample_latent_classes``
(one call, so train and eval share the class centres and the generating matrix). The two
"views" of training sample i are x_i and x_j, j another sample of the same class chosen
from (seed, epoch, i): the unmodified SimCLR then trains the paper's supervised InfoNCE.
Needs no files and no workers: the demo's default.

``ood_classes=K`` adds K latent classes that are never trained on (paper Fig. 3): new
centres on the same sphere, the same generating matrix and noise, served un-augmented as
the OOD loader ``ood/latent_holdout`` (labels ``num_classes .. num_classes + K - 1``).
Image OOD sets (the generic ``ood`` argument) do not apply to vectors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.base import SSLDataModule
from datamodules.datasets import EpochAwareDataset, EvalDataset, sample_seed
from ssl_norms.simulate.latent_classes import class_counts_from_probs, sample_latent_classes

#: Name of the held-out latent classes' OOD loader (``ood/latent_holdout``).
OOD_NAME = "latent_holdout"

__all__ = ["LatentClassesDataModule"]


class VectorSet(Dataset):
    """Float vectors ``[N, D]`` with int64 labels; items ``(x_i, y_i)``."""

    def __init__(self, x: torch.Tensor, labels: torch.Tensor):
        self.x = x
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], int(self.labels[i])


class SameClassPairs(EpochAwareDataset):
    """``([x_i, x_j], y_i, i)`` with j != i a same-class sample drawn from (seed, epoch, i)."""

    def __init__(self, base: VectorSet, seed: int = 0):
        super().__init__(base, seed)
        labels = base.labels.numpy()
        self._members = [np.flatnonzero(labels == c) for c in range(int(labels.max()) + 1)]
        for c, rows in enumerate(self._members):
            if len(rows) == 1:
                raise ValueError(
                    f"class {c} has a single training sample, so its two views would be the "
                    "same vector (no positive pair): give it more samples (raise n_train) or "
                    "less imbalance (a smaller imbalance_ratio or flatter class_probs)"
                )
        self._pos = np.zeros(len(labels), dtype=np.int64)  # position of i among its class
        for rows in self._members:
            self._pos[rows] = np.arange(len(rows))

    def __getitem__(self, i: int):
        x, y = self.base[i]
        rows = self._members[y]
        k = sample_seed(self.seed, self.epoch, int(i)) % (len(rows) - 1)
        j = int(rows[k + (k >= self._pos[i])])  # skip i itself
        return [x, self.base.x[j]], y, int(i)


class LatentClassesDataModule(SSLDataModule):
    """Vectors from latent classes on a sphere; views = two samples of one class.

    Args:
        num_classes: number of latent classes (paper: 4).
        n_train: training samples (the pool SimCLR trains on and the k-NN bank).
        n_eval: evaluation samples (same centres and generator, fresh noise).
        latent_dim: the latent sphere is S^latent_dim (paper: S^10).
        ambient_dim: observation dimension (paper: 64).
        noise_std: latent noise around each centre (paper: 0.1; authors' Fig. 2c run: 1.0).
        class_probs: class frequencies; None = balanced (or ``imbalance_ratio``).
        imbalance_ratio: p_i proportional to ratio^-i (2.0 = the paper's Fig. 2c).
        batch_size: the global training batch of one micro-step (paper: 128).
        eval_batch_size: batch size of the bank and eval loaders, per process.
        num_workers: loader workers (0 is fastest for this tiny data).
        seed: seeds the data, the shuffle and the choice of the second view.
        ood_classes: extra latent classes never trained on (new centres, same generating
            matrix and noise), served un-augmented as the OOD loader ``ood/latent_holdout``
            (paper Fig. 3: held-out classes get smaller norms). 0 = none. The in-distribution
            data does not depend on it.
        n_ood: samples of the held-out classes in all (balanced); None = ``n_eval``.
        ood: image OOD sets do not apply to vector data: must be None or empty (use
            ``ood_classes``); accepted only to give a clear error.
    """

    _size_option = "n_train"

    image_size = 0

    def __init__(
        self,
        num_classes: int = 4,
        n_train: int = 4000,
        n_eval: int = 1000,
        latent_dim: int = 10,
        ambient_dim: int = 64,
        noise_std: float = 0.1,
        class_probs: list[float] | None = None,
        imbalance_ratio: float | None = None,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        num_workers: int = 0,
        seed: int = 0,
        ood_classes: int = 0,
        n_ood: int | None = None,
        ood: dict[str, str] | None = None,
    ):
        if ood:
            raise ValueError(
                f"LatentClassesDataModule: image OOD sets ({sorted(ood)}) do not apply to vector "
                "data; use ood_classes=K for K held-out latent classes (ood/latent_holdout)"
            )
        super().__init__(
            data_dir="", batch_size=batch_size, eval_batch_size=eval_batch_size,
            num_workers=num_workers, seed=seed,
        )  # fmt: skip
        if n_train < 1 or n_eval < 1:
            raise ValueError(f"n_train and n_eval must be >= 1, got {n_train}, {n_eval}")
        if ood_classes < 0:
            raise ValueError(f"ood_classes must be >= 0, got {ood_classes}")
        n_ood = n_eval if n_ood is None else n_ood
        if ood_classes and n_ood < ood_classes:
            raise ValueError(
                f"n_ood ({n_ood}) must give each of the {ood_classes} held-out classes a sample"
            )
        self.ood_classes = ood_classes
        self.n_ood = n_ood
        self.num_classes = num_classes
        self.n_train = n_train
        self.n_eval = n_eval
        self.latent_dim = latent_dim
        self.ambient_dim = ambient_dim
        self.noise_std = noise_std
        self.class_probs: Sequence[float] | None = class_probs
        self.imbalance_ratio = imbalance_ratio
        self.save_hyperparameters()

    def setup(self, stage: str | None = None) -> None:
        if self._train is not None:
            return
        data = sample_latent_classes(
            num_classes=self.num_classes,
            n_samples=self.n_train + self.n_eval,
            latent_dim=self.latent_dim,
            ambient_dim=self.ambient_dim,
            noise_std=self.noise_std,
            class_probs=self.class_probs,
            imbalance_ratio=self.imbalance_ratio,
            seed=self.seed,
        )
        # Per class: the first n_train_c samples train, the rest evaluate (same proportions).
        train_counts = class_counts_from_probs(data.class_probs, self.n_train)
        train_rows, eval_rows = [], []
        for c, n in enumerate(train_counts):
            rows = np.flatnonzero(data.labels == c)
            if len(rows) <= n:
                raise ValueError(
                    f"class {c} has no evaluation sample: raise n_eval ({self.n_eval})"
                )
            train_rows.append(rows[:n])
            eval_rows.append(rows[n:])
        x = torch.from_numpy(data.x)
        y = torch.from_numpy(data.labels)
        tr, ev = np.concatenate(train_rows), np.concatenate(eval_rows)
        train = VectorSet(x[tr], y[tr])
        self._train_labels = train.labels
        self._class_names = [f"class {c}" for c in range(self.num_classes)]
        self._train = SameClassPairs(train, seed=self.seed)  # type: ignore[assignment]
        self._bank = EvalDataset(train, _identity)
        self._eval = EvalDataset(VectorSet(x[ev], y[ev]), _identity)
        self.class_probs_ = data.class_probs
        if self.ood_classes:
            self._ood[OOD_NAME] = EvalDataset(self._held_out_classes(data.generator), _identity)

    def _held_out_classes(self, generator: np.ndarray) -> VectorSet:
        """``ood_classes`` new centres through the same generating matrix, balanced, with a
        random stream of their own (the in-distribution data stays as without them)."""
        rng = np.random.default_rng([self.seed, 0x00D])
        k, d = self.ood_classes, self.latent_dim + 1
        centers = _normalise(rng.standard_normal((k, d)))
        labels = np.repeat(np.arange(k), class_counts_from_probs([1.0] * k, self.n_ood))
        latent = _normalise(
            centers[labels] + self.noise_std * rng.standard_normal((len(labels), d))
        )
        x = torch.from_numpy((latent @ generator).astype(np.float32))
        return VectorSet(x, torch.from_numpy(labels + self.num_classes))

    @property
    def eval_loader_names(self) -> list[str]:
        return ["bank", "eval"] + ([f"ood/{OOD_NAME}"] if self.ood_classes else [])


def _identity(x):
    return x


def _normalise(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)
