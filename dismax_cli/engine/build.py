"""What a run is built from: the classifier, its ID transform, the optimiser and the loss.

METHOD.md §1 (heads), §2 (losses), §6 (SGD with Nesterov momentum, weight decay on all weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dismax_cli.core.methods import get_method
from dismax_cli.data import ImageSet, ImageTransform
from dismax_cli.data import make_transform as make_data_transform
from dismax_cli.data.stream import StreamSet
from dismax_cli.data.transforms import recipe_for
from dismax_cli.engine.config import TrainConfig
from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q
from dismax_cli.models import Classifier, build_backbone
from dismax_cli.models.external import build_external, is_external
from dismax_cli.models.registry import default_image_size


def build_model(
    *, method: str, model: str, num_classes: int, channels: int, image_size: int, seed: int
) -> nn.Module:
    """Build backbone + the method's head, weights drawn from ``seed`` (global RNG untouched).

    ``model`` is a built-in backbone (a :class:`Classifier` comes back) or
    ``torchvision:NAME`` / ``timm:NAME`` (the library's model with random weights and C
    outputs, its final ``nn.Linear`` replaced by the method's head: METHOD.md §1).

    Returns:
        A module mapping images ``(B, channels, image_size, image_size)`` to logits ``(B, C)``.

    Raises:
        DismaxError: for an unknown method or backbone, timm missing for ``timm:NAME``, or a
            model that cannot take images of this size.
    """
    spec = get_method(method)
    if spec.make_head is None:
        raise DismaxError(
            f"method {q(method)} trains no model of its own (it is an ensemble of "
            f"{spec.members_of} runs): train {spec.members_of} instead"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if is_external(model):
            return build_external(
                model,
                method=method,
                num_classes=num_classes,
                channels=channels,
                image_size=image_size,
            )
        backbone = build_backbone(model, in_channels=channels, image_size=image_size)
        head = spec.make_head(backbone.num_features, num_classes)
    return Classifier(backbone, head)


def run_image_size(config: TrainConfig) -> int | None:
    """The model input side a run asks for: ``image_size``, else the backbone's, else None."""
    if config.image_size is not None:
        return config.image_size
    return default_image_size(config.model)


def make_transform(
    train: ImageSet | StreamSet, *, image_size: int | None = None, recipe: str = "cifar"
) -> ImageTransform:
    """The ID transform: ``image_size`` (default the training images' side), the training
    images' channels, the recipe's or known or computed statistics (README "224-pixel
    recipes")."""
    return make_data_transform(
        train, image_size=image_size, channels=train.image_shape[2], recipe=recipe
    )


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """SGD over all of ``model``'s parameters with the run's lr, momentum (Nesterov) and decay."""
    return torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.momentum > 0,
        weight_decay=config.weight_decay,
    )


def make_loss(config: TrainConfig) -> nn.Module:
    """The method's loss with the run's entropic scale and FPR weight (METHOD.md §2)."""
    return get_method(config.method).make_loss(config.entropic_scale, config.alpha)


@dataclass
class TrainingSetup:
    """What one training run needs before its first batch (shared by ``fit`` and speed scripts)."""

    model: nn.Module  # a Classifier, or an ExternalClassifier for torchvision:/timm: models
    transform: ImageTransform
    optimizer: torch.optim.SGD
    loss_fn: nn.Module
    device: torch.device
    recipe: str = "cifar"  # "imagenet" from 224 px: RandomResizedCrop + flip (README)


def build_training(
    config: TrainConfig, train: ImageSet | StreamSet, device: torch.device
) -> TrainingSetup:
    """Model (seeded, on ``device``), transform, optimiser and loss of a run on ``train``.

    The input side is :func:`run_image_size` (or the data's); from 224 px the 224-pixel
    recipe applies (:func:`~dismax_cli.data.transforms.recipe_for`).

    Raises:
        DismaxError: for an unknown method or backbone.
    """
    size = run_image_size(config)
    recipe = recipe_for(size)
    transform = make_transform(train, image_size=size, recipe=recipe)
    model = build_model(
        method=config.method,
        model=config.model,
        num_classes=train.num_classes,
        channels=transform.channels,
        image_size=transform.image_size,
        seed=config.seed,
    ).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    return TrainingSetup(model, transform, optimizer, make_loss(config), device, recipe)


__all__ = [
    "TrainingSetup",
    "build_model",
    "build_training",
    "make_loss",
    "make_optimizer",
    "make_transform",
    "run_image_size",
]
