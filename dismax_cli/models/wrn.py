"""WideResNet-28-10 as the paper's reference code builds it: pre-activation wide blocks, 640-d.

Depth 28 gives ``(28 - 4) / 6 = 4`` blocks in each of three groups of widths 160, 320 and 640
(16·k, 32·k, 64·k with k = 10) after a 3×3 stem with 16 channels; the second and third groups
start with stride 2. The block is the reference code's (the common PyTorch WRN,
meliketoy/wide-resnet.pytorch, which the DisMax reference reuses; METHOD.md §6):

    out = conv2(relu(bn2(conv1(relu(bn1(x)))))) + shortcut(x)

with a bias on every convolution (the stem's too), the stride on the *second* 3×3 convolution,
and the shortcut taken from the block's raw input ``x`` — the identity, or a 1×1 convolution
(with bias, same stride) where the width or the stride changes. The network ends with BN-ReLU
and global average pooling. No dropout (the reference's rate is 0). 36,482,880 parameters
without a classifier (36,489,290 with a 10-class linear one).

Initialisation as the reference: convolution weights Kaiming-normal with fan-out (std
``sqrt(2 / fan_out)``), convolution biases PyTorch's default ``U(-1/sqrt(fan_in),
1/sqrt(fan_in))`` (the reference leaves them), BatchNorm weight 1 and bias 0. One departure:
the reference builds its final BatchNorm with ``momentum=0.9``, which in PyTorch's convention
makes the running statistics 90 % the last training batch; here it keeps PyTorch's 0.1 (see the
README's Design notes).

References:
    Zagoruyko, Komodakis. "Wide Residual Networks", arXiv:1605.07146 (2016).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dismax_cli.models.base import Backbone, init_conv_bn

WRN_DEPTH = 28
WRN_WIDEN_FACTOR = 10
#: Momentum of every BatchNorm, the final one included (PyTorch's default; the reference's final
#: BatchNorm uses 0.9, see the module docstring).
WRN_BN_MOMENTUM = 0.1


class WideBasicBlock(nn.Module):
    """The reference code's pre-activation wide basic block (METHOD.md §6).

    ``out = conv2(relu(bn2(conv1(relu(bn1(x)))))) + shortcut(x)``: both 3×3 convolutions and the
    1×1 shortcut convolution have biases; the stride sits on ``conv2`` (and on the shortcut);
    the shortcut is the identity when the shape is kept, else a 1×1 convolution of the raw
    input ``x`` (not of ``relu(bn1(x))``).

    Args:
        in_planes: Input channels.
        out_planes: Output channels.
        stride: Stride of the second convolution (and of the shortcut).

    Shape:
        - input: ``(B, in_planes, H, W)``.
        - output: ``(B, out_planes, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(self, in_planes: int, out_planes: int, *, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes, momentum=WRN_BN_MOMENTUM)
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=3, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(out_planes, momentum=WRN_BN_MOMENTUM)
        self.conv2 = nn.Conv2d(
            out_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=True
        )
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Conv2d(
                in_planes, out_planes, kernel_size=1, stride=stride, bias=True
            )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(inputs)))
        out = self.conv2(F.relu(self.bn2(out)))
        residual = inputs if self.shortcut is None else self.shortcut(inputs)
        return out + residual


class WideResNet(Backbone):
    """WideResNet-``depth``-``widen_factor`` for small images, as the reference code builds it.

    A 3×3 stem with bias, three groups of :class:`WideBasicBlock` (the second and third start
    with stride 2), BN-ReLU and global average pooling (METHOD.md §6). Convolution weights are
    Kaiming-normal with fan-out, their biases keep PyTorch's default uniform initialisation,
    BatchNorms start at weight 1 and bias 0, all with momentum 0.1.

    Args:
        depth: Total depth, ``6n + 4``.
        widen_factor: Width multiplier ``k``.
        in_channels: Image channels (1 or 3).

    Shape:
        - images: ``(B, in_channels, H, W)``.
        - output: ``(B, 64 * widen_factor)``.

    Raises:
        ValueError: If ``depth`` is not ``6n + 4`` or ``widen_factor < 1`` (programming errors:
            the registry only builds WRN-28-10).

    References:
        Zagoruyko, Komodakis. "Wide Residual Networks", arXiv:1605.07146.
    """

    def __init__(
        self, *, depth: int = WRN_DEPTH, widen_factor: int = WRN_WIDEN_FACTOR, in_channels: int = 3
    ) -> None:
        if (depth - 4) % 6 != 0 or depth < 10 or widen_factor < 1:
            raise ValueError(
                f"WideResNet needs depth = 6n + 4 and widen_factor >= 1, got "
                f"depth={depth}, widen_factor={widen_factor}"
            )
        widths = (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        super().__init__(num_features=widths[-1], in_channels=in_channels)
        blocks_per_group = (depth - 4) // 6
        self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=3, padding=1, bias=True)
        groups: list[nn.Module] = []
        for group, (in_planes, out_planes) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            first_stride = 1 if group == 0 else 2
            blocks = [
                WideBasicBlock(
                    in_planes if index == 0 else out_planes,
                    out_planes,
                    stride=first_stride if index == 0 else 1,
                )
                for index in range(blocks_per_group)
            ]
            groups.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = groups
        self.bn = nn.BatchNorm2d(widths[-1], momentum=WRN_BN_MOMENTUM)
        self.pool = nn.AdaptiveAvgPool2d(1)
        init_conv_bn(self)

    def _forward_features(self, images: torch.Tensor) -> torch.Tensor:
        out = self.conv1(images)
        out = self.block3(self.block2(self.block1(out)))
        out = F.relu(self.bn(out))
        return torch.flatten(self.pool(out), 1)


def wrn_28_10(*, in_channels: int = 3) -> WideResNet:
    """Build WideResNet-28-10; 640-d features.

    References:
        Zagoruyko, Komodakis. "Wide Residual Networks", arXiv:1605.07146.
    """
    return WideResNet(depth=28, widen_factor=10, in_channels=in_channels)


__all__ = ["WRN_BN_MOMENTUM", "WideBasicBlock", "WideResNet", "wrn_28_10"]
