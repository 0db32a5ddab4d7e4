"""Synchronised BatchNorm for any process-group backend (docs/distributed.md).

Under data parallelism BatchNorm must normalise with the statistics of the global batch,
or a W-process run trains another model than one process. ``torch.nn.SyncBatchNorm``
does this with fused CUDA kernels but refuses CPU tensors, so CPU runs (gloo) use
:class:`GlobalBatchNorm`: two differentiable all-reduces per layer, the per-channel sums
(for the mean) and then the centred squared sums (for the variance, two-pass like
BatchNorm itself, so nothing cancels). :func:`convert_sync_batchnorm` picks torch's on
CUDA and this one elsewhere; both keep the parameter and buffer names of ``BatchNorm*d``,
so checkpoints move freely between world sizes.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ssl_norms.distributed import all_reduce_sum, rank_and_world

__all__ = ["GlobalBatchNorm", "convert_sync_batchnorm"]


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm over the batch of all processes; plain BatchNorm on one process or in eval.

    Training-mode output and running-statistics updates equal those of ``BatchNorm*d`` on
    the concatenated global batch: biased variance to normalise, unbiased variance
    (n / (n - 1)) in ``running_var``, ``momentum=None`` as a cumulative average.
    Works for inputs [N, C] and [N, C, *] alike.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"GlobalBatchNorm expects [N, C, ...] inputs, got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not self.training or rank_and_world()[1] == 1:
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = x.new_tensor([x.numel() / x.shape[1]])
        sums = all_reduce_sum(torch.cat([x.sum(dims), count]))
        n = sums[-1]
        mean = sums[:-1] / n
        centred = x - mean.view(shape)
        var = all_reduce_sum(centred.square().sum(dims)) / n
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), float(n.detach()))
        return out

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, n: float) -> None:
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * (n / max(n - 1.0, 1.0))
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)


def _convert(module: nn.Module, cls: type[_BatchNorm]) -> nn.Module:
    if isinstance(module, _BatchNorm) and not isinstance(module, cls):
        new = cls(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
        )
        if module.affine:
            # The same Parameter objects: optimizer groups built before stay valid.
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean = module.running_mean
            new.running_var = module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        new_child = _convert(child, cls)
        if new_child is not child:
            setattr(module, name, new_child)
    return module


def convert_sync_batchnorm(module: nn.Module, cuda: bool) -> nn.Module:
    """Replace every BatchNorm of ``module`` (in place) by a synchronised one.

    ``torch.nn.SyncBatchNorm`` when training runs on CUDA, :class:`GlobalBatchNorm`
    otherwise. Parameters and buffers are kept (the same objects), so optimizer groups
    stay valid; call it before DDP wraps the module.
    """
    if cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert(module, GlobalBatchNorm)
