"""ResNet-18 and ResNet-34 with the CIFAR stem, built from torchvision.

torchvision's ImageNet ResNet with its 7×7 stride-2 stem replaced by a 3×3 stride-1 convolution,
its max-pool replaced by the identity and its ``fc`` removed, so a 32×32 image reaches the last
stage at 4×4 and the features are 512-d (METHOD.md §6).

Initialisation as the paper's reference code builds its ResNets (kuangliu/pytorch-cifar blocks
for ResNet-34, timm's ``resnet18`` for ImageNet): convolutions Kaiming-normal with fan-out
(std ``sqrt(2 / fan_out)``), BatchNorm weight 1 and bias 0, and the last BatchNorm weight of
every residual branch (``bn2`` of each basic block) 0, so every block starts as the identity on
its shortcut (Goyal et al., arXiv:1706.02677). The downsampling shortcut's BatchNorm keeps
weight 1.

References:
    He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", arXiv:1512.03385 (2015).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from dismax_cli.models.base import Backbone

if TYPE_CHECKING:
    import torchvision

RESNET_NUM_FEATURES = 512


class CifarResNet(Backbone):
    """A torchvision basic-block ResNet with the CIFAR stem and no classifier.

    Each residual block's last BatchNorm weight starts at 0 (METHOD.md §6; the reference code's
    initialisation), every other BatchNorm at weight 1 and bias 0, every convolution
    Kaiming-normal with fan-out.

    Args:
        builder: ``torchvision.models.resnet18`` or ``resnet34`` (called with ``weights=None``).
        in_channels: Image channels (1 or 3).

    Shape:
        - images: ``(B, in_channels, H, W)``.
        - output: ``(B, 512)``.

    References:
        He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", arXiv:1512.03385.
    """

    def __init__(
        self, builder: Callable[..., torchvision.models.ResNet], *, in_channels: int = 3
    ) -> None:
        super().__init__(num_features=RESNET_NUM_FEATURES, in_channels=in_channels)
        # zero_init_residual: bn2.weight = 0 in every BasicBlock (the reference's rule).
        net = builder(weights=None, zero_init_residual=True)
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        # Same initialisation torchvision gives its own convolutions.
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.maxpool = nn.Identity()
        net.fc = nn.Identity()
        self.net = net

    def _forward_features(self, images: torch.Tensor) -> torch.Tensor:
        # conv1-bn1-relu, layer1..4 (each block ends in ReLU), avgpool, flatten, fc = identity.
        return self.net(images)


def resnet18(*, in_channels: int = 3) -> CifarResNet:
    """Build ResNet-18 (blocks [2, 2, 2, 2]) with the CIFAR stem; 512-d features.

    References:
        He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", arXiv:1512.03385.
    """
    import torchvision  # on first use: it loads torch._dynamo (seconds per process)

    return CifarResNet(torchvision.models.resnet18, in_channels=in_channels)


def resnet34(*, in_channels: int = 3) -> CifarResNet:
    """Build ResNet-34 (blocks [3, 4, 6, 3]) with the CIFAR stem; 512-d features.

    References:
        He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", arXiv:1512.03385.
    """
    import torchvision  # on first use: it loads torch._dynamo (seconds per process)

    return CifarResNet(torchvision.models.resnet34, in_channels=in_channels)


__all__ = ["RESNET_NUM_FEATURES", "CifarResNet", "resnet18", "resnet34"]
