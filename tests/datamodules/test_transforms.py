"""Augmentation presets (DESIGN §4) and evaluation transforms."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from datamodules.transforms import CIFAR10_STATS, PRESETS, eval_transform, ssl_augmentation


def _ops(t):
    return {type(op).__name__: op for op in t.transforms}


@pytest.mark.parametrize("family", ["simclr", "simsiam", "byol"])
def test_presets_follow_design_section_4(family):
    t = ssl_augmentation(family, image_size=32)
    ops = _ops(t)
    assert tuple(ops["RandomResizedCrop"].size) == (32, 32) and ops["RandomResizedCrop"].scale == (
        0.2,
        1.0,
    )
    assert ops["RandomHorizontalFlip"].p == 0.5
    jitter = ops["RandomApply"]
    assert jitter.p == 0.8
    cj = jitter.transforms[0]
    assert cj.brightness == (0.6, 1.4) and cj.contrast == (0.6, 1.4) and cj.saturation == (0.6, 1.4)
    assert cj.hue == (-0.1, 0.1)
    assert ops["RandomGrayscale"].p == 0.2
    assert isinstance(t.transforms[-1], v2.Normalize)


def test_views_are_float_normalised_and_random():
    torch.manual_seed(0)
    img = torch.randint(0, 256, (3, 48, 40), dtype=torch.uint8)
    t = ssl_augmentation("simclr", image_size=128, mean=(0.5,) * 3, std=(0.25,) * 3)
    a, b = t(img), t(img)
    assert a.shape == (3, 128, 128) and a.dtype == torch.float32
    assert not torch.equal(a, b)
    assert a.min() >= -2.0 - 1e-6 and a.max() <= 2.0 + 1e-6  # (x - 0.5) / 0.25 with x in [0, 1]


def test_overrides_and_unknown_preset():
    t = ssl_augmentation("byol", image_size=96, blur_p=0.5, solarize_p=0.2, grayscale_p=0.0)
    names = [type(op).__name__ for op in t.transforms]
    assert "RandomSolarize" in names and names.count("RandomApply") == 2
    assert _ops(t)["RandomGrayscale"].p == 0.0
    assert PRESETS["simclr"].grayscale_p == 0.2  # the preset itself is unchanged
    with pytest.raises(ValueError, match="unknown augmentation preset 'moco'"):
        ssl_augmentation("moco")
    with pytest.raises(TypeError):
        ssl_augmentation("simclr", no_such_field=1)


def test_eval_transform_is_deterministic_normalisation():
    img = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    x = eval_transform()(img)
    mean, std = (torch.tensor(s).view(3, 1, 1) for s in CIFAR10_STATS)
    assert torch.allclose(x, (img.float() / 255 - mean) / std, atol=1e-5)
    assert eval_transform(16)(img).shape == (3, 16, 16)
    wide = torch.zeros((3, 40, 80), dtype=torch.uint8)
    assert eval_transform(32, center_crop=True)(wide).shape == (3, 32, 32)


def test_a_full_augmentation_config_replaces_the_preset():
    from datamodules import CIFAR10DataModule
    from datamodules.transforms import AugmentationConfig

    cfg = AugmentationConfig(crop_scale=(0.5, 1.0), jitter_p=0.3, blur_p=0.5)
    dm = CIFAR10DataModule("unused", augmentation=cfg)
    ops = _ops(dm.train_transform())
    assert ops["RandomResizedCrop"].scale == (0.5, 1.0)
    assert [
        op.p for op in dm.train_transform().transforms if type(op).__name__ == "RandomApply"
    ] == [0.3, 0.5]


@pytest.mark.parametrize(
    "bad, message",
    [
        ("moco", "unknown augmentation preset 'moco'"),
        ({"crop_scale": (0.0, 1.0)}, "crop_scale must satisfy"),
        ({"crop_scale": (0.8, 0.5)}, "crop_scale must satisfy"),
        ({"grayscale_p": 1.5}, "grayscale_p is a probability"),
    ],
)
def test_bad_augmentations_fail_when_the_datamodule_is_built(bad, message):
    from datamodules import CIFAR10DataModule
    from datamodules.transforms import AugmentationConfig

    value = AugmentationConfig(**bad) if isinstance(bad, dict) else bad
    with pytest.raises(ValueError, match=message):
        CIFAR10DataModule("unused", augmentation=value)


def test_augmentation_fields_from_the_command_line(repo_root, tmp_path):
    from datamodules.transforms import AugmentationConfig
    from ssl_norms.lightning_cli import run

    cli = run(
        [
            "--config", str(repo_root / "configs" / "base" / "simclr.yaml"),
            "--config", str(repo_root / "configs" / "data" / "cifar10.yaml"),
            "--model.init_args.backbone", "resnet18",
            "--model.init_args.backbone_width", "4",
            "--data.init_args.augmentation", '{"crop_scale": [0.5, 1.0], "blur_p": 0.5}',
            "--wandb", "disabled",
            "--run_dir", str(tmp_path / "run"),
        ],
        run=False,
    )  # fmt: skip
    aug = cli.datamodule.augmentation
    assert isinstance(aug, AugmentationConfig)
    assert aug.crop_scale == (0.5, 1.0) and aug.blur_p == 0.5 and aug.jitter_p == 0.8
