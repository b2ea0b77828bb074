"""Classification heads: SoftMax (linear), IsoMax+ and DisMax (distances to class prototypes).

Each head maps penultimate ``features (B, D)`` to raw ``logits (B, C)`` (temperature 1). A fitted
temperature is not part of the model: it lives with the run (the checkpoint's metadata) and is
applied only where probabilities are computed, ``softmax(logits / T)``; OOD scores use the raw
logits (METHOD.md §3, §4).

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

from dismax_cli.errors import DismaxError

_NORM_EPS = 1e-12


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
    """Common part: sizes and input validation."""

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

    Weights are initialised U(−1/√D, 1/√D) and the bias to 0 (METHOD.md §1).

    Args:
        num_features: D, the size of the backbone's features.
        num_classes: C.

    Shape:
        features (B, D) -> logits (B, C).

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
        return F.linear(features, self.weight, self.bias)


class _PrototypeLogits(torch.autograd.Function):
    """Fused IsoMax+/DisMax logits with a hand-written backward (one autograd node).

    Forward, with ``a = |s| · factor`` and cosines ``c = f̂ p̂ᵀ``::

        d = sqrt(max(2 − 2c, 0))                    # = ‖f̂ − p̂‖₂, (B, C)
        r = d + mean_k d_k   (DisMax)   or   d      # (IsoMax+)
        z = −a r

    Backward, with ``G = ∂L/∂z``: ``∂L/∂s = −sign(s) · factor · Σ G r``;
    ``∂L/∂d = −a (G + mean_k G_k)`` (DisMax) or ``−a G``; ``H = ∂L/∂c = −∂L/∂d / d``, set to 0
    where ``d == 0`` (a sub-gradient: a feature on a prototype's direction keeps finite
    gradients); with ``A = H / (‖f‖ ‖p‖ᵀ)``::

        ∂L/∂f = A p − (Σ_j H_j c_j / ‖f‖²) f
        ∂L/∂p = Aᵀ f − (Σ_b H_b c_b / ‖p‖²) p

    One node instead of about fifteen keeps the head within 2× the cost of a linear layer on
    CPU (``benchmarks/speed/heads.py``); tests check it against float64 autograd. Under CUDA
    autocast the head runs in float32 (distances near 0 need the precision; it is cheap).
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        features: torch.Tensor,
        prototypes: torch.Tensor,
        distance_scale: torch.Tensor,
        factor: float,
        mean_term: bool,
    ) -> torch.Tensor:
        inv_f = torch.linalg.vector_norm(features, dim=1, keepdim=True).clamp_min_(_NORM_EPS)
        inv_f = inv_f.reciprocal_()
        inv_p = torch.linalg.vector_norm(prototypes, dim=1, keepdim=True).clamp_min_(_NORM_EPS)
        inv_p = inv_p.reciprocal_().t()
        inv_outer = inv_f * inv_p
        cosines = (features @ prototypes.t()).mul_(inv_outer)
        distances = torch.rsub(cosines, 2.0, alpha=2.0).clamp_min_(0.0).sqrt_()
        a = distance_scale.abs() * factor
        reduced = distances + distances.mean(dim=1, keepdim=True) if mean_term else distances
        ctx.save_for_backward(
            features,
            prototypes,
            distance_scale,
            inv_f,
            inv_p,
            inv_outer,
            cosines,
            distances,
            reduced,
            a,
        )
        ctx.mean_term = mean_term
        ctx.factor = factor
        return reduced * (-a)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        (
            features,
            prototypes,
            distance_scale,
            inv_f,
            inv_p,
            inv_outer,
            cosines,
            distances,
            reduced,
            a,
        ) = ctx.saved_tensors
        grad_f = grad_p = grad_s = None
        if ctx.needs_input_grad[2]:
            grad_s = -(grad * reduced).sum().reshape(1) * ctx.factor * distance_scale.sign()
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            grad_d = grad + grad.mean(dim=1, keepdim=True) if ctx.mean_term else grad
            # H = ∂L/∂c = a · grad_d / d, with 0 where d == 0.
            h = torch.where(distances > 0, grad_d / distances, 0.0).mul_(a)
            scaled = h * inv_outer
            hc = h.mul_(cosines)
            if ctx.needs_input_grad[0]:
                coef = hc.sum(dim=1, keepdim=True).mul_(inv_f).mul_(inv_f).neg_()
                grad_f = torch.addmm(features * coef, scaled, prototypes)
            if ctx.needs_input_grad[1]:
                coef = hc.sum(dim=0, keepdim=True).mul_(inv_p).mul_(inv_p).neg_().t()
                grad_p = torch.addmm(prototypes * coef, scaled.t(), features)
        return grad_f, grad_p, grad_s, None, None


def _prototype_logits(
    features: torch.Tensor,
    prototypes: torch.Tensor,
    distance_scale: torch.Tensor,
    *,
    factor: float,
    mean_term: bool,
) -> torch.Tensor:
    if torch.is_grad_enabled() and (
        features.requires_grad or prototypes.requires_grad or distance_scale.requires_grad
    ):
        return _PrototypeLogits.apply(features, prototypes, distance_scale, factor, mean_term)
    return _prototype_logits_inference(features, prototypes, distance_scale, factor, mean_term)


def _prototype_logits_inference(
    features: torch.Tensor,
    prototypes: torch.Tensor,
    distance_scale: torch.Tensor,
    factor: float,
    mean_term: bool,
) -> torch.Tensor:
    """The forward of :class:`_PrototypeLogits` without an autograd node (nothing needs grad).

    The same operations in the same order, so logits equal the training path's bit for bit;
    it skips the autograd ``Function`` call and the tensors saved for backward, which is what a
    prediction batch pays on top of a linear head (issue 11).
    """
    if torch.is_autocast_enabled("cuda") and features.is_cuda:
        features, prototypes = features.float(), prototypes.float()
        distance_scale = distance_scale.float()
    inv_f = torch.linalg.vector_norm(features, dim=1, keepdim=True).clamp_min_(_NORM_EPS)
    inv_f = inv_f.reciprocal_()
    inv_p = torch.linalg.vector_norm(prototypes, dim=1, keepdim=True).clamp_min_(_NORM_EPS)
    inv_p = inv_p.reciprocal_().t()
    with torch.autocast("cuda", enabled=False):
        cosines = (features @ prototypes.t()).mul_(inv_f * inv_p)
    distances = torch.rsub(cosines, 2.0, alpha=2.0).clamp_min_(0.0).sqrt_()
    a = distance_scale.abs() * factor
    reduced = distances + distances.mean(dim=1, keepdim=True) if mean_term else distances
    return reduced * (-a)


def normalized_distances(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Return the Euclidean distances between L2-normalised features and prototypes.

    Uses ``‖a − b‖² = 2 − 2 a·b`` for unit vectors (one matrix product, clamped at 0, with a
    finite gradient at distance 0), which equals the exact-difference distance to float32
    rounding and is several times faster than ``torch.cdist`` without the matrix shortcut.

    Args:
        features: (B, D) float tensor.
        prototypes: (C, D) float tensor.

    Shape:
        (B, D), (C, D) -> (B, C), values in [0, 2].

    References:
        METHOD.md §1 (IsoMax+/DisMax distances; normalisation eps 1e-12).
    """
    one = torch.ones(1, dtype=features.dtype, device=features.device)
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


__all__ = ["DisMaxHead", "IsoMaxPlusHead", "SoftMaxHead", "normalized_distances"]
