"""OOD scores computed from a head's logits; higher always means more in-distribution.

Every score maps logits ``z`` of shape ``(B, C)`` (the head's output, already divided by its
temperature) to one score per sample, shape ``(B,)``, with **higher = more in-distribution (ID)**,
so that ID is the positive class of AUROC, AUPR-IN and FPR@95TPR (:mod:`dismax_cli.core.metrics`).

Conventions shared by every score:

- Input: a torch tensor, a numpy array or a nested list. **The output has the kind of the input**:
  a tensor in (on any device) gives a ``torch.float64`` tensor on the CPU (the autograd graph is
  kept; the tensor is moved in its own dtype before the cast, so no float64 tensor is created on
  an accelerator: MPS has none);
  a numpy array or a list in gives a ``numpy.float64`` array.
- Computed in float64 from the log-softmax, with ``0 · log 0 = 0``, so every score is finite for
  any finite float32 (or float16/bfloat16) logits, and for float64 logits whose scores are
  representable (|z| below about 1e307).
- NaN or infinite logits raise :class:`~dismax_cli.errors.DismaxError` instead of giving NaN
  scores.

:data:`SCORES` maps each name to its function; :func:`get_score` looks one up by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, overload

import numpy as np
import numpy.typing as npt
import torch

from dismax_cli.core._arrays import ArrayLike, to_torch_float64
from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q


class ScoreFunction(Protocol):
    """A score: logits ``(B, C)`` -> scores ``(B,)``, higher = more in-distribution."""

    @overload
    def __call__(self, logits: torch.Tensor, /) -> torch.Tensor: ...

    @overload
    def __call__(self, logits: npt.ArrayLike, /) -> np.ndarray: ...


def _apply(
    logits: ArrayLike, compute: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor | np.ndarray:
    """Validate ``logits``, run ``compute`` in float64 and return the input's kind of array."""
    z, is_torch = to_torch_float64(logits, name="logits", ndim=2, layout="(B, C)")
    if z.shape[1] == 0:
        raise DismaxError("logits has 0 classes (shape (B, 0)); pass logits with at least 1 class")
    scores = compute(z)
    return scores if is_torch else scores.detach().numpy()


def _max_logit(z: torch.Tensor) -> torch.Tensor:
    return z.max(dim=1).values


def _mean_logit(z: torch.Tensor) -> torch.Tensor:
    # Sum of z / C rather than sum(z) / C: the partial sums stay within max |z|, never overflow.
    return (z / z.shape[1]).sum(dim=1)


def _neg_entropy(z: torch.Tensor) -> torch.Tensor:
    log_probs = torch.log_softmax(z, dim=1)
    probs = log_probs.exp()
    # 0 * log 0 = 0; log_probs is finite for finite z, the guard covers a -inf from overflow.
    terms = torch.where(probs > 0, probs * log_probs, torch.zeros_like(probs))
    return terms.sum(dim=1)


def _msp(z: torch.Tensor) -> torch.Tensor:
    return torch.softmax(z, dim=1).max(dim=1).values


