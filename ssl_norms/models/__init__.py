"""Backbones and heads of the SSL methods (DESIGN §4)."""

from ssl_norms.models.backbones import BACKBONES, MLP, ConvNet, ResNet, build_backbone, feature_dim
from ssl_norms.models.heads import Predictor, SimCLRProjector, SimSiamProjector

__all__ = [
    "BACKBONES",
    "MLP",
    "ConvNet",
    "Predictor",
    "ResNet",
    "SimCLRProjector",
    "SimSiamProjector",
    "build_backbone",
    "feature_dim",
]
