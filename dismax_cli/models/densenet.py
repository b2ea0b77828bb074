"""DenseNet-BC-100 (k = 12) for 32×32 images, built from torchvision's ``DenseNet``.

torchvision's ``DenseNet(growth_rate=12, block_config=(16, 16, 16), num_init_features=24,
bn_size=4)`` gives exactly the paper's CIFAR dense blocks (BN-ReLU-1×1 conv to ``4k`` channels,
BN-ReLU-3×3 conv to ``k``) and transitions (BN-ReLU-1×1 conv-2×2 average pool) with compression
0.5, since each transition maps ``n`` channels to ``n // 2``: 24 + 16·12 = 216 -> 108,
108 + 192 = 300 -> 150, 150 + 192 = 342. What it cannot express is the CIFAR stem: its stem is a
7×7 stride-2 convolution, BN, ReLU and a 3×3 stride-2 max-pool. Here the convolution is
replaced by a 3×3 stride-1 convolution with 24 outputs and the BN, ReLU and max-pool are
removed, as in the paper (the first dense layer starts with its own BN-ReLU). The final
BN (``norm5``) is followed by ReLU and global average pooling: 342-d features.

Initialisation as the reference code (its ``DenseNet3``, METHOD.md §6): every convolution
Kaiming-normal with fan-out and the ReLU gain (std ``sqrt(2 / fan_out)``; torchvision's own
default is fan-in), every BatchNorm weight 1 and bias 0. torchvision's ``Linear`` classifier is
not part of the backbone (the method's head replaces it), so there is no linear bias to set.

References:
    Huang, Liu, van der Maaten, Weinberger. "Densely Connected Convolutional Networks",
    arXiv:1608.06993 (2016).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dismax_cli.models.base import Backbone, init_conv_bn

DENSENET_GROWTH_RATE = 12
DENSENET_BLOCK_CONFIG = (16, 16, 16)
DENSENET_STEM_CHANNELS = 2 * DENSENET_GROWTH_RATE
DENSENET_NUM_FEATURES = 342


class DenseNetBC100(Backbone):
    """DenseNet-BC with depth 100, growth rate 12, compression 0.5 and a 3×3 CIFAR stem.

    Convolutions are Kaiming-normal with fan-out (std ``sqrt(2 / fan_out)``), BatchNorms weight
    1 and bias 0, as the reference code initialises DenseNet-BC-100 (METHOD.md §6).

    Args:
        in_channels: Image channels (1 or 3).

    Shape:
        - images: ``(B, in_channels, H, W)``.
        - output: ``(B, 342)``.

    References:
        Huang, Liu, van der Maaten, Weinberger. "Densely Connected Convolutional Networks",
        arXiv:1608.06993.
    """

    def __init__(self, *, in_channels: int = 3) -> None:
        super().__init__(num_features=DENSENET_NUM_FEATURES, in_channels=in_channels)
        import torchvision  # on first use: it loads torch._dynamo (seconds per process)

        net = torchvision.models.DenseNet(
            growth_rate=DENSENET_GROWTH_RATE,
            block_config=DENSENET_BLOCK_CONFIG,  # type: ignore[arg-type]
            num_init_features=DENSENET_STEM_CHANNELS,
            bn_size=4,
            drop_rate=0.0,
        )
        features = net.features
        features.conv0 = nn.Conv2d(
            in_channels, DENSENET_STEM_CHANNELS, kernel_size=3, stride=1, padding=1, bias=False
        )
        del features.norm0, features.relu0, features.pool0
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        init_conv_bn(self)

    def _forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(F.relu(self.features(images))), 1)


def densenet_bc_100(*, in_channels: int = 3) -> DenseNetBC100:
    """Build DenseNet-BC-100 (k = 12); 342-d features.

    References:
        Huang, Liu, van der Maaten, Weinberger. "Densely Connected Convolutional Networks",
        arXiv:1608.06993.
    """
    return DenseNetBC100(in_channels=in_channels)


__all__ = ["DENSENET_NUM_FEATURES", "DenseNetBC100", "densenet_bc_100"]
