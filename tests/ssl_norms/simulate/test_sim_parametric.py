"""Figures 2b/2c (Appendix B.2): the latent-class training loop and its two effects."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from ssl_norms.simulate.parametric import (
    DENSITY_CONFIG,
    IMBALANCE_CONFIG,
    density_experiment,
    imbalance_experiment,
    knn_cosine_distance,
    quick_config,
    spearman,
    train_latent_classes,
)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """A tiny MLP on 2 shared cores: one thread is faster and steadier."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_imbalanced_final_norms_are_ordered_by_class_frequency():
    """Fig. 2c: averaged over seeds, the more frequent a class, the larger its final mean
    norm (single runs may swap neighbours; see the module docstring)."""
    cfg = replace(IMBALANCE_CONFIG, epochs=10)
    result = imbalance_experiment(cfg, seeds=(0, 1, 2))
    assert len(result.runs) == 3 * 4
    assert np.allclose(result.probs, np.array([8, 4, 2, 1]) / 15)
    final = result.final_mean
    assert np.all(np.diff(final) < 0), final
    # ... and training grew every class's norm (Corollary 3.3) far beyond its initial value.
    assert np.all(result.norms[:, -1].mean(0) > 3 * result.norms[:, 0].mean(0))


def test_training_is_reproducible():
    cfg = quick_config(IMBALANCE_CONFIG)
    data = cfg.sample(3, class_probs=[8, 4, 2, 1])
    a = train_latent_classes(data, cfg, seed=3)
    b = train_latent_classes(data, cfg, seed=3)
    c = train_latent_classes(data, cfg, seed=4)
    assert np.array_equal(a.class_norms, b.class_norms)
    assert np.array_equal(a.embeddings, b.embeddings)
    assert np.array_equal(a.losses, b.losses)
    assert not np.array_equal(a.embeddings, c.embeddings)
    assert a.class_norms.shape == (cfg.epochs + 1, 4)
    assert a.embeddings.shape == (cfg.n_samples, cfg.latent_dim + 1)
    assert a.losses[-1] < a.losses[0]  # it learns


def test_training_leaves_torch_global_rng_alone():
    cfg = quick_config(IMBALANCE_CONFIG)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_latent_classes(cfg.sample(0), replace(cfg, epochs=1), seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_dense_regions_have_larger_norms():
    """Fig. 2b: norm falls with the distance to the 10th neighbour (inverse density)."""
    first = density_experiment(quick_config(DENSITY_CONFIG), seed=0)
    again = density_experiment(quick_config(DENSITY_CONFIG), seed=0)
    assert np.array_equal(first.norm, again.norm)
    assert np.array_equal(first.knn_distance, again.knn_distance)
    assert first.norm.shape == first.knn_distance.shape == (1000,)
    assert first.spearman < -0.5, first.spearman


def test_knn_cosine_distance_matches_brute_force():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((40, 5)) * rng.uniform(0.1, 5, size=(40, 1))
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    for k in (1, 3, 10):
        expected = [
            np.sort([1 - u[i] @ u[j] for j in range(40) if j != i])[k - 1] for i in range(40)
        ]
        assert np.allclose(knn_cosine_distance(z, k), expected)
    with pytest.raises(ValueError):
        knn_cosine_distance(z, 40)


def test_spearman():
    x = np.array([0.1, 0.5, 0.3, 0.9])
    assert spearman(x, x**3) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert spearman(np.arange(4.0), np.array([1.0, 0.0, 3.0, 2.0])) == pytest.approx(0.6)
