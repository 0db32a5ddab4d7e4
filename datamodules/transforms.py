"""SSL augmentation presets per method and image size, and evaluation transforms.

The presets follow the original papers, as the norms paper does (its Appendix C.1: "the
default settings outlined in the SimCLR and SimSiam papers"):

- SimCLR: Chen et al. 2020, Appendix A (ImageNet) and B.9 (CIFAR-10: colour strength 0.5,
  no blur);
- SimSiam: Chen & He 2021, Sec. 4 / Appendix A (MoCo v2's recipe: crop scale 0.2-1, blur);
- BYOL: Grill et al. 2020, Table 6 (asymmetric views: blur 1.0 / 0.1, solarize 0 / 0.2).

Small images (at most ``SMALL_IMAGE_MAX`` = 64 px: CIFAR) use one recipe for all three
methods: RandomResizedCrop(scale 0.2-1), flip, colour jitter (0.4, 0.4, 0.4, 0.1) p = 0.8,
grayscale p = 0.2, no blur. Larger images (Flowers102, ImageNet-100 at 128 px) use each
paper's ImageNet recipe; the table is in ``datamodules/README.md``.

All transforms are torchvision ``transforms.v2`` pipelines that take a uint8 image tensor
``[3, H, W]`` (decoded once, see ``datamodules.io``) and return a normalised float32
tensor. Randomness comes only from torch's global generator, which the two-view dataset
seeds per sample (``datamodules.datasets.sample_seed``) so that epochs are reproducible.
``datamodules.batch_augment`` applies the same recipes to whole batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torchvision.transforms import v2

__all__ = [
    "AugmentationConfig",
    "AugmentationSpec",
    "CIFAR10_STATS",
    "CIFAR100_STATS",
    "IMAGENET_STATS",
    "METHODS",
    "PRESETS",
    "SMALL_IMAGE_MAX",
    "blur_kernel_size",
    "eval_transform",
    "preset",
    "resolve_augmentation",
    "size_class",
    "ssl_augmentation",
    "two_view_augmentation",
    "validate_config",
]

MethodFamily = Literal["simclr", "simsiam", "byol"]
METHODS: tuple[str, ...] = ("simclr", "simsiam", "byol")

# Per-channel mean / std of the training images (the values used across the SSL literature).
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

#: Images up to this side (px) get the small-image (CIFAR) recipe; larger ones the ImageNet one.
SMALL_IMAGE_MAX = 64


@dataclass(frozen=True)
class AugmentationConfig:
    """One view's SSL augmentation recipe. Probabilities are per view.

    The defaults are the small-image (CIFAR) recipe of the norms paper (Appendix C.1) and of
    SimCLR's CIFAR-10 runs (Chen et al. 2020, Appendix B.9) with SimSiam's crop scale.

    Args:
        crop_scale: RandomResizedCrop area fraction, drawn uniformly in [min, max].
        crop_ratio: RandomResizedCrop aspect ratio (w / h), drawn log-uniformly in [min, max].
        flip_p: horizontal flip probability.
        jitter: colour jitter strengths (brightness, contrast, saturation, hue): factors
            uniform in [max(0, 1 - s), 1 + s] (hue: [-s, s]), applied in a random order.
        jitter_p: probability of applying the colour jitter.
        grayscale_p: probability of converting to grayscale (kept as 3 channels).
        blur_p: Gaussian blur probability (kernel 10% of the image side, odd).
        blur_sigma: blur standard deviation, uniform in [min, max] px.
        solarize_p: probability of inverting the pixels >= 0.5 (128 for uint8).
    """

    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0


#: What a DataModule's ``augmentation`` accepts: ``"auto"`` (the preset of the method being
#: trained), a preset name, one ``AugmentationConfig`` for both views, or one per view.
AugmentationSpec = (
    Literal["auto", "simclr", "simsiam", "byol"]
    | AugmentationConfig
    | tuple[AugmentationConfig, AugmentationConfig]
)

# The small-image recipe: the same for every method (norms paper, Appendix C.1).
_SMALL = AugmentationConfig()
# SimCLR, Chen et al. 2020, Appendix A: crop 0.08-1, colour strength s = 1 (0.8, 0.8, 0.8,
# 0.2) p = 0.8, grayscale 0.2, blur p = 0.5 with sigma in [0.1, 2] and a 10% kernel.
_SIMCLR_LARGE = AugmentationConfig(crop_scale=(0.08, 1.0), jitter=(0.8, 0.8, 0.8, 0.2), blur_p=0.5)
# SimSiam, Chen & He 2021 (MoCo v2's recipe): crop 0.2-1, jitter (0.4, 0.4, 0.4, 0.1)
# p = 0.8, grayscale 0.2, blur p = 0.5 with sigma in [0.1, 2].
_SIMSIAM_LARGE = AugmentationConfig(crop_scale=(0.2, 1.0), blur_p=0.5)
# BYOL, Grill et al. 2020, Table 6: crop 0.08-1, jitter (0.4, 0.4, 0.2, 0.1) p = 0.8,
# grayscale 0.2; view 1 blur 1.0 and no solarize, view 2 blur 0.1 and solarize 0.2.
_BYOL_LARGE_1 = AugmentationConfig(crop_scale=(0.08, 1.0), jitter=(0.4, 0.4, 0.2, 0.1), blur_p=1.0)
_BYOL_LARGE_2 = replace(_BYOL_LARGE_1, blur_p=0.1, solarize_p=0.2)

#: method -> image-size class -> (view 1, view 2) recipe.
PRESETS: dict[str, dict[str, tuple[AugmentationConfig, AugmentationConfig]]] = {
    "simclr": {"small": (_SMALL, _SMALL), "large": (_SIMCLR_LARGE, _SIMCLR_LARGE)},
    "simsiam": {"small": (_SMALL, _SMALL), "large": (_SIMSIAM_LARGE, _SIMSIAM_LARGE)},
    "byol": {"small": (_SMALL, _SMALL), "large": (_BYOL_LARGE_1, _BYOL_LARGE_2)},
}


def size_class(image_size: int) -> Literal["small", "large"]:
    """``"small"`` (CIFAR recipe) up to ``SMALL_IMAGE_MAX`` px, ``"large"`` (ImageNet) above."""
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    return "small" if image_size <= SMALL_IMAGE_MAX else "large"


def blur_kernel_size(image_size: int) -> int:
    """10% of the image side, odd, at least 3 (SimCLR Appendix A; BYOL's 23 px at 224)."""
    return max(3, (image_size // 10) | 1)


def preset(method: str, image_size: int) -> tuple[AugmentationConfig, AugmentationConfig]:
    """The (view 1, view 2) recipe of ``method`` at ``image_size`` px."""
    if method not in PRESETS:
        raise ValueError(
            f"unknown augmentation preset {method!r}: choose 'auto' or one of {sorted(PRESETS)}, "
            "or give the fields of an AugmentationConfig"
        )
    return PRESETS[method][size_class(image_size)]


def validate_config(cfg: AugmentationConfig) -> AugmentationConfig:
    """``cfg`` itself, or a ``ValueError`` naming the bad field and its allowed range."""
    if not isinstance(cfg, AugmentationConfig):
        raise TypeError(f"expected an AugmentationConfig, got {type(cfg).__name__}")
    lo, hi = cfg.crop_scale
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"crop_scale must satisfy 0 < min <= max <= 1, got {cfg.crop_scale}")
    lo, hi = cfg.crop_ratio
    if not 0 < lo <= hi:
        raise ValueError(f"crop_ratio must satisfy 0 < min <= max, got {cfg.crop_ratio}")
    for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
        if not 0 <= getattr(cfg, name) <= 1:
            raise ValueError(f"{name} is a probability in [0, 1], got {getattr(cfg, name)}")
    if len(cfg.jitter) != 4 or min(cfg.jitter) < 0 or cfg.jitter[3] > 0.5:
        raise ValueError(
            "jitter is (brightness, contrast, saturation, hue), all >= 0 and hue <= 0.5, "
            f"got {cfg.jitter}"
        )
    lo, hi = cfg.blur_sigma
    if not 0 < lo <= hi:
        raise ValueError(f"blur_sigma must satisfy 0 < min <= max, got {cfg.blur_sigma}")
    return cfg


def resolve_augmentation(
    spec: AugmentationSpec | str, image_size: int, method: str | None = None
) -> tuple[AugmentationConfig, AugmentationConfig]:
    """The validated (view 1, view 2) recipe that ``spec`` stands for at ``image_size`` px.

    ``"auto"`` takes the preset of ``method`` (one of ``METHODS``; anything else, or None,
    means SimCLR's); a preset name takes that preset at this size; an ``AugmentationConfig``
    applies to both views; a pair gives one per view, as is.
    """
    if isinstance(spec, str):
        name = (method if method in PRESETS else "simclr") if spec == "auto" else spec
        views = preset(name, image_size)
    elif isinstance(spec, AugmentationConfig):
        views = (spec, spec)
    elif isinstance(spec, Sequence) and len(spec) == 2:
        views = (spec[0], spec[1])
    else:
        raise ValueError(
            f"augmentation must be 'auto', a preset name ({sorted(PRESETS)}), an "
            f"AugmentationConfig or a pair of them (view 1, view 2), got {spec!r}"
        )
    return validate_config(views[0]), validate_config(views[1])


def _jitter_range(strength: float, centre: float) -> tuple[float, float] | None:
    if strength == 0:
        return None
    return (max(0.0, centre - strength), centre + strength) if centre else (-strength, strength)


def _view_pipeline(
    cfg: AugmentationConfig, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> v2.Compose:
    b, c, s, h = cfg.jitter
    ops: list[torch.nn.Module] = [
        v2.RandomResizedCrop(
            image_size, scale=cfg.crop_scale, ratio=cfg.crop_ratio, antialias=True
        ),
        v2.RandomHorizontalFlip(cfg.flip_p),
    ]
    if any(cfg.jitter):
        jitter = v2.ColorJitter(
            brightness=_jitter_range(b, 1.0),
            contrast=_jitter_range(c, 1.0),
            saturation=_jitter_range(s, 1.0),
            hue=_jitter_range(h, 0.0),
        )
        ops.append(v2.RandomApply([jitter], p=cfg.jitter_p))
    ops.append(v2.RandomGrayscale(cfg.grayscale_p))
    if cfg.blur_p > 0:
        blur = v2.GaussianBlur(blur_kernel_size(image_size), sigma=cfg.blur_sigma)
        ops.append(v2.RandomApply([blur], p=cfg.blur_p))
    if cfg.solarize_p > 0:
        ops.append(v2.RandomSolarize(threshold=128, p=cfg.solarize_p))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(ops)


def ssl_augmentation(
    family: MethodFamily | str | AugmentationConfig = "simclr",
    image_size: int = 32,
    mean: Sequence[float] = CIFAR10_STATS[0],
    std: Sequence[float] = CIFAR10_STATS[1],
    view: int = 0,
    **overrides: object,
) -> v2.Compose:
    """One view's training augmentation at ``image_size`` px.

    RandomResizedCrop -> horizontal flip -> colour jitter (random order, p) -> grayscale
    [-> Gaussian blur (p)] [-> solarize (p)] -> float -> normalise. ``family`` is a preset
    name (``view`` 0 or 1 picks the view of an asymmetric preset: BYOL at > 64 px) or an
    ``AugmentationConfig``; ``overrides`` replace fields of it.
    """
    if view not in (0, 1):
        raise ValueError(f"view is 0 or 1, got {view}")
    cfg = resolve_augmentation(family, image_size)[view]
    cfg = validate_config(replace(cfg, **overrides))
    return _view_pipeline(cfg, image_size, mean, std)


def two_view_augmentation(
    spec: AugmentationSpec | str,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    method: str | None = None,
) -> tuple[v2.Compose, v2.Compose]:
    """The (view 1, view 2) pipelines of ``spec`` (see ``resolve_augmentation``)."""
    cfg1, cfg2 = resolve_augmentation(spec, image_size, method)
    first = _view_pipeline(cfg1, image_size, mean, std)
    return first, first if cfg2 == cfg1 else _view_pipeline(cfg2, image_size, mean, std)


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
