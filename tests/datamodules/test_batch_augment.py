"""The batched augmentation (augment_on="device") against the per-image torchvision path.

References are independent of the code under test: torchvision's own parameter sampling
(``make_params``) and pixel functions (``transforms.v2.functional``), torchvision's crop
procedure re-typed here as a plain Python loop, and binomial / two-sample statistics.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from datamodules.batch_augment import (
    N_UNIFORMS,
    BatchAugment,
    colour_and_filters,
    draw_uniforms,
    resized_crop,
    resized_crop_uint8,
    view_params,
)
from datamodules.datasets import sample_seed
from datamodules.transforms import CIFAR10_STATS, AugmentationConfig, preset

CIFAR = AugmentationConfig()
N = 4000  # samples for the distribution tests
Z = 4.5  # confidence bound in standard errors (false alarm ~1e-5 per check)


def _uniforms(n: int = N, seed: int = 0, epoch: int = 0) -> torch.Tensor:
    return draw_uniforms(seed, epoch, range(n))


def _smooth_images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """uint8 images with structure at several scales (random noise, blurred)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    return F.gaussian_blur(x, [5, 5], [1.2, 1.2])


def _binomial_ok(hits: int, n: int, p: float) -> bool:
    return abs(hits / n - p) <= Z * math.sqrt(max(p * (1 - p), 1e-12) / n) + 1e-12


# ---- parameters ----------------------------------------------------------------------


def test_uniforms_are_per_sample_from_sample_seed():
    u = draw_uniforms(7, 3, [5, 2, 9])
    assert u.shape == (3, 2, N_UNIFORMS) and u.dtype == torch.float64
    g = torch.Generator().manual_seed(sample_seed(7, 3, 2))
    assert torch.equal(u[1], torch.rand(2, N_UNIFORMS, generator=g, dtype=torch.float64))
    assert torch.equal(draw_uniforms(7, 3, [9])[0], u[2])  # alone or in a batch
    assert not torch.equal(draw_uniforms(7, 4, [5])[0], u[0])  # another epoch
    assert not torch.equal(draw_uniforms(8, 3, [5])[0], u[0])  # another seed


