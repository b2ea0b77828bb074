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


#: Rows whose largest |entry| exceeds this are divided by it before the norm is taken: their
#: squares would overflow (float32 overflows at |v| ≈ 1.8e19), and the logits only depend on
#: the direction of a row longer than eps. Below it a row is left bit-for-bit unchanged.
_RESCALE_ABOVE = 1e15


def _rescale_large_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Divide each (finite) row whose max-abs entry exceeds :data:`_RESCALE_ABOVE` by it.

    The direction ``v / ‖v‖`` is kept, so IsoMax+/DisMax logits are unchanged, while the norm no
    longer overflows: a row with a direction keeps its logits (and a non-zero gradient, through
    the constant divisor) up to the dtype's largest finite value (METHOD.md §1).

    Shape:
        (N, D) -> the rescaled (N, D) rows and the divisors (N, 1), same dtype.
    """
    peak = rows.abs().amax(dim=1, keepdim=True)  # (N, 1)
    scale = torch.where(torch.isfinite(peak) & (peak > _RESCALE_ABOVE), peak, 1.0)
    return rows / scale, scale


def _distances(
    features: torch.Tensor,
    prototypes: torch.Tensor,
    scales: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None),
) -> dict[str, object]:
    """``‖f̂ − p̂‖`` for every pair, exact to float32 rounding (METHOD.md §1), and backward's inputs.

    ``d² = ‖f̂‖² + ‖p̂‖² − 2 f̂·p̂`` from one matrix product (``‖f̂‖ = 1`` unless ``‖f‖ < eps``);
    every pair with ``d² < 0.0625`` is recomputed as ``‖f̂ − p̂‖`` from the difference. One host
    sync (the extreme norms and the smallest ``d²``) decides whether a rare path is needed: rows
    with huge entries (:func:`_rescale_large_rows`), vectors shorter than eps, near pairs.

    Returns:
        A dict: ``distances`` (B, C) and the tensors and flags :func:`_prototype_backward` uses.
    """
    norm_f = torch.linalg.vector_norm(features, dim=1, keepdim=True)  # (B, 1)
    norm_p = torch.linalg.vector_norm(prototypes, dim=1).unsqueeze(0)  # (1, C)
    # F.normalize: v / max(‖v‖, eps), so ‖v̂‖ < 1 below eps and 0 stays 0.
    inv_f = norm_f.clamp_min(_NORM_EPS).reciprocal_()
    inv_p = norm_p.clamp_min(_NORM_EPS).reciprocal_()
    inv_outer = inv_f * inv_p  # (B, C)
    cosines = torch.mm(features, prototypes.t()).mul_(inv_outer)  # f̂·p̂
    squared = torch.rsub(cosines, 2.0, alpha=2.0)  # d² for unit f̂, p̂
    extremes = list(torch.aminmax(torch.cat((norm_f.view(-1), norm_p.view(-1)))))
    if squared.numel():
        extremes.append(squared.amin())
    low, high, nearest = (*torch.stack(extremes).tolist(), math.inf)[:3]
    if not high <= _RESCALE_ABOVE and scales[0] is None:  # huge, infinite or NaN entries
        features, scale_f = _rescale_large_rows(features)
        prototypes, scale_p = _rescale_large_rows(prototypes)
        return _distances(features, prototypes, (scale_f, scale_p))
    state: dict[str, object] = {
        "features": features, "prototypes": prototypes, "cosines": cosines,
        "inv_f": inv_f, "inv_p": inv_p, "inv_outer": inv_outer, "scales": scales, "near": None,
    }  # fmt: skip
    if low < _NORM_EPS:
        state["vanishing"] = (norm_f < _NORM_EPS, norm_p < _NORM_EPS)
        squared_norms = (norm_f * inv_f).square_() + (norm_p * inv_p).square_()
        squared = torch.sub(squared_norms, cosines, alpha=2.0)
        nearest = float(squared.amin())
    if nearest < _EXACT_BELOW_SQUARED:  # else every d² ≥ 0.0625 > 0: no clamp needed
        rows, cols = torch.nonzero(squared < _EXACT_BELOW_SQUARED).unbind(1)
        # (k, D) unit vectors of the pairs to recompute (index_select: a row copy, fast).
        unit_f = features.index_select(0, rows).mul_(inv_f.index_select(0, rows))
        unit_p = prototypes.index_select(0, cols).mul_(inv_p.view(-1, 1).index_select(0, cols))
        difference = unit_f - unit_p
        exact = torch.linalg.vector_norm(difference, dim=1)
        state["near"] = (rows, cols, unit_f, unit_p, difference, exact)
        state["distances"] = squared.sqrt_().index_put_((rows, cols), exact)  # NaN for d² < 0
    else:
        state["distances"] = squared.sqrt_()
    return state


def _prototype_forward(
    features: torch.Tensor,
    prototypes: torch.Tensor,
    distance_scale: torch.Tensor,
    factor: float,
    mean_term: bool,
) -> tuple[torch.Tensor, dict[str, object]]:
    """Logits ``−a (d + mean_k d_k)`` (DisMax) or ``−a d``, ``a = |s| factor`` (METHOD.md §1)."""
    state = _distances(features, prototypes)
    distances = state["distances"]
    assert isinstance(distances, torch.Tensor)
    scale = float(distance_scale)
    a = abs(scale) * factor
    state.update(a=a, sign=float(scale > 0) - float(scale < 0))
    if mean_term:
        return torch.add(distances.mean(dim=1, keepdim=True).mul_(-a), distances, alpha=-a), state
    return distances * -a, state


class _PrototypeLogits(torch.autograd.Function):
    """Fused IsoMax+/DisMax logits with a hand-written backward (one autograd node).

    Forward (:func:`_distances`, :func:`_prototype_forward`), with ``û = f / max(‖f‖, eps)``,
    ``v̂ = p / max(‖p‖, eps)`` (the ``F.normalize`` convention: a zero vector stays 0) and
    ``a = |s| · factor``: ``d = ‖û − v̂‖``, ``r = d + mean_k d_k`` (DisMax) or ``d`` (IsoMax+),
    ``z = −a r``.

    Backward, with ``G = ∂L/∂z``: ``∂L/∂s = −sign(s) · factor · Σ G r``;
    ``∂L/∂d = −a (G + mean_k G_k)`` (DisMax) or ``−a G``. For the matrix-product pairs
    (``d ≥ 0.25``) ``∂L/∂(û·v̂) = −∂L/∂d / d``; for the recomputed pairs
    ``∂L/∂û = ∂L/∂d · (û − v̂) / d`` from the exact difference (no cancellation), 0 where
    ``d == 0`` (a sub-gradient: a feature on a prototype's direction keeps finite gradients).
    Then ``∂L/∂f = (I − û ûᵀ) ∂L/∂û / ‖f‖``, and 0 for ``‖f‖ < eps`` (no direction to follow:
    a zero feature gets a zero gradient, not 1/eps); the same for the prototypes. Rows rescaled
    by :func:`_rescale_large_rows` get their gradient divided by the same constant.

    Inputs arrive in float32 or float64 (see :func:`_compute_dtype`); autocast is off in both
    passes. Tests check it against float64 autograd and ``gradcheck``.
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
        logits, state = _prototype_forward(
            features, prototypes, distance_scale, factor, mean_term
        )
        ctx.save_for_backward(features, prototypes)  # for autograd's in-place-modification check
        ctx.state = state
        ctx.mean_term = mean_term
        ctx.factor = factor
        ctx.scale_shape = distance_scale.shape
        return logits

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        _ = ctx.saved_tensors  # raises if an input was modified in place since the forward
        with _autocast_off(grad.device):
            grads = _prototype_backward(ctx.state, grad, ctx.needs_input_grad, ctx.mean_term)
        grad_f, grad_p, grad_s = grads
        if grad_s is not None:
            grad_s = grad_s.mul(ctx.factor).reshape(ctx.scale_shape)
        return grad_f, grad_p, grad_s, None, None


def _near_pair_gradients(
    near: tuple[torch.Tensor, ...], g: torch.Tensor, inv_f: torch.Tensor, inv_p: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``−∂L/∂f`` and ``−∂L/∂p`` rows ``(k, D)`` of the recomputed pairs, from ``e = û − v̂``.

    ``g = −∂L/∂d`` of the pairs (k,). ``∂L/∂û = −g e / d`` and ``∂L/∂v̂ = g e / d`` (0 where
    ``d == 0``), each projected onto its sphere's tangent: for unit vectors
    ``û·e = d²/2 = −v̂·e`` (METHOD.md §1).
    """
    rows, cols, unit_f, unit_p, difference, exact = near
    g = torch.where(exact > 0, g / exact, 0.0)[:, None]  # (k, 1)
    half_squared = exact.square().mul_(0.5)[:, None]
    near_f = torch.addcmul(difference, unit_f, half_squared, value=-1.0)
    near_f.mul_(g * inv_f.index_select(0, rows))
    near_p = torch.addcmul(difference, unit_p, half_squared)
    near_p.mul_(g.mul_(inv_p.view(-1, 1).index_select(0, cols)).neg_())
    return near_f, near_p


def _prototype_backward(
    state: dict[str, object],
    grad: torch.Tensor,
    needs_input_grad: tuple[bool, ...],
    mean_term: bool,
) -> tuple[torch.Tensor | None, ...]:
    """Gradients for features, prototypes and the scale (the latter without ``factor``)."""
    s = state
    distances, cosines, near = s["distances"], s["cosines"], s["near"]
    features, prototypes = s["features"], s["prototypes"]
    inv_f, inv_p, inv_outer, a = s["inv_f"], s["inv_p"], s["inv_outer"], s["a"]
    grad = grad.to(distances.dtype)
    # −∂L/∂d = a (G + mean_k G_k) (DisMax) or a G, held as gd · mult, and Σ G r = Σ gd d · rs.
    if mean_term and a != 0.0:
        gd, mult, rs = torch.add(grad.mean(dim=1, keepdim=True).mul_(a), grad, alpha=a), 1.0, 1 / a
    elif mean_term:
        gd, mult, rs = torch.add(grad.mean(dim=1, keepdim=True), grad), 0.0, 1.0
    else:
        gd, mult, rs = grad, a, 1.0
    grad_f = grad_p = grad_s = None
    if needs_input_grad[2]:  # ∂L/∂s = −sign(s) Σ G r (without the factor)
        grad_s = torch.dot(gd.reshape(-1), distances.reshape(-1)).mul_(-s["sign"] * rs)
    if not (needs_input_grad[0] or needs_input_grad[1]):
        return grad_f, grad_p, grad_s
    # H = ∂L/∂(û·v̂) = gd / d (d ≥ 0.25 outside the recomputed pairs, which are set to 0).
    h = torch.div(gd, distances) if mult == 1.0 else torch.div(gd, distances).mul_(mult)
    if "vanishing" in s:
        # A vector shorter than eps has no direction: no gradient reaches or leaves it.
        small_f, small_p = s["vanishing"]
        inv_f = inv_f.masked_fill(small_f, 0.0)
        inv_p = inv_p.masked_fill(small_p, 0.0)
        inv_outer = inv_f * inv_p
    if near is not None:
        g = gd[near[0], near[1]] * mult
        h.index_put_(near[:2], h.new_zeros(()))
        near_f, near_p = _near_pair_gradients(near, g, inv_f, inv_p)
    scaled = h * inv_outer
    hc = h.mul_(cosines)
    scale_f, scale_p = s["scales"]
    if needs_input_grad[0]:
        grad_f = torch.mm(scaled, prototypes)
        grad_f.addcmul_(features, hc.sum(dim=1, keepdim=True).mul_(inv_f.square().neg_()))
        if near is not None:
            grad_f.index_add_(0, near[0], near_f, alpha=-1.0)
        if scale_f is not None:
            grad_f /= scale_f
    if needs_input_grad[1]:
        grad_p = torch.mm(scaled.t(), features)
        coef = hc.sum(dim=0, keepdim=True).mul_(inv_p.square().neg_()).t()
        grad_p.addcmul_(prototypes, coef)
        if near is not None:
            grad_p.index_add_(0, near[1], near_p, alpha=-1.0)
        if scale_p is not None:
            grad_p /= scale_p
    return grad_f, grad_p, grad_s


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
        features, prototypes = features.to(dtype), prototypes.to(dtype)
        distance_scale = distance_scale.to(dtype)
        if torch.is_grad_enabled() and (
            features.requires_grad or prototypes.requires_grad or distance_scale.requires_grad
        ):
            return _PrototypeLogits.apply(
                features, prototypes, distance_scale, factor, mean_term
            )
        return _prototype_forward(features, prototypes, distance_scale, factor, mean_term)[0]


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
