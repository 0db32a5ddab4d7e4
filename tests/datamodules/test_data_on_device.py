"""``data_on_device``: the training set held on the model's device, index batches, the same
views as the uint8 loader path; on CPU (device = the CPU) and, when present, on CUDA.
``augment_on="loader_batched"``: the same batched views, made in the loader workers."""

from __future__ import annotations

import pytest
import torch

from datamodules.batch_augment import BatchAugment
from datamodules.transforms import CIFAR10_STATS, resolve_augmentation


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory):
    from dm_files import class_major_labels, write_cifar10_pickles

    root = tmp_path_factory.mktemp("cifar")
    write_cifar10_pickles(root, class_major_labels([8] * 10), class_major_labels([2] * 10))
    return str(root)


def _dm(root, **kw):
    from datamodules import CIFAR10DataModule

    options = dict(batch_size=16, eval_batch_size=32, num_workers=0, seed=3,
                   augment_on="device", data_on_device=True)  # fmt: skip
    return CIFAR10DataModule(root, **{**options, **kw})


def test_data_on_device_needs_device_augmentation(tiny_cifar):
    with pytest.raises(ValueError, match="needs augment_on='device'"):
        _dm(tiny_cifar, augment_on="loader")


def test_index_batches_give_the_uint8_paths_batches_and_views(tiny_cifar):
    fast, raw = _dm(tiny_cifar), _dm(tiny_cifar, data_on_device=False)
    fast.setup()
    raw.setup()
    fast_loader, raw_loader = fast.train_dataloader(), raw.train_dataloader()
    assert fast_loader.num_workers == 0 and len(fast_loader) == len(raw_loader) == 5
    for epoch in (0, 1):
        fast_loader.sampler.set_epoch(epoch)
        raw_loader.sampler.set_epoch(epoch)
        for fb, rb in zip(fast_loader, raw_loader, strict=True):
            idx, y, idx2 = fb
            assert idx.dtype == torch.int64 and idx.shape == (16,) and torch.equal(idx, idx2)
            assert torch.equal(idx, rb[2]) and torch.equal(y, rb[1])
            (v1, v2), y_out, idx_out = fast.on_after_batch_transfer(fb, 0)
            (w1, w2), _, _ = raw.on_after_batch_transfer(rb, 0)
            assert torch.equal(v1, w1) and torch.equal(v2, w2)
            assert y_out is y and idx_out is idx
    # The views are those of (seed, epoch, idx), from the images the DataModule holds.
    images = fast.device_images("cpu")
    assert images is fast.train_dataset.base.images  # on the CPU: no copy
    want = BatchAugment(resolve_augmentation("auto", 32), 32, *CIFAR10_STATS, seed=3)(
        images[idx], idx, 1
    )
    assert torch.equal(v1, want[0]) and torch.equal(v2, want[1])
    # Evaluation batches pass through unchanged.
    x, ye, ie = next(iter(fast.eval_dataloader()))
    assert fast.on_after_batch_transfer((x, ye, ie), 1)[0] is x


@pytest.mark.parametrize("workers", [0, 1])
def test_loader_batched_makes_the_device_paths_views_in_the_workers(tiny_cifar, workers):
    batched = _dm(tiny_cifar, augment_on="loader_batched", data_on_device=False,
                  num_workers=workers)  # fmt: skip
    device = _dm(tiny_cifar, data_on_device=False)
    batched.setup()
    device.setup()
    b_loader, d_loader = batched.train_dataloader(), device.train_dataloader()
    assert b_loader.num_workers == workers
    # One-thread workers crop the uint8 pixels (from 48 px on; below, as here, the float
    # crop of "device": the same views): tests/datamodules/test_batch_augment.py.
    assert batched._batch_augment.uint8_crop and not device._batch_augment.uint8_crop
    for epoch in (0, 3):
        b_loader.sampler.set_epoch(epoch)
        d_loader.sampler.set_epoch(epoch)
        for bb, db in zip(b_loader, d_loader, strict=True):
            (v1, v2), y, idx = bb
            assert v1.dtype == torch.float32 and v1.shape == (16, 3, 32, 32)
            assert torch.equal(idx, db[2]) and torch.equal(y, db[1])
            (w1, w2), _, _ = device.on_after_batch_transfer(db, 0)
            assert torch.equal(v1, w1) and torch.equal(v2, w2)
            # Already views: the transfer hook leaves them as they are.
            assert batched.on_after_batch_transfer(bb, 0)[0] is bb[0]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["data_on_device", "loader_batched"])
@pytest.mark.parametrize("method", ["simclr", "simsiam", "byol"])
def test_each_method_trains_with_the_data_on_the_cpu_device(tiny_cifar, method, mode):
    import lightning as L

    from ssl_norms.methods import BYOL, SimCLR, SimSiam

    heads = {
        "simclr": dict(projector_hidden_dim=16, projector_out_dim=8),
        "simsiam": dict(projector_dim=16, predictor_hidden_dim=4),
        "byol": dict(projector_dim=16, predictor_hidden_dim=4),
    }[method]
    cls = {"simclr": SimCLR, "simsiam": SimSiam, "byol": BYOL}[method]
    model = cls(backbone="resnet18", backbone_width=2, warmup_epochs=0.0, **heads)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    options = {"loader_batched": dict(augment_on="loader_batched", data_on_device=False)}
    dm = _dm(tiny_cifar, **options.get(mode, {}))
    trainer = L.Trainer(accelerator="cpu", max_steps=3, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)  # fmt: skip
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 3
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters())


