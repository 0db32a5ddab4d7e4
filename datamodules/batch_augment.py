"""Batched SSL augmentation: whole uint8 batches, on the device where the model runs.

The same recipes as the per-image torchvision path (``datamodules.transforms``), applied to
a batch at once:

1. random resized crop with torchvision's sampling procedure (area fraction uniform in
   ``crop_scale``, aspect ratio log-uniform in ``crop_ratio``, 10 tries, then the central
   crop clamped to the ratio range) and its pixel mapping (bilinear, half-pixel centres,
   samples clamped to the crop), the horizontal flip folded into the same sampling grid:
   one ``torch.nn.functional.grid_sample`` for the batch; or, with ``uint8_crop`` on a
   CPU (the loader workers of ``augment_on="loader_batched"``), torchvision's own uint8
   crop one image at a time (``resized_crop_uint8``, the per-image path's bits);
2. colour jitter with probability ``jitter_p``: brightness, contrast, saturation and hue
   factors from torchvision's ``ColorJitter`` distributions, in a random order drawn per
   sample as torchvision does per image: at each of the four positions one in-place pass
   of the blends over all rows (``blend_steps_``, per-row coefficients) and one hue shift
   (``adjust_hue_``, the closed form of the HSV round trip) over the rows whose step there
   is the hue;
3. grayscale, Gaussian blur (``gaussian_blur``: sigma per sample, kernel 10% of the side,
   reflect padding) and solarize (>= 128 / 255), each with its own probability;
4. normalisation with the DataModule's mean / std, written into one ``[2, B, 3, S, S]``
   output (in shared memory when a loader worker runs it, ``datamodules.shared_memory``).

Per-sample parameters: sample ``idx`` of epoch ``e`` draws its uniforms from a CPU
``torch.Generator`` seeded with ``sample_seed(seed, e, idx)`` (``datamodules.datasets``),
so its two views depend neither on the batch it is in nor on the number of processes. The
parameters (a few numbers per sample) are computed on the CPU; the pixels are processed
batched on the images' device.

Why the CPU path works in chunks and in place: on a CPU the cost is memory, not arithmetic.
Profiled on one core (256 SimCLR pairs at 128 px), a fresh batch-sized temporary cost about
2.4 ns per float in page faults against 0.1-0.2 ns for an in-place operation, and kernels
on bool masks (``torch.where``, ``masked_fill``) about 4 ns per element against 0.2 ns for
the same with 0/1 float masks. So a CPU batch runs in chunks of about ``CPU_CHUNK_VALUES``
floats (32 samples at 128 px, a whole CIFAR batch at 32 px), each step in place, without
bool masks: 1.3-2.0 s -> 0.43 s per 256 pairs. The rows that take a step are gathered
and scattered as whole blocks (``index_select`` / ``index_copy_``; advanced indexing
``x[rows]`` copies element by element, 5x slower), and where two passes can be one
(``addcmul`` for a blend and for the normalisation) they are: 0.43 -> about 0.36 s per
256 pairs at 128 px (SimCLR, BYOL, one thread). A GPU runs the whole batch at once. On one
thread, PyTorch's vectorised uint8 bilinear kernel (channels-last) crops 32 images at
128 px in 3.4 ms where ``grid_sample`` on floats takes 6.8 ms; its per-call cost makes
it slower below ``UINT8_CROP_MIN_SIDE`` and it does not use the intra-op threads (run from
several Python threads, OpenMP's thread teams oversubscribe the cores), so it is the
choice of single-threaded loader workers only: 0.44 -> 0.38 s per 256 BYOL pairs.

Why not kornia (``kornia.enhance``, ``kornia.filters``), whose functional ops take
per-sample parameter tensors and run on CPU and GPU alike, with torchvision's colour
formulas: each returns a new batch-sized tensor and uses bool masks, which the measurements
above make 2-9x slower on a CPU than the in-place forms here (the hue: 9x), and its
``gaussian_blur2d`` (a depthwise convolution over rows x channels) took 24 ms for 32 rows at
128 px on one thread against 8.5 ms for the shifted sums of ``gaussian_blur`` (the whole
augmentation: 12-13% faster per batch). All formulas here are torchvision's, checked
against its functionals per row (tests/datamodules/test_batch_augment.py). Not kornia's augmentation *modules*: ``ColorJitter`` draws one order
of the four steps per batch (torchvision: per image), and their parameter generators use
the global RNG, not a seed per sample. Not kornia's ``crop_and_resize``: it maps the box
corners onto the output corners, so it cannot clamp the samples to the crop as torchvision
does, and it solves and applies a homography per image: one view of 256 CIFAR images took
5.1 ms against 0.9 ms for the ``grid_sample`` here (2-core development machine).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch

from datamodules.datasets import sample_seed
from datamodules.transforms import AugmentationConfig, blur_kernel_size, validate_config

__all__ = [
    "BatchAugment",
    "ViewParams",
    "apply_view",
    "colour_and_filters",
    "draw_uniforms",
    "resized_crop",
    "resized_crop_uint8",
    "view_params",
]

# Layout of one view's uniforms (fixed, so that a recipe's fields never shift each other).
_AREA = slice(0, 10)  # crop: 10 tries of (area fraction, log aspect ratio), as torchvision
_LOG_RATIO = slice(10, 20)
_TOP, _LEFT, _FLIP = 20, 21, 22
_JITTER, _FACTORS, _ORDER = 23, slice(24, 28), slice(28, 32)
_GRAY, _BLUR, _SIGMA, _SOLARIZE = 32, 33, 34, 35
#: Uniforms drawn per view and sample.
N_UNIFORMS = 36
#: On a CPU, floats per pass (both views): about 12 MiB, so that each step's temporaries
#: are served from the heap and the cache rather than from fresh pages (see the module
#: docstring; measured fastest at 3-6 M on a 2-core machine).
CPU_CHUNK_VALUES = 3 * 2**20
#: On a CPU, output sides from which the crop runs on the uint8 images, one image at a time
#: (``resized_crop_uint8``), rather than as one float ``grid_sample`` over the batch: the
#: per-image call costs tens of microseconds, which only larger images repay (one thread,
#: 256 images: 32 px 11 ms against 6 ms for ``grid_sample``, 64 px 19 ms against 34 ms).
UINT8_CROP_MIN_SIDE = 48
_CROP_TRIES = 10
# torchvision's grayscale weights (rgb_to_grayscale).
_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)
# torchvision's RandomSolarize(threshold=128) on uint8 images.
SOLARIZE_THRESHOLD = 128 / 255


def _to_device(t: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``t`` (a small CPU tensor of per-row parameters) on ``device`` in ``dtype``, without
    waiting for that device: a blocking copy to a GPU waits for all its queued work (the
    previous training step's) first, and the views take dozens of such copies. So does a
    ``non_blocking`` one from pageable memory, which the driver may stage only after a
    stream sync (CUDA runtime API, "API synchronization behavior"): to a GPU the values go
    through pinned memory (PyTorch's caching host allocator keeps each block until its
    copy is done)."""
    t = t.to(dtype)
    if device.type == "cuda" and t.device.type == "cpu":
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