def _torchvision_crop_loop(u, scale, ratio, height, width):
    """torchvision's RandomResizedCrop.get_params, with its random draws taken from ``u``."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for t in range(10):
        target_area = area * (scale[0] + (scale[1] - scale[0]) * float(u[t]))
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * float(u[10 + t]))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(float(u[20]) * (height - h + 1)), int(float(u[21]) * (width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


@pytest.mark.parametrize(
    "scale, ratio, height, width",
    [((0.2, 1.0), (3 / 4, 4 / 3), 32, 32), ((0.08, 1.0), (3 / 4, 4 / 3), 40, 24),
     ((0.9, 1.0), (4.0, 5.0), 32, 32), ((0.9, 1.0), (0.1, 0.2), 16, 48)],
)  # fmt: skip
def test_crop_boxes_follow_torchvisions_procedure(scale, ratio, height, width):
    # The last two cases never fit in 10 tries: torchvision's central fallback crop.
    cfg = AugmentationConfig(crop_scale=scale, crop_ratio=ratio)
    u = _uniforms(500)[:, 0]
    p = view_params(u, cfg, height, width)
    got = torch.stack([p.top, p.left, p.height, p.width], dim=1).tolist()
    want = [list(_torchvision_crop_loop(row, scale, ratio, height, width)) for row in u]
    assert got == want


@pytest.mark.parametrize("cfg", [CIFAR, preset("simclr", 128)[0]], ids=["cifar", "simclr128"])
def test_crop_area_and_ratio_match_torchvisions_draws(cfg):
    size = 32
    p = view_params(_uniforms()[:, 0], cfg, size, size)
    ours_area = (p.height * p.width).double().numpy() / size**2
    ours_ratio = (p.width / p.height).double().numpy()
    crop = v2.RandomResizedCrop(size, scale=cfg.crop_scale, ratio=cfg.crop_ratio)
    img = torch.zeros(3, size, size, dtype=torch.uint8)
    torch.manual_seed(0)
    tv = [crop.make_params([img]) for _ in range(N)]
    tv_area = np.array([d["height"] * d["width"] for d in tv]) / size**2
    tv_ratio = np.array([d["width"] / d["height"] for d in tv])
    assert stats.ks_2samp(ours_area, tv_area).pvalue > 1e-4
    assert stats.ks_2samp(ours_ratio, tv_ratio).pvalue > 1e-4
    # Rejection (a crop wider or taller than the image is drawn again) shifts the law of the
    # area below U(scale): the same shift on both sides, and it exists.
    assert ours_area.mean() < sum(cfg.crop_scale) / 2
    tops = np.array([d["top"] / (size - d["height"] + 1) for d in tv])
    ours_top = (p.top.double() / (size - p.height + 1)).numpy()
    assert stats.ks_2samp(ours_top, tops).pvalue > 1e-4


@pytest.mark.parametrize(
    "cfg",
    [CIFAR, preset("simclr", 128)[0], preset("byol", 128)[0]],
    ids=["cifar", "simclr", "byol"],
)
def test_jitter_factors_and_order_match_torchvisions_colorjitter(cfg):
    p = view_params(_uniforms()[:, 0], cfg, 32, 32)
    b, c, s, h = cfg.jitter
    cj = v2.ColorJitter(b, c, s, h)
    torch.manual_seed(1)
    tv = [cj.make_params([torch.zeros(3, 4, 4)]) for _ in range(N)]
    for k, key in enumerate(("brightness", "contrast", "saturation", "hue")):
        theirs = np.array([d[f"{key}_factor"] for d in tv])
        ours = p.factors[:, k].numpy()
        assert stats.ks_2samp(ours, theirs).pvalue > 1e-4, key
        lo, hi = getattr(cj, key)
        assert ours.min() >= lo and ours.max() <= hi
    # The order: each of the 24 permutations about equally often (chi-square), in both.
    for orders in (p.order.tolist(), [d["fn_idx"].tolist() for d in tv]):
        counts = np.unique(np.array(orders), axis=0, return_counts=True)[1]
        assert len(counts) == 24 and stats.chisquare(counts).pvalue > 1e-4


@pytest.mark.parametrize("method, view", [("simclr", 0), ("byol", 0), ("byol", 1)])
def test_step_rates_are_the_recipes_probabilities(method, view):
    cfg = preset(method, 128)[view]
    p = view_params(_uniforms()[:, view], cfg, 128, 128)
    for flag, prob in ((p.flip, cfg.flip_p), (p.jitter, cfg.jitter_p), (p.gray, cfg.grayscale_p),
                       (p.blur, cfg.blur_p), (p.solarize, cfg.solarize_p)):  # fmt: skip
        assert _binomial_ok(int(flag.sum()), N, prob), (flag.float().mean(), prob)
    lo, hi = cfg.blur_sigma
    assert stats.kstest((p.sigma.numpy() - lo) / (hi - lo), "uniform").pvalue > 1e-4


# ---- pixels: the same operations as torchvision's, given the same parameters ----------


def test_resized_crop_and_flip_match_torchvision():
    images = _smooth_images(64)
    cfg = AugmentationConfig(crop_scale=(0.05, 1.0))
    p = view_params(_uniforms(64)[:, 0], cfg, 32, 32)
    for size in (32, 40):
        ours = resized_crop(images.float() / 255, p, size)
        ref = []
        for b in range(64):
            box = [int(p.top[b]), int(p.left[b]), int(p.height[b]), int(p.width[b])]
            out = F.resized_crop(images[b].float() / 255, *box, [size, size], antialias=True)
            ref.append(F.horizontal_flip(out) if p.flip[b] else out)
        assert torch.allclose(ours, torch.stack(ref), atol=1e-5)
        assert p.flip.any() and not p.flip.all()


@pytest.mark.parametrize("height, size", [(32, 56), (64, 48)])  # up- and down-scaling
def test_uint8_crop_is_torchvisions_per_image_uint8_crop_bit_for_bit(height, size):
    images = _smooth_images(48, size=height, seed=6)
    p = view_params(_uniforms(48)[:, 1], AugmentationConfig(crop_scale=(0.05, 1.0)), height, height)
    ref = []
    for b in range(48):
        box = [int(p.top[b]), int(p.left[b]), int(p.height[b]), int(p.width[b])]
        out = F.resized_crop(images[b], *box, [size, size], antialias=True)
        ref.append(F.horizontal_flip(out) if p.flip[b] else out)
    ref = torch.stack(ref)
    assert p.flip.any() and not p.flip.all()
    for layout in (torch.contiguous_format, torch.channels_last):
        ours = resized_crop_uint8(images.contiguous(memory_format=layout), p, size)
        assert ours.dtype == torch.uint8 and torch.equal(ours, ref)


def test_uint8_and_float_crops_agree_within_one_level_when_upscaling():
    images = _smooth_images(64, size=32, seed=7)
    p = view_params(_uniforms(64)[:, 0], AugmentationConfig(crop_scale=(0.05, 1.0)), 32, 32)
    for size in (32, 56):
        levels = resized_crop(images.float() / 255, p, size) * 255
        diff = (levels - resized_crop_uint8(images, p, size).double()).abs()
        assert diff.max() <= 1 + 1e-3 and diff.mean() < 0.5


def test_uint8_crop_views_are_torchvisions_per_image_pipeline_without_colour_steps():
    """Crop, flip, to float, normalise: ``BatchAugment(uint8_crop=True)`` against
    torchvision's per-image functionals on the same parameters (colour steps off)."""
    size, n = 56, 24
    cfg = AugmentationConfig(jitter_p=0.0, grayscale_p=0.0, blur_p=0.0)
    images, idx = _smooth_images(n, size=40, seed=8), torch.arange(n)
    aug = BatchAugment((cfg, cfg), size, *CIFAR10_STATS, uint8_crop=True)
    views = aug(images, idx, epoch=4)
    for view, p in zip(views, aug.params(idx, 4, 40, 40), strict=True):
        for b in range(n):
            box = [int(p.top[b]), int(p.left[b]), int(p.height[b]), int(p.width[b])]
            out = F.resized_crop(images[b], *box, [size, size], antialias=True)
            out = F.horizontal_flip(out) if p.flip[b] else out
            out = F.normalize(F.to_dtype(out, torch.float32, scale=True), *CIFAR10_STATS)
            assert torch.allclose(view[b], out, atol=1e-6)
    # Below UINT8_CROP_MIN_SIDE the float crop runs: the same views as uint8_crop=False.
    small = [BatchAugment((cfg, cfg), 32, *CIFAR10_STATS, uint8_crop=u) for u in (True, False)]
    assert aug.crops_uint8(images) and not small[0].crops_uint8(images)
    a, b = (m(images, idx, epoch=4) for m in small)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_colour_steps_match_torchvision_functionals():
    x = _smooth_images(96).float() / 255
    cfg = AugmentationConfig(
        jitter=(0.8, 0.8, 0.8, 0.2), jitter_p=0.7, grayscale_p=0.3, blur_p=0.5, solarize_p=0.4
    )
    p = view_params(_uniforms(96)[:, 0], cfg, 32, 32)
    ours = colour_and_filters(x.clone(), p, 32)
    steps = [F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue]
    ref = []
    for b in range(96):
        y = x[b]
        if p.jitter[b]:
            for step in p.order[b].tolist():
                y = steps[step](y, float(p.factors[b, step]))
        if p.gray[b]:
            y = F.rgb_to_grayscale(y, num_output_channels=3)
        if p.blur[b]:
            sigma = float(p.sigma[b])
            y = F.gaussian_blur(y, [3, 3], [sigma, sigma])  # 32 px: kernel 3
        if p.solarize[b]:
            y = F.solarize(y, 128 / 255)
        ref.append(y)
    ref = torch.stack(ref)
    # Float32 HSV round trips (kornia's vs torchvision's) differ by rounding; a pixel on the
    # solarize threshold may flip, hence the mean as well as the quantile.
    diff = (ours - ref).abs()
    assert diff.mean() < 1e-4 and diff.flatten().quantile(0.999) < 1e-3
    for flag in (p.jitter, p.gray, p.blur, p.solarize):
        assert flag.any() and not flag.all()  # every branch exercised both ways


