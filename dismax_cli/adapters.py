"""Put a method's head on any classification model: ``replace_head``.

The paper sells DisMax as a drop-in for the final ``nn.Linear`` + cross-entropy (METHOD.md §1).
:func:`replace_head` finds that layer in a model built elsewhere (torchvision, timm, your own)
and swaps it for the method's head with the same input width, so the model's ``forward`` returns
the head's logits and nothing else in the model changes.

How the classifier is found, in this order:

1. timm models: the module returned by ``model.get_classifier()`` when it is an ``nn.Linear``
   (timm's documented way to reach the classifier of any architecture).
2. Every other model: the last ``nn.Linear`` registered in the module tree. For torchvision's
   classification models this is the classifier: ``fc`` (ResNet, RegNet, Inception, GoogLeNet),
   ``classifier`` (DenseNet), ``classifier[-1]`` (EfficientNet, MobileNet, ConvNeXt, VGG,
   AlexNet), ``heads.head`` (VisionTransformer), ``head`` (Swin, MaxViT).

References:
    Macêdo, Zanchettin, Ludermir, arXiv:2205.05874 (2022), METHOD.md §1.
"""

from __future__ import annotations

import numbers

from torch import nn

from dismax_cli.core.methods import get_method
from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q


def find_classifier(model: nn.Module) -> tuple[str, nn.Linear]:
    """Return the qualified name and module of ``model``'s final classification ``nn.Linear``.

    Args:
        model: Any ``nn.Module``.

    Returns:
        ``(name, layer)`` with ``model.get_submodule(name) is layer``.

    Raises:
        DismaxError: when the model holds no ``nn.Linear`` (e.g. SqueezeNet's 1×1-convolution
            classifier); the message names the model's class and what was searched.
    """
    if not isinstance(model, nn.Module):
        raise DismaxError(
            f"replace_head needs a torch nn.Module, not a {type(model).__name__}: pass the model"
        )
    get_classifier = getattr(model, "get_classifier", None)
    if callable(get_classifier):
        try:
            candidate = get_classifier()
        except Exception:  # a model's own method with another meaning: fall back to the search
            candidate = None
        if isinstance(candidate, nn.Linear):
            for name, module in model.named_modules():
                if module is candidate and name:
                    return name, candidate
    if isinstance(model, nn.Linear):
        raise DismaxError(
            f"the model is a bare nn.Linear ({model.in_features} -> {model.out_features}): it "
            "cannot replace itself in place; build the head directly with "
            f"DisMaxHead({model.in_features}, {model.out_features})"
        )
    last: tuple[str, nn.Linear] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name:
            last = (name, module)
    if last is None:
        raise DismaxError(
            f"{type(model).__name__} has no nn.Linear classifier to replace (searched "
            "get_classifier() and every submodule): give the model a final nn.Linear, or build "
            "the head yourself with DisMaxHead(num_features, num_classes)"
        )
    return last


def replace_head(
    model: nn.Module, method: str = "dismax", *, num_classes: int | None = None
) -> nn.Module:
    """Replace ``model``'s final ``nn.Linear`` with the head of ``method``, in place.

    The new head takes the old layer's ``in_features`` and gives ``num_classes`` logits (default:
    the old layer's ``out_features``), on the old layer's device and dtype. Its parameters are
    freshly initialised as METHOD.md §1 says (prototypes N(0, 1), distance scale 1 for IsoMax+
    and DisMax; U(−1/√D, 1/√D) weights for SoftMax).

    Args:
        model: Any classification model (torchvision, timm, or one whose last ``nn.Linear`` is
            the classifier).
        method: ``softmax``, ``isomax_plus`` or ``dismax`` (any registered method).
        num_classes: The number of classes of the new head, ≥ 2.

    Returns:
        ``model`` itself, whose ``forward`` now returns the new head's logits ``(B, C)``.

    Raises:
        DismaxError: for an unknown method or one without a head of its own (``ensemble``), a
            ``num_classes`` that is not an int (floats,
            strings and bools are refused) or is below 2, a bare ``nn.Linear`` (build the head
            directly), or a model without an ``nn.Linear`` classifier.

    References:
        METHOD.md §1 (the heads); arXiv:2205.05874 (the drop-in claim).
    """
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral)
    ):
        raise DismaxError(
            f"replace_head: num_classes={q(num_classes)} is not an integer: pass an int >= 2 "
            "(e.g. num_classes=10)"
        )
    spec = get_method(method)
    if spec.make_head is None:
        with_members = f" (it is an ensemble of {spec.members_of} runs)" if spec.members_of else ""
        raise DismaxError(
            f"replace_head: method {q(method)} has no head to put in a model{with_members}: "
            f"use {spec.members_of or 'dismax'} for each member"
        )
    name, old = find_classifier(model)
    classes = old.out_features if num_classes is None else int(num_classes)
    head = spec.make_head(old.in_features, classes)
    head = head.to(device=old.weight.device, dtype=old.weight.dtype)
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, head)
    return model


__all__ = ["find_classifier", "replace_head"]
