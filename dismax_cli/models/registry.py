"""The backbone registry: names, one-line descriptions, feature widths and builders."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q
from dismax_cli.models.base import MIN_IMAGE_SIZE, VALID_IN_CHANNELS, Backbone
from dismax_cli.models.convnet import ConvNet
from dismax_cli.models.densenet import densenet_bc_100
from dismax_cli.models.imagenet_resnet import IMAGENET_SIDE, resnet18_224, resnet50_224
from dismax_cli.models.resnet import resnet18, resnet34
from dismax_cli.models.wrn import wrn_28_10


@dataclass(frozen=True)
class BackboneSpec:
    """One registered backbone.

    Attributes:
        name: The registry name (``--backbone`` value).
        description: One line for CLI help.
        num_features: The feature width ``D`` it produces.
        build: ``build(in_channels, image_size)`` -> a fresh, randomly initialised backbone.
        image_size: The input side it is built for (224 for the ImageNet-stem ResNets, which
            selects the 224-pixel recipe), or None to take the data's.
    """

    name: str
    description: str
    num_features: int
    build: Callable[[int, int], Backbone]
    image_size: int | None = None

    def __str__(self) -> str:
        return self.description


def _build_convnet(in_channels: int, image_size: int) -> Backbone:
    return ConvNet(in_channels=in_channels, image_size=image_size)


def _build_resnet18(in_channels: int, image_size: int) -> Backbone:
    return resnet18(in_channels=in_channels)


def _build_resnet34(in_channels: int, image_size: int) -> Backbone:
    return resnet34(in_channels=in_channels)


def _build_resnet18_224(in_channels: int, image_size: int) -> Backbone:
    return resnet18_224(in_channels=in_channels)


def _build_resnet50_224(in_channels: int, image_size: int) -> Backbone:
    return resnet50_224(in_channels=in_channels)


def _build_densenet_bc_100(in_channels: int, image_size: int) -> Backbone:
    return densenet_bc_100(in_channels=in_channels)


def _build_wrn_28_10(in_channels: int, image_size: int) -> Backbone:
    return wrn_28_10(in_channels=in_channels)


#: Registered backbones, name -> spec (``str(spec)`` is its one-line description).
BACKBONES: Mapping[str, BackboneSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            BackboneSpec(
                "convnet", "small 3-stage CNN (32/64/128), fast on CPU, 128-d", 128, _build_convnet
            ),
            BackboneSpec(
                "resnet18",
                "ResNet-18, CIFAR stem (3x3 conv, no max-pool), 512-d",
                512,
                _build_resnet18,
            ),
            BackboneSpec(
                "resnet34",
                "ResNet-34, CIFAR stem (3x3 conv, no max-pool), 512-d",
                512,
                _build_resnet34,
            ),
            BackboneSpec(
                "densenet_bc_100",
                "DenseNet-BC-100, growth 12, compression 0.5, 342-d",
                342,
                _build_densenet_bc_100,
            ),
            BackboneSpec("wrn_28_10", "WideResNet-28-10, 640-d", 640, _build_wrn_28_10),
            BackboneSpec(
                "resnet18_224",
                "ResNet-18, ImageNet stem (7x7/2 conv, max-pool), 224 px recipe, 512-d",
                512,
                _build_resnet18_224,
                IMAGENET_SIDE,
            ),
            BackboneSpec(
                "resnet50_224",
                "ResNet-50, ImageNet stem (7x7/2 conv, max-pool), 224 px recipe, 2048-d",
                2048,
                _build_resnet50_224,
                IMAGENET_SIDE,
            ),
        )
    }
)


def list_backbones() -> list[str]:
    """Return the registered backbone names in registry order."""
    return list(BACKBONES)


def default_image_size(name: str) -> int | None:
    """The input side backbone ``name`` is built for (None: the data's, or not a built-in)."""
    spec = BACKBONES.get(name)
    return None if spec is None else spec.image_size


def build_backbone(name: str, *, in_channels: int = 3, image_size: int = 32) -> Backbone:
    """Build a randomly initialised backbone by name (no pretrained weights, no downloads).

    Args:
        name: A name from :func:`list_backbones`.
        in_channels: Image channels, 1 (grey-scale) or 3 (RGB); the stem is built for it.
        image_size: The image side the data will have (at least 8); ``convnet`` uses it to
            decide how many poolings fit, the others accept any side of at least 8.

    Returns:
        The backbone, in training mode, on the CPU.

    Raises:
        DismaxError: If ``name`` is unknown (the message lists the valid names), ``in_channels``
            is not 1 or 3, or ``image_size`` is below 8.
    """
    spec = BACKBONES.get(name)
    if spec is None:
        raise DismaxError(f"unknown backbone {q(name)}: choose one of {', '.join(BACKBONES)}")
    if isinstance(in_channels, bool) or in_channels not in VALID_IN_CHANNELS:
        raise DismaxError(
            f"in_channels={q(in_channels)} is not supported: use 1 (grey-scale) or 3 (RGB)"
        )
    if isinstance(image_size, bool) or not isinstance(image_size, int):
        raise DismaxError(f"image_size={q(image_size)} is not an integer: pass the side in pixels")
    if image_size < MIN_IMAGE_SIZE:
        raise DismaxError(
            f"image_size={image_size} is too small: backbones need images of at least "
            f"{MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE}; resize or pad the images"
        )
    return spec.build(int(in_channels), image_size)


__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "build_backbone",
    "default_image_size",
    "list_backbones",
]