# ---- the module: valid images, reproducible, independent of the batch --------------------


def _aug(method="byol", size=32, seed=0, uint8_crop=False):
    return BatchAugment(
        preset(method, size), size, *CIFAR10_STATS, seed=seed, uint8_crop=uint8_crop
    )


@pytest.mark.parametrize("uint8_crop", [False, True])
@pytest.mark.parametrize("method, size", [("simclr", 32), ("byol", 48), ("byol", 72)])
def test_views_are_valid_normalised_images(method, size, uint8_crop):
    images = _smooth_images(24)
    views = _aug(method, size, uint8_crop=uint8_crop)(images, torch.arange(24), epoch=0)
    mean, std = (torch.tensor(s).view(1, 3, 1, 1) for s in CIFAR10_STATS)
    for v in views:
        assert v.shape == (24, 3, size, size) and v.dtype == torch.float32
        assert torch.isfinite(v).all()
        raw = v * std + mean  # back to [0, 1]
        assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    assert all(not torch.equal(a, b) for a, b in zip(*views, strict=True))


def test_same_seed_same_batch_and_other_seeds_or_epochs_differ():
    images, idx = _smooth_images(16), torch.arange(100, 116)
    a = _aug()(images, idx, epoch=2)
    b = _aug()(images, idx, epoch=2)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(_aug()(images, idx, epoch=3)[0], a[0])
    assert not torch.equal(_aug(seed=1)(images, idx, epoch=2)[0], a[0])


