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

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from dismax_cli.errors import DismaxError

_NORM_EPS = 1e-12
# Pairs whose matrix-product squared distance is below this (d < 0.25) are recomputed from the
# exact difference f̂ − p̂. float32 rounding of the cosine moves d² by up to ~2e-6 (measured for
# D = 16 … 2048), which moves d by at most δ(d²) / (2d): under 1e-5 for d ≥ 0.25 but up to
# ~1e-3 as d → 0 (the cancellation in 2 − 2 cos θ).
_EXACT_BELOW_SQUARED = 0.0625


def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """Return the dtype a head computes in: float64 if any input is float64, else float32.

    float16 and bfloat16 inputs are upcast (their 1e-12 normalisation eps underflows, and
    distances near 0 need float32 precision).

    Args:
        tensors: The features and the head's parameters.

    Returns:
        ``torch.float64`` or ``torch.float32``.

    References:
        METHOD.md §1 (the distance must be exact to float32 rounding).
    """
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _autocast_off(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """Return a context that switches autocast off for ``device``'s type where it is on.

    Works for every device type (CPU, CUDA, MPS, …); a type that autocast does not know (e.g.
    ``meta``) gets a no-op context.

    Args:
        device: The device the computation runs on.

    Returns:
        A context manager.
    """
    try:
        enabled = torch.is_autocast_enabled(device.type)
    except (RuntimeError, ValueError):  # a device type autocast does not know, e.g. "meta"
        return contextlib.nullcontext()
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, enabled=False)


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


