"""A small, fast CNN for CPU smoke runs and tests (not from a paper).

Three conv-BN-ReLU stages of widths 32/64/128 with 2×2 max-pooling after the first two stages
while the feature map stays at least 4×4, then global average pooling. About 0.1M parameters;
it trains at well over a thousand 32×32 images per second on 2 CPU threads.
"""

from __future__ import annotations

import torch
from torch import nn

from dismax_cli.models.base import Backbone, init_conv_bn

#: Stage widths; the last one is ``num_features``.
CONVNET_WIDTHS: tuple[int, ...] = (32, 64, 128)


class ConvNet(Backbone):
    """Three conv-BN-ReLU stages, max-pooling while the map allows, global average pooling.

    Args:
        in_channels: Image channels (1 or 3).
        image_size: The expected image side; it decides how many 2× poolings fit (a pooling is
            kept only while the map before it is at least 8 pixels wide). Other sizes still
            work thanks to the global pooling.

    Shape:
        - images: ``(B, in_channels, H, W)``.
        - output: ``(B, 128)``.
    """

    def __init__(self, *, in_channels: int = 3, image_size: int = 32) -> None:
        super().__init__(num_features=CONVNET_WIDTHS[-1], in_channels=in_channels)
        layers: list[nn.Module] = []
        channels, size = in_channels, image_size
        for index, width in enumerate(CONVNET_WIDTHS):
            layers += [
                nn.Conv2d(channels, width, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            if index < len(CONVNET_WIDTHS) - 1 and size >= 8:
                layers.append(nn.MaxPool2d(kernel_size=2))
                size //= 2
            channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        init_conv_bn(self)

    def _forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(images)), 1)


__all__ = ["CONVNET_WIDTHS", "ConvNet"]
