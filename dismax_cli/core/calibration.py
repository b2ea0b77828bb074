"""Temperature scaling: fit one temperature T > 0 so that ``softmax(logits / T)`` is calibrated.

:func:`fit_temperature` minimises either the 15-bin ECE (the DisMax paper's objective) or the
NLL (Guo et al.) over T within bounds. The ECE is not smooth in T (samples jump between bins), so
a gradient method started at T = 1 can stop at a kink or on a flat piece. The default optimiser is
therefore a global, deterministic search:

1. evaluate the objective on ``grid_size`` log-spaced temperatures from the lower to the upper
   bound (both included); take the best one, the smallest T on exact ties;
2. refine with scipy's bounded Brent search (``minimize_scalar(method="bounded")``) between the
   two grid neighbours of that point, keeping the refined T only if it is strictly better.

``optimizer="lbfgsb"`` reproduces the paper's code instead: bounded L-BFGS-B from T = 1 with
numerical gradients. Either way the result lies within the bounds, is never NaN, and is the same
on every run. When the optimum is a bound (all-correct sets push T to 0, all-wrong sets to
infinity: no finite optimum) the bound is returned and a :class:`TemperatureAtBoundWarning` says
why.

Applying a temperature: heads hold none and return raw logits (T = 1); the fitted T is kept with
the run and applied only where probabilities are computed, :func:`calibrated_probs`
(``softmax(logits / T)``, METHOD.md §3, §4). Temperature scaling never changes the predicted
classes.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import numpy as np
import torch

from dismax_cli.core._arrays import ArrayLike, to_numpy_float64, to_numpy_targets
from dismax_cli.core.metric_table import CALIBRATION_OBJECTIVES
from dismax_cli.core.metrics import binned_ece, check_num_bins
from dismax_cli.core.tensor_checks import check_usable_tensor
from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q

Objective = Literal["ece", "nll"]
Optimizer = Literal["grid", "lbfgsb"]

#: ``("ece", "nll")``, from the metric table (the metrics marked ``objective``).
OBJECTIVES: tuple[str, ...] = CALIBRATION_OBJECTIVES
#: The temperature optimisers of :func:`fit_temperature` (``method`` means a training method
#: elsewhere in dismax, so the calibration keyword is ``optimizer``).
OPTIMIZERS: tuple[str, ...] = ("grid", "lbfgsb")


class TemperatureAtBoundWarning(UserWarning):
    """The fitted temperature sits at a bound of the search: the objective has no finite optimum.

    Raised as a warning (not an error) by :func:`fit_temperature`; the bound is returned.
    """


class _TemperatureObjective:
    """The ECE or NLL of ``softmax(logits / T)`` as a function of T, computed in float64.

    Precomputes the max-shifted logits (all <= 0, the row maximum exactly 0) and the fixed
    predictions, so each evaluation is one exp over ``(N, C)``; never NaN for finite logits.
    """

    def __init__(
        self, logits: np.ndarray, targets: np.ndarray, objective: str, num_bins: int
    ) -> None:
        self.shifted = logits - logits.max(axis=1, keepdims=True)
        self.target_shifted = self.shifted[np.arange(logits.shape[0]), targets]
        self.correct = np.argmax(logits, axis=1) == targets
        self.objective = objective
        self.num_bins = num_bins

    def __call__(self, temperature: float) -> float:
        scaled = self.shifted / temperature
        log_normaliser = np.log(np.exp(scaled).sum(axis=1))  # >= 0: the row maximum adds exp(0)
        if self.objective == "ece":
            confidences = np.exp(-log_normaliser)
            return binned_ece(confidences, self.correct, self.num_bins)
        return float(np.mean(log_normaliser - self.target_shifted / temperature))


def _logits_and_targets(
    logits: ArrayLike, targets: ArrayLike, *, min_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    array = to_numpy_float64(logits, name="logits", ndim=2, layout="(N, C)")
    if array.shape[0] == 0:
        raise DismaxError("logits is empty (no samples); pass at least one row of logits")
    if array.shape[1] < min_classes:
        raise DismaxError(
            f"logits has {array.shape[1]} class{'es' if array.shape[1] != 1 else ''}, "
            f"need at least {min_classes}; pass logits of shape (N, C)"
        )
    target_array = to_numpy_targets(targets, num_classes=array.shape[1], num_samples=array.shape[0])
    return array, target_array


def _check_temperature(temperature: float) -> float:
    try:
        value = float(temperature)
    except (TypeError, ValueError) as error:
        raise DismaxError(f"temperature must be a positive number, got {q(temperature)}") from error
    if not math.isfinite(value) or value <= 0.0:
        raise DismaxError(
            f"temperature must be finite and > 0, got {q(temperature)}; T = 1 is none"
        )
    return value


def _check_bounds(bounds: tuple[float, float]) -> tuple[float, float]:
    try:
        low, high = (float(bound) for bound in bounds)
    except (TypeError, ValueError) as error:
        raise DismaxError(
            f"bounds must be two numbers (low, high), got {q(bounds)}; e.g. (1e-3, 100.0)"
        ) from error
    if not (math.isfinite(low) and math.isfinite(high)) or not 0.0 < low < high:
        raise DismaxError(
            f"bounds must satisfy 0 < low < high (finite), got {q(bounds)}; e.g. (1e-3, 100.0)"
        )
    return low, high


def ece_from_logits(
    logits: ArrayLike, targets: ArrayLike, *, temperature: float = 1.0, num_bins: int = 15
) -> float:
    """Compute the ECE of ``softmax(logits / temperature)``.

    Definition: :func:`dismax_cli.core.metrics.ece` (top-label confidence, ``num_bins``
    equal-width bins, right-closed, the first closed at 0) on the temperature-scaled softmax,
    computed in float64 from the log-domain. No positive class; lower is better.

    Args:
        logits: Logits before temperature scaling.
        targets: Integer class indices in ``[0, C)``.
        temperature: T > 0 dividing the logits.
        num_bins: The number of equal-width bins; the paper uses 15.

    Returns:
        The ECE in [0, 1].

    Shape:
        logits: ``(N, C)``; targets: ``(N,)``.

    Raises:
        DismaxError: If there are no samples, the shapes disagree, a logit is not finite, a
            target is out of range, the temperature is not finite and positive, or ``num_bins``
            is not a positive integer.

    References:
        Naeini, Cooper and Hauskrecht, "Obtaining Well Calibrated Probabilities Using Bayesian
        Binning", AAAI 2015.
        Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks",
        arXiv:1706.04599.
    """
    check_num_bins(num_bins)
    value = _check_temperature(temperature)
    array, target_array = _logits_and_targets(logits, targets, min_classes=1)
    return _TemperatureObjective(array, target_array, "ece", int(num_bins))(value)


def nll_from_logits(logits: ArrayLike, targets: ArrayLike, *, temperature: float = 1.0) -> float:
    """Compute the NLL of the targets under ``softmax(logits / temperature)`` (natural log).

    Definition: ``mean_n [logsumexp_c(z_{n,c} / T) - z_{n,y_n} / T]``, computed in float64 in the
    log domain, so it is finite for any finite logits (no clamping needed). No positive class;
    lower is better.

    Args:
        logits: Logits before temperature scaling.
        targets: Integer class indices in ``[0, C)``.
        temperature: T > 0 dividing the logits.

    Returns:
        The mean NLL, >= 0.

    Shape:
        logits: ``(N, C)``; targets: ``(N,)``.

    Raises:
        DismaxError: If there are no samples, the shapes disagree, a logit is not finite, a
            target is out of range, or the temperature is not finite and positive.

    References:
        Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks",
        arXiv:1706.04599.
    """
    value = _check_temperature(temperature)
    array, target_array = _logits_and_targets(logits, targets, min_classes=1)
    return _TemperatureObjective(array, target_array, "nll", 15)(value)


def _grid_search(objective: _TemperatureObjective, low: float, high: float, size: int) -> float:
    grid = np.geomspace(low, high, size)
    grid[0], grid[-1] = low, high
    values = np.array([objective(float(temperature)) for temperature in grid])
    best = int(np.argmin(values))  # the first minimum: the smallest T on exact ties
    left, right = float(grid[max(best - 1, 0)]), float(grid[min(best + 1, size - 1)])
    from scipy.optimize import minimize_scalar  # on first use (about a second to import)

    refined = minimize_scalar(
        objective,
        bounds=(left, right),
        method="bounded",
        options={"xatol": 1e-9 * float(grid[best]), "maxiter": 500},
    )
    if math.isfinite(float(refined.fun)) and float(refined.fun) < float(values[best]):
        return float(min(max(float(refined.x), low), high))
    return float(grid[best])


def _lbfgsb(objective: _TemperatureObjective, low: float, high: float) -> float:
    start = min(max(1.0, low), high)
    from scipy.optimize import minimize  # on first use (about a second to import)

    result = minimize(
        lambda x: objective(float(x[0])),
        x0=np.array([start]),
        method="L-BFGS-B",
        bounds=[(low, high)],
    )
    return float(min(max(float(result.x[0]), low), high))


def fit_temperature(
    logits: ArrayLike,
    targets: ArrayLike,
    *,
    objective: Objective = "ece",
    bounds: tuple[float, float] = (1e-3, 100.0),
    num_bins: int = 15,
    optimizer: Optimizer = "grid",
    grid_size: int = 200,
) -> float:
    """Fit the temperature T that minimises the ECE or the NLL of ``softmax(logits / T)``.

    Definition: ``T* = argmin_{T in [low, high]} objective(softmax(logits / T), targets)`` with
    objective the ``num_bins``-bin ECE (``"ece"``, the DisMax paper's choice) or the mean NLL
    (``"nll"``, Guo et al.); the two optimizers are described in the module docstring.
    Deterministic; the result is finite and within the bounds. Fit it on a held-out split,
    never on a split that is later scored. Predictions (argmax) do not depend on T.

    Args:
        logits: Uncalibrated logits (the head's output at T = 1).
        targets: Integer class indices in ``[0, C)``.
        objective: ``"ece"`` or ``"nll"``.
        bounds: ``(low, high)`` with ``0 < low < high``.
        num_bins: ECE bins (ignored for ``"nll"``).
        optimizer: ``"grid"`` (robust, default) or ``"lbfgsb"`` (paper parity: METHOD.md §4).
        grid_size: Number of grid temperatures for ``optimizer="grid"`` (>= 2).

    Returns:
        The fitted temperature as a Python float.

    Shape:
        logits: ``(N, C)`` with ``C >= 2``; targets: ``(N,)``.

    Raises:
        DismaxError: If the objective, optimizer, bounds, ``num_bins`` or ``grid_size`` is invalid,
            there are no samples or fewer than 2 classes, a logit is not finite, the shapes
            disagree, or a target is out of range.

    Warns:
        TemperatureAtBoundWarning: If the optimum is a bound (e.g. every calibration prediction
            correct pushes T to the lower bound, every one wrong to the upper bound); the bound
            is returned.

    References:
        Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks",
        arXiv:1706.04599.
        Macêdo, Zanchettin and Ludermir, "Distinction Maximization Loss", arXiv:2205.05874.
    """
    _check_fit_options(objective, optimizer, num_bins, grid_size)
    low, high = _check_bounds(bounds)
    array, target_array = _logits_and_targets(logits, targets, min_classes=2)
    function = _TemperatureObjective(array, target_array, objective, int(num_bins))

    if optimizer == "grid":
        temperature = _grid_search(function, low, high, grid_size)
    else:
        temperature = _lbfgsb(function, low, high)
    return _within_bounds(temperature, low, high, objective)


def _check_fit_options(objective: str, optimizer: str, num_bins: int, grid_size: int) -> None:
    """Raise the :class:`DismaxError` of :func:`fit_temperature` for a bad option value."""
    if objective not in OBJECTIVES:
        raise DismaxError(
            f"unknown calibration objective {q(objective)}; choose one of: {', '.join(OBJECTIVES)}"
        )
    if optimizer not in OPTIMIZERS:
        raise DismaxError(
            f"unknown calibration optimizer {q(optimizer)}; choose one of: {', '.join(OPTIMIZERS)}"
        )
    check_num_bins(num_bins)
    if isinstance(grid_size, bool) or not isinstance(grid_size, int) or grid_size < 2:
        raise DismaxError(f"grid_size must be an integer >= 2, got {q(grid_size)}; e.g. 200")


def _within_bounds(temperature: float, low: float, high: float, objective: str) -> float:
    """``temperature``, or the bound it reached with a :class:`TemperatureAtBoundWarning`.

    The warning's ``stacklevel`` names the caller of :func:`fit_temperature`.
    """
    if temperature <= low:
        warnings.warn(
            f"the {objective.upper()}-optimal temperature is the lower bound {low:g}: the "
            "objective keeps improving as T -> 0, as when every calibration prediction is "
            f"correct, so there is no finite optimum; returning T = {low:g} (check the "
            "calibration split, or lower the bound)",
            TemperatureAtBoundWarning,
            stacklevel=3,
        )
        return low
    if temperature >= high:
        warnings.warn(
            f"the {objective.upper()}-optimal temperature is the upper bound {high:g}: the "
            "objective keeps improving as T grows, as when every calibration prediction is "
            f"wrong, so there is no finite optimum; returning T = {high:g} (check the "
            "calibration split, or raise the bound)",
            TemperatureAtBoundWarning,
            stacklevel=3,
        )
        return high
    return temperature


def calibrated_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Return the calibrated probabilities ``softmax(logits / T)`` in float64.

    The one place a temperature is applied: heads return raw logits (T = 1), OOD scores use them
    as they are, and probabilities (ACC, NLL, ECE, a deployed model's confidence) use the run's
    fitted T (METHOD.md §3, §4). Predictions (argmax) do not depend on T.

    Args:
        logits: Raw logits (B, C) at T = 1.
        temperature: T > 0, e.g. from :func:`fit_temperature`.

    Shape:
        (B, C) -> (B, C), rows summing to 1.

    Raises:
        DismaxError: If the temperature is not finite and positive, or logits are not (B, C)
            or hold no usable values (:func:`~dismax_cli.core.tensor_checks.check_usable_tensor`).

    References:
        Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks",
        arXiv:1706.04599.
    """
    value = _check_temperature(temperature)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise DismaxError(f"logits of shape {shape} are invalid: expected (B, C)")
    check_usable_tensor(logits, name="logits")  # meta, sparse, complex, bool: one clear line
    return torch.softmax(logits.double() / value, dim=1)


__all__ = [
    "OBJECTIVES",
    "OPTIMIZERS",
    "Objective",
    "Optimizer",
    "TemperatureAtBoundWarning",
    "calibrated_probs",
    "ece_from_logits",
    "fit_temperature",
    "nll_from_logits",
]
