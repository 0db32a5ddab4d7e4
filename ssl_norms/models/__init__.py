"""Backbones and heads of the SSL methods (paper Appendix C.1), and the BatchNorm that
synchronises over processes (docs/distributed.md)."""

from ssl_norms.models.backbones import BACKBONES, MLP, ConvNet, ResNet, build_backbone, feature_dim
from ssl_norms.models.heads import Predictor, SimCLRProjector, SimSiamProjector
from ssl_norms.models.sync_batchnorm import GlobalBatchNorm, convert_sync_batchnorm

__all__ = [
    "BACKBONES",
    "MLP",
    "ConvNet",
    "GlobalBatchNorm",
    "Predictor",
    "ResNet",
    "SimCLRProjector",
    "SimSiamProjector",
    "build_backbone",
    "convert_sync_batchnorm",
    "feature_dim",
]