@pytest.mark.parametrize("uint8_crop", [False, True])
def test_a_samples_views_do_not_depend_on_its_batch(uint8_crop):
    images, idx = _smooth_images(20, seed=4), torch.arange(50, 70)
    aug = _aug("byol", 72, uint8_crop=uint8_crop)
    full = aug(images, idx, epoch=1)
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(0))
    permuted = aug(images[perm], idx[perm], epoch=1)
    halves = [aug(images[s], idx[s], epoch=1) for s in (slice(0, 7), slice(7, 20))]
    for v in range(2):
        assert torch.allclose(permuted[v], full[v][perm], atol=1e-6)
        assert torch.allclose(torch.cat([h[v] for h in halves]), full[v], atol=1e-6)


def test_batched_and_per_image_paths_agree_in_distribution():
    # Output-level rates over the same images: grayscale (all channels equal) and, on white
    # images, solarize (BYOL's view 2); two-proportion z-tests against the per-image path.
    from datamodules.transforms import two_view_augmentation

    n = 800
    images = _smooth_images(n, seed=2)
    mean, std = (0.0,) * 3, (1.0,) * 3
    batched = BatchAugment(preset("simclr", 32), 32, mean, std)(images, torch.arange(n), 0)
    t, _ = two_view_augmentation("simclr", 32, mean, std)
    torch.manual_seed(3)
    per_image = torch.stack([t(img) for img in images])

    def gray_rate(v):
        return ((v[:, 0] - v[:, 1]).abs().amax(dim=(1, 2)) < 1e-3).double().mean().item()

    def close(r1, r2, n1, n2):
        pooled = (r1 * n1 + r2 * n2) / (n1 + n2)
        return abs(r1 - r2) <= Z * math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))

    assert close(gray_rate(batched[0]), gray_rate(per_image), n, n)
    assert close(gray_rate(batched[0]), 0.2, n, 10**9)
    # Mean brightness after jitter + crop: the same law on both paths (KS on per-image means).
    assert (
        stats.ks_2samp(batched[0].mean(dim=(1, 2, 3)), per_image.mean(dim=(1, 2, 3))).pvalue > 1e-4
    )
    # White stays >= 153 / 255 through every other step (see test_transforms.py).
    n, aug = 1200, BatchAugment(preset("byol", 65), 65, mean, std)
    white = torch.full((400, 3, 8, 8), 255, dtype=torch.uint8)
    dark = [[], []]
    for start in range(0, n, 400):  # chunks: the same views as one batch, less memory
        views = aug(white, torch.arange(start, start + 400), 0)
        for v in range(2):
            dark[v].append(views[v].mean(dim=(1, 2, 3)) < 128 / 255)
    assert int(torch.cat(dark[0]).sum()) == 0  # view 1 never solarizes
    assert _binomial_ok(int(torch.cat(dark[1]).sum()), n, 0.2)


