"""The base LightningModule of the SSL methods (docs/contract.md, docs/definitions.md).

``SSLMethod`` owns what SimCLR, SimSiam and BYOL share: the backbone, cut-initialisation,
the GradScale power, the optimizer (SGD or LARS, optional weight-decay exclusion of
BatchNorm and bias parameters) and the warm-up + cosine schedule, the contract's
``training_step`` / ``validation_step`` outputs, and the NaN/inf guard. A method only says
how a pair of views becomes a loss (``compute_loss``) and what its loss-space embedding is
(``project``).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch import nn

from ssl_norms import metric_names as M
from ssl_norms.distributed import all_reduce_sum, rank_and_world
from ssl_norms.init import cut_init
from ssl_norms.methods.finite_guard import FiniteGuard, Timing
from ssl_norms.models.backbones import build_backbone, feature_dim
from ssl_norms.models.memory_format import channels_last_hazard
from ssl_norms.models.sync_batchnorm import convert_sync_batchnorm
from ssl_norms.optim import LARS
from ssl_norms.schedules import warmup_cosine

__all__ = ["ParamGroup", "SSLMethod", "StepOutput"]

# Precisions where non-finite gradients are expected and skipped by the GradScaler.
_AMP_FP16 = {"16-mixed", "16", "16-true"}


@dataclass
class StepOutput:
    """What ``compute_loss`` returns: the loss and the batch's ``z`` [2B, d] and ``h`` [2B, f]
    (view-1 rows, then view-2 rows; not detached yet)."""

    loss: torch.Tensor
    z: torch.Tensor
    h: torch.Tensor


@dataclass(frozen=True)
class ParamGroup:
    """How one module of a method is trained: its own optimizer parameter group.

    Args:
        module: the module whose trainable parameters form the group.
        fixed_lr: ``None`` trains it at the base ``lr`` on the warm-up + cosine schedule;
            a number trains it at that constant learning rate (SimSiam's predictor).
        weight_decay: whether the method's ``weight_decay`` applies to it.
    """

    module: nn.Module
    fixed_lr: float | None = None
    weight_decay: bool = True


class _WarmupCosine:
    """Picklable LambdaLR multiplier: ``warmup_cosine`` with fixed arguments."""

    def __init__(self, total_steps: int, warmup_steps: int, min_ratio: float) -> None:
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.min_ratio = min_ratio

    def __call__(self, step: int) -> float:
        return warmup_cosine(step, self.total_steps, self.warmup_steps, self.min_ratio)


class _Constant:
    """Picklable LambdaLR multiplier 1: for parameter groups trained at a fixed lr."""

    def __call__(self, step: int) -> float:
        return 1.0


def _hparams_given_by_cli() -> bool:
    """True while LightningCLI instantiates the module: it then hands the config (with
    ``class_path`` dicts) to ``save_hyperparameters``, so a backbone module is stored in
    its config form and must not be ignored."""
    try:
        from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
    except ImportError:  # pragma: no cover - private name moved
        return False
    return _given_hyperparameters.get() is not None


class SSLMethod(LightningModule):
    """Base class of the SSL methods.

    Args:
        backbone: ``"resnet18"``, ``"resnet34"``, ``"resnet50"``, ``"convnet"`` or ``"mlp"``, sized by the
            ``backbone_*`` options below; or any ``nn.Module`` (``class_path`` in a config)
            returning features [N, f], e.g. ``ssl_norms.models.ResNet``.
        backbone_width: ResNet base width (64 standard, 16 for CPU runs), ConvNet first
            width, or MLP hidden width.
        cifar_stem: 3x3 stride-1 stem without max-pool (32 px images, paper Appendix C.1).
        zero_init_residual: residual branches start at zero (paper Appendix C.1).
        backbone_in_dim: input dimension of the ``"mlp"`` backbone (64 for latent classes).
        backbone_out_dim: feature dimension of a module backbone without an ``out_dim``.
        optimizer: ``"sgd"`` (momentum) or ``"lars"``.
        lr: base learning rate (peak of the schedule), for the whole batch of one optimizer step.
        momentum: SGD/LARS momentum.
        nesterov: Nesterov momentum.
        weight_decay: L2 penalty; it shrinks embedding norms (paper Sec. 5).
        exclude_bn_bias_from_wd: no weight decay (and no LARS adaptation) on BatchNorm and
            bias parameters; they go to the ``*_no_wd`` parameter groups.
        lars_eta: LARS trust coefficient.
        warmup_epochs: linear warm-up length in epochs (fractions allowed); the schedule
            is then a cosine to ``min_lr_ratio x lr`` at the end of ``schedule_epochs``.
        schedule_epochs: length of the lr schedule (and of BYOL's EMA schedule) in epochs;
            ``None`` uses the trainer's ``max_epochs`` (or ``max_steps``). Set it to stop a
            run early and resume it later on the same schedule: epoch 100 of a 500-epoch
            schedule, then on to 500 (the paper reports both from one run, Table S2).
        min_lr_ratio: final learning rate as a fraction of ``lr`` (paper App. C.1: 1e-3).
        cut_constant: cut-initialisation constant c (paper Sec. 6): every parameter of
            the network is divided by c once, at construction. 1 disables it.
        gradscale_power: GradScale power p (paper Sec. 6; docs/definitions.md); 0 disables it.
        check_finite: stop with a clear error when the loss or the gradients stop being
            finite, or the embedding norms overflow; no checkpoint is saved after that step,
            so none holds NaN weights (``ssl_norms.methods.finite_guard``).
        check_finite_timing: when the guard reads its checks, each a device sync.
            ``"before_step"``: before each optimizer step (the bad update never happens).
            ``"next_step"``: one step later, and before any save or read of the step's
            results, so that the host never waits for the GPU (the bad update is applied
            in memory, never saved). ``"auto"``: ``before_step`` on a CPU, where a sync
            costs nothing, ``next_step`` on a GPU.
        sync_batchnorm: with more than one process, every BatchNorm normalises with the
            statistics of the global batch, so W processes train the single-process model
            (docs/distributed.md). False lets each process normalise its own shard: faster
            across nodes, but another model.
        channels_last: keep the backbone's 4-D weights and the image batches in the
            channels-last (NHWC) memory format. The same model and loss up to float
            round-off; convolutions run faster on CPU (oneDNN) and on GPU tensor cores
            (measured in BENCHMARKS.md). Vector inputs (the MLP backbone) are unaffected.
            Not applied, with a warning, to a backbone with a strided 1x1 convolution of
            fewer than 8 input channels (toy widths such as ``backbone_width=4``), whose
            channels-last CPU kernel in oneDNN fails (``ssl_norms.models.memory_format``).
        compile_backbone: ``torch.compile`` the backbone when fitting starts (in place,
            ``nn.Module.compile``: parameter names and checkpoints unchanged). The first
            steps then pay the compilation; worth it for long runs (BENCHMARKS.md).
    """

    def __init__(
        self,
        backbone: str | nn.Module = "resnet50",
        backbone_width: int = 64,
        cifar_stem: bool = True,
        zero_init_residual: bool = True,
        backbone_in_dim: int | None = None,
        backbone_out_dim: int | None = None,
        optimizer: Literal["sgd", "lars"] = "sgd",
        lr: float = 0.6,
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float = 1e-6,
        exclude_bn_bias_from_wd: bool = False,
        lars_eta: float = 0.02,
        warmup_epochs: float = 10.0,
        schedule_epochs: int | None = None,
        min_lr_ratio: float = 1e-3,
        cut_constant: float = 1.0,
        gradscale_power: float = 0.0,
        check_finite: bool = True,
        check_finite_timing: Literal["auto", "before_step", "next_step"] = "auto",
        sync_batchnorm: bool = True,
        channels_last: bool = True,
        compile_backbone: bool = False,
    ) -> None:
        super().__init__()
        if type(self) is SSLMethod:
            raise TypeError(
                "SSLMethod is the base class: use SimCLR, SimSiam or BYOL (ssl_norms.methods)"
            )
        if isinstance(cut_constant, bool) or not math.isfinite(cut_constant) or cut_constant <= 0:
            raise ValueError(
                f"cut_constant must be a finite number > 0 (1 disables cut-initialisation), got {cut_constant}"
            )
        if optimizer not in ("sgd", "lars"):
            raise ValueError(f"unknown optimizer {optimizer!r}: choose 'sgd' or 'lars'")
        if lr <= 0 or weight_decay < 0 or warmup_epochs < 0 or not 0 <= min_lr_ratio <= 1:
            raise ValueError(
                f"need lr > 0, weight_decay >= 0, warmup_epochs >= 0, 0 <= min_lr_ratio <= 1; got lr={lr}, "
                f"weight_decay={weight_decay}, warmup_epochs={warmup_epochs}, min_lr_ratio={min_lr_ratio}"
            )
        if schedule_epochs is not None and schedule_epochs < 1:
            raise ValueError(
                f"schedule_epochs must be >= 1 (or None for the trainer's max_epochs), got {schedule_epochs}"
            )
        if check_finite_timing not in ("auto", "before_step", "next_step"):
            raise ValueError(
                f"check_finite_timing must be 'auto', 'before_step' or 'next_step', got "
                f"{check_finite_timing!r}"
            )
        if not math.isfinite(gradscale_power):
            raise ValueError(f"gradscale_power must be finite, got {gradscale_power}")
        if not 0 <= gradscale_power <= 2:
            rank_zero_warn(
                f"gradscale_power={gradscale_power} is outside [0, 2] (0: off, 1: the paper's "
                "GradScale, 2: an effective learning rate independent of the norm): the effective "
                f"learning rate lr * ||z||^(p - 2) then scales as ||z||^{gradscale_power - 2:g}, "
                "vanishing or exploding as the norms move (paper Sec. 6)"
            )
        ignore = (
            ["backbone"] if isinstance(backbone, nn.Module) and not _hparams_given_by_cli() else []
        )
        # Collects the arguments of the subclass' __init__ too (Lightning walks the frames).
        self.save_hyperparameters(ignore=ignore)

        if isinstance(backbone, str):
            backbone = build_backbone(
                backbone,
                width=backbone_width,
                cifar_stem=cifar_stem,
                zero_init_residual=zero_init_residual,
                in_dim=backbone_in_dim,
            )
        elif not isinstance(backbone, nn.Module):
            raise ValueError(
                f"backbone must be a name or an nn.Module, got {type(backbone).__name__}"
            )
        hazard = channels_last_hazard(backbone) if channels_last else None
        if hazard is not None:
            rank_zero_warn(
                f"channels_last=True is not applied: {hazard}. The backbone stays in the "
                "contiguous format (the same model and results; set channels_last=False to "
                "silence this, or use backbone_width >= 8)"
            )
        # Read by _memory_format; the hyperparameter keeps what was asked for.
        self._channels_last = channels_last and hazard is None
        if self._channels_last:
            # Only 4-D tensors change layout; the values and the state_dict keys stay.
            backbone = backbone.to(memory_format=torch.channels_last)
        self.backbone = backbone
        self.feature_dim = (
            backbone_out_dim if backbone_out_dim is not None else feature_dim(backbone)
        )
        self.cut_constant = float(cut_constant)
        self.gradscale_power = float(gradscale_power)
        self._cut_done = False
        self._finite_guard: FiniteGuard | None = None  # one per fit (_guard)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> SSLMethod:  # type: ignore[override]
        """Lightning's loader; called on ``SSLMethod`` itself it builds the checkpoint's own method.

        Checkpoints written by ``ssl-norms fit`` name their class (``hyper_parameters._class_path``);
        Lightning alone would build the base class from them, since it has no ``**kwargs``.
        """
        if cls is not SSLMethod:
            return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)
        if isinstance(checkpoint_path, (str, os.PathLike)) and "://" not in str(checkpoint_path):
            from ssl_norms.checkpoint_io import load_checkpoint_file

            # weights_only first, and a clear message for a truncated or foreign file
            ckpt = load_checkpoint_file(checkpoint_path, map_location="cpu", mmap=True)
        else:  # a remote URL or a file object: Lightning's loader
            from lightning.fabric.utilities.cloud_io import _load as pl_load

            ckpt = pl_load(checkpoint_path, map_location="cpu", weights_only=False)
        hparams = ckpt.get("hyper_parameters", {})
        class_path = str(hparams.get("_class_path", ""))
        module_name, _, name = class_path.rpartition(".")
        target = getattr(sys.modules.get(module_name), name, None) if module_name else None
        if not (
            isinstance(target, type) and issubclass(target, SSLMethod) and target is not SSLMethod
        ):
            raise ValueError(
                f"{checkpoint_path} does not name an imported SSL method ({class_path or 'no _class_path'}): "
                "load it with the method's class, e.g. SimCLR.load_from_checkpoint(path)"
            )
        return target.load_from_checkpoint(checkpoint_path, *args, **kwargs)

    # ----------------------------------------------------------------- subclass API
    def project(self, h: torch.Tensor) -> torch.Tensor:
        """The loss-space embedding z (before normalisation) of backbone features h."""
        raise NotImplementedError

    def compute_loss(self, x1: torch.Tensor, x2: torch.Tensor) -> StepOutput:
        """Loss of a pair of views, with GradScale applied where the paper places it (Sec. 6; docs/definitions.md)."""
        raise NotImplementedError

    def param_groups(self) -> dict[str, ParamGroup]:
        """The trained modules, by optimizer parameter-group name: the one declaration that
        the optimizer, its schedule, weight decay and cut-initialisation read.

        Subclasses add their heads to ``super().param_groups()``. Every trainable parameter
        must belong to exactly one group (checked when the optimizer is built); modules
        trained otherwise (BYOL's EMA target) have no trainable parameter.
        """
        return {"backbone": ParamGroup(self.backbone)}

    # ------------------------------------------------------------------ cut-init
    def apply_cut_init(self) -> None:
        """Divide every trained parameter (every module of ``param_groups()``) by
        ``cut_constant`` (paper Sec. 6, Listing 1).

        Subclasses call it once, at the end of ``__init__``. It is never called on resume:
        loading a checkpoint overwrites the already-cut constructor weights with the saved
        ones, so the cut is not applied twice (the authors' code re-applied it, docs/definitions.md).
        """
        if self._cut_done:
            raise RuntimeError("cut-initialisation was already applied to this module")
        for group in self.param_groups().values():
            cut_init(group.module, self.cut_constant)
        self._cut_done = True

    def setup(self, stage: str) -> None:
        if not self._cut_done:  # a method that forgot to call apply_cut_init() at construction
            raise RuntimeError(
                f"{type(self).__name__}.__init__ must end with self.apply_cut_init()"
            )
        trainer = self._trainer
        if stage == "fit" and trainer is not None and trainer.world_size > 1:
            if self.hparams.get("sync_batchnorm", True):
                # Lightning calls setup() before DDP wraps the module. torch's SyncBatchNorm
                # runs on CUDA only; GlobalBatchNorm on any backend.
                cuda = trainer.strategy.root_device.type == "cuda"
                convert_sync_batchnorm(self, cuda=cuda)
        if stage == "fit" and self.hparams.get("compile_backbone", False):
            self.backbone.compile()  # in place: the parameter names stay those of the checkpoint

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightning restores the weights before its precision plugin converts the module
        # (to float64 under "64-true"), so a float64 checkpoint would pass through the
        # constructor's float32 and lose digits: convert first (idempotent).
        if self._trainer is not None:
            self._trainer.precision_plugin.convert_module(self)
        # The schedule's length comes from this run's config (trainer.max_epochs or
        # schedule_epochs), not from the checkpoint: torch's LambdaLR would restore the saved
        # multiplier objects' fields (total and warm-up steps) over the ones just computed.
        self._restored_schedule = None
        for state in checkpoint.get("lr_schedulers", []):
            saved = state.get("lr_lambdas")
            if not isinstance(saved, list):
                continue
            if self._restored_schedule is None and saved and isinstance(saved[0], dict):
                self._restored_schedule = saved[0]
            state["lr_lambdas"] = [None] * len(saved)  # None: LambdaLR keeps the new one

    def on_train_start(self) -> None:
        # A fresh guard per fit, made at its first check: timed for the device the fit runs on.
        self._finite_guard = None
        # A resume on a changed schedule (warned in configure_optimizers): the restored
        # optimizer still holds the old schedule's last lr for the first step; set it.
        if getattr(self, "_schedule_changed", False):
            for config in self.trainer.lr_scheduler_configs:
                scheduler = config.scheduler
                groups = scheduler.optimizer.param_groups
                for group, fn, base in zip(
                    groups, scheduler.lr_lambdas, scheduler.base_lrs, strict=True
                ):
                    group["lr"] = base * fn(scheduler.last_epoch)
            self._schedule_changed = False

    # ------------------------------------------------------------------ contract
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features h (the representation used by k-NN)."""
        return self.backbone(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Loss-space embedding z before normalisation (docs/contract.md)."""
        return self.project(self.backbone(x))

    def _memory_format(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the backbone's memory format (channels-last for image batches when set)."""
        if x.dim() == 4:
            # Contiguous otherwise: a channels-last input alone would select the NHWC kernels.
            fmt = torch.channels_last if self._channels_last else torch.contiguous_format
            return x.contiguous(memory_format=fmt)
        return x

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        views, y, _idx = batch
        if len(views) != 2:
            raise ValueError(f"{type(self).__name__} expects 2 views per sample, got {len(views)}")
        out = self.compute_loss(self._memory_format(views[0]), self._memory_format(views[1]))
        # The previous step's checks ("next_step" timing): done long ago on the GPU, which is
        # now busy with this step's forward, so reading them costs no wait.
        self.raise_if_diverged()
        self._check_finite_loss(out.loss, batch_idx, out.z, out.h)
        # The global batch's loss: the mean of the processes' equal-sized shards, reduced
        # here rather than by Lightning's sync_dist, which puts a barrier (a host sync on
        # GPUs) before its all-reduce at every step.
        loss = all_reduce_sum(out.loss.detach()) / rank_and_world()[1]
        # "train/loss" is the contract's name (docs/contract.md): per step, without the
        # _step suffix Lightning adds when one key is logged both per step and per epoch.
        # Not prog_bar: Lightning turns every prog_bar value into a Python number at every
        # batch's end, bar or no bar (on a GPU the host would wait for each step); the
        # progress bar (ssl_norms.progress) reads the loss only when it redraws.
        self.log(M.TRAIN_LOSS, loss, on_step=True, on_epoch=False, batch_size=y.shape[0])
        # Every process holds the same values; the one barrier per epoch of this sync_dist
        # is cheap, and without it Lightning warns on every epoch under DDP.
        self.log(M.TRAIN_LOSS_EPOCH, loss, on_step=False, on_epoch=True, batch_size=y.shape[0],
                 sync_dist=True)  # fmt: skip
        return {"loss": out.loss, "z": out.z.detach(), "h": out.h.detach(), "y": y}

    def _eval_step(self, batch: Any) -> dict[str, torch.Tensor]:
        x, y, idx = batch
        h = self.backbone(self._memory_format(x))
        z = self.project(h)
        return {"h": h.detach(), "z": z.detach(), "y": y, "idx": idx}

    def validation_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, torch.Tensor]:
        """Features of an evaluation batch ``(x, y, idx)``; logs nothing (callbacks observe)."""
        return self._eval_step(batch)

    def test_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, torch.Tensor]:
        return self._eval_step(batch)

    # ------------------------------------------------------------------ NaN guard
    def _likely_cause(self) -> str:
        lr = self._current_backbone_lr()
        cause = f"the learning rate is too large for this run (backbone lr now {lr:.4g}, base {self.hparams.lr})"
        if self.gradscale_power != 0:
            cause += (
                f"; GradScale (p={self.gradscale_power}) multiplies gradients by ||z||^p and diverges at "
                "learning rates that default training tolerates: lower lr (the paper uses lr / 6 and "
                "100 warm-up epochs) or the power"
            )
        if self.cut_constant > 1:
            cause += f"; cut-initialisation (c={self.cut_constant}) makes early steps large relative to the weights"
        return cause

    def _current_backbone_lr(self) -> float:
        try:
            for group in self.trainer.optimizers[0].param_groups:
                if group.get("name") == "backbone":
                    return float(group["lr"])
        except (RuntimeError, AttributeError, IndexError):
            pass
        return float(self.hparams.lr)

    def _finite_check_timing(self) -> Timing:
        timing = self.hparams.get("check_finite_timing", "auto")
        if timing == "auto":  # a sync costs nothing on a CPU; on a GPU it stalls the queue
            return "before_step" if self.device.type == "cpu" else "next_step"
        return timing

    def _guard(self) -> FiniteGuard:
        if self._finite_guard is None:
            self._finite_guard = FiniteGuard(self._finite_check_timing())
        return self._finite_guard

    def _check_finite_loss(
        self,
        loss: torch.Tensor,
        batch_idx: int,
        z: torch.Tensor | None = None,
        h: torch.Tensor | None = None,
    ) -> None:
        """Stop on a non-finite loss, or on embeddings whose norms overflow float32 (the
        norm monitors would fail on them while a normalised loss stays finite)."""
        if not self.hparams.check_finite:
            return
        where = f"at global step {self.global_step} (epoch {self.current_epoch}, batch {batch_idx})"
        self._guard().after_forward(loss, z, h, where, type(self).__name__, self._likely_cause)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if not self.hparams.check_finite or str(self.trainer.precision) in _AMP_FP16:
            return  # fp16 AMP skips non-finite steps by design
        grads = [
            p.grad
            for group in optimizer.param_groups
            for p in group["params"]
            if p.grad is not None
        ]
        where = f"at global step {self.global_step} (epoch {self.current_epoch})"
        self._guard().before_optimizer_step(grads, where, type(self).__name__, self._likely_cause)

    def raise_if_diverged(self) -> None:
        """Raise the NaN guard's ``FloatingPointError`` now if a finished step was not finite.

        With ``check_finite_timing="next_step"`` (the default on a GPU) the guard reads a
        step's checks one step late, so that the host never waits for the GPU: a callback
        that reads a step's outputs or the weights calls this first. It syncs the device
        when a check is unread: call it where you sync anyway.
        """
        if self._finite_guard is not None:
            self._finite_guard.raise_if_diverged(type(self).__name__, self._likely_cause)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.raise_if_diverged()  # before the file is written: no checkpoint after a divergence

    def on_validation_start(self) -> None:
        self.raise_if_diverged()

    def on_train_epoch_end(self) -> None:
        self.raise_if_diverged()

    def on_train_end(self) -> None:
        self.raise_if_diverged()  # a fit never ends as finished after a non-finite last step

    # ------------------------------------------------------------------ optimizer
    def _groups(
        self, name: str, module: nn.Module, lr: float, decay: bool = True
    ) -> list[dict[str, Any]]:
        params = [p for p in module.parameters() if p.requires_grad]
        wd = self.hparams.weight_decay if decay else 0.0
        if not self.hparams.exclude_bn_bias_from_wd:
            return [
                {
                    "name": name,
                    "params": params,
                    "lr": lr,
                    "weight_decay": wd,
                    "lars_adaptation": True,
                }
            ]
        # BatchNorm gammas/betas and biases are the 1-d parameters.
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        groups = [
            {"name": name, "params": decay, "lr": lr, "weight_decay": wd, "lars_adaptation": True}
        ]
        if no_decay:
            groups.append(
                {
                    "name": f"{name}_no_wd",
                    "params": no_decay,
                    "lr": lr,
                    "weight_decay": 0.0,
                    "lars_adaptation": False,
                }
            )
        return groups

    def schedule_lengths(self) -> tuple[int, int]:
        """(total optimizer steps, warm-up optimizer steps) of this fit, from the trainer.

        Counted in optimizer steps, so they stay right under ``accumulate_grad_batches``.
        ``schedule_epochs`` (when set) fixes the length whatever the trainer stops at.
        """
        trainer = self.trainer
        estimated = trainer.estimated_stepping_batches  # also sets up the training loader
        batches = trainer.num_training_batches
        known = math.isfinite(batches) and batches > 0
        steps_per_epoch = math.ceil(batches / trainer.accumulate_grad_batches) if known else None
        schedule_epochs = self.hparams.get("schedule_epochs")
        if schedule_epochs is not None:
            if steps_per_epoch is None:
                raise ValueError("schedule_epochs needs a training loader of known length")
            total = schedule_epochs * steps_per_epoch
        else:
            total = estimated
            if not math.isfinite(total):
                raise ValueError(
                    "the lr schedule needs a finite training length: set trainer.max_epochs, "
                    "max_steps or the model's schedule_epochs"
                )
        total = max(1, int(total))
        if steps_per_epoch is None:  # iterable data of unknown length: fall back on max_epochs
            steps_per_epoch = total / max(1, trainer.max_epochs or 1)
        warmup = int(round(self.hparams.warmup_epochs * steps_per_epoch))
        return total, min(warmup, total)

    def _optimizer_groups(self) -> tuple[list[dict[str, Any]], list[bool]]:
        """The optimizer's parameter groups from ``param_groups()`` and, for each, whether the
        schedule applies; every trainable parameter must be in exactly one group."""
        owner: dict[int, str] = {}
        groups: list[dict[str, Any]] = []
        scheduled: list[bool] = []
        for name, spec in self.param_groups().items():
            for pname, param in spec.module.named_parameters():
                if param.requires_grad and id(param) in owner:
                    raise ValueError(
                        f"{type(self).__name__}.param_groups(): parameter {pname!r} of group {name!r} "
                        f"is in group {owner[id(param)]!r} too; every parameter belongs to one group"
                    )
                owner[id(param)] = name
            lr = self.hparams.lr if spec.fixed_lr is None else spec.fixed_lr
            new = self._groups(name, spec.module, lr, spec.weight_decay)
            groups += new
            scheduled += [spec.fixed_lr is None] * len(new)
        missing = [
            pname
            for pname, param in self.named_parameters()
            if param.requires_grad and id(param) not in owner
        ]
        if missing:
            shown = ", ".join(missing[:5]) + (
                f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            )
            raise ValueError(
                f"{type(self).__name__}: trainable parameters in no optimizer group: {shown}. "
                "Declare their module in param_groups() (or set requires_grad=False if it is not trained)"
            )
        keep = [i for i, g in enumerate(groups) if g["params"]]
        return [groups[i] for i in keep], [scheduled[i] for i in keep]

    def configure_optimizers(self) -> dict[str, Any]:
        lr = self.hparams.lr
        groups, scheduled = self._optimizer_groups()
        if self.hparams.optimizer == "lars":
            opt: torch.optim.Optimizer = LARS(
                groups,
                lr=lr,
                momentum=self.hparams.momentum,
                nesterov=self.hparams.nesterov,
                eta=self.hparams.lars_eta,
            )
        else:
            opt = torch.optim.SGD(
                groups, lr=lr, momentum=self.hparams.momentum, nesterov=self.hparams.nesterov
            )
        total, warmup = self.schedule_lengths()
        schedule = _WarmupCosine(total, warmup, self.hparams.min_lr_ratio)
        restored = getattr(self, "_restored_schedule", None)
        if restored and (restored.get("total_steps"), restored.get("warmup_steps")) != (
            total,
            warmup,
        ):
            self._schedule_changed = True
            rank_zero_warn(
                f"resuming on a schedule of {total} optimizer steps ({warmup} of warm-up) where the "
                f"checkpoint's run had {restored.get('total_steps')} ({restored.get('warmup_steps')}): "
                "the config's trainer.max_epochs (or schedule_epochs) differs, so the learning rate "
                "jumps to this schedule. To stop early and resume on one schedule, set "
                "model.init_args.schedule_epochs to the full length in both runs"
            )
        lambdas = [schedule if s else _Constant() for s in scheduled]
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda=lambdas)
        # interval "step": Lightning steps it once per OPTIMIZER step (not per micro-batch).
        return {
            "optimizer": opt,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }
