"""IsoMax+/DisMax logits from distances to prototypes: one fused autograd node (METHOD.md §1).

``_prototype_logits(features (B, D), prototypes (C, D), s (1,), factor, mean_term)`` returns
``−a (d + mean_k d_k)`` (DisMax, ``mean_term``) or ``−a d`` (IsoMax+) with ``a = |s| · factor`` and
``d = ‖f̂ − p̂‖`` between ``F.normalize``-d rows (``v / max(‖v‖, 1e-12)``: a zero row stays 0).

Speed (issue 11): on CPU the cost of a head of this size is the number of tensor operations, not
their arithmetic (each costs microseconds of dispatch and cache refill; the three matrix products
are the same as a linear head's). So the common path is kept to a few whole-matrix operations:
``d² = 2 − 2 (f·p) / (‖f‖ ‖p‖)`` from one matrix product, one host sync (the extreme norms, the
smallest ``d²`` and ``s``) that decides whether a rare path is needed, and a hand-written backward.
Scalars ride in fused operations (``addr`` for DisMax's mean term, ``addcdiv``/``addmv`` in
backward) rather than separate scale-and-add passes; on CPU the forward+backward still costs
~1.5× SoftMaxHead's at B, D, C = 128, 512, 100 (``benchmarks/speed/heads.py``), the floor of
about 25 more small operations of a few microseconds each (issue 11 asked for 1.3×).
Rare paths: rows with huge entries (rescaled), vectors shorter than eps (``F.normalize``'s
convention), and pairs with ``d² < 0.0625``, recomputed from the exact difference ``f̂ − p̂``:
float32 rounding of the cosine moves ``d²`` by up to ~2e-6 (measured for D = 16 … 2048), which
moves ``d`` by ``δ(d²) / (2d)``: under 1e-5 for ``d ≥ 0.25`` but up to ~1e-3 as ``d → 0``.
Without grad (inference) the same forward runs as plain operations, with no autograd node.

References:
    Macêdo, Zanchettin, Ludermir, arXiv:2205.05874 (2022), §3; METHOD.md §1.
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch

_NORM_EPS = 1e-12
#: Pairs whose matrix-product squared distance is below this (d < 0.25) are recomputed.
_EXACT_BELOW_SQUARED = 0.0625
#: Rows whose largest |entry| exceeds this are divided by it before the norm is taken: their
#: squares would overflow (float32 overflows at |v| ≈ 1.8e19), and the logits only depend on
#: the direction of a row longer than eps. Below it a row is left bit-for-bit unchanged.
_RESCALE_ABOVE = 1e15


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
    for tensor in tensors:
        if tensor.dtype == torch.float64:
            return torch.float64
    return torch.float32


_NO_CONTEXT = contextlib.nullcontext()  # stateless: one shared instance


def _autocast_off(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """Return a context that switches autocast off for ``device``'s type where it is on.

    Works for every device type (CPU, CUDA, MPS, …); a type that autocast does not know (e.g.
    ``meta``) gets a no-op context. Where autocast is off (the usual case) the shared no-op
    context is returned, so the check costs no allocation.

    Args:
        device: The device the computation runs on.

    Returns:
        A context manager.
    """
    try:
        enabled = torch.is_autocast_enabled(device.type)
    except (RuntimeError, ValueError):  # a device type autocast does not know, e.g. "meta"
        return _NO_CONTEXT
    if not enabled:
        return _NO_CONTEXT
    return torch.autocast(device_type=device.type, enabled=False)


def _extremes(
    norm_f: torch.Tensor, norm_p: torch.Tensor, distance_scale: torch.Tensor, squared: torch.Tensor
) -> tuple[float, ...]:
    """``(min ‖f‖, max ‖f‖, min ‖p‖, max ‖p‖, s, min d²)`` as floats: one host sync.

    An empty batch reads the prototypes' norms for the features' and ``inf`` for ``min d²``.
    On CPU reading needs no sync, and reading each value costs less than stacking them first
    (about 10 µs less per forward at B, D, C = 128, 512, 100).
    """
    low_f, high_f = torch.aminmax(norm_f if norm_f.shape[0] else norm_p)
    low_p, high_p = torch.aminmax(norm_p)
    scale = distance_scale.reshape(())
    if not squared.numel():
        return (*torch.stack([low_f, high_f, low_p, high_p, scale]).tolist(), math.inf)
    nearest = squared.amin()
    if nearest.device.type != "cpu":
        return tuple(torch.stack([low_f, high_f, low_p, high_p, scale, nearest]).tolist())
    return (
        low_f.tolist(), high_f.tolist(), low_p.tolist(), high_p.tolist(), scale.tolist(),
        nearest.tolist(),
    )  # fmt: skip


@functools.lru_cache(maxsize=32)
def _constant(value: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A cached 0-d tensor ``value`` (read only here): the ``2`` of ``d² = 2 − 2 cos``, a 0."""
    return torch.full((), value, dtype=dtype, device=device)