class _PrototypeLogits(torch.autograd.Function):
    """Fused IsoMax+/DisMax logits with a hand-written backward (one autograd node).

    Forward, with unit vectors ``û = f / max(‖f‖, eps)``, ``v̂ = p / max(‖p‖, eps)`` (the
    ``F.normalize`` convention: a zero vector stays 0) and ``a = |s| · factor``::

        d² = ‖û‖² + ‖v̂‖² − 2 û v̂ᵀ                  # one matrix product, (B, C)
        d  = sqrt(max(d², 0)), and ‖û − v̂‖ from the exact difference where d² < 0.0625
        r  = d + mean_k d_k   (DisMax)   or   d      # (IsoMax+)
        z  = −a r

    Backward, with ``G = ∂L/∂z``: ``∂L/∂s = −sign(s) · factor · Σ G r``;
    ``∂L/∂d = −a (G + mean_k G_k)`` (DisMax) or ``−a G``. For the matrix-product pairs
    ``H = ∂L/∂(û·v̂) = −∂L/∂d / d``; for the recomputed pairs ``∂L/∂û = ∂L/∂d · (û − v̂) / d``
    from the exact difference (no cancellation); 0 where ``d == 0`` (a sub-gradient: a feature on
    a prototype's direction keeps finite gradients). Then ``∂L/∂f = (I − û ûᵀ) ∂L/∂û / ‖f‖``, and
    0 for ``‖f‖ < eps`` (no direction to follow: a zero feature gets a zero gradient, not
    1/eps); the same for the prototypes.

    One node instead of about fifteen keeps the head within 2× the cost of a linear layer on
    CPU (``benchmarks/speed/heads.py``); tests check it against float64 autograd. Inputs arrive
    in float32 or float64 (see :func:`_compute_dtype`); autocast is off in both passes.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        features: torch.Tensor,
        prototypes: torch.Tensor,
        distance_scale: torch.Tensor,
        factor: float,
        mean_term: bool,
    ) -> torch.Tensor:
        norm_f = torch.linalg.vector_norm(features, dim=1, keepdim=True)  # (B, 1)
        inv_f = norm_f.clamp_min(_NORM_EPS).reciprocal_()
        norm_p = torch.linalg.vector_norm(prototypes, dim=1, keepdim=True).t()  # (1, C)
        inv_p = norm_p.clamp_min(_NORM_EPS).reciprocal_()
        inv_outer = inv_f * inv_p
        cosines = (features @ prototypes.t()).mul_(inv_outer)  # û·v̂, (B, C)
        squared = torch.rsub(cosines, 2.0, alpha=2.0)  # d² for unit û, v̂
        # One host sync: is any vector shorter than eps, is any pair near 0?
        if squared.numel() == 0:  # an empty batch
            low_f = low_p = low_squared = math.inf
        else:
            low_f, low_p, low_squared = torch.stack(
                (norm_f.amin(), norm_p.amin(), squared.amin())
            ).tolist()
        degenerate = min(low_f, low_p) < _NORM_EPS
        if degenerate:
            # ‖û‖² = (‖f‖ / eps)² < 1 below eps (F.normalize's convention: 0 stays 0).
            squared_norms = (norm_f * inv_f).square_() + (norm_p * inv_p).square_()
            squared = torch.sub(squared_norms, cosines, alpha=2.0)
            low_squared = float(squared.amin())
        rows = cols = unit_f = unit_p = difference = None
        if low_squared < _EXACT_BELOW_SQUARED:
            rows, cols = torch.nonzero(squared < _EXACT_BELOW_SQUARED).unbind(1)
            # (k, D) unit vectors of the pairs to recompute (index_select: a row copy, fast).
            unit_f = features.index_select(0, rows).mul_(inv_f.index_select(0, rows))
            unit_p = prototypes.index_select(0, cols).mul_(inv_p.t().index_select(0, cols))
            difference = unit_f - unit_p
        distances = squared.clamp_min_(0.0).sqrt_()
        if rows is not None:
            distances.index_put_((rows, cols), torch.linalg.vector_norm(difference, dim=1))
        a = distance_scale.abs() * factor
        reduced = distances + distances.mean(dim=1, keepdim=True) if mean_term else distances
        ctx.save_for_backward(
            features,
            prototypes,
            distance_scale,
            norm_f,
            norm_p,
            inv_f,
            inv_p,
            inv_outer,
            cosines,
            distances,
            reduced,
            a,
            rows,
            cols,
            unit_f,
            unit_p,
            difference,
        )
        ctx.mean_term = mean_term
        ctx.factor = factor
        ctx.degenerate = degenerate
        return reduced * (-a)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        with _autocast_off(grad.device):
            return _PrototypeLogits._backward(ctx, grad)

    @staticmethod
    def _backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        (
            features,
            prototypes,
            distance_scale,
            norm_f,
            norm_p,
            inv_f,
            inv_p,
            inv_outer,
            cosines,
            distances,
            reduced,
            a,
            rows,
            cols,
            unit_f,
            unit_p,
            difference,
        ) = ctx.saved_tensors
        grad = grad.to(distances.dtype)
        grad_f = grad_p = grad_s = None
        if ctx.needs_input_grad[2]:
            grad_s = -(grad * reduced).sum().reshape(1) * ctx.factor * distance_scale.sign()
        if not (ctx.needs_input_grad[0] or ctx.needs_input_grad[1]):
            return grad_f, grad_p, grad_s, None, None
        grad_d = grad + grad.mean(dim=1, keepdim=True) if ctx.mean_term else grad
        # H = ∂L/∂(û·v̂) = a · grad_d / d, with 0 where d == 0.
        h = torch.where(distances > 0, grad_d / distances, 0.0).mul_(a)
        if ctx.degenerate:
            # A vector shorter than eps has no direction: no gradient reaches or leaves it.
            inv_f = inv_f.masked_fill(norm_f < _NORM_EPS, 0.0)
            inv_p = inv_p.masked_fill(norm_p < _NORM_EPS, 0.0)
            inv_outer = inv_f * inv_p
        near_f = near_p = None
        if rows is not None:
            # Recomputed pairs, from the exact difference e = û − v̂ (no cancellation):
            # ∂L/∂û = −H e and ∂L/∂v̂ = H e, each projected onto its sphere's tangent.
            # For unit vectors û·e = d²/2 = −v̂·e, with d exact.
            h_near = h[rows, cols][:, None]
            h[rows, cols] = 0.0
            half_squared = distances[rows, cols].square_().mul_(0.5)[:, None]
            near_f = torch.addcmul(difference, unit_f, half_squared, value=-1.0)
            near_f.mul_(h_near.mul(inv_f.index_select(0, rows)).neg_())
            near_p = torch.addcmul(difference, unit_p, half_squared)
            near_p.mul_(h_near.mul_(inv_p.t().index_select(0, cols)))
        scaled = h * inv_outer
        hc = h.mul_(cosines)
        if ctx.needs_input_grad[0]:
            coef = hc.sum(dim=1, keepdim=True).mul_(inv_f).mul_(inv_f).neg_()
            grad_f = torch.addmm(features * coef, scaled, prototypes)
            if near_f is not None:
                grad_f.index_add_(0, rows, near_f)
        if ctx.needs_input_grad[1]:
            coef = hc.sum(dim=0, keepdim=True).mul_(inv_p).mul_(inv_p).neg_().t()
            grad_p = torch.addmm(prototypes * coef, scaled.t(), features)
            if near_p is not None:
                grad_p.index_add_(0, cols, near_p)
        return grad_f, grad_p, grad_s, None, None


#: Rows whose largest |entry| exceeds this are divided by it before the norm is taken: their
#: squares would overflow (float32 overflows at |v| ≈ 1.8e19), and the logits only depend on
#: the direction of a row longer than eps. Below it a row is left bit-for-bit unchanged.
_RESCALE_ABOVE = 1e15


def _rescale_large_rows(rows: torch.Tensor) -> torch.Tensor:
    """Divide each (finite) row whose max-abs entry exceeds :data:`_RESCALE_ABOVE` by it.

    The direction ``v / ‖v‖`` is kept, so IsoMax+/DisMax logits are unchanged, while the norm no
    longer overflows: a row with a direction keeps its logits (and a non-zero gradient, through
    the constant divisor) up to the dtype's largest finite value (METHOD.md §1).

    Shape:
        (N, D) -> (N, D), same dtype.
    """
    if rows.numel() == 0:
        return rows
    peak = rows.detach().abs().amax(dim=1, keepdim=True)  # (N, 1)
    scale = torch.where(torch.isfinite(peak) & (peak > _RESCALE_ABOVE), peak, 1.0)
    return rows / scale


def _prototype_logits(
    features: torch.Tensor,
    prototypes: torch.Tensor,
    distance_scale: torch.Tensor,
    *,
    factor: float,
    mean_term: bool,
) -> torch.Tensor:
    dtype = _compute_dtype(features, prototypes)
    with _autocast_off(features.device):
        return _PrototypeLogits.apply(
            _rescale_large_rows(features.to(dtype)),
            _rescale_large_rows(prototypes.to(dtype)),
            distance_scale.to(dtype),
            factor,
            mean_term,
        )


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