def _energy(z: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(z, dim=1)


def _mmles(z: torch.Tensor) -> torch.Tensor:
    return _max_logit(z) + _mean_logit(z) + _neg_entropy(z)


@overload
def msp(logits: torch.Tensor) -> torch.Tensor: ...
@overload
def msp(logits: npt.ArrayLike) -> np.ndarray: ...
def msp(logits: ArrayLike) -> torch.Tensor | np.ndarray:
    """Compute the maximum softmax probability (MSP; the DisMax paper's "MPS").

    Definition: ``msp = max_c p_c`` with ``p = softmax(z)``. Higher = more in-distribution (ID is
    the positive class). The default score of the SoftMax baseline and, on the members' averaged
    probabilities, of a deep ensemble.

    Args:
        logits: The head's logits (divided by its temperature).

    Returns:
        The scores, in ``[1/C, 1]``; a float64 CPU tensor when given a tensor (on any device),
        otherwise a float64 numpy array.

    Shape:
        logits: ``(B, C)``; returns ``(B,)``.

    Raises:
        DismaxError: If the logits are not two-dimensional, have no class, or hold NaN or
            infinite values.

    References:
        Hendrycks and Gimpel, "A Baseline for Detecting Misclassified and Out-of-Distribution
        Examples in Neural Networks", arXiv:1610.02136.
    """
    return _apply(logits, _msp)


@overload
def max_logit(logits: torch.Tensor) -> torch.Tensor: ...
@overload
def max_logit(logits: npt.ArrayLike) -> np.ndarray: ...
def max_logit(logits: ArrayLike) -> torch.Tensor | np.ndarray:
    """Compute the maximum logit.

    Definition: ``max_logit = max_c z_c``. Higher = more in-distribution (ID is the positive
    class). Unbounded; the metrics only use its ranks.

    Args:
        logits: The head's logits (divided by its temperature).

    Returns:
        The scores; a float64 CPU tensor when given a tensor (on any device), otherwise a
        float64 numpy array.

    Shape:
        logits: ``(B, C)``; returns ``(B,)``.

    Raises:
        DismaxError: If the logits are not two-dimensional, have no class, or hold NaN or
            infinite values.

    References:
        Hendrycks, Basart, Mazeika, Zou, Kwon, Mostajabi, Steinhardt and Song, "Scaling
        Out-of-Distribution Detection for Real-World Settings", arXiv:1911.11132.
    """
    return _apply(logits, _max_logit)


@overload
def mds(logits: torch.Tensor) -> torch.Tensor: ...
@overload
def mds(logits: npt.ArrayLike) -> np.ndarray: ...
def mds(logits: ArrayLike) -> torch.Tensor | np.ndarray:
    """Compute the minimum distance score (MDS) of a distance-based head.

    Definition: ``mds = max_c z_c``; for an IsoMax+ head, whose logits are ``z_c = -|s| d_c``,
    this is ``-|s| · min_c d_c``, the negative distance to the nearest prototype. Numerically the
    same as :func:`max_logit`; the separate name states the intent. Higher = more in-distribution
    (ID is the positive class). The default score of IsoMax+.

    Args:
        logits: The head's logits (divided by its temperature).

    Returns:
        The scores; a float64 CPU tensor when given a tensor (on any device), otherwise a
        float64 numpy array.

    Shape:
        logits: ``(B, C)``; returns ``(B,)``.

    Raises:
        DismaxError: If the logits are not two-dimensional, have no class, or hold NaN or
            infinite values.

    References:
        Macêdo and Ludermir, "Enhanced Isotropy Maximization Loss: Seamless and High-Performance
        Out-of-Distribution Detection Simply Replacing the SoftMax Loss", arXiv:2105.14399.
    """
    return _apply(logits, _max_logit)


@overload
def neg_entropy(logits: torch.Tensor) -> torch.Tensor: ...
@overload
def neg_entropy(logits: npt.ArrayLike) -> np.ndarray: ...
def neg_entropy(logits: ArrayLike) -> torch.Tensor | np.ndarray:
    """Compute the negative entropy of the softmax probabilities (the paper's entropic score, ES).

    Definition: ``neg_entropy = Σ_c p_c log p_c`` (natural log) with ``p = softmax(z)`` computed
    through the log-softmax and ``0 · log 0 = 0``. In ``[-log C, 0]``. Higher = more
    in-distribution (ID is the positive class).

    Args:
        logits: The head's logits (divided by its temperature).

    Returns:
        The scores; a float64 CPU tensor when given a tensor (on any device), otherwise a
        float64 numpy array.

    Shape:
        logits: ``(B, C)``; returns ``(B,)``.

    Raises:
        DismaxError: If the logits are not two-dimensional, have no class, or hold NaN or
            infinite values.

    References:
        Macêdo, Ren, Zanchettin, Oliveira and Ludermir, "Entropic Out-of-Distribution Detection:
        Seamless Detection of Unknown Examples", arXiv:1908.05569.
        Macêdo, Zanchettin and Ludermir, "Distinction Maximization Loss", arXiv:2205.05874.
    """
    return _apply(logits, _neg_entropy)


@overload
def energy(logits: torch.Tensor) -> torch.Tensor: ...
@overload
def energy(logits: npt.ArrayLike) -> np.ndarray: ...
def energy(logits: ArrayLike) -> torch.Tensor | np.ndarray:
    """Compute the (negative free) energy score.

    Definition: ``energy = logsumexp_c z_c``, the negative of the free energy ``-logsumexp z`` at
    temperature 1. Higher = more in-distribution (ID is the positive class).

    Args:
        logits: The head's logits (divided by its temperature).

    Returns:
        The scores; a float64 CPU tensor when given a tensor (on any device), otherwise a
        float64 numpy array.

    Shape:
        logits: ``(B, C)``; returns ``(B,)``.

    Raises:
        DismaxError: If the logits are not two-dimensional, have no class, or hold NaN or
            infinite values.

    References:
        Liu, Wang, Owens and Li, "Energy-based Out-of-distribution Detection", arXiv:2010.03759.
    """
    return _apply(logits, _energy)


@overload
def mmles(logits: torch.Tensor) -> torch.Tensor: ...
@overload
def mmles(logits: npt.ArrayLike) -> np.ndarray: ...
def mmles(logits: ArrayLike) -> torch.Tensor | np.ndarray:
    """Compute the max-mean logit entropy score (MMLES) of DisMax.

    Definition: ``mmles = max_c z_c + mean_c z_c + Σ_c p_c log p_c`` with ``p = softmax(z)`` and
    ``0 · log 0 = 0``. Higher = more in-distribution (ID is the positive class). The default
    score of DisMax; for a DisMax head ``max_c z_c = -|s|(d_min + d̄)`` and
    ``mean_c z_c = -2|s| d̄``.

    Args:
        logits: The head's logits (divided by its temperature).

    Returns:
        The scores; a float64 CPU tensor when given a tensor (on any device), otherwise a
        float64 numpy array.

    Shape:
        logits: ``(B, C)``; returns ``(B,)``.

    Raises:
        DismaxError: If the logits are not two-dimensional, have no class, or hold NaN or
            infinite values.

    References:
        Macêdo, Zanchettin and Ludermir, "Distinction Maximization Loss: Efficiently Improving
        Out-of-Distribution Detection and Uncertainty Estimation by Replacing the Loss and
        Calibrating", arXiv:2205.05874.
    """
    return _apply(logits, _mmles)


SCORES: dict[str, ScoreFunction] = {
    "msp": msp,
    "max_logit": max_logit,
    "mds": mds,
    "neg_entropy": neg_entropy,
    "energy": energy,
    "mmles": mmles,
}
"""Every OOD score by name; each maps logits ``(B, C)`` to scores ``(B,)``, higher = more ID."""


def get_score(name: str) -> ScoreFunction:
    """Look up an OOD score function by name.

    Args:
        name: One of the keys of :data:`SCORES`.

    Returns:
        The score function: logits ``(B, C)`` -> scores ``(B,)``, higher = more in-distribution.

    Raises:
        DismaxError: If ``name`` is not a registered score; the message lists the valid names.
    """
    try:
        return SCORES[name]
    except KeyError:
        raise DismaxError(f"unknown score {q(name)}; choose one of: {', '.join(SCORES)}") from None


__all__ = [
    "SCORES",
    "ScoreFunction",
    "energy",
    "get_score",
    "max_logit",
    "mds",
    "mmles",
    "msp",
    "neg_entropy",
]
