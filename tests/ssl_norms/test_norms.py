"""The effective learning rate lr * ||z_i||^(p - 2) (Theorem 3.4; docs/definitions.md)."""

from __future__ import annotations

import pytest
import torch

from ssl_norms.norms import effective_learning_rate, embedding_norms


def test_hand_made_batch() -> None:
    z = torch.tensor([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]])
    assert embedding_norms(z).tolist() == [5.0, 2.0, 1.0]
    # Default training (p = 0): lr / ||z||^2.
    assert effective_learning_rate(0.1, z).tolist() == pytest.approx([0.1 / 25, 0.1 / 4, 0.1])
    # GradScale p = 1: lr / ||z||.
    assert effective_learning_rate(0.1, z, power=1.0).tolist() == pytest.approx(
        [0.1 / 5, 0.1 / 2, 0.1]
    )
    # p = 2 removes the norm entirely.
    assert effective_learning_rate(0.1, z, power=2.0).tolist() == pytest.approx([0.1, 0.1, 0.1])