def test_bad_inputs_are_clear_errors():
    aug = _aug()
    with pytest.raises(ValueError, match="uint8 images"):
        aug(torch.zeros(2, 3, 8, 8), [0, 1], 0)
    with pytest.raises(ValueError, match="3 indices for 2 images"):
        aug(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), [0, 1, 2], 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_gives_the_cpu_views():
    images, idx = _smooth_images(64), torch.arange(64)
    aug = _aug("byol", 72)
    cpu = aug(images, idx, epoch=1)
    gpu = aug(images.cuda(), idx.cuda(), epoch=1)
    for a, b in zip(cpu, gpu, strict=True):
        assert b.is_cuda and (a - b.cpu()).abs().mean() < 1e-4


# ---- the DataModule: augment_on="device" ---------------------------------------------------


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory):
    from dm_files import class_major_labels, write_cifar10_pickles

    root = tmp_path_factory.mktemp("cifar")
    write_cifar10_pickles(root, class_major_labels([8] * 10), class_major_labels([2] * 10))
    return str(root)


def _dm(root, **kw):
    from datamodules import CIFAR10DataModule

    options = dict(batch_size=16, eval_batch_size=32, num_workers=0, seed=3, augment_on="device")
    return CIFAR10DataModule(root, **{**options, **kw})


def test_device_mode_loader_yields_uint8_and_the_hook_makes_the_views(tiny_cifar):
    dm = _dm(tiny_cifar)
    dm.setup()
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(2)  # what Lightning does each epoch
    images, y, idx = next(iter(loader))
    assert images.dtype == torch.uint8 and images.shape == (16, 3, 32, 32)
    assert torch.equal(images, dm.train_dataset.base.images[idx])
    assert torch.equal(y, dm.train_dataset.base.labels[idx])
    (v1, v2), y2, idx2 = dm.on_after_batch_transfer((images, y, idx), 0)
    assert y2 is y and idx2 is idx
    want = BatchAugment(dm.augmentation_views, 32, *CIFAR10_STATS, seed=3)(images, idx, epoch=2)
    assert torch.equal(v1, want[0]) and torch.equal(v2, want[1])
    x, ye, ie = next(iter(dm.eval_dataloader()))  # evaluation batches pass through as they are
    assert dm.on_after_batch_transfer((x, ye, ie), 1)[0] is x
    loader_mode = _dm(tiny_cifar, augment_on="loader")
    loader_mode.setup()
    (w1, _), _, _ = next(iter(loader_mode.train_dataloader()))
    assert w1.dtype == torch.float32 and w1.shape == (16, 3, 32, 32)


def test_device_mode_needs_a_uint8_image_tensor(tiny_cifar):
    from datamodules import ImageNet100DataModule
    from datamodules.datasets import ImageSet, RawImageDataset

    with pytest.raises(ValueError, match="augment_on='loader'"):
        ImageNet100DataModule("unused", augment_on="device")
    with pytest.raises(
        ValueError, match="augment_on must be 'loader', 'loader_batched' or 'device'"
    ):
        _dm(tiny_cifar, augment_on="gpu")
    lazy = ImageSet([torch.zeros(3, 8, 8, dtype=torch.uint8)] * 2, [0, 1], ["a", "b"])
    with pytest.raises(ValueError, match="one uint8 tensor"):
        RawImageDataset(lazy)


