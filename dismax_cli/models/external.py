"""Backbones from torchvision and timm: ``--model torchvision:NAME`` and ``--model timm:NAME``.

Any torchvision classification model (``torchvision.models.list_models(module=
torchvision.models)``) or timm model (``timm.list_models()``) is built with random weights
(``weights=None`` / ``pretrained=False``, nothing is downloaded) and the run's class count, and
its final ``nn.Linear`` is replaced by the method's head with
:func:`~dismax_cli.adapters.replace_head` (METHOD.md §1). The model takes the dataset's image
size as it is (grey images are repeated to 3 channels for torchvision models; timm models are
built with ``in_chans`` = the dataset's channels). ImageNet models on 8×8 digits run but are not
sensible; a model that cannot take the images at all is refused before training.

``--model`` checks the spelling while the command line is parsed (without torch); whether the
NAME exists is checked when the run is configured (:func:`check_model_name`, exit 2).
"""

from __future__ import annotations

import difflib
from typing import Any

import torch
from torch import nn

from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q

#: The prefixes of models built by other libraries.
EXTERNAL_SOURCES = ("torchvision", "timm")
TIMM_INSTALL = 'pip install -e ".[timm]" (or pip install timm)'
_HOW_TO_LIST = {
    "torchvision": (
        "list them with python -c \"import torchvision.models as m; "
        'print(m.list_models(module=m))"'
    ),
    "timm": "list them with python -c \"import timm; print(timm.list_models('resnet*'))\"",
}


def split_model(name: str) -> tuple[str | None, str]:
    """``"timm:resnet18"`` -> ``("timm", "resnet18")``; a built-in name -> ``(None, name)``."""
    source, sep, rest = name.partition(":")
    if sep and source in EXTERNAL_SOURCES:
        return source, rest
    return None, name


def is_external(name: str) -> bool:
    """Whether ``name`` is a ``torchvision:NAME`` or ``timm:NAME`` model."""
    return isinstance(name, str) and split_model(name)[0] is not None


def model_name_problem(name: Any, builtin: list[str] | tuple[str, ...]) -> str | None:
    """What is wrong with the spelling of a ``--model`` value, or None (no torch import).

    Accepts a built-in backbone name from ``builtin``, ``torchvision:NAME`` or ``timm:NAME``.
    """
    if not isinstance(name, str):
        return f"model {q(name)} is not a name"
    source, rest = split_model(name)
    if source is None:
        if name in builtin:
            return None
        return (
            f"unknown model {q(name)}: choose one of {', '.join(builtin)}, torchvision:NAME or "
            "timm:NAME"
        )
    if not rest.strip():
        return f"model {q(name)} has no model name after '{source}:': e.g. {source}:resnet18"
    if rest != rest.strip():
        return (
            f"model {q(name)} has a space around its name {q(rest.strip())}: write "
            f"{source}:{rest.strip()}"
        )
    return None


def _torchvision_names() -> list[str]:
    import torchvision.models as tvm

    return list(tvm.list_models(module=tvm))


def _timm() -> Any:
    try:
        import timm
    except ImportError:
        raise DismaxError(
            f"--model timm:... needs timm, which is not installed: {TIMM_INSTALL}"
        ) from None
    return timm


def check_model_name(name: str, builtin: list[str] | tuple[str, ...]) -> None:
    """Check that ``name`` is a built-in backbone or an existing torchvision/timm model.

    Raises:
        InvalidValueError: (key ``model``) for a malformed or unknown name; the message says
            how to list the valid names and suggests close ones.
        DismaxError: for ``timm:NAME`` when timm is not installed (naming the install command).
    """
    from dismax_cli.config import InvalidValueError

    problem = model_name_problem(name, builtin)
    if problem:
        raise InvalidValueError("model", problem)
    source, rest = split_model(name)
    if source is None:
        return
    if source == "torchvision":
        known = _torchvision_names()
        exists = rest in known
    else:
        timm = _timm()
        exists = bool(timm.is_model(rest))
        known = [] if exists else list(timm.list_models())
    if not exists:
        close = difflib.get_close_matches(rest, known, n=3)
        hint = f" (did you mean {', '.join(f'{source}:{c}' for c in close)}?)" if close else ""
        raise InvalidValueError(
            "model",
            f"unknown {source} classification model {q(rest)}{hint}: {_HOW_TO_LIST[source]}",
        )


