"""The backbone contract and the classifier that joins a backbone to a method's head.

Every backbone maps a float image batch ``(B, C_in, H, W)`` to penultimate ``features (B, D)``,
taken after the last BN-ReLU and global average pooling, and states ``D`` as ``num_features``.
A head (:mod:`dismax_cli.core.heads`, or any module mapping ``(B, D) -> (B, C)``) turns features
into logits.
"""

from __future__ import annotations

import torch
from torch import nn

from dismax_cli.errors import DismaxError

#: The smallest image side every backbone accepts (three 2× down-samplings still leave 1×1).
MIN_IMAGE_SIZE = 8

#: The input channel counts every backbone accepts: grey-scale and RGB.
VALID_IN_CHANNELS = (1, 3)


class Backbone(nn.Module):
    """Base class of all feature extractors: images ``(B, C_in, H, W)`` -> ``features (B, D)``.

    Subclasses implement :meth:`_forward_features`; :meth:`forward_features` checks the input
    first, and :meth:`forward` is the same as :meth:`forward_features`.

    Attributes:
        num_features: ``D``, the width of the feature vector.
        in_channels: ``C_in``, the number of image channels the stem expects (1 or 3).

    Shape:
        - images: ``(B, C_in, H, W)`` float, ``H, W >= 8``; any memory format.
        - output: ``(B, D)`` with ``D = num_features``.
    """

    num_features: int
    in_channels: int

    def __init__(self, *, num_features: int, in_channels: int) -> None:
        super().__init__()
        self.num_features = int(num_features)
        self.in_channels = int(in_channels)

    def _forward_features(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Compute penultimate features after the last BN-ReLU and global average pooling.

        Args:
            images: Normalised float images.

        Returns:
            The features, one row per image.

        Shape:
            - images: ``(B, C_in, H, W)``.
            - output: ``(B, num_features)``.

        Raises:
            DismaxError: If ``images`` is not a 4-d float tensor with ``in_channels`` channels
                and sides of at least 8 pixels.
        """
        check_images(images, in_channels=self.in_channels)
        return self._forward_features(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`forward_features`.

        Shape:
            - images: ``(B, C_in, H, W)``.
            - output: ``(B, num_features)``.
        """
        return self.forward_features(images)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, num_features={self.num_features}"


#: The class bound at import: a test that builds models with ``nn.BatchNorm2d`` swapped for
#: ``nn.Identity`` (tests/ddp_worker.py) must not make this check match or fail.
_BATCH_NORM = nn.BatchNorm2d


def init_conv_bn(model: nn.Module) -> None:
    """Initialise every ``Conv2d`` weight of ``model`` (Kaiming normal, fan-out, ReLU gain) and
    every ``BatchNorm2d`` to weight 1, bias 0 (PyTorch's own BN default, made explicit).

    The CIFAR backbones' recipe (He et al., arXiv:1502.01852; METHOD.md §6's backbones). Draws
    from torch's global generator in module order, so seeded builds repeat exactly.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, _BATCH_NORM):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def check_images(images: torch.Tensor, *, in_channels: int) -> None:
    """Check that ``images`` is a float batch ``(B, in_channels, H, W)`` with ``H, W >= 8``.

    Raises:
        DismaxError: Naming the shape or dtype received and the one expected.
    """
    if images.ndim != 4 or images.shape[1] != in_channels:
        raise DismaxError(
            f"images of shape {tuple(images.shape)} do not fit this backbone: expected "
            f"(B, {in_channels}, H, W); build the backbone with in_channels={in_channels} "
            "matching the dataset"
        )
    if not images.is_floating_point():
        raise DismaxError(
            f"images have dtype {images.dtype}: convert them to float and normalise them first"
        )
    if min(images.shape[2], images.shape[3]) < MIN_IMAGE_SIZE:
        raise DismaxError(
            f"images of size {images.shape[2]}x{images.shape[3]} are too small: backbones need "
            f"sides of at least {MIN_IMAGE_SIZE} pixels; resize or pad the images"
        )


class Classifier(nn.Module):
    """A backbone followed by a head: images -> features -> logits.

    Args:
        backbone: The feature extractor.
        head: Maps ``features (B, D)`` to ``logits (B, C)``, e.g. ``nn.Linear(D, C)`` or a
            head from :mod:`dismax_cli.core.heads`.

    Raises:
        DismaxError: If the head declares an input width (``num_features`` or ``in_features``)
            different from ``backbone.num_features``.

    Shape:
        - images: ``(B, C_in, H, W)``.
        - output: ``(B, C)`` logits.
    """

    def __init__(self, backbone: Backbone, head: nn.Module) -> None:
        super().__init__()
        head_width = getattr(head, "num_features", getattr(head, "in_features", None))
        if isinstance(head_width, int) and head_width != backbone.num_features:
            raise DismaxError(
                f"head expects {head_width} features but the backbone gives "
                f"{backbone.num_features}: build the head with num_features="
                f"{backbone.num_features}"
            )
        self.backbone = backbone
        self.head = head

    @property
    def num_features(self) -> int:
        """The backbone's feature width ``D``."""
        return self.backbone.num_features

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Compute the backbone's penultimate features.

        Shape:
            - images: ``(B, C_in, H, W)``.
            - output: ``(B, D)``.
        """
        return self.backbone.forward_features(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Compute logits.

        Shape:
            - images: ``(B, C_in, H, W)``.
            - output: ``(B, C)``.
        """
        return self.head(self.backbone.forward_features(images))


__all__ = [
    "MIN_IMAGE_SIZE",
    "VALID_IN_CHANNELS",
    "Backbone",
    "Classifier",
    "check_images",
    "init_conv_bn",
]