class _Recorder:
    """A callback that keeps (epoch, idx, view 1, view 2) of each training batch as the
    LightningModule receives it."""

    def __init__(self):
        import lightning as L

        outer = self
        self.seen = []

        class CB(L.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                (v1, v2), _, idx = batch
                outer.seen.append((trainer.current_epoch, idx.clone(), v1.clone(), v2.clone()))

        self.callback = CB()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["simclr", "simsiam", "byol"])
def test_each_method_trains_on_device_augmented_batches(tiny_cifar, method):
    import lightning as L

    from ssl_norms.methods import BYOL, SimCLR, SimSiam

    heads = {
        "simclr": dict(projector_hidden_dim=16, projector_out_dim=8),
        "simsiam": dict(projector_dim=16, predictor_hidden_dim=4),
        "byol": dict(projector_dim=16, predictor_hidden_dim=4),
    }[method]
    cls = {"simclr": SimCLR, "simsiam": SimSiam, "byol": BYOL}[method]
    model = cls(backbone="convnet", backbone_width=4, warmup_epochs=0.0, **heads)
    dm = _dm(tiny_cifar)
    rec = _Recorder()
    trainer = L.Trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[rec.callback])  # fmt: skip
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 4
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert {epoch for epoch, *_ in rec.seen} == {0, 1}
    images = dm.train_dataset.base.images
    aug = BatchAugment(preset(method, 32), 32, *CIFAR10_STATS, seed=3)
    for epoch, idx, first, second in rec.seen:  # the views of (seed, epoch, idx), as documented
        want = aug(images[idx], idx, epoch)
        assert torch.equal(first, want[0]) and torch.equal(second, want[1])


@pytest.mark.slow
@pytest.mark.data
def test_fast_dev_run_on_real_cifar10_with_device_augmentation(shared_data, tmp_path):
    from ssl_norms.lightning_cli import run

    repo = __import__("pathlib").Path(__file__).resolve().parents[2]
    for method in ("simclr", "simsiam", "byol"):
        cli = run(
            [
                "fit",
                "-c", str(repo / f"configs/base/{method}.yaml"),
                "-c", str(repo / "configs/cpu/cifar10.yaml"),
                "--data.init_args.data_dir", str(shared_data / "cifar10"),
                "--data.init_args.ood", "null",
                "--data.init_args.train_subset", "4",
                "--data.init_args.eval_subset", "2",
                "--data.init_args.batch_size", "8",
                "--data.init_args.eval_batch_size", "20",
                "--data.init_args.num_workers", "0",
                "--data.init_args.cache_dir", str(tmp_path / "cache"),
                "--data.init_args.augment_on", "device",
                "--model.init_args.backbone_width", "4",
                "--trainer.enable_progress_bar", "false",
                "--trainer.enable_model_summary", "false",
                "--trainer.fast_dev_run", "2",
                "--wandb", "disabled",
                "--runs_root", str(tmp_path),
            ]
        )  # fmt: skip
        assert cli.trainer.global_step == 2, method
        assert torch.isfinite(cli.trainer.callback_metrics["train/loss"]), method
        assert cli.datamodule.augment_on == "device"


def test_adjust_hue_is_torchvisions_per_row_including_grey_and_black():
    """The closed-form hue shift against torchvision's HSV round trip, per row, over the
    whole factor range and the pixels where the hue is undefined (grey, black)."""
    from datamodules.batch_augment import adjust_hue

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(48, 3, 9, 9, generator=gen)
    x[:4] = x[:4, :1]  # grey images: every channel equal
    x[4:6] = 0.0
    x[6:12, 1] = x[6:12, 0]  # ties between the max channels (torchvision's precedence)
    factor = torch.linspace(-0.5, 0.5, 48)
    ours = adjust_hue(x, factor)
    ref = torch.stack([F.adjust_hue(x[i], float(factor[i])) for i in range(48)])
    assert (ours - ref).abs().max() < 5e-6
    assert torch.equal(ours[:6], x[:6])
    assert (ours[20] - x[20]).abs().max() > 0.05  # it does shift coloured pixels


