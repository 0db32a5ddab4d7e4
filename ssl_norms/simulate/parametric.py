"""The parametric latent-class simulation of paper Sec. 4.2 / Appendix B.2 (Figures 2b, 2c).

Data (``latent_classes.sample_latent_classes``): 4 class centres uniform on S^10, samples
``N(c_i, noise_std^2 I)`` re-normalised to the sphere, observations = latent @ a random
11 x 64 matrix. Model: a 2-layer ReLU MLP 64 -> hidden -> 11 (11 outputs so that, once
normalised, they can reconstruct the latent sphere). Loss: supervised InfoNCE
(``ssl_norms.losses.supervised_info_nce``), batch 128, plain SGD; a plain torch loop.

* Fig. 2b (``density_experiment``): balanced classes; each training sample's embedding
  norm against the cosine distance ``1 - cos`` to its 10th nearest neighbour among the
  training embeddings (a proxy for inverse density). Dense -> large norm.
* Fig. 2c (``imbalance_experiment``): class probabilities ~ 1/2, 1/4, 1/8, 1/16; the mean
  embedding norm of each class after every epoch. Frequent -> large norm.

Choices (the paper gives no optimiser, learning rate, epochs, width or temperature; the
authors' notebook used SGD lr 0.01, 100 epochs, temperature 1, hidden 64, 10 outputs,
latent noise std 1.0 for 2c, inputs x 10, and trained 2b's model on the 2c data):

* SGD **lr 2.0**, no momentum, temperature 1, hidden 64, 30 epochs for both figures.
  Why a large lr: by Corollary 3.3 a step grows ``||z||^2`` by
  ``lr^2 ||grad||^2``, a second-order effect; with lr 0.01 and unit-scale inputs the norms
  barely move (0.9 -> 0.9 in 100 epochs) and the class order is noise. With lr 2 the norms
  grow until the effective learning rate ``lr / ||z||^2`` (Theorem 3.4) is small, and a
  class that takes a larger share of every batch grows further: after 30 epochs the
  mean norms by frequency are about 15, 14, 11, 9 (5 seeds). Most of the growth happens
  in the first epoch, while ``lr / ||z||^2`` is still large; the order set there persists
  and the norms keep creeping up afterwards. Lower lr (0.1-0.5) or noise 0.3-1.0
  gave the same sign on average but neighbours swapped in many seeds.
* **Latent noise std 0.1 for 2c (B.2), 1.0 for 2b** (``DENSITY_CONFIG``). At 0.1 the
  classes are tight and well separated: training collapses each class to a tiny cap (10th
  neighbour at cosine distance ~1e-4), the k-NN distance then measures nothing but
  within-cap jitter, and its rank correlation with the norm is about 0 (+0.1 at lr 2,
  -0.3 at lr 0.1). At std 1.0 (what the authors' 2b model was trained on) the classes
  overlap, embeddings spread out (median distance ~0.04), and the Spearman correlation of
  norm and k-NN distance is about -0.75 (seeds 0, 1): dense -> large norm. Std 0.3 gives
  about -0.5. For 2c, std 1.0 leaves the classes nearly indistinguishable and the
  frequency order of the norms weak, std 0.1 shows it clearly.
* **Balanced assignment of frequencies to centres** (2c): a class's norm also depends on
  where its random centre falls (how close the other classes are, how much the random
  matrix stretches it); with 4 classes that geometry noise is as large as the effect. For
  each seed we therefore train ``len(probs)`` runs on the SAME centres, generating matrix
  and network initialisation, rotating which centre gets which probability, and report
  norms by frequency rank averaged over all runs. Each run is exactly the paper's
  protocol (centres are exchangeable); the rotation only cancels the geometry term,
  like antithetic sampling. ``rotate=False`` gives plain independent runs.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ssl_norms.losses import supervised_info_nce
from ssl_norms.simulate.latent_classes import LatentClassData, sample_latent_classes

__all__ = [
    "DENSITY_CONFIG",
    "IMBALANCE_CONFIG",
    "DensityResult",
    "ImbalanceResult",
    "LatentClassConfig",
    "TrainResult",
    "density_experiment",
    "imbalance_experiment",
    "knn_cosine_distance",
    "make_mlp",
    "plot_density",
    "plot_imbalance",
    "quick_config",
    "spearman",
    "train_latent_classes",
    "write_density_csv",
    "write_imbalance_csv",
]


@dataclass(frozen=True)
class LatentClassConfig:
    """Everything one training run of Appendix B.2 needs (see the module docstring)."""

    num_classes: int = 4
    samples_per_class: int = 1000
    latent_dim: int = 10
    ambient_dim: int = 64
    noise_std: float = 0.1
    hidden_dim: int = 64
    batch_size: int = 128
    epochs: int = 30
    lr: float = 2.0
    temperature: float = 1.0

    def __post_init__(self) -> None:
        for name in (
            "num_classes",
            "samples_per_class",
            "latent_dim",
            "ambient_dim",
            "hidden_dim",
            "batch_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if not (math.isfinite(self.lr) and self.lr > 0 and self.temperature > 0):
            raise ValueError(
                f"lr and temperature must be positive, got {self.lr}, {self.temperature}"
            )

    @property
    def n_samples(self) -> int:
        return self.num_classes * self.samples_per_class

    def sample(self, seed: int, class_probs: Sequence[float] | None = None) -> LatentClassData:
        return sample_latent_classes(
            num_classes=self.num_classes,
            n_samples=self.n_samples,
            latent_dim=self.latent_dim,
            ambient_dim=self.ambient_dim,
            noise_std=self.noise_std,
            class_probs=class_probs,
            seed=seed,
        )


#: Fig. 2c (and the default of every run): B.2's data, lr 2 (module docstring).
IMBALANCE_CONFIG = LatentClassConfig()
#: Fig. 2b: overlapping classes (latent noise std 1.0) so that density varies.
DENSITY_CONFIG = LatentClassConfig(noise_std=1.0)


def make_mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """B.2's 2-layer feed-forward network with a ReLU hidden layer."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))


