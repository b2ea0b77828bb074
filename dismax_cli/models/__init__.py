"""Backbones with one contract: ``forward_features`` maps images ``(B, C_in, H, W)`` to
``features (B, D)`` after the last BN-ReLU and global average pooling; ``num_features`` is ``D``.

Build them by name with :func:`build_backbone` (see :data:`BACKBONES`), join one to a head with
:class:`Classifier`. All are randomly initialised; nothing is downloaded.

References:
    He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", arXiv:1512.03385.
    Huang, Liu, van der Maaten, Weinberger. "Densely Connected Convolutional Networks",
    arXiv:1608.06993.
    Zagoruyko, Komodakis. "Wide Residual Networks", arXiv:1605.07146.
"""

from __future__ import annotations

from dismax_cli.models.base import MIN_IMAGE_SIZE, VALID_IN_CHANNELS, Backbone, Classifier
from dismax_cli.models.convnet import ConvNet
from dismax_cli.models.densenet import DenseNetBC100, densenet_bc_100
from dismax_cli.models.registry import BACKBONES, BackboneSpec, build_backbone, list_backbones
from dismax_cli.models.resnet import CifarResNet, resnet18, resnet34
from dismax_cli.models.wrn import WideResNet, wrn_28_10

__all__ = [
    "BACKBONES",
    "MIN_IMAGE_SIZE",
    "VALID_IN_CHANNELS",
    "Backbone",
    "BackboneSpec",
    "CifarResNet",
    "Classifier",
    "ConvNet",
    "DenseNetBC100",
    "WideResNet",
    "build_backbone",
    "densenet_bc_100",
    "list_backbones",
    "resnet18",
    "resnet34",
    "wrn_28_10",
]
