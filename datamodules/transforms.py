"""SSL augmentation presets and evaluation transforms (DESIGN §4, paper Appendix C.1).

All transforms are torchvision ``transforms.v2`` pipelines that take a uint8 image tensor
``[3, H, W]`` (decoded once, see ``datamodules.io``) and return a normalised float32
tensor. Randomness comes only from torch's global generator, which the two-view dataset
seeds per sample (``datamodules.datasets.sample_seed``) so that epochs are reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torchvision.transforms import v2

__all__ = [
    "AugmentationConfig",
    "CIFAR10_STATS",
    "CIFAR100_STATS",
    "IMAGENET_STATS",
    "PRESETS",
    "eval_transform",
    "ssl_augmentation",
]

MethodFamily = Literal["simclr", "simsiam", "byol"]

# Per-channel mean / std of the training images (the values used across the SSL literature).
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass(frozen=True)
class AugmentationConfig:
    """One SSL augmentation recipe (DESIGN §4). Probabilities are per view."""

    crop_scale: tuple[float, float] = (0.2, 1.0)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    # Not in the paper's recipe (DESIGN §4): off by default, offered for ImageNet-style runs.
    blur_p: float = 0.0
    solarize_p: float = 0.0


# The paper uses the same recipe for all three families (Appendix C.1, DESIGN §4); one preset
# per family keeps configs explicit and lets a family diverge without touching the others.
PRESETS: dict[str, AugmentationConfig] = {
    "simclr": AugmentationConfig(),
    "simsiam": AugmentationConfig(),
    "byol": AugmentationConfig(),
}


def ssl_augmentation(
    family: MethodFamily | str | AugmentationConfig = "simclr",
    image_size: int = 32,
    mean: Sequence[float] = CIFAR10_STATS[0],
    std: Sequence[float] = CIFAR10_STATS[1],
    **overrides: object,
) -> v2.Compose:
    """The training augmentation of one method family at ``image_size`` px.

    RandomResizedCrop(scale 0.2-1) -> horizontal flip -> colour jitter (0.4, 0.4, 0.4, 0.1)
    with p = 0.8 -> grayscale p = 0.2 [-> blur -> solarize, off by default] -> float ->
    normalise. ``family`` is a preset name or a whole ``AugmentationConfig`` (a config's
    ``augmentation:`` mapping); ``overrides`` replace fields of it.
    """
    if isinstance(family, AugmentationConfig):
        base = family
    elif family in PRESETS:
        base = PRESETS[family]
    else:
        raise ValueError(
            f"unknown augmentation preset {family!r}: choose one of {sorted(PRESETS)} "
            "or give the fields of an AugmentationConfig"
        )
    cfg = replace(base, **overrides)
    lo, hi = cfg.crop_scale
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"crop_scale must satisfy 0 < min <= max <= 1, got {cfg.crop_scale}")
    for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
        if not 0 <= getattr(cfg, name) <= 1:
            raise ValueError(f"{name} is a probability in [0, 1], got {getattr(cfg, name)}")
    ops: list[torch.nn.Module] = [
        v2.RandomResizedCrop(image_size, scale=cfg.crop_scale, antialias=True),
        v2.RandomHorizontalFlip(cfg.flip_p),
        v2.RandomApply([v2.ColorJitter(*cfg.jitter)], p=cfg.jitter_p),
        v2.RandomGrayscale(cfg.grayscale_p),
    ]
    if cfg.blur_p > 0:
        # Kernel about 10% of the image, odd, as in SimCLR's ImageNet recipe.
        kernel = max(3, (image_size // 10) | 1)
        ops.append(v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=cfg.blur_p))
    if cfg.solarize_p > 0:
        ops.append(v2.RandomSolarize(threshold=128, p=cfg.solarize_p))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(ops)


def eval_transform(
    image_size: int | None = None,
    mean: Sequence[float] = CIFAR10_STATS[0],
    std: Sequence[float] = CIFAR10_STATS[1],
    center_crop: bool = False,
) -> v2.Compose:
    """Un-augmented transform: [resize] -> float -> normalise.

    ``image_size=None`` keeps the stored size (CIFAR, and Flowers102 which is stored at
    128 x 128). ``center_crop=True`` resizes the shorter side and crops the centre (ImageNet-100);
    otherwise the image is resized to exactly ``image_size`` x ``image_size``.
    """
    ops: list[torch.nn.Module] = []
    if image_size is not None:
        if center_crop:
            ops += [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
        else:
            ops.append(v2.Resize((image_size, image_size), antialias=True))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(ops)