@dataclass(frozen=True)
class TrainResult:
    """``class_norms[e, c]``: mean ||z|| of class c after e epochs (row 0: at init);
    ``embeddings``: the final un-normalised embeddings of all samples; ``losses[e]``: mean
    training loss of epoch e."""

    class_norms: np.ndarray
    embeddings: np.ndarray
    losses: np.ndarray


def _class_norms(z: torch.Tensor, labels: torch.Tensor, num_classes: int) -> np.ndarray:
    norms = z.norm(dim=1).double()
    sums = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, labels, norms)
    return (sums / torch.bincount(labels, minlength=num_classes).clamp_min(1)).numpy()


def train_latent_classes(data: LatentClassData, cfg: LatentClassConfig, seed: int) -> TrainResult:
    """Train B.2's MLP with supervised InfoNCE and plain SGD; deterministic given ``seed``.

    ``seed`` sets the network initialisation and the batch order (the data carry their
    own seed), without touching torch's global random state.
    """
    x = torch.from_numpy(data.x)
    labels = torch.from_numpy(data.labels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make_mlp(x.shape[1], cfg.hidden_dim, cfg.latent_dim + 1)
    shuffle = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr)

    def snapshot() -> tuple[np.ndarray, torch.Tensor]:
        with torch.no_grad():
            z = model(x)
        return _class_norms(z, labels, cfg.num_classes), z

    norms, z = snapshot()
    history = [norms]
    losses = []
    for _ in range(cfg.epochs):
        order = torch.randperm(len(x), generator=shuffle)
        total, batches = 0.0, 0
        for start in range(0, len(x), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            if len(idx) < 2:  # a lone sample has no positive
                continue
            loss = supervised_info_nce(model(x[idx]), labels[idx], cfg.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
        losses.append(total / max(batches, 1))
        norms, z = snapshot()
        history.append(norms)
    return TrainResult(np.stack(history), z.numpy().astype(np.float64), np.asarray(losses))


def knn_cosine_distance(z: np.ndarray, k: int = 10) -> np.ndarray:
    """Cosine distance ``1 - cos`` from each row to its k-th nearest other row (Fig. 2b)."""
    z = np.asarray(z, dtype=np.float64)
    if not 1 <= k < len(z):
        raise ValueError(f"k must be in [1, {len(z) - 1}], got {k}")
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    sim = u @ u.T
    np.fill_diagonal(sim, -np.inf)  # a point is not its own neighbour
    kth = -np.partition(-sim, k - 1, axis=1)[:, k - 1]
    return 1.0 - kth


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (no ties expected for continuous data)."""
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


@dataclass(frozen=True)
class DensityResult:
    """Fig. 2b: per training sample its ``norm``, ``knn_distance`` and ``label``."""

    norm: np.ndarray
    knn_distance: np.ndarray
    labels: np.ndarray
    k: int
    seed: int
    final_loss: float

    @property
    def spearman(self) -> float:
        return spearman(self.norm, self.knn_distance)


def density_experiment(
    cfg: LatentClassConfig | None = None, seed: int = 0, k: int = 10
) -> DensityResult:
    """Fig. 2b: train on balanced latent classes, relate norm to local (inverse) density."""
    cfg = cfg or DENSITY_CONFIG
    data = cfg.sample(seed)
    result = train_latent_classes(data, cfg, seed)
    z = result.embeddings
    return DensityResult(
        norm=np.linalg.norm(z, axis=1),
        knn_distance=knn_cosine_distance(z, k),
        labels=data.labels,
        k=k,
        seed=seed,
        final_loss=float(result.losses[-1]) if len(result.losses) else float("nan"),
    )


@dataclass(frozen=True)
class ImbalanceResult:
    """Fig. 2c: ``norms[run, epoch, rank]`` is the mean norm of the class with the
    rank-th largest probability (rank 0 = most frequent); ``probs`` sorted descending;
    ``runs`` lists (seed, rotation) per run."""

    norms: np.ndarray
    probs: np.ndarray
    runs: list[tuple[int, int]]

    @property
    def final_mean(self) -> np.ndarray:
        """Final mean norm per frequency rank, averaged over all runs."""
        return self.norms[:, -1, :].mean(axis=0)


def imbalance_experiment(
    cfg: LatentClassConfig | None = None,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    imbalance_ratio: float = 2.0,
    rotate: bool = True,
) -> ImbalanceResult:
    """Fig. 2c: class probabilities proportional to ``imbalance_ratio^-i`` (2: ~1/2, 1/4,
    1/8, 1/16); per-class mean norms over training, indexed by frequency rank.

    With ``rotate`` every seed trains one run per cyclic assignment of the probabilities to
    the class centres (same centres, matrix and initialisation), cancelling the geometry
    noise (module docstring); otherwise one run per seed with class i at probability i.
    """
    cfg = cfg or IMBALANCE_CONFIG
    if imbalance_ratio < 1:
        raise ValueError(f"imbalance_ratio must be >= 1, got {imbalance_ratio}")
    base = np.array([float(imbalance_ratio) ** -i for i in range(cfg.num_classes)])
    base /= base.sum()
    shifts = range(cfg.num_classes) if rotate else range(1)
    histories, runs = [], []
    for seed in seeds:
        for shift in shifts:
            probs = np.roll(base, shift)  # class c gets probs[c]
            data = cfg.sample(seed, class_probs=probs)
            norms = train_latent_classes(data, cfg, seed).class_norms
            rank_to_class = np.argsort(-probs, kind="stable")
            histories.append(norms[:, rank_to_class])
            runs.append((int(seed), int(shift)))
    return ImbalanceResult(np.stack(histories), base, runs)


def write_density_csv(result: DensityResult, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sample", "label", "norm", f"cos_distance_to_{result.k}th_nn", "seed"])
        for i, (lab, n, d) in enumerate(
            zip(result.labels, result.norm, result.knn_distance, strict=True)
        ):
            writer.writerow([i, int(lab), f"{n:.6g}", f"{d:.6g}", result.seed])
    return path


def write_imbalance_csv(result: ImbalanceResult, path: str | Path) -> Path:
    """Long format: one line per (run, epoch, class rank)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["seed", "rotation", "epoch", "frequency_rank", "class_prob", "mean_norm"])
        for (seed, rot), hist in zip(result.runs, result.norms, strict=True):
            for epoch, row in enumerate(hist):
                for rank, value in enumerate(row):
                    writer.writerow(
                        [seed, rot, epoch, rank, f"{result.probs[rank]:.6g}", f"{value:.6g}"]
                    )
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_density(result: DensityResult, path: str | Path) -> Path:
    """Fig. 2b: scatter of norm against cosine distance to the k-th neighbour."""
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    colors = plt.cm.viridis(np.linspace(0.1, 0.9, int(result.labels.max()) + 1))
    for c, color in enumerate(colors):
        m = result.labels == c
        ax.scatter(
            result.knn_distance[m],
            result.norm[m],
            s=4,
            alpha=0.4,
            color=color,
            label=f"class {c + 1}",
        )
    # Binned median: the trend the scatter hides under overplotting.
    edges = np.quantile(result.knn_distance, np.linspace(0, 1, 13))
    mid, med = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (result.knn_distance >= lo) & (result.knn_distance <= hi)
        if m.any():
            mid.append(np.median(result.knn_distance[m]))
            med.append(np.median(result.norm[m]))
    ax.plot(mid, med, "k-o", ms=3, lw=1.5, label="binned median")
    ax.set_xscale("log")
    ax.set(
        xlabel=f"cosine distance to {result.k}th nearest neighbour",
        ylabel=r"embedding norm $\|z\|$",
    )
    ax.set_title(
        f"Fig. 2b: dense regions have larger norms\nSpearman = {result.spearman:.2f} (seed {result.seed})",
        fontsize=10,
    )
    ax.legend(markerscale=3, fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_imbalance(result: ImbalanceResult, path: str | Path) -> Path:
    """Fig. 2c: mean norm per class over epochs; mean over runs, band ±1 s.e. over seeds."""
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    epochs = np.arange(result.norms.shape[1])
    colors = plt.cm.Blues(np.linspace(0.95, 0.4, len(result.probs)))
    for rank, color in enumerate(colors):
        runs = result.norms[:, :, rank]
        mean = runs.mean(axis=0)
        # Standard error over seeds (each seed averaged over its rotations): the
        # uncertainty of the plotted mean, not the spread of single runs.
        seeds = sorted({s for s, _ in result.runs})
        per_seed = np.stack(
            [runs[[i for i, (s, _) in enumerate(result.runs) if s == sd]].mean(0) for sd in seeds]
        )
        sem = (
            per_seed.std(0, ddof=1) / np.sqrt(len(seeds)) if len(seeds) > 1 else np.zeros_like(mean)
        )
        ax.plot(epochs, mean, lw=2, color=color, label=f"p = {result.probs[rank]:.3f}")
        ax.fill_between(epochs, mean - sem, mean + sem, color=color, alpha=0.25)
    ax.set(xlabel="epoch", ylabel="mean embedding norm of the class")
    n_seeds = len({s for s, _ in result.runs})
    ax.set_title(
        f"Fig. 2c: frequent classes grow larger norms\nmean of {len(result.runs)} runs ({n_seeds} seeds); band: ±1 s.e. over seeds",
        fontsize=10,
    )
    ax.legend(frameon=False, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def quick_config(cfg: LatentClassConfig) -> LatentClassConfig:
    """A seconds-long variant for tests and ``--quick``: fewer samples and epochs."""
    return replace(cfg, samples_per_class=250, epochs=5)
