"""When the channels-last (NHWC) memory format is safe for a backbone on the CPU.

oneDNN's AVX2 kernel for the weight gradient of a 1x1 convolution with stride > 1 in
channels-last layout fails when the convolution has fewer than 8 input channels (one AVX2
register of float32): the backward pass hangs, aborts or segfaults, depending on the batch (torch 2.14.1 on AMD EPYC with AVX2; the ResNet-18
shortcut of ``layer2`` at ``backbone_width`` 4 has 4). Only toy widths have such a
convolution; for them the contiguous (NCHW) format costs nothing measurable.
"""

from __future__ import annotations

from torch import nn

#: The smallest input-channel count of a strided 1x1 convolution that oneDNN's channels-last
#: weight-gradient kernel handles (the AVX2 vector width in float32).
MIN_STRIDED_1X1_CHANNELS = 8


def channels_last_hazard(backbone: nn.Module) -> str | None:
    """The first convolution that rules out channels-last (a sentence naming it), or None."""
    for name, module in backbone.named_modules():
        if (
            isinstance(module, nn.Conv2d)
            and tuple(module.kernel_size) == (1, 1)
            and max(module.stride) > 1
            and module.in_channels < MIN_STRIDED_1X1_CHANNELS
        ):
            return (
                f"the strided 1x1 convolution {name or 'backbone'!r} has {module.in_channels} "
                f"input channels (< {MIN_STRIDED_1X1_CHANNELS}), and oneDNN's channels-last "
                "weight gradient for it hangs or crashes on AVX2 CPUs"
            )
    return None