# ---- CPU passes: chunks of the batch, the preallocated output, the in-place steps -------


@pytest.mark.parametrize("uint8_crop", [False, True])
def test_chunked_passes_give_the_whole_batch_views(monkeypatch, uint8_crop):
    """On a CPU the batch runs in passes of about ``CPU_CHUNK_VALUES`` floats; every step is
    per row, so the passes change nothing, down to the bit (passes of 3 rows and a rest)."""
    import datamodules.batch_augment as ba

    images, idx = _smooth_images(20, seed=5), torch.arange(20)
    aug = _aug("simclr", 72, uint8_crop=uint8_crop)
    monkeypatch.setattr(ba, "CPU_CHUNK_VALUES", 10**12)
    assert aug.chunk_rows(images) >= 20
    whole = aug(images, idx, epoch=1)
    monkeypatch.setattr(ba, "CPU_CHUNK_VALUES", 3 * 2 * 3 * 72 * 72)
    assert aug.chunk_rows(images) == 3
    chunked = aug(images, idx, epoch=1)
    for a, b in zip(whole, chunked, strict=True):
        assert torch.equal(a, b)


def test_views_are_written_into_a_given_output_and_a_wrong_one_is_refused():
    images, idx = _smooth_images(6), torch.arange(6)
    aug = _aug("byol", 32)
    out = torch.full((2, 6, 3, 32, 32), float("nan"))
    views = aug(images, idx, epoch=0, out=out)
    assert views[0].data_ptr() == out[0].data_ptr() and torch.isfinite(out).all()
    for a, b in zip(views, aug(images, idx, epoch=0), strict=True):
        assert torch.equal(a, b)
    for bad in (torch.empty(2, 6, 3, 16, 16), torch.empty(2, 6, 3, 32, 32, dtype=torch.float64)):
        with pytest.raises(ValueError, match=r"out must be float32 \[2, 6, 3, 32, 32\]"):
            aug(images, idx, epoch=0, out=bad)


def test_in_place_blends_and_solarize_are_torchvisions_and_leave_other_rows_alone():
    """``blend_steps_`` against torchvision's brightness / contrast / saturation per row
    (rows with step -1 bit-for-bit unchanged), ``solarize_`` against torchvision's."""
    from datamodules.batch_augment import blend_steps_, solarize_

    x = torch.rand(8, 3, 9, 9, generator=torch.Generator().manual_seed(1))
    step = torch.tensor([0, 1, 2, -1, 2, 1, 0, -1])
    factor = torch.tensor([0.3, 1.7, 0.0, 5.0, 1.9, 0.2, 1.6, 0.1])
    ours = blend_steps_(x.clone(), step, factor)
    funcs = [F.adjust_brightness, F.adjust_contrast, F.adjust_saturation]
    for i in range(8):
        if step[i] < 0:
            assert torch.equal(ours[i], x[i])
        else:
            ref = funcs[int(step[i])](x[i], float(factor[i]))
            torch.testing.assert_close(ours[i], ref, rtol=0, atol=1e-6)
    y = torch.linspace(0, 1, 256).view(1, 1, 16, 16).expand(2, 3, 16, 16).clone()
    assert torch.equal(solarize_(y.clone()), F.solarize(y, 128 / 255))


def test_gaussian_blur_is_torchvisions_per_row_at_a_large_kernel():
    """The shifted-sum blur against torchvision's ``gaussian_blur`` per row in float64, at
    the kernel of 128 px views (13) with sigmas across the recipes' range."""
    from datamodules.batch_augment import gaussian_blur

    x = torch.rand(6, 3, 40, 36, generator=torch.Generator().manual_seed(2))
    sigma = torch.tensor([0.1, 0.5, 1.0, 1.5, 2.0, 3.0])
    ours = gaussian_blur(x, sigma, 13)
    assert ours.shape == x.shape
    for i in range(6):
        s = float(sigma[i])
        ref = F.gaussian_blur(x[i].double(), [13, 13], [s, s])
        torch.testing.assert_close(ours[i].double(), ref, rtol=0, atol=2e-6)
