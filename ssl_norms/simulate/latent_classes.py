"""The latent-class data generator of paper Sec. 4.2 / Appendix B.2.

Class centres are drawn uniformly on S^latent_dim (a standard normal vector, normalised);
a latent sample of class i is c_i + noise, re-normalised to the sphere; observations are
the latent samples multiplied by one random (latent_dim + 1) x ambient_dim matrix.
Used by the Figure 2b/2c simulation and by ``datamodules.LatentClassesDataModule``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["LatentClassData", "class_counts_from_probs", "sample_latent_classes"]


@dataclass(frozen=True)
class LatentClassData:
    """Observations ``x`` [N, ambient_dim], unit ``latent`` [N, latent_dim + 1], ``labels`` [N]."""

    x: np.ndarray
    latent: np.ndarray
    labels: np.ndarray
    centers: np.ndarray
    generator: np.ndarray
    class_probs: np.ndarray

    @property
    def class_counts(self) -> list[int]:
        return np.bincount(self.labels, minlength=len(self.centers)).tolist()


def _normalise(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def class_counts_from_probs(probs: Sequence[float], n_samples: int) -> list[int]:
    """Deterministic per-class counts summing to ``n_samples`` (largest remainder rounding)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 1 or len(p) == 0 or np.any(~np.isfinite(p)) or np.any(p <= 0):
        raise ValueError(
            f"class probabilities must be a non-empty list of positive numbers, got {list(probs)}"
        )
    p = p / p.sum()
    raw = p * n_samples
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n_samples - counts.sum()]:
        counts[i] += 1
    if np.any(counts == 0):
        raise ValueError(
            f"{n_samples} samples leave class {int(np.argmin(counts))} empty with probabilities "
            f"{np.round(p, 4).tolist()}: raise n_samples or lower the imbalance"
        )
    return counts.tolist()


def sample_latent_classes(
    num_classes: int = 4,
    n_samples: int = 4000,
    latent_dim: int = 10,
    ambient_dim: int = 64,
    noise_std: float = 0.1,
    class_probs: Sequence[float] | None = None,
    imbalance_ratio: float | None = None,
    seed: int = 0,
) -> LatentClassData:
    """Draw the latent-class data set of Appendix B.2.

    Args:
        num_classes: number of latent classes (paper: 4).
        n_samples: total number of samples (paper: 1,000 per class).
        latent_dim: the sphere S^latent_dim lives in R^(latent_dim + 1) (paper: S^10).
        ambient_dim: dimension of the observations (paper: 64).
        noise_std: standard deviation of the isotropic Gaussian around each centre
            (paper: N(0, 0.1 I); the authors' Fig. 2c notebook used 1.0).
        class_probs: class frequencies (normalised); ``None`` means balanced.
        imbalance_ratio: alternative to ``class_probs``: p_i proportional to ratio^-i, so
            2.0 gives the paper's 1/2, 1/4, 1/8, 1/16 (Fig. 2c).
        seed: seeds centres, generating matrix and samples.
    """
    if num_classes < 1 or latent_dim < 1 or ambient_dim < 1:
        raise ValueError("num_classes, latent_dim and ambient_dim must be >= 1")
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    if class_probs is not None and imbalance_ratio is not None:
        raise ValueError("give class_probs or imbalance_ratio, not both")
    if imbalance_ratio is not None:
        if imbalance_ratio < 1:
            raise ValueError(f"imbalance_ratio must be >= 1 (1 = balanced), got {imbalance_ratio}")
        class_probs = [float(imbalance_ratio) ** -i for i in range(num_classes)]
    if class_probs is None:
        class_probs = [1.0] * num_classes
    if len(class_probs) != num_classes:
        raise ValueError(f"{len(class_probs)} class probabilities for {num_classes} classes")
    counts = class_counts_from_probs(class_probs, n_samples)

    rng = np.random.default_rng(seed)
    centers = _normalise(rng.standard_normal((num_classes, latent_dim + 1)))
    generator = rng.standard_normal((latent_dim + 1, ambient_dim))
    labels = np.repeat(np.arange(num_classes), counts)
    latent = _normalise(
        centers[labels] + noise_std * rng.standard_normal((n_samples, latent_dim + 1))
    )
    x = latent @ generator
    p = np.asarray(class_probs, dtype=np.float64)
    return LatentClassData(
        x=x.astype(np.float32),
        latent=latent,
        labels=labels.astype(np.int64),
        centers=centers,
        generator=generator,
        class_probs=p / p.sum(),
    )
