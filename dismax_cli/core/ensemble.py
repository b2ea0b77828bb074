"""Deep-ensemble predictions from the logits of M independently trained members.

The ensemble's predictive distribution is the **mean of the members' softmax probabilities**,
never the softmax of their mean logits. Its OOD score is :func:`~dismax_cli.core.scores.msp` on
that distribution: ``msp(predictive_log_probs(member_logits))`` equals ``max_c p̄_c`` (the softmax
of log-probabilities gives the probabilities back), and every other score of
:mod:`dismax_cli.core.scores` can be applied to the same log-probabilities.
:func:`mutual_information` measures the members' disagreement (higher = more uncertain).

Like the scores, every function returns the kind of array it is given: a tensor in gives a
``torch.float64`` tensor on the CPU (moved there before the cast: no float64 on an
accelerator), a numpy array or a list gives a ``numpy.float64``
array. Computations are in float64 in the log domain with ``0 · log 0 = 0``; NaN or infinite
logits raise :class:`~dismax_cli.errors.DismaxError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import overload

import numpy as np
import numpy.typing as npt
import torch

from dismax_cli.core._arrays import ArrayLike, to_torch_float64
from dismax_cli.errors import DismaxError


def _apply(
    member_logits: ArrayLike, compute: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor | np.ndarray:
    z, is_torch = to_torch_float64(member_logits, name="member_logits", ndim=3, layout="(M, B, C)")
    if z.shape[0] == 0:
        raise DismaxError("member_logits has 0 members (shape (0, B, C)); pass at least one model")
    if z.shape[2] == 0:
        raise DismaxError("member_logits has 0 classes (shape (M, B, 0)); pass at least one class")
    result = compute(z)
    return result if is_torch else result.detach().numpy()


def _log_mean_probs(z: torch.Tensor) -> torch.Tensor:
    # log p̄ = logsumexp_m log_softmax(z_m) - log M: finite, exact in the log domain.
    return torch.logsumexp(torch.log_softmax(z, dim=-1), dim=0) - math.log(z.shape[0])


def _entropy(log_probs: torch.Tensor) -> torch.Tensor:
    probs = log_probs.exp()
    terms = torch.where(probs > 0, probs * log_probs, torch.zeros_like(probs))  # 0 · log 0 = 0
    return -terms.sum(dim=-1)


def _mutual_information(z: torch.Tensor) -> torch.Tensor:
    total = _entropy(_log_mean_probs(z))
    expected = _entropy(torch.log_softmax(z, dim=-1)).mean(dim=0)
    return (total - expected).clamp_min(0.0)  # >= 0 in exact arithmetic; drop rounding noise


@overload
def predictive_probs(member_logits: torch.Tensor) -> torch.Tensor: ...
@overload
def predictive_probs(member_logits: npt.ArrayLike) -> np.ndarray: ...
def predictive_probs(member_logits: ArrayLike) -> torch.Tensor | np.ndarray:
    """Average the members' softmax probabilities into the ensemble's predictive distribution.

    Definition: ``p̄ = (1/M) Σ_m softmax(z_m)`` (the mean of probabilities, never of logits).
    Not a score: use ``msp`` on :func:`predictive_log_probs` (higher = more in-distribution).

    Args:
        member_logits: Each member's logits for the same samples.

    Returns:
        The predictive probabilities (rows sum to 1); a float64 CPU tensor when
        given a tensor, otherwise a float64 numpy array.

    Shape:
        member_logits: ``(M, B, C)``; returns ``(B, C)``.

    Raises:
        DismaxError: If the input is not three-dimensional, has no member or class, or holds NaN
            or infinite values.

    References:
        Lakshminarayanan, Pritzel and Blundell, "Simple and Scalable Predictive Uncertainty
        Estimation using Deep Ensembles", arXiv:1612.01474.
    """
    return _apply(member_logits, lambda z: torch.softmax(z, dim=-1).mean(dim=0))


@overload
def predictive_log_probs(member_logits: torch.Tensor) -> torch.Tensor: ...
@overload
def predictive_log_probs(member_logits: npt.ArrayLike) -> np.ndarray: ...
def predictive_log_probs(member_logits: ArrayLike) -> torch.Tensor | np.ndarray:
    """Compute the log of the ensemble's predictive distribution, usable as logits for scoring.

    Definition: ``log p̄ = logsumexp_m log_softmax(z_m) - log M``, finite for finite logits.
    ``softmax(log p̄) = p̄``, so ``msp(predictive_log_probs(z))`` is the ensemble's MSP
    ``max_c p̄_c`` (higher = more in-distribution, ID the positive class of the metrics).

    Args:
        member_logits: Each member's logits for the same samples.

    Returns:
        The predictive log-probabilities; a float64 CPU tensor when given a
        tensor, otherwise a float64 numpy array.

    Shape:
        member_logits: ``(M, B, C)``; returns ``(B, C)``.

    Raises:
        DismaxError: If the input is not three-dimensional, has no member or class, or holds NaN
            or infinite values.

    References:
        Lakshminarayanan, Pritzel and Blundell, "Simple and Scalable Predictive Uncertainty
        Estimation using Deep Ensembles", arXiv:1612.01474.
    """
    return _apply(member_logits, _log_mean_probs)


@overload
def mutual_information(member_logits: torch.Tensor) -> torch.Tensor: ...
@overload
def mutual_information(member_logits: npt.ArrayLike) -> np.ndarray: ...
def mutual_information(member_logits: ArrayLike) -> torch.Tensor | np.ndarray:
    """Compute the mutual information between the prediction and the ensemble member.

    Definition: ``MI = H(p̄) - (1/M) Σ_m H(p_m)`` with ``H(p) = -Σ_c p_c log p_c`` (natural log,
    ``0 · log 0 = 0``), ``p_m = softmax(z_m)`` and ``p̄`` their mean; in
    ``[0, min(log M, log C)]``, clamped at 0 against rounding. **Higher = more uncertain (more
    OOD)**, the opposite direction of the scores: negate it to use it as an OOD score with ID as
    the positive class.

    Args:
        member_logits: Each member's logits for the same samples.

    Returns:
        The mutual information per sample; a float64 CPU tensor when given a
        tensor, otherwise a float64 numpy array.

    Shape:
        member_logits: ``(M, B, C)``; returns ``(B,)``.

    Raises:
        DismaxError: If the input is not three-dimensional, has no member or class, or holds NaN
            or infinite values.

    References:
        Lakshminarayanan, Pritzel and Blundell, "Simple and Scalable Predictive Uncertainty
        Estimation using Deep Ensembles", arXiv:1612.01474.
        Depeweg, Hernández-Lobato, Doshi-Velez and Udluft, "Decomposition of Uncertainty in
        Bayesian Deep Learning for Efficient and Risk-sensitive Learning", arXiv:1710.07283.
    """
    return _apply(member_logits, _mutual_information)


__all__ = ["mutual_information", "predictive_log_probs", "predictive_probs"]