def _like(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``t`` on ``x``'s device, in ``x``'s dtype (``_to_device``)."""
    return _to_device(t, x.device, x.dtype)


def draw_uniforms(seed: int, epoch: int, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """``[B, 2, N_UNIFORMS]`` float64 uniforms in [0, 1): row b from ``sample_seed(seed, epoch,
    indices[b])`` alone (view 1 first), so it does not depend on the rest of the batch."""
    idx = torch.as_tensor(indices).reshape(-1).tolist()
    out = torch.empty(len(idx), 2, N_UNIFORMS, dtype=torch.float64)
    g = torch.Generator()
    for b, i in enumerate(idx):
        g.manual_seed(sample_seed(seed, epoch, int(i)))
        torch.rand(2, N_UNIFORMS, generator=g, dtype=torch.float64, out=out[b])
    return out


@dataclass
class ViewParams:
    """One view's parameters for R rows (CPU tensors).

    ``top, left, height, width``: the crop box in source pixels (int64); ``flip``,
    ``jitter``, ``gray``, ``blur``, ``solarize``: whether each step applies (bool);
    ``factors``: (brightness, contrast, saturation, hue) jitter factors (float64 ``[R, 4]``);
    ``active``: which of those four steps the recipe has (strength > 0; bool ``[R, 4]``);
    ``order``: the jitter steps' order, a permutation of 0..3 per row (int64 ``[R, 4]``);
    ``sigma``: blur standard deviation in pixels (float64).
    """

    top: torch.Tensor
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor
    flip: torch.Tensor
    jitter: torch.Tensor
    factors: torch.Tensor
    active: torch.Tensor
    order: torch.Tensor
    gray: torch.Tensor
    blur: torch.Tensor
    sigma: torch.Tensor
    solarize: torch.Tensor

    def __len__(self) -> int:
        return len(self.top)

    def rows(self, index: slice) -> ViewParams:
        """The rows ``index`` of every field."""
        return ViewParams(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def _crop_boxes(
    u: torch.Tensor, cfg: AugmentationConfig, height: int, width: int
) -> tuple[torch.Tensor, ...]:
    """torchvision's ``RandomResizedCrop.get_params``, vectorised over rows of ``u``."""
    area = height * width
    lo, hi = cfg.crop_scale
    log_lo, log_hi = math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1])
    target = area * (lo + (hi - lo) * u[:, _AREA])
    ratio = torch.exp(log_lo + (log_hi - log_lo) * u[:, _LOG_RATIO])
    # Python's round() in torchvision and torch.round both round half to even.
    w = torch.round(torch.sqrt(target * ratio)).long()
    h = torch.round(torch.sqrt(target / ratio)).long()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.long().argmax(dim=1, keepdim=True)  # the first try that fits
    found = ok.any(dim=1)
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)
    # Fallback after 10 misses: the central crop, clamped to the ratio range.
    in_ratio = width / height
    if in_ratio < cfg.crop_ratio[0]:
        fw, fh = width, int(round(width / cfg.crop_ratio[0]))
    elif in_ratio > cfg.crop_ratio[1]:
        fw, fh = int(round(height * cfg.crop_ratio[1])), height
    else:
        fw, fh = width, height
    w = torch.where(found, w, torch.full_like(w, fw))
    h = torch.where(found, h, torch.full_like(h, fh))
    # randint(0, H - h + 1) as floor(u * (H - h + 1)); the clamp guards u * n rounding up to n.
    top = torch.minimum((u[:, _TOP] * (height - h + 1)).floor().long(), height - h)
    left = torch.minimum((u[:, _LEFT] * (width - w + 1)).floor().long(), width - w)
    top = torch.where(found, top, torch.full_like(top, (height - fh) // 2))
    left = torch.where(found, left, torch.full_like(left, (width - fw) // 2))
    return top, left, h, w


def view_params(u: torch.Tensor, cfg: AugmentationConfig, height: int, width: int) -> ViewParams:
    """One view's parameters from its uniforms ``u`` ``[R, N_UNIFORMS]`` (see ``ViewParams``).

    The distributions are torchvision's (``transforms.v2``): crop as ``RandomResizedCrop``,
    jitter factors uniform in [max(0, 1 - s), 1 + s] (hue in [-s, s]) with a uniformly
    random order (``ColorJitter``), blur sigma uniform in ``blur_sigma``, and each step
    applied when its uniform is below its probability (``RandomApply`` & co.).
    """
    validate_config(cfg)
    u = u.to(torch.float64)
    rows = len(u)
    top, left, h, w = _crop_boxes(u, cfg, height, width)
    b, c, s, hue = cfg.jitter
    lo = torch.tensor(
        [max(0.0, 1 - b), max(0.0, 1 - c), max(0.0, 1 - s), -hue], dtype=torch.float64
    )
    hi = torch.tensor([1 + b, 1 + c, 1 + s, hue], dtype=torch.float64)
    lo_sigma, hi_sigma = cfg.blur_sigma
    return ViewParams(
        top=top,
        left=left,
        height=h,
        width=w,
        flip=u[:, _FLIP] < cfg.flip_p,
        jitter=u[:, _JITTER] < cfg.jitter_p,
        factors=lo + (hi - lo) * u[:, _FACTORS],
        active=torch.tensor([x > 0 for x in cfg.jitter]).expand(rows, 4).clone(),
        order=torch.argsort(u[:, _ORDER], dim=1),  # a uniformly random permutation per row
        gray=u[:, _GRAY] < cfg.grayscale_p,
        blur=u[:, _BLUR] < cfg.blur_p,
        sigma=lo_sigma + (hi_sigma - lo_sigma) * u[:, _SIGMA],
        solarize=u[:, _SOLARIZE] < cfg.solarize_p,
    )


def _sample_positions(start, length, flip, size: int) -> torch.Tensor:
    """Source coordinates ``[R, size]`` of torchvision's bilinear resize of a crop: half-pixel
    centres, clamped to the crop (``interpolate(align_corners=False)``), reversed by a flip."""
    k = torch.arange(size, dtype=torch.float64) + 0.5
    start, length = start.double()[:, None], length.double()[:, None]
    pos = start + k * length / size - 0.5
    pos = torch.minimum(torch.maximum(pos, start), start + length - 1)
    return torch.where(flip[:, None], pos.flip(1), pos)


def resized_crop(images: torch.Tensor, p: ViewParams, size: int) -> torch.Tensor:
    """Crop and resize (and flip) float ``images`` ``[R, C, H, W]`` to ``[R, C, size, size]``.

    Bilinear with torchvision's pixel mapping, as one ``grid_sample`` over the batch (why
    not kornia: the module docstring). No antialiasing: the same as torchvision's when a
    crop is not larger than the output (always the case for images stored at the output
    size, as CIFAR and Flowers102).
    """
    height, width = images.shape[-2:]
    xs = _sample_positions(p.left, p.width, p.flip, size)
    ys = _sample_positions(p.top, p.height, torch.zeros_like(p.flip), size)
    # grid_sample's align_corners=True: -1 and 1 are the centres of the edge pixels. The
    # [R, size] coordinates travel to the device; the [R, size, size, 2] grid is built there.
    gx = _like(xs * (2 / max(width - 1, 1)) - 1, images)
    gy = _like(ys * (2 / max(height - 1, 1)) - 1, images)
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
    return torch.nn.functional.grid_sample(
        images, grid, mode="bilinear", padding_mode="border", align_corners=True
    )


def resized_crop_uint8(
    images: torch.Tensor, p: ViewParams, size: int, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Crop and resize (and flip) uint8 ``images`` ``[R, 3, H, W]`` to uint8
    ``[R, 3, size, size]`` on a CPU: torchvision's ``resized_crop`` of a uint8 image
    (bilinear, antialiased when a crop is larger than the output), one image at a time,
    the same bits as the per-image path's ``RandomResizedCrop``.

    PyTorch's uint8 bilinear kernel (vectorised for 3-4 channels) is fastest on
    channels-last images: pass ``images`` in that format. One image is too small for the
    kernel's own threads, so this runs on one core (loader workers run one thread each).
    Written into ``out`` (uint8 ``[R, 3, size, size]``) when given.
    """
    if out is None:
        out = torch.empty(len(images), 3, size, size, dtype=torch.uint8)
    columns = (p.top, p.left, p.height, p.width, p.flip)
    for b, (top, left, h, w, flip) in enumerate(zip(*(c.tolist() for c in columns), strict=True)):
        crop = images[b : b + 1, :, top : top + h, left : left + w]
        resized = torch.nn.functional.interpolate(
            crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        out[b] = resized[0].flip(-1) if flip else resized[0]
    return out


def _rows(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor | None:
    """The indices of ``mask``'s (a CPU mask's) true rows, on ``x``'s device."""
    rows = mask.nonzero().squeeze(1)
    return _to_device(rows, x.device, rows.dtype) if len(rows) else None


def _on_rows(x: torch.Tensor, mask: torch.Tensor, fn) -> torch.Tensor:
    """``x`` with its rows ``mask`` replaced by ``fn`` of them: a gather and a scatter for
    some rows, ``fn(x)`` itself (no copies) when every row takes the step.

    ``index_select`` / ``index_copy_`` rather than ``x[rows]``: whole rows, copied as
    blocks; advanced indexing goes element by element (on a CPU thread 5x slower for 10
    of 32 rows at 128 px)."""
    if bool(mask.all()):
        return fn(x)
    rows = _rows(mask, x)
    if rows is not None:
        x.index_copy_(0, rows, fn(x.index_select(0, rows)))
    return x


def _float_mask(x: torch.Tensor, op, other) -> torch.Tensor:
    """``op(x, other)`` as 0.0 / 1.0 in ``x``'s dtype: bool masks take the slow
    element-wise kernels on a CPU (``torch.where`` on a bool mask: about 20x an
    in-place ``mul_`` per element, measured on the 2-core machine), float masks do not."""
    return op(x, other, out=torch.empty_like(x))


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """torchvision's ``rgb_to_grayscale`` of float ``x`` ``[R, 3, H, W]``: ``[R, 1, H, W]``,
    ``0.2989 R + 0.587 G + 0.114 B`` summed in that order."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return r.mul(_GRAY_WEIGHTS[0]).add_(g, alpha=_GRAY_WEIGHTS[1]).add_(b, alpha=_GRAY_WEIGHTS[2])


def blend_steps_(x: torch.Tensor, step: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast or saturation, one per row of ``x`` ``[R, 3, H, W]`` (in place):
    ``step`` ``[R]`` is 0, 1 or 2 for the row's step (-1: the row stays as it is) and
    ``factor`` ``[R]`` its factor f. torchvision's blends
    ``clamp(f * x + (1 - f) * other, 0, 1)``, ``other`` zero (brightness), the mean of
    the grayscale image (contrast) or the grayscale image (saturation).

    One pass over all rows with per-row coefficients instead of a gather per step: a row
    that stays gets f = 1 and 0 * other, i.e. ``x`` exactly (``x`` in [0, 1]).
    """
    step, factor = step.cpu(), factor.cpu().double()
    applies = step >= 0
    a = torch.where(applies, factor, torch.ones_like(factor))
    zero = torch.zeros_like(factor)
    shape = (len(x), 1, 1, 1)
    other = None
    if (step >= 1).any():  # a contrast or saturation row: the grayscale image is needed
        gray = grayscale(x)
        mean = gray.mean(dim=(-2, -1), keepdim=True)
        mean_w = _like(torch.where(step == 1, 1 - factor, zero), x).view(shape)
        gray_w = _like(torch.where(step == 2, 1 - factor, zero), x).view(shape)
        other = gray.mul_(gray_w).add_(mean.mul_(mean_w))
    if other is None:
        x.mul_(_like(a, x).view(shape))
    else:  # one pass: other + a * x
        torch.addcmul(other, x, _like(a, x).view(shape), out=x)
    return x.clamp_(0.0, 1.0)


def adjust_hue(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's ``adjust_hue`` (the hue shifted by ``factor`` of the colour circle in
    HSV, value and saturation kept) for a batch ``[R, 3, H, W]`` with per-row factors; a new
    tensor (``adjust_hue_`` works in place)."""
    return adjust_hue_(x.clone(), factor)


def adjust_hue_(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``adjust_hue`` in place, without the round trip through HSV.

    With V = max and V * S = max - min = C fixed, channel n of the result is
    ``min + C * clamp(|k - 2| - 1, 0, 1)`` with ``k = (n + 6 h') mod 6`` (n = 5, 3, 1 for
    R, G, B; h' the shifted hue): the closed form of HSV -> RGB. The hue before the shift
    is 6 h = (G - B) / C, 2 + (B - R) / C or 4 + (R - G) / C after the channel that holds
    the maximum, red first, then green, then blue, as torchvision decides. Equal to
    torchvision's to float32 round-off (tests/datamodules/test_batch_augment.py); about
    9x faster than kornia's HSV round trip on a CPU thread at 128 px.
    """
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    maxc = torch.maximum(r, g)
    torch.maximum(maxc, b, out=maxc)
    minc = torch.minimum(r, g)
    torch.minimum(minc, b, out=minc)
    chroma = maxc - minc
    # Which channel holds the maximum, as 0/1 floats in torchvision's order of precedence.
    is_r = _float_mask(r, torch.eq, maxc)
    is_g = _float_mask(g, torch.eq, maxc)
    is_g.addcmul_(is_g, is_r, value=-1.0)
    is_b = torch.rsub(is_r, 1.0).sub_(is_g)
    hue6 = torch.sub(g, b).mul_(is_r)
    diff = torch.sub(b, r)
    hue6.addcmul_(diff, is_g)
    hue6.addcmul_(torch.sub(r, g, out=diff), is_b)
    # Grey pixels (C = 0) have a zero numerator; their hue does not matter (S = 0).
    hue6.div_(chroma.clamp_min(1e-30)).add_(is_g, alpha=2.0).add_(is_b, alpha=4.0)
    # n + 6 keeps n + 6 h' positive (6 h' is in [-4, 8]), so the mod 6 is a frac() (about
    # 6x faster than fmod on a CPU thread, whose kernel is not vectorised).
    # n (11, 9, 7 for R, G, B) and the shift 6 f, per row: one [R, 3] term.
    n = torch.arange(11.0, 6.0, -2.0, dtype=torch.float64).view(1, 3)
    offset = _like(n + 6.0 * factor.double().cpu().view(-1, 1), x).view(-1, 3, 1, 1)
    torch.add(hue6, offset, out=x)  # r, g and b are no longer needed
    x.div_(6.0).frac_().mul_(6.0).sub_(2.0).abs_().sub_(1.0).clamp_(0.0, 1.0)
    return torch.addcmul(minc, x, chroma, out=x)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """torchvision's ``gaussian_blur`` of ``x`` ``[R, C, H, W]`` with a sigma per row
    (``sigma`` ``[R]``, the same in both directions) and an odd ``kernel_size``: the kernel
    ``exp(-t^2 / (2 sigma^2))`` for t = -(k-1)/2 .. (k-1)/2, normalised to sum 1, after
    reflect padding; a new tensor.

    Separable, as sums of ``kernel_size`` shifted slices weighted per row (``addcmul_``):
    2.8x faster than kornia's ``gaussian_blur2d`` (a depthwise convolution over R x C
    groups) on a CPU thread for 32 rows at 128 px with k = 13 (8.5 ms against 24 ms), and
    equal to it to float32 round-off.
    """
    rows, half = len(x), kernel_size // 2
    t = torch.linspace(-half, half, kernel_size, device=x.device, dtype=x.dtype)
    weights = torch.exp(-0.5 * (t / _like(sigma, x)[:, None]) ** 2)
    weights = (weights / weights.sum(1, keepdim=True)).view(rows, 1, 1, 1, kernel_size)
    height, width = x.shape[-2:]
    padded = torch.nn.functional.pad(x, (half, half, half, half), mode="reflect")
    across = padded[..., 0:width] * weights[..., 0]  # [R, C, H + 2 half, W]
    for k in range(1, kernel_size):
        across.addcmul_(padded[..., k : k + width], weights[..., k])
    out = across[..., 0:height, :] * weights[..., 0]
    for k in range(1, kernel_size):
        out.addcmul_(across[..., k : k + height, :], weights[..., k])
    return out


def solarize_(x: torch.Tensor, threshold: float = SOLARIZE_THRESHOLD) -> torch.Tensor:
    """torchvision's ``solarize`` of float ``x`` in place: ``1 - x`` where ``x >= threshold``."""
    above = _float_mask(x, torch.ge, threshold)
    return x.mul_(above.mul(-2.0).add_(1.0)).add_(above)


def colour_and_filters(x: torch.Tensor, p: ViewParams, size: int) -> torch.Tensor:
    """Colour jitter (per-row order), grayscale, blur and solarize of float ``x``
    ``[R, 3, size, size]`` in [0, 1], in place where a row's step applies; returns the result
    (``x`` itself, or a new tensor when every row is blurred).

    Each position of the jitter order is one in-place pass of the blends over all rows
    (``blend_steps_``) and one of the hue shift over the rows whose step there is the hue;
    grayscale, blur and solarize each run once on the rows that take them. In-place
    operations matter on a CPU: each fresh temporary the size of a batch costs a page
    fault per 4 KiB, more than the arithmetic.
    """
    jitter = p.jitter[:, None] & p.active.gather(1, p.order)  # [R, position]
    for position in range(4):
        step = torch.where(jitter[:, position], p.order[:, position], -1)
        blend = step.clone().masked_fill_(step == 3, -1)
        if (blend >= 0).any():
            blend_steps_(x, blend, p.factors.gather(1, step.clamp(min=0)[:, None]).squeeze(1))
        hue = step == 3
        x = _on_rows(x, hue, lambda y, f=p.factors[hue, 3]: adjust_hue_(y, f))
    x = _on_rows(x, p.gray, lambda y: y.copy_(grayscale(y).expand_as(y)))
    sigma = _like(p.sigma[p.blur], x)
    x = _on_rows(x, p.blur, lambda y: gaussian_blur(y, sigma, blur_kernel_size(size)))
    x = _on_rows(x, p.solarize, solarize_)
    return x


def apply_view(images: torch.Tensor, p: ViewParams, size: int) -> torch.Tensor:
    """One augmented view of float ``images`` ``[R, 3, H, W]`` in [0, 1] (any device): in
    [0, 1], ``[R, 3, size, size]``, not normalised."""
    return colour_and_filters(resized_crop(images, p, size), p, size)


class BatchAugment(torch.nn.Module):
    """Two augmented, normalised views of a uint8 batch, per-sample seeded.

    ``forward(images, indices, epoch)`` with ``images`` uint8 ``[B, 3, H, W]`` on any device
    and ``indices`` the samples' dataset indices returns ``[view1, view2]``, float32
    ``[B, 3, image_size, image_size]`` on the images' device.

    Args:
        views: the (view 1, view 2) recipes (``transforms.resolve_augmentation``).
        image_size: side of the output views.
        mean: per-channel mean of the normalisation.
        std: per-channel std of the normalisation.
        seed: the DataModule's seed (with the epoch and the index: ``sample_seed``).
        uint8_crop: on a CPU, for output sides of at least ``UINT8_CROP_MIN_SIDE``, crop
            the uint8 images one at a time (``resized_crop_uint8``: torchvision's per-image
            crop, bit for bit) instead of one float ``grid_sample`` over the batch
            (``resized_crop``). Fastest on one thread, as in loader workers (2x at 128 px);
            ``grid_sample`` uses a CPU's intra-op threads and runs on a GPU. The crops agree
            to within one uint8 level where a crop is not larger than the output.
    """

    def __init__(
        self,
        views: tuple[AugmentationConfig, AugmentationConfig],
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        seed: int = 0,
        uint8_crop: bool = False,
    ):
        super().__init__()
        if len(views) != 2:
            raise ValueError(f"views is a pair (view 1, view 2) of recipes, got {len(views)}")
        self.views = (validate_config(views[0]), validate_config(views[1]))
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.uint8_crop = bool(uint8_crop)
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1))

    def params(
        self, indices: Sequence[int] | torch.Tensor, epoch: int, height: int, width: int
    ) -> tuple[ViewParams, ViewParams]:
        """Both views' parameters for the samples ``indices`` of ``epoch``."""
        u = draw_uniforms(self.seed, epoch, indices)
        return (
            view_params(u[:, 0], self.views[0], height, width),
            view_params(u[:, 1], self.views[1], height, width),
        )

    def chunk_rows(self, images: torch.Tensor) -> int:
        """Samples per pass: the whole batch on a GPU; on a CPU about ``CPU_CHUNK_VALUES``
        floats of both views, so that each step's temporaries stay small (see the module
        docstring)."""
        if images.device.type != "cpu":
            return max(1, len(images))
        return max(1, CPU_CHUNK_VALUES // (2 * 3 * self.image_size**2))

    @torch.no_grad()
    def forward(
        self,
        images: torch.Tensor,
        indices: Sequence[int] | torch.Tensor,
        epoch: int,
        out: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """``[view1, view2]`` of ``images``; written into ``out`` (float32 ``[2, B, 3, S, S]``
        on the images' device, e.g. in shared memory) when given."""
        if not (images.dtype == torch.uint8 and images.ndim == 4 and images.shape[1] == 3):
            raise ValueError(
                f"BatchAugment takes uint8 images [B, 3, H, W], got {images.dtype} "
                f"{tuple(images.shape)}"
            )
        if len(indices) != len(images):
            raise ValueError(f"{len(indices)} indices for {len(images)} images")
        batch, size = len(images), self.image_size
        shape = (2, batch, 3, size, size)
        if out is None:
            out = torch.empty(shape, device=images.device)
        elif out.shape != shape or out.dtype != torch.float32 or out.device != images.device:
            raise ValueError(
                f"out must be float32 {list(shape)} on {images.device}, got {out.dtype} "
                f"{list(out.shape)} on {out.device}"
            )
        height, width = images.shape[-2:]
        first, second = self.params(indices, epoch, height, width)
        # (x - mean) / std as one pass, shift + scale * x (equal to float32 round-off).
        scale = _to_device(1 / self.std.double(), images.device, torch.float32)
        shift = _to_device(-self.mean.double() / self.std.double(), images.device, torch.float32)
        step = self.chunk_rows(images)
        on_uint8 = self.crops_uint8(images)
        if on_uint8:
            images = images.contiguous(memory_format=torch.channels_last)
            # Channels-last crops: the kernel's own output layout, so that each image is
            # written as one block; the float conversion below transposes once per chunk.
            crops = torch.empty(min(step, batch), 3, size, size, dtype=torch.uint8)
            crops = crops.contiguous(memory_format=torch.channels_last)
            floats = torch.empty(crops.shape)
        for start in range(0, batch, step):
            rows = slice(start, start + step)
            x = None if on_uint8 else images[rows].float().div_(255)
            for view, params in enumerate((first, second)):
                p = params.rows(rows)
                if on_uint8:
                    crop = resized_crop_uint8(images[rows], p, size, out=crops[: len(p)])
                    crop = floats[: len(p)].copy_(crop).div_(255)
                else:
                    crop = resized_crop(x, p, size)
                v = colour_and_filters(crop, p, size)
                torch.addcmul(shift, v, scale, out=out[view, rows])
        return list(out.unbind(0))

    def crops_uint8(self, images: torch.Tensor) -> bool:
        """Whether the crop of ``images`` runs on their uint8 pixels (``uint8_crop``, a CPU,
        an output side of at least ``UINT8_CROP_MIN_SIDE``)."""
        return (
            self.uint8_crop
            and images.device.type == "cpu"
            and self.image_size >= UINT8_CROP_MIN_SIDE
        )
