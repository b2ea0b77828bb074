"""The registry of training methods: which head, which loss, which default OOD score, FPR or not.

References:
    METHOD.md §1–§3; Macêdo et al., arXiv:2205.05874; Macêdo & Ludermir, arXiv:2105.14399;
    Hendrycks & Gimpel, "A Baseline for Detecting Misclassified and Out-of-Distribution
    Examples in Neural Networks", arXiv:1610.02136 (SoftMax + MSP).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from dismax_cli.core.heads import DisMaxHead, IsoMaxPlusHead, SoftMaxHead
from dismax_cli.core.losses import DisMaxLoss, IsoMaxPlusLoss, SoftMaxLoss
from dismax_cli.errors import DismaxError


@dataclass(frozen=True)
class MethodSpec:
    """How to build and score one method.

    Attributes:
        name: registry key (``softmax``, ``isomax_plus``, ``dismax``).
        description: one line for help texts and reports.
        make_head: ``(num_features, num_classes) -> head`` mapping features (B, D) to logits (B, C).
        make_loss: ``(entropic_scale, alpha) -> loss``; losses ignore what they do not use.
        default_score: name in :data:`dismax_cli.core.scores.SCORES` used for OOD detection.
        uses_fpr: whether fractional probability regularization is on by default.
        supports_fpr: whether FPR may be turned on at all.
    """

    name: str
    description: str
    make_head: Callable[[int, int], nn.Module]
    make_loss: Callable[[float, float], nn.Module]
    default_score: str
    uses_fpr: bool
    supports_fpr: bool


_METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec(
            name="softmax",
            description="linear head + cross-entropy; OOD score: maximum softmax probability",
            make_head=SoftMaxHead,
            make_loss=lambda entropic_scale, alpha: SoftMaxLoss(),
            default_score="msp",
            uses_fpr=False,
            supports_fpr=False,
        ),
        MethodSpec(
            name="isomax_plus",
            description="IsoMax+: distances to prototypes, entropic scale 10; score: MDS",
            make_head=IsoMaxPlusHead,
            make_loss=lambda entropic_scale, alpha: IsoMaxPlusLoss(entropic_scale),
            default_score="mds",
            uses_fpr=False,
            supports_fpr=False,
        ),
        MethodSpec(
            name="dismax",
            description="DisMax: distances to all prototypes + FPR mosaics; score: MMLES",
            make_head=DisMaxHead,
            make_loss=lambda entropic_scale, alpha: DisMaxLoss(entropic_scale, alpha),
            default_score="mmles",
            uses_fpr=True,
            supports_fpr=True,
        ),
    )
}


def list_methods() -> list[str]:
    """Return the registered method names, in the order they are compared."""
    return list(_METHODS)


def get_method(name: str) -> MethodSpec:
    """Return the :class:`MethodSpec` registered as ``name``.

    Raises:
        DismaxError: for an unknown name; the message lists the valid ones.
    """
    try:
        return _METHODS[name]
    except KeyError:
        raise DismaxError(f"unknown method {name!r}: choose one of {', '.join(_METHODS)}") from None


__all__ = ["MethodSpec", "get_method", "list_methods"]
