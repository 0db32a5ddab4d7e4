"""Heads: SimSiam's projector output BatchNorm has no affine parameters (Chen & He 2021)."""

from __future__ import annotations

import torch
from torch import nn

from ssl_norms.methods import BYOL, SimSiam
from ssl_norms.models.heads import SimCLRProjector, SimSiamProjector


def _bns(module: nn.Module) -> list[nn.BatchNorm1d]:
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm1d)]


def test_simsiam_projector_output_batchnorm_is_not_affine():
    proj = SimSiamProjector(8, 16, num_layers=3)
    bns = _bns(proj)
    assert [bn.affine for bn in bns] == [True, True, False]
    out = proj.train()(torch.randn(64, 8, dtype=torch.float32))
    # Without gamma/beta the output is exactly standardised per dimension.
    assert torch.allclose(out.mean(0), torch.zeros(16), atol=1e-5)
    assert torch.allclose(out.var(0, unbiased=False), torch.ones(16), atol=1e-3)


def test_methods_pick_their_projector_output():
    simsiam = SimSiam(backbone="mlp", backbone_in_dim=4, backbone_width=8, projector_dim=16,
                      predictor_hidden_dim=4)  # fmt: skip
    byol = BYOL(backbone="mlp", backbone_in_dim=4, backbone_width=8, projector_dim=16,
                predictor_hidden_dim=4)  # fmt: skip
    assert not _bns(simsiam.projector)[-1].affine
    assert _bns(byol.projector)[-1].affine and _bns(byol.target_projector)[-1].affine


def test_simclr_projector_has_no_output_batchnorm():
    proj = SimCLRProjector(8, 16, 4, hidden_batch_norm=True)
    assert isinstance(proj[-1], nn.Linear) and len(_bns(proj)) == 1