@pytest.mark.parametrize("precision", ["64-true", "bf16-true"])
@pytest.mark.parametrize("data_on_device", [True, False], ids=["data_on_device", "uint8_loader"])
def test_views_made_after_the_transfer_take_the_precision_s_dtype(
    tiny_cifar, data_on_device, precision
):
    """Lightning converts a batch to the precision's dtype before its transfer, when this
    path's batch holds uint8 images or indices: the views made afterwards get the same
    conversion, so a "64-true" run (the exact 1 == 2 processes checks) or a half-precision
    run trains on them as on the loader's views."""
    import lightning as L

    from ssl_norms.methods import SimCLR

    seen = []

    class Views(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.extend(v.dtype for v in batch[0])

    model = SimCLR(backbone="resnet18", backbone_width=2, projector_hidden_dim=16,
                   projector_out_dim=8, warmup_epochs=0.0)  # fmt: skip
    trainer = L.Trainer(accelerator="cpu", precision=precision, max_steps=2,
                        limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[Views()])  # fmt: skip
    trainer.fit(model, datamodule=_dm(tiny_cifar, data_on_device=data_on_device))
    want = {"64-true": torch.float64, "bf16-true": torch.bfloat16}[precision]
    assert trainer.global_step == 2 and seen == [want] * 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_holds_the_images_and_gives_the_cpu_views(tiny_cifar):
    dm = _dm(tiny_cifar)
    dm.setup()
    idx, y, _ = next(iter(dm.train_dataloader()))
    cuda_batch = (idx.cuda(), y.cuda(), idx.cuda())
    (v1, v2), _, _ = dm.on_after_batch_transfer(cuda_batch, 0)
    assert dm.device_images("cuda").is_cuda and v1.is_cuda
    cpu = _dm(tiny_cifar)
    cpu.setup()
    (w1, w2), _, _ = cpu.on_after_batch_transfer((idx, y, idx), 0)
    for a, b in ((v1, w1), (v2, w2)):
        assert (a.cpu() - b).abs().mean() < 1e-4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fast_path_trains_on_cuda_in_bf16(tiny_cifar):
    import lightning as L

    from ssl_norms.methods import SimCLR

    model = SimCLR(backbone="resnet18", backbone_width=4, projector_hidden_dim=16,
                   projector_out_dim=8, warmup_epochs=0.0)  # fmt: skip
    trainer = L.Trainer(accelerator="gpu", devices=1, precision="bf16-mixed", max_steps=3,
                        limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, datamodule=_dm(tiny_cifar))
    assert trainer.global_step == 3
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


def test_a_training_batch_keeps_its_host_indices_through_the_transfer(tiny_cifar):
    """The views' parameters are drawn from the host's copy of the indices (reading the
    device's would make the host wait for the GPU at every batch): transfer_batch_to_device
    hands it over as a fourth element, on_after_batch_transfer drops it, and the views are
    the ones drawn from the batch's own indices."""
    dm = _dm(tiny_cifar)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    idx = batch[2]
    moved = dm.transfer_batch_to_device(batch, torch.device("cpu"), 0)
    assert len(moved) == 4 and moved[3] is idx
    (v1, v2), y, idx_out = dm.on_after_batch_transfer(moved, 0)
    assert idx_out is moved[2] and torch.equal(y, batch[1])
    want = BatchAugment(resolve_augmentation("auto", 32), 32, *CIFAR10_STATS, seed=3)(
        dm.device_images("cpu")[idx], idx, 0
    )
    assert torch.equal(v1, want[0]) and torch.equal(v2, want[1])
    # The host copy is the one used: other indices there give other views.
    other = (*moved[:3], idx.flip(0))
    (o1, _), _, _ = dm.on_after_batch_transfer(other, 0)
    assert not torch.equal(o1, v1)
    # Evaluation batches are moved as they are.
    x, ye, ie = next(iter(dm.eval_dataloader()))
    assert len(dm.transfer_batch_to_device((x, ye, ie), torch.device("cpu"), 1)) == 3


def _synchronizing_calls(fn) -> list[str]:
    """The CUDA calls that make the host wait for the GPU while ``fn`` runs (torch's sync
    debug mode), as 'file:line: message'."""
    import warnings

    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return [f"{w.filename}:{w.lineno}: {w.message}" for w in caught
            if "synchroniz" in str(w.message)]  # fmt: skip


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_views_never_make_the_host_wait(tiny_cifar):
    """A fast-path training batch becomes its views without a single host sync: the GPU
    keeps working on the previous step meanwhile."""
    dm = _dm(tiny_cifar)
    dm.setup()
    dm.device_images("cuda")  # moved once, before (a blocking copy)
    batch = next(iter(dm.train_dataloader()))
    device = torch.device("cuda")
    dm.on_after_batch_transfer(dm.transfer_batch_to_device(batch, device, 0), 0)  # warm-up

    def views():
        dm.on_after_batch_transfer(dm.transfer_batch_to_device(batch, device, 0), 0)

    assert _synchronizing_calls(views) == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_views_run_ahead_of_a_busy_gpu(tiny_cifar, busy_gpu):
    """While the GPU is still busy (with the previous step, in training), a batch becomes
    its views without the host waiting for it, also not inside the driver (a copy from
    pageable memory); the views are the same as on an idle GPU."""
    dm = _dm(tiny_cifar)
    dm.setup()
    dm.device_images("cuda")
    batch = next(iter(dm.train_dataloader()))
    device = torch.device("cuda")

    def views():
        return dm.on_after_batch_transfer(dm.transfer_batch_to_device(batch, device, 0), 0)

    (want1, want2), _, _ = views()  # warm-up: kernels loaded, pinned blocks cached
    torch.cuda.synchronize()
    done = busy_gpu(1.0)
    (v1, v2), _, _ = views()
    assert not done.query(), "the host waited for the busy GPU while making the views"
    torch.cuda.synchronize()
    assert torch.equal(v1, want1) and torch.equal(v2, want2)