@functools.lru_cache(maxsize=32)
def _ones(classes: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A cached (C,) tensor of ones (read only here): ``torch.addr``'s row-broadcast vector."""
    return torch.ones(classes, dtype=dtype, device=device)


def _rescale_large_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Divide each (finite) row whose max-abs entry exceeds :data:`_RESCALE_ABOVE` by it.

    The direction ``v / ‖v‖`` is kept, so the logits are unchanged, while the norm no longer
    overflows: a row with a direction keeps its logits (and a non-zero gradient, through the
    constant divisor) up to the dtype's largest finite value (METHOD.md §1).

    Shape:
        (N, D) -> the rescaled (N, D) rows and the divisors (N, 1), same dtype.
    """
    peak = rows.abs().amax(dim=1, keepdim=True)  # (N, 1)
    scale = torch.where(torch.isfinite(peak) & (peak > _RESCALE_ABOVE), peak, 1.0)
    return rows / scale, scale


def _distances(
    features: torch.Tensor,
    prototypes: torch.Tensor,
    distance_scale: torch.Tensor,
    scales: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None),
) -> dict[str, object]:
    """``‖f̂ − p̂‖`` (B, C), exact to float32 rounding (METHOD.md §1), and backward's inputs.

    Returns:
        A dict: ``distances`` (B, C), ``s`` (float), the norms ``norm_f`` (B, 1) and ``norm_p``
        (C,) and ``denom`` (B, C) for backward (``inf`` for a vector shorter than eps, which gets
        and gives no gradient), ``product`` ``f pᵀ``, the recomputed pairs ``near`` and the
        rescaling divisors ``scales``.
    """
    norm_f = torch.linalg.vector_norm(features, dim=1, keepdim=True)  # (B, 1)
    norm_p = torch.linalg.vector_norm(prototypes, dim=1)  # (C,)
    denom = norm_f * norm_p  # (B, C)
    product = torch.mm(features, prototypes.t())
    two = _constant(2.0, product.dtype, product.device)
    squared = torch.addcdiv(two, product, denom, value=-2.0)
    # One host sync: the extreme norms, s and the smallest d².
    low_f, high_f, low_p, high_p, s, nearest = _extremes(norm_f, norm_p, distance_scale, squared)
    if not (high_f <= _RESCALE_ABOVE and high_p <= _RESCALE_ABOVE) and scales[0] is None:
        # huge, infinite or NaN entries
        features, scale_f = _rescale_large_rows(features)
        prototypes, scale_p = _rescale_large_rows(prototypes)
        return _distances(features, prototypes, distance_scale, (scale_f, scale_p))
    unit_f, unit_p = norm_f, norm_p  # the divisors that make unit vectors
    if low_f < _NORM_EPS or low_p < _NORM_EPS:
        # F.normalize: v / max(‖v‖, eps), so ‖v̂‖ < 1 below eps and 0 stays 0.
        unit_f, unit_p = norm_f.clamp_min(_NORM_EPS), norm_p.clamp_min(_NORM_EPS)
        cosines = product / (unit_f * unit_p)
        squared = torch.sub(
            (norm_f / unit_f).square_() + (norm_p / unit_p).square_(), cosines, alpha=2.0
        )
        nearest = float(squared.amin())
        norm_f = unit_f.masked_fill(norm_f < _NORM_EPS, math.inf)
        norm_p = unit_p.masked_fill(norm_p < _NORM_EPS, math.inf)
        denom = norm_f * norm_p
    state: dict[str, object] = {
        "features": features, "prototypes": prototypes, "product": product, "denom": denom,
        "norm_f": norm_f, "norm_p": norm_p, "s": s, "scales": scales, "near": None,
    }  # fmt: skip
    if nearest < _EXACT_BELOW_SQUARED:  # else every d² ≥ 0.0625 > 0: no clamp needed
        rows, cols = torch.nonzero(squared < _EXACT_BELOW_SQUARED).unbind(1)
        # (k, D) rows of the pairs to recompute (index_select: a row copy, fast).
        f_hat = features.index_select(0, rows).div_(unit_f.index_select(0, rows))
        p_rows = prototypes.index_select(0, cols)
        difference = torch.addcdiv(f_hat, p_rows, unit_p.index_select(0, cols)[:, None], value=-1)
        exact = torch.linalg.vector_norm(difference, dim=1)
        state["near"] = (rows, cols, f_hat, difference, exact)
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
    state = _distances(features, prototypes, distance_scale)
    distances = state["distances"]
    assert isinstance(distances, torch.Tensor)
    s = state["s"]
    assert isinstance(s, float)
    a = abs(s) * factor
    state.update(a=a, sign=float(s > 0) - float(s < 0), factor=factor, mean_term=mean_term)
    state["scale_shape"] = distance_scale.shape
    if mean_term:  # −a d − (a / C) Σ_k d_k in one rank-1 update (fewer passes than sum-scale-add)
        ones = _ones(distances.shape[1], distances.dtype, distances.device)
        logits = torch.addr(distances, distances.sum(dim=1), ones, beta=-a, alpha=-a / len(ones))
        return logits, state
    return distances * -a, state


def _near_pair_gradients(
    near: tuple[torch.Tensor, ...], g: torch.Tensor, norm_f: torch.Tensor, norm_p: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``−∂L/∂f`` and ``∂L/∂p`` rows ``(k, D)`` of the recomputed pairs, from ``e = f̂ − p̂``.

    ``g = −∂L/∂d`` of the pairs (k,). ``∂d/∂f̂ = e / d`` and ``∂d/∂p̂ = −e / d`` (0 where
    ``d == 0``: a sub-gradient), each projected onto its sphere's tangent and divided by the
    norm: for unit vectors ``f̂·e = d²/2 = −p̂·e`` (METHOD.md §1).
    """
    rows, cols, f_hat, difference, exact = near
    w = torch.where(exact > 0, g / exact, 0.0)[:, None]  # (k, 1)
    half_squared = exact.square().mul_(0.5)[:, None]
    near_f = torch.addcmul(difference, f_hat, half_squared, value=-1.0)
    near_f.mul_(w / norm_f.index_select(0, rows))
    near_p = torch.addcmul(difference, f_hat - difference, half_squared)
    near_p.mul_(w.div_(norm_p.index_select(0, cols)[:, None]))
    return near_f, near_p


def _prototype_backward(
    state: dict[str, object], grad: torch.Tensor, needs_input_grad: tuple[bool, ...]
) -> tuple[torch.Tensor | None, ...]:
    """Gradients for the features, the prototypes and the scale (see :class:`_PrototypeLogits`)."""
    d, product, denom, near = state["distances"], state["product"], state["denom"], state["near"]
    features, prototypes = state["features"], state["prototypes"]
    norm_f, norm_p, a = state["norm_f"], state["norm_p"], state["a"]
    if grad.dtype != d.dtype:
        grad = grad.to(d.dtype)
    # gd = −∂L/∂d / a = G + mean_k G_k (DisMax) or G (IsoMax+); ∂L/∂s = −sign(s)·factor·Σ gd d.
    if state["mean_term"]:
        gd = torch.add(grad, grad.sum(dim=1, keepdim=True), alpha=1.0 / d.shape[1])
    else:
        gd = grad
    grad_f = grad_p = grad_s = None
    if needs_input_grad[2]:  # (1,) from one matrix-vector product, scaled by its alpha
        scale = -state["sign"] * state["factor"]
        zero = _constant(0.0, d.dtype, d.device)
        grad_s = torch.addmv(zero, gd.reshape(1, -1), d.reshape(-1), beta=0, alpha=scale)
        grad_s = grad_s.reshape(state["scale_shape"])
    if not (needs_input_grad[0] or needs_input_grad[1]):
        return grad_f, grad_p, grad_s
    # H / a = gd / d (d ≥ 0.25 outside the recomputed pairs, which are set to 0 here).
    h = torch.div(gd, d)
    if near is not None:
        g = gd[near[0], near[1]] * a
        h.index_put_(near[:2], h.new_zeros(()))
        near_f, near_p = _near_pair_gradients(near, g, norm_f, norm_p)
    # H / (‖f‖ ‖p‖) with H = a gd / d = ∂L/∂cos
    scaled = torch.addcdiv(_constant(0.0, d.dtype, d.device), h, denom, value=a)
    radial = scaled * product  # H cos
    scale_f, scale_p = state["scales"]
    if needs_input_grad[0]:  # Σ_j H_j (p_j / (‖f‖ ‖p_j‖) − cos_j f / ‖f‖²)
        grad_f = torch.mm(scaled, prototypes)
        coef = radial.sum(dim=1, keepdim=True).div_(norm_f.square())
        grad_f.addcmul_(features, coef, value=-1.0)
        if near is not None:
            grad_f.index_add_(0, near[0], near_f, alpha=-1.0)
        if scale_f is not None:
            grad_f /= scale_f
    if needs_input_grad[1]:
        grad_p = torch.mm(scaled.t(), features)
        coef = radial.sum(dim=0).div_(norm_p.square())[:, None]
        grad_p.addcmul_(prototypes, coef, value=-1.0)
        if near is not None:
            grad_p.index_add_(0, near[1], near_p)
        if scale_p is not None:
            grad_p /= scale_p
    return grad_f, grad_p, grad_s


class _PrototypeLogits(torch.autograd.Function):
    """Fused IsoMax+/DisMax logits with a hand-written backward (one autograd node).

    Forward: :func:`_distances`, :func:`_prototype_forward`. Backward, with ``G = ∂L/∂z``:
    ``∂L/∂s = −sign(s) · factor · Σ G r``; ``∂L/∂d = −a (G + mean_k G_k)`` (DisMax) or
    ``−a G``. For the matrix-product pairs ``H = ∂L/∂cos = −∂L/∂d / d`` and
    ``∂L/∂f = Σ_j H_j (p_j / (‖f‖‖p_j‖) − cos_j f / ‖f‖²)`` (the tangent part: ``f / ‖f‖`` is
    all that matters); for the recomputed pairs the same from the exact difference
    (:func:`_near_pair_gradients`). A vector shorter than eps has no direction: it gets and
    gives no gradient (not 1/eps). Rows rescaled by :func:`_rescale_large_rows` get their
    gradient divided by the same constant.

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
        logits, state = _prototype_forward(features, prototypes, distance_scale, factor, mean_term)
        ctx.save_for_backward(features, prototypes)  # for autograd's in-place-modification check
        ctx.state = state
        return logits

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        _ = ctx.saved_tensors  # raises if an input was modified in place since the forward
        with _autocast_off(grad.device):
            grad_f, grad_p, grad_s = _prototype_backward(ctx.state, grad, ctx.needs_input_grad)
        return grad_f, grad_p, grad_s, None, None


def _prototype_logits(
    features: torch.Tensor,
    prototypes: torch.Tensor,
    distance_scale: torch.Tensor,
    *,
    factor: float,
    mean_term: bool,
) -> torch.Tensor:
    """Logits (B, C) of features (B, D) against prototypes (C, D) with scale ``s`` (1,).

    Computed in float32 (float64 for float64 inputs) with autocast off; through the autograd
    node only when a gradient can be needed. METHOD.md §1.
    """
    dtype = _compute_dtype(features, prototypes)
    if not features.dtype == prototypes.dtype == distance_scale.dtype == dtype:
        features, prototypes = features.to(dtype), prototypes.to(dtype)
        distance_scale = distance_scale.to(dtype)
    with _autocast_off(features.device):
        if torch.is_grad_enabled() and (
            features.requires_grad or prototypes.requires_grad or distance_scale.requires_grad
        ):
            return _PrototypeLogits.apply(features, prototypes, distance_scale, factor, mean_term)
        return _prototype_forward(features, prototypes, distance_scale, factor, mean_term)[0]
