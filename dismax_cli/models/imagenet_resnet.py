"""ResNet-18 and ResNet-50 with torchvision's standard ImageNet stem, for 224-pixel inputs.

``resnet18_224`` / ``resnet50_224``: torchvision's ``resnet18`` / ``resnet50`` exactly as built
for ImageNet (7×7 stride-2 convolution, 3×3 stride-2 max-pool, four stages, global average
pooling), random weights (``weights=None``, nothing downloaded) and no ``fc``: a 224×224 image
reaches the last stage at 7×7 and the features are 512-d (ResNet-18) or 2048-d (ResNet-50).
Their default input side is 224, which selects the 224-pixel recipe (README "224-pixel
recipes"); the paper's ImageNet row trains ResNet-18 this way (METHOD.md §6).

Initialisation: torchvision's own (Kaiming-normal fan-out convolutions, BatchNorm 1/0) with
``zero_init_residual=True`` (the last BatchNorm of every residual branch starts at 0), as the
CIFAR ResNets here. A 1-channel stem replaces ``conv1`` by the same convolution on one channel.

References:
    He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", arXiv:1512.03385.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from dismax_cli.models.base import Backbone

if TYPE_CHECKING:
    import torchvision

#: The input side these backbones are built for.
IMAGENET_SIDE = 224


class ImageNetResNet(Backbone):
    """A torchvision ResNet with the standard stem and no classifier: images -> features.

    Args:
        builder: ``torchvision.models.resnet18`` or ``resnet50`` (called with ``weights=None``).
        num_features: 512 (basic blocks) or 2048 (bottlenecks).
        in_channels: Image channels (1 or 3).

    Shape:
        - images: ``(B, in_channels, H, W)``, ``H, W >= 8`` (224 intended).
        - output: ``(B, num_features)``.

    References:
        He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", arXiv:1512.03385.
    """

    def __init__(
        self,
        builder: Callable[..., torchvision.models.ResNet],
        *,
        num_features: int,
        in_channels: int = 3,
    ) -> None:
        super().__init__(num_features=num_features, in_channels=in_channels)
        net = builder(weights=None, zero_init_residual=True)
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.fc = nn.Identity()
        self.net = net

    def _forward_features(self, images: torch.Tensor) -> torch.Tensor:
        # conv1-bn1-relu-maxpool, layer1..4, avgpool, flatten; fc = identity.
        return self.net(images)


def resnet18_224(*, in_channels: int = 3) -> ImageNetResNet:
    """ResNet-18 (basic blocks [2, 2, 2, 2]) with the ImageNet stem; 512-d features.

    References:
        He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", arXiv:1512.03385.
    """
    import torchvision  # on first use: it loads torch._dynamo (seconds per process)

    return ImageNetResNet(torchvision.models.resnet18, num_features=512, in_channels=in_channels)


def resnet50_224(*, in_channels: int = 3) -> ImageNetResNet:
    """ResNet-50 (bottlenecks [3, 4, 6, 3]) with the ImageNet stem; 2048-d features.

    References:
        He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", arXiv:1512.03385.
    """
    import torchvision  # on first use: it loads torch._dynamo (seconds per process)

    return ImageNetResNet(torchvision.models.resnet50, num_features=2048, in_channels=in_channels)


__all__ = ["IMAGENET_SIDE", "ImageNetResNet", "resnet18_224", "resnet50_224"]