class ExternalClassifier(nn.Module):
    """A torchvision or timm model whose classifier is a method's head: images -> logits.

    Attributes:
        net: the library's model (its final ``nn.Linear`` replaced by the head).
        in_channels: the dataset's channels; grey images are repeated to the model's
            ``net_channels`` (3 for torchvision) before ``net``.
        head: the method's head inside ``net`` (its input is the features).

    Shape:
        - images: ``(B, in_channels, H, W)`` float.
        - output: ``(B, C)`` logits.
    """

    def __init__(
        self, net: nn.Module, *, head_name: str, in_channels: int, net_channels: int
    ) -> None:
        super().__init__()
        self.net = net
        self.head_name = head_name
        self.in_channels = int(in_channels)
        self.net_channels = int(net_channels)

    @property
    def head(self) -> nn.Module:
        """The method's head (a submodule of ``net``)."""
        return self.net.get_submodule(self.head_name)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.in_channels != self.net_channels:
            images = images.expand(-1, self.net_channels, -1, -1)
        out = self.net(images)
        if not isinstance(out, torch.Tensor):  # GoogLeNet/Inception in training: (logits, aux)
            out = out[0]
        return out


def build_external(
    name: str, *, method: str, num_classes: int, channels: int, image_size: int
) -> nn.Module:
    """Build ``torchvision:NAME`` / ``timm:NAME`` with random weights and the method's head.

    Call inside a seeded RNG scope (the engine's ``build_model`` does): the weights come from
    torch's global generator.

    Args:
        name: ``torchvision:NAME`` or ``timm:NAME``.
        method: a registered method (its head replaces the model's final ``nn.Linear``).
        num_classes: C, the number of classes.
        channels: the dataset's image channels (1 or 3).
        image_size: the dataset's image side; a forward pass of two zero images of that size
            checks that the model takes them.

    Returns:
        An ``nn.Module`` mapping ``(B, channels, image_size, image_size)`` to logits ``(B, C)``.

    Raises:
        InvalidValueError: for an unknown model name.
        DismaxError: when timm is absent, the model has no ``nn.Linear`` classifier, or it
            cannot take images of this size.
    """
    from dismax_cli.adapters import find_classifier, replace_head

    check_model_name(name, ())
    source, rest = split_model(name)
    if source == "torchvision":
        import torchvision.models as tvm

        net = tvm.get_model(rest, weights=None, num_classes=num_classes)
        net_channels = 3
    else:
        net = _timm().create_model(
            rest, pretrained=False, num_classes=num_classes, in_chans=channels
        )
        net_channels = channels
    head_name, _ = find_classifier(net)  # replace_head puts the head at this name
    replace_head(net, method, num_classes=num_classes)
    model = ExternalClassifier(
        net, head_name=head_name, in_channels=channels, net_channels=net_channels
    )
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(2, channels, image_size, image_size))
    except Exception as exc:  # noqa: BLE001 - any failure means these images do not fit
        reason = " ".join(str(exc).split())[:200]
        raise DismaxError(
            f"model {q(name)} cannot take {image_size}x{image_size} images with {channels} "
            f"channel(s) ({type(exc).__name__}: {reason}): use a dataset of larger images or "
            "another model"
        ) from None
    model.train()
    return model


__all__ = [
    "EXTERNAL_SOURCES",
    "ExternalClassifier",
    "TIMM_INSTALL",
    "build_external",
    "check_model_name",
    "is_external",
    "model_name_problem",
    "split_model",
]
