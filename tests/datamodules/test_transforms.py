"""Augmentation presets per method and image size, the two-view dataset, eval transforms.

The expected recipes are written here from the papers, independently of the code:
SimCLR (Chen et al. 2020, Appendix A and B.9), SimSiam (Chen & He 2021), BYOL (Grill et al.
2020, Table 6) and the norms paper's Appendix C.1 (the CIFAR recipe).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from datamodules.datasets import ImageSet, TwoViewDataset
from datamodules.transforms import (
    CIFAR10_STATS,
    PRESETS,
    AugmentationConfig,
    eval_transform,
    ssl_augmentation,
    two_view_augmentation,
)

METHODS = ["simclr", "simsiam", "byol"]
# (crop scale, (brightness, contrast, saturation, hue) ranges, blur p, solarize p) per view.
CIFAR = ((0.2, 1.0), ((0.6, 1.4), (0.6, 1.4), (0.6, 1.4), (-0.1, 0.1)), 0.0, 0.0)
LARGE = {
    "simclr": [
        ((0.08, 1.0), ((0.2, 1.8), (0.2, 1.8), (0.2, 1.8), (-0.2, 0.2)), 0.5, 0.0),
    ]
    * 2,
    "simsiam": [((0.2, 1.0), ((0.6, 1.4), (0.6, 1.4), (0.6, 1.4), (-0.1, 0.1)), 0.5, 0.0)] * 2,
    "byol": [
        ((0.08, 1.0), ((0.6, 1.4), (0.6, 1.4), (0.8, 1.2), (-0.1, 0.1)), 1.0, 0.0),
        ((0.08, 1.0), ((0.6, 1.4), (0.6, 1.4), (0.8, 1.2), (-0.1, 0.1)), 0.1, 0.2),
    ],
}


def _ops(t):
    return {type(op).__name__: op for op in t.transforms}


def _describe(t, image_size):
    """(crop scale, jitter ranges, blur p, solarize p) read off a built pipeline, checking
    the parts every recipe shares on the way."""
    ops = t.transforms
    names = [type(op).__name__ for op in ops]
    crop, flip, jitter, gray = ops[:4]
    assert isinstance(crop, v2.RandomResizedCrop) and tuple(crop.size) == (image_size,) * 2
    assert crop.ratio == pytest.approx((3 / 4, 4 / 3))
    assert isinstance(flip, v2.RandomHorizontalFlip) and flip.p == 0.5
    assert isinstance(jitter, v2.RandomApply) and jitter.p == 0.8
    cj = jitter.transforms[0]
    assert isinstance(cj, v2.ColorJitter)
    assert isinstance(gray, v2.RandomGrayscale) and gray.p == 0.2
    assert names[-2:] == ["ToDtype", "Normalize"]
    blur_p = 0.0
    if "RandomApply" in names[4:]:
        blur = ops[4]
        (gauss,) = blur.transforms
        assert isinstance(gauss, v2.GaussianBlur)
        # SimCLR Appendix A: kernel 10% of the side (their code: radius = (side // 10) // 2,
        # kernel 2 * radius + 1: 23 at 224 as BYOL's); sigma in [0.1, 2.0].
        k = 2 * (image_size // 10 // 2) + 1
        assert list(gauss.kernel_size) == [k, k] and list(gauss.sigma) == [0.1, 2.0]
        blur_p = blur.p
    sol = [op for op in ops if isinstance(op, v2.RandomSolarize)]
    if sol:
        assert sol[0].threshold == 128  # 0.5 of the uint8 range (BYOL Table 6)
    ranges = tuple(
        tuple(pytest.approx(v) for v in getattr(cj, f))
        for f in ("brightness", "contrast", "saturation", "hue")
    )
    return (crop.scale, ranges, blur_p, sol[0].p if sol else 0.0)


@pytest.mark.parametrize("image_size", [32, 64])
@pytest.mark.parametrize("method", METHODS)
def test_small_images_keep_the_cifar_recipe(method, image_size):
    first, second = two_view_augmentation(method, image_size, *CIFAR10_STATS)
    assert first is second  # symmetric: one pipeline for both views
    assert _describe(first, image_size) == CIFAR
    # The single-view API gives the same recipe.
    assert _describe(ssl_augmentation(method, image_size), image_size) == CIFAR


@pytest.mark.parametrize("image_size", [128, 96])
@pytest.mark.parametrize("method", METHODS)
def test_large_images_get_each_papers_recipe(method, image_size):
    views = two_view_augmentation(method, image_size, *CIFAR10_STATS)
    for view, (t, expected) in enumerate(zip(views, LARGE[method], strict=True)):
        assert _describe(t, image_size) == expected, (method, view)
        assert _describe(ssl_augmentation(method, image_size, view=view), image_size) == expected


def test_byol_views_differ_only_in_blur_and_solarize():
    v1, v2_ = PRESETS["byol"]["large"]
    assert (v1.blur_p, v1.solarize_p) == (1.0, 0.0) and (v2_.blur_p, v2_.solarize_p) == (0.1, 0.2)
    assert v1.__class__(**{**v1.__dict__, "blur_p": 0.1, "solarize_p": 0.2}) == v2_
    first, second = two_view_augmentation("byol", 128, *CIFAR10_STATS)
    assert first is not second
    assert not any(isinstance(op, v2.RandomSolarize) for op in first.transforms)


def _white_set(n: int, side: int = 8) -> ImageSet:
    return ImageSet(torch.full((n, 3, side, side), 255, dtype=torch.uint8), [0] * n, ["white"])


def test_byol_view2_solarizes_about_one_in_five_per_sample_seeded():
    # A white image stays >= 153 through crop, flip, jitter (brightness >= 0.6; contrast,
    # saturation and hue leave a grey image alone), grayscale and blur: below 128 after the
    # pipeline exactly when solarize inverted it.
    n = 600
    mean, std = (0.0,) * 3, (1.0,) * 3
    ds = TwoViewDataset(_white_set(n), two_view_augmentation("byol", 65, mean, std), seed=1)
    ds.set_epoch(3)
    dark = np.array([[float(v.mean()) < 128 / 255 for v in ds[i][0]] for i in range(n)])
    assert dark[:, 0].sum() == 0  # view 1: never solarized
    rate, se = dark[:, 1].mean(), math.sqrt(0.2 * 0.8 / n)
    assert abs(rate - 0.2) < 4 * se, rate
    # Per-sample seeding: the same sample gives the same views again, in any order.
    for i in (5, 0, 599):
        a, b = ds[i][0], ds[i][0]
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_a_symmetric_pair_gives_the_views_of_one_transform():
    # A pair of the same pipeline draws exactly what one pipeline for both views draws.
    base = ImageSet(torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8), [0] * 4, ["c"])
    t = ssl_augmentation("simclr", 32)
    one, pair = TwoViewDataset(base, t, seed=2), TwoViewDataset(base, (t, t), seed=2)
    for i in range(4):
        assert all(torch.equal(a, b) for a, b in zip(one[i][0], pair[i][0], strict=True))
    with pytest.raises(ValueError, match="pair"):
        TwoViewDataset(base, (t, t, t))


def test_views_are_float_normalised_and_random():
    torch.manual_seed(0)
    img = torch.randint(0, 256, (3, 48, 40), dtype=torch.uint8)
    t = ssl_augmentation("simclr", image_size=128, mean=(0.5,) * 3, std=(0.25,) * 3)
    a, b = t(img), t(img)
    assert a.shape == (3, 128, 128) and a.dtype == torch.float32
    assert not torch.equal(a, b)
    assert a.min() >= -2.0 - 1e-6 and a.max() <= 2.0 + 1e-6  # (x - 0.5) / 0.25 with x in [0, 1]


def test_overrides_and_unknown_preset():
    t = ssl_augmentation("simclr", image_size=32, blur_p=0.5, solarize_p=0.2, grayscale_p=0.0)
    names = [type(op).__name__ for op in t.transforms]
    assert "RandomSolarize" in names and names.count("RandomApply") == 2
    assert _ops(t)["RandomGrayscale"].p == 0.0
    assert PRESETS["simclr"]["small"][0].grayscale_p == 0.2  # the preset itself is unchanged
    with pytest.raises(ValueError, match="unknown augmentation preset 'moco'"):
        ssl_augmentation("moco")
    with pytest.raises(TypeError):
        ssl_augmentation("simclr", no_such_field=1)
    with pytest.raises(ValueError, match="view is 0 or 1"):
        ssl_augmentation("byol", 128, view=2)


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

    cfg = AugmentationConfig(crop_scale=(0.5, 1.0), jitter_p=0.3, blur_p=0.5)
    dm = CIFAR10DataModule("unused", augmentation=cfg)
    assert dm.augmentation_views == (cfg, cfg)
    first, second = dm.train_transform()
    assert first is second
    assert _ops(first)["RandomResizedCrop"].scale == (0.5, 1.0)
    assert [op.p for op in first.transforms if type(op).__name__ == "RandomApply"] == [0.3, 0.5]
    pair = (cfg, AugmentationConfig(solarize_p=1.0))
    first, second = CIFAR10DataModule("unused", augmentation=pair).train_transform()
    assert "RandomSolarize" in _ops(second) and "RandomSolarize" not in _ops(first)


@pytest.mark.parametrize(
    "bad, message",
    [
        ("moco", "unknown augmentation preset 'moco'"),
        ({"crop_scale": (0.0, 1.0)}, "crop_scale must satisfy"),
        ({"crop_scale": (0.8, 0.5)}, "crop_scale must satisfy"),
        ({"crop_ratio": (2.0, 1.0)}, "crop_ratio must satisfy"),
        ({"grayscale_p": 1.5}, "grayscale_p is a probability"),
        ({"jitter": (0.4, 0.4, 0.4, 0.7)}, "hue <= 0.5"),
        ({"blur_sigma": (0.0, 2.0)}, "blur_sigma must satisfy"),
    ],
)
def test_bad_augmentations_fail_when_the_datamodule_is_built(bad, message):
    from datamodules import CIFAR10DataModule

    value = AugmentationConfig(**bad) if isinstance(bad, dict) else bad
    with pytest.raises(ValueError, match=message):
        CIFAR10DataModule("unused", augmentation=value)
    if isinstance(value, AugmentationConfig):  # a bad second view too
        with pytest.raises(ValueError, match=message):
            CIFAR10DataModule("unused", augmentation=(AugmentationConfig(), value))


def test_augmentation_fields_from_the_command_line(repo_root, tmp_path):
    from ssl_norms.lightning_cli import run

    def parsed(*flags):
        cli = run(
            [
                "--config", str(repo_root / "configs" / "base" / "simclr.yaml"),
                "--config", str(repo_root / "configs" / "data" / "cifar10.yaml"),
                "--model.init_args.backbone", "resnet18",
                "--model.init_args.backbone_width", "4",
                *flags,
                "--wandb", "disabled",
                "--run_dir", str(tmp_path / "run"),
            ],
            run=False,
        )  # fmt: skip
        return cli.datamodule

    assert parsed().augmentation == "auto" and parsed().augment_on == "loader"
    aug = parsed("--data.init_args.augmentation", '{"crop_scale": [0.5, 1.0], "blur_p": 0.5}')
    aug = aug.augmentation
    assert isinstance(aug, AugmentationConfig)
    assert aug.crop_scale == (0.5, 1.0) and aug.blur_p == 0.5 and aug.jitter_p == 0.8
    pair = parsed("--data.init_args.augmentation", '[{"blur_p": 1.0}, {"solarize_p": 0.2}]')
    v1, v2_ = pair.augmentation_views
    assert (v1.blur_p, v1.solarize_p, v2_.blur_p, v2_.solarize_p) == (1.0, 0.0, 0.0, 0.2)
    assert parsed("--data.init_args.augmentation", "byol").augmentation == "byol"
    assert parsed("--data.init_args.augment_on", "device").augment_on == "device"


# ---- the DataModules choose the preset by method and image size ---------------------------


@pytest.fixture(scope="module")
def tiny_flowers(tmp_path_factory):
    from dm_files import write_flowers102_folder

    root = tmp_path_factory.mktemp("flowers")
    labels = np.array([0, 1] * 6)
    write_flowers102_folder(root, labels, [1, 2], [3, 4], list(range(5, 13)))
    return str(root)


def _flowers(root, **kw):
    from datamodules import Flowers102DataModule

    return Flowers102DataModule(root, image_size=72, batch_size=4, num_workers=0, **kw)


def test_a_preset_name_is_applied_at_the_image_size(tiny_flowers):
    from datamodules import CIFAR10DataModule

    assert (
        CIFAR10DataModule("unused", augmentation="byol").augmentation_views
        == (PRESETS["byol"]["small"])
    )
    dm = _flowers(tiny_flowers, augmentation="byol")
    assert dm.augmentation_views == PRESETS["byol"]["large"]
    dm.setup()
    first, second = dm.train_dataset.transforms
    assert _describe(first, 72) == LARGE["byol"][0] and _describe(second, 72) == LARGE["byol"][1]


@pytest.mark.slow
def test_auto_takes_the_preset_of_the_method_being_trained(tiny_flowers):
    import lightning as L

    from ssl_norms.methods import BYOL

    dm = _flowers(tiny_flowers)  # augmentation="auto"
    dm.setup()  # no Trainer yet: SimCLR's recipe
    assert dm.augmentation_views == PRESETS["simclr"]["large"]
    model = BYOL(backbone="convnet", backbone_width=4, projector_dim=8, predictor_hidden_dim=4)
    trainer = L.Trainer(max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, datamodule=dm)
    assert dm.augmentation_views == PRESETS["byol"]["large"]
    first, second = dm.train_dataset.transforms  # set again when fit ran setup
    assert _describe(first, 72) == LARGE["byol"][0] and _describe(second, 72) == LARGE["byol"][1]
