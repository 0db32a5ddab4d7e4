"""The lr schedule, SimSiam's fixed predictor lr and BYOL's EMA target, inside real Trainer runs.

The closed forms are written here independently of ``ssl_norms.schedules``.
"""

from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch import Callback
from method_helpers import TinyDataModule, make_method, tiny_trainer


def expected_multiplier(s: int, total: int, warmup: int, min_ratio: float) -> float:
    """Update number s (0-based): (s + 1) / W during warm-up, then a cosine from 1 to min_ratio."""
    if s < warmup:
        return (s + 1) / warmup
    t = (s - warmup) / (total - warmup)
    return min_ratio + (1 - min_ratio) * (1 + math.cos(math.pi * t)) / 2


class RecordSteps(Callback):
    """Learning rates of every group, and the global step, at each optimizer step."""

    def __init__(self) -> None:
        self.lrs: list[dict[str, float]] = []
        self.steps: list[int] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.lrs.append({g["name"]: g["lr"] for g in optimizer.param_groups})
        self.steps.append(trainer.global_step)


@pytest.mark.parametrize(("accumulate", "n", "batch"), [(1, 32, 8), (4, 64, 8)])
def test_lr_follows_warmup_then_cosine_per_optimizer_step(
    accumulate: int, n: int, batch: int
) -> None:
    epochs, warmup_epochs, base_lr, min_ratio = 5, 2, 0.3, 1e-3
    # accumulate=1: 4 batches = 4 steps per epoch; accumulate=4: 8 batches = 2 steps per epoch.
    steps_per_epoch = (n // batch) // accumulate
    total, warmup = epochs * steps_per_epoch, warmup_epochs * steps_per_epoch
    model = make_method("simclr", lr=base_lr, warmup_epochs=warmup_epochs, min_lr_ratio=min_ratio)
    record = RecordSteps()
    tiny_trainer(max_epochs=epochs, accumulate_grad_batches=accumulate, callbacks=[record]).fit(
        model, datamodule=TinyDataModule(n=n, batch_size=batch)
    )
    assert record.steps == list(range(total)), (
        "one scheduler step per optimizer step, not per micro-batch"
    )
    for s, lrs in enumerate(record.lrs):
        want = base_lr * expected_multiplier(s, total, warmup, min_ratio)
        assert lrs["backbone"] == pytest.approx(want, rel=1e-12), s
        assert lrs["projector"] == pytest.approx(want, rel=1e-12), s
    # The chosen points of the issue: in the warm-up, at the peak, at the end.
    assert record.lrs[0]["backbone"] == pytest.approx(base_lr / warmup)
    assert record.lrs[warmup]["backbone"] == pytest.approx(base_lr)
    end = base_lr * (
        min_ratio
        + (1 - min_ratio) * (1 + math.cos(math.pi * (total - 1 - warmup) / (total - warmup))) / 2
    )
    assert record.lrs[-1]["backbone"] == pytest.approx(end)
    assert record.lrs[-1]["backbone"] < 0.1 * base_lr


def test_simsiam_predictor_lr_stays_fixed() -> None:
    model = make_method(
        "simsiam", lr=0.2, predictor_lr=0.05, warmup_epochs=1, exclude_bn_bias_from_wd=True
    )
    record = RecordSteps()
    tiny_trainer(max_epochs=3, callbacks=[record]).fit(
        model, datamodule=TinyDataModule(n=32, batch_size=8)
    )
    assert len(record.lrs) == 12
    assert all(lrs["predictor"] == 0.05 and lrs["predictor_no_wd"] == 0.05 for lrs in record.lrs)
    backbone = [lrs["backbone"] for lrs in record.lrs]
    assert (
        backbone[0] == pytest.approx(0.05)
        and max(backbone) == pytest.approx(0.2)
        and backbone[-1] < 0.05
    )
    # Default: the fixed predictor lr is the base lr, never decayed.
    assert make_method("simsiam", lr=0.1).predictor_lr == 0.1


class WatchTarget(Callback):
    """Checks BYOL's target around every batch (callback hooks run before the module's)."""

    def __init__(self) -> None:
        self.taus: list[float] = []
        self.checked_ema = 0
        self.before: list[torch.Tensor] | None = None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        # Backward has run: the online network has gradients, the target none.
        assert all(p.grad is None and not p.requires_grad for p in pl_module.target_parameters())
        assert any(
            p.grad is not None and p.grad.abs().sum() > 0 for p in pl_module.backbone.parameters()
        )
        assert not any(
            p is q
            for g in optimizer.param_groups
            for p in g["params"]
            for q in pl_module.target_parameters()
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Runs before BYOL's own hook: the online weights are stepped, the target is not yet.
        self.before = [t.clone() for t in pl_module.target_parameters()]
        self.online = [
            p.clone() for p in (*pl_module.backbone.parameters(), *pl_module.projector.parameters())
        ]
        self.step_before = pl_module._last_ema_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._check(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._check(pl_module)

    def _check(self, pl_module) -> None:
        if self.before is None:
            return
        after = list(pl_module.target_parameters())
        if pl_module._last_ema_step == self.step_before:  # no optimizer step: no update
            assert all(torch.equal(a, b) for a, b in zip(after, self.before, strict=True))
        else:
            tau = pl_module.current_tau
            self.taus.append(tau)
            for a, b, o in zip(after, self.before, self.online, strict=True):
                torch.testing.assert_close(a, tau * b + (1 - tau) * o, rtol=1e-6, atol=1e-7)
            self.checked_ema += 1
        self.before = None


@pytest.mark.parametrize("accumulate", [1, 2])
def test_byol_tau_schedule_and_ema_target(accumulate: int) -> None:
    epochs, batches = 3, 4
    total = epochs * batches // accumulate
    model = make_method("byol", base_tau=0.9)
    watch = WatchTarget()
    tiny_trainer(max_epochs=epochs, accumulate_grad_batches=accumulate, callbacks=[watch]).fit(
        model, datamodule=TinyDataModule(n=batches * 8, batch_size=8)
    )
    want = [1 - (1 - 0.9) * (1 + math.cos(math.pi * k / total)) / 2 for k in range(total)]
    assert watch.checked_ema == total
    assert watch.taus == pytest.approx(want, rel=1e-12)
    assert watch.taus[0] == pytest.approx(0.9) and watch.taus[-1] > 0.99


def test_accumulated_micro_batches_are_averaged_not_summed() -> None:
    """One optimizer step over 2 micro-batches = one SGD step on the mean of their gradients
    (the authors' accumulation summed them, docs/definitions.md)."""
    import copy

    torch.manual_seed(0)
    model = make_method("simclr", lr=0.1, momentum=0.0, weight_decay=0.0, min_lr_ratio=1.0)
    reference = copy.deepcopy(model)
    dm = TinyDataModule(n=16, batch_size=8)
    tiny_trainer(max_steps=1, accumulate_grad_batches=2).fit(model, datamodule=dm)

    batches = list(dm.train_dataloader())
    assert len(batches) == 2
    params = list(reference.parameters())
    grads = [torch.zeros_like(p) for p in params]
    for views, _, _ in batches:
        g = torch.autograd.grad(reference.compute_loss(*views).loss, params)
        grads = [a + b / 2 for a, b in zip(grads, g, strict=True)]
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            p -= 0.1 * g
    for (name, p), q in zip(reference.named_parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=name)


def _fit_lrs(tmp_path, max_epochs: int, ckpt=None, **kwargs) -> tuple[list[float], object]:
    from lightning.pytorch.callbacks import ModelCheckpoint

    record = RecordSteps()
    model = make_method("simclr", lr=0.3, warmup_epochs=1, **kwargs)
    trainer = tiny_trainer(
        max_epochs=max_epochs,
        enable_checkpointing=True,
        default_root_dir=tmp_path,
        callbacks=[record, ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)],
    )
    trainer.fit(model, datamodule=TinyDataModule(n=32, batch_size=8), ckpt_path=ckpt)
    return [lrs["backbone"] for lrs in record.lrs], model


def test_schedule_epochs_stops_early_and_resumes_on_one_schedule(tmp_path):
    """Epochs 0-1 of a 4-epoch schedule, then resumed to 4: the lr of an uninterrupted run."""
    full, _ = _fit_lrs(tmp_path / "full", 4)
    first, _ = _fit_lrs(tmp_path / "part", 2, schedule_epochs=4)
    rest, _ = _fit_lrs(
        tmp_path / "part", 4, ckpt=str(tmp_path / "part" / "ckpt" / "last.ckpt"), schedule_epochs=4
    )
    assert first + rest == pytest.approx(full, rel=1e-12) and len(full) == 16
    total, warmup = 16, 4
    assert full == pytest.approx(
        [0.3 * expected_multiplier(s, total, warmup, 1e-3) for s in range(16)]
    )


def test_a_resume_with_a_longer_run_follows_the_config_and_warns(tmp_path):
    """Without schedule_epochs the schedule spans trainer.max_epochs of THIS run; a resume that
    extends it uses the new length (what the config says) and says the lr jumps."""
    _fit_lrs(tmp_path, 2)
    with pytest.warns(UserWarning, match=r"resuming on a schedule of 16 optimizer steps .* had 8"):
        rest, _ = _fit_lrs(tmp_path, 4, ckpt=str(tmp_path / "ckpt" / "last.ckpt"))
    assert rest == pytest.approx([0.3 * expected_multiplier(s, 16, 4, 1e-3) for s in range(8, 16)])
