"""Classification heads: SoftMax (linear), IsoMax+ and DisMax (distances to class prototypes).

Each head maps penultimate ``features (B, D)`` to raw ``logits (B, C)`` (temperature 1). A fitted
temperature is not part of the model: it lives with the run (the checkpoint's metadata) and is
applied only where probabilities are computed, ``softmax(logits / T)``; OOD scores use the raw
logits (METHOD.md §3, §4).

Precision: every head computes in float32 (float64 when the features or the head are float64),
also for float16/bfloat16 inputs and under autocast on any device, and returns float32 (or
float64) logits; its cost is negligible next to a backbone's.

References:
    Macêdo, Zanchettin, Ludermir. "Distinction Maximization Loss: Efficiently Improving
    Out-of-Distribution Detection and Uncertainty Estimation by Replacing the Loss and
    Calibrating", arXiv:2205.05874 (2022). METHOD.md §1.
    Macêdo, Ludermir. "Enhanced Isotropy Maximization Loss: Seamless and High-Performance
    Out-of-Distribution Detection Simply Replacing the SoftMax Loss", arXiv:2105.14399 (2021).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dismax_cli.core._prototype_logits import _autocast_off, _compute_dtype, _prototype_logits
from dismax_cli.errors import DismaxError


def _check_sizes(num_features: int, num_classes: int) -> None:
    if int(num_features) < 1:
        raise DismaxError(
            f"num_features={num_features} is invalid: a head needs at least 1 feature"
        )
    if int(num_classes) < 2:
        raise DismaxError(
            f"num_classes={num_classes} is invalid: a classifier needs at least 2 classes"
        )


class _Head(nn.Module):
    """Common part: sizes and input validation (no temperature: heads return raw logits)."""

    num_features: int
    num_classes: int

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        _check_sizes(num_features, num_classes)
        self.num_features = int(num_features)
        self.num_classes = int(num_classes)

    def _check_features(self, features: torch.Tensor) -> None:
        if features.ndim != 2 or features.shape[1] != self.num_features:
            raise DismaxError(
                f"features of shape {tuple(features.shape)} do not fit this head: expected "
                f"(B, {self.num_features})"
            )

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, num_classes={self.num_classes}"


class SoftMaxHead(_Head):
    """The usual linear head: ``logits = W f + b``.

    Weights are initialised U(−1/√D, 1/√D) and the bias to 0 (METHOD.md §1). Computed in
    float32 (float64 for float64 inputs) with autocast off, so the logits are float32 also
    under autocast and for float16/bfloat16 features.

    Args:
        num_features: D, the size of the backbone's features.
        num_classes: C.

    Shape:
        features (B, D) -> logits (B, C), float32 (float64 when features or head are float64).

    Raises:
        DismaxError: for sizes below 1 feature / 2 classes, or features of the wrong shape.

    References:
        METHOD.md §1 (SoftMax baseline).
    """

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__(num_features, num_classes)
        bound = 1.0 / math.sqrt(self.num_features)
        self.weight = nn.Parameter(torch.empty(self.num_classes, self.num_features))
        self.bias = nn.Parameter(torch.zeros(self.num_classes))
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        self._check_features(features)
        dtype = _compute_dtype(features, self.weight)
        with _autocast_off(features.device):
            return F.linear(features.to(dtype), self.weight.to(dtype), self.bias.to(dtype))


def normalized_distances(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Return the Euclidean distances ``‖f̂ − p̂‖₂`` between L2-normalised rows.

    Normalisation follows ``F.normalize`` (``v / max(‖v‖, 1e-12)``, so a zero row stays 0 and
    lies at distance 1 from every unit vector). The distances come from one matrix product
    (``‖a − b‖² = ‖a‖² + ‖b‖² − 2 a·b``), and every pair with a squared distance below 0.0625 is
    recomputed from the exact difference, so each value equals the exact-difference distance to
    float32 rounding (within 1e-5), also as d → 0, for float16/bfloat16 inputs and under
    autocast. Differentiable, with a finite (zero) sub-gradient at distance 0 and for zero rows.

    Args:
        features: (B, D) float tensor.
        prototypes: (C, D) float tensor.

    Shape:
        (B, D), (C, D) -> (B, C), values in [0, 2]; float32 (float64 for float64 inputs).

    References:
        METHOD.md §1 (IsoMax+/DisMax distances; normalisation eps 1e-12; exact to float32
        rounding, matrix-product form allowed).
    """
    one = torch.ones(1, dtype=_compute_dtype(features, prototypes), device=features.device)
    return -_prototype_logits(features, prototypes, one, factor=1.0, mean_term=False)


class _PrototypeHead(_Head):
    """Prototypes (C, D) ~ N(0, 1) and a learnable distance scale initialised to 1 (used as |s|)."""

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__(num_features, num_classes)
        self.prototypes = nn.Parameter(torch.empty(self.num_classes, self.num_features))
        self.distance_scale = nn.Parameter(torch.ones(1))
        nn.init.normal_(self.prototypes, mean=0.0, std=1.0)


class IsoMaxPlusHead(_PrototypeHead):
    """IsoMax+ head: ``logits_j = −|s| · ‖f̂ − p̂_j‖₂``.

    Args:
        num_features: D.
        num_classes: C.

    Shape:
        features (B, D) -> logits (B, C), each in [−2|s|, 0].

    Raises:
        DismaxError: for invalid sizes or features of the wrong shape.

    References:
        Macêdo & Ludermir, "Enhanced Isotropy Maximization Loss", arXiv:2105.14399;
        METHOD.md §1.
    """

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        self._check_features(features)
        return _prototype_logits(
            features,
            self.prototypes,
            self.distance_scale,
            factor=1.0,
            mean_term=False,
        )


class DisMaxHead(_PrototypeHead):
    """DisMax head: ``logits_j = −(δ_j + mean_k δ_k)`` with ``δ_j = |s| ‖f̂ − p̂_j‖₂ / √2``.

    The per-sample mean term is the same for every class, so softmax (and hence the loss without
    FPR, the predictions, ECE and MSP) ignores it; it only shifts raw-logit scores:
    ``max_j z_j = −|s|(d_min + d̄)`` and ``mean_j z_j = −2|s| d̄`` (METHOD.md §1).

    Args:
        num_features: D.
        num_classes: C.

    Shape:
        features (B, D) -> logits (B, C), each in [−2|s|, 0].

    Raises:
        DismaxError: for invalid sizes or features of the wrong shape.

    References:
        Macêdo, Zanchettin, Ludermir, "Distinction Maximization Loss", arXiv:2205.05874, §3;
        METHOD.md §1.
    """

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        self._check_features(features)
        return _prototype_logits(
            features,
            self.prototypes,
            self.distance_scale,
            factor=1.0 / math.sqrt(2.0),
            mean_term=True,
        )


__all__ = [
    "DisMaxHead",
    "IsoMaxPlusHead",
    "SoftMaxHead",
    "normalized_distances",
]
