"""Tests for dismax_cli.core.calibration: temperature fitting, bounds, helpers, validation."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from dismax_cli.core.calibration import (
    TemperatureAtBoundWarning,
    calibrated_probs,
    ece_from_logits,
    fit_temperature,
    nll_from_logits,
)
from dismax_cli.core.metrics import ece, nll
from dismax_cli.errors import DismaxError

THREE_TO_ONE_LOGITS = [[2.0, 0.0]] * 4
THREE_TO_ONE_TARGETS = [0, 0, 0, 1]  # 75 % correct at one confidence level


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def overconfident() -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z); the model reports 3 z, so the NLL-optimal T is near 3."""
    rng = np.random.default_rng(11)
    true_logits = rng.standard_normal((4_000, 10)) * 1.5
    probs = _softmax(true_logits)
    targets = np.array([rng.choice(10, p=row) for row in probs])
    return 3.0 * true_logits, targets


def test_nll_objective_hand_case() -> None:
    temperature = fit_temperature(THREE_TO_ONE_LOGITS, THREE_TO_ONE_TARGETS, objective="nll")
    assert temperature == pytest.approx(2.0 / math.log(3.0), abs=1e-6)  # sigmoid(2/T) = 3/4
    assert temperature == pytest.approx(1.820478, abs=1e-6)
    value = nll_from_logits(THREE_TO_ONE_LOGITS, THREE_TO_ONE_TARGETS, temperature=temperature)
    assert value == pytest.approx(0.562335, abs=1e-6)


def test_ece_objective_hand_case() -> None:
    temperature = fit_temperature(THREE_TO_ONE_LOGITS, THREE_TO_ONE_TARGETS)
    value = ece_from_logits(THREE_TO_ONE_LOGITS, THREE_TO_ONE_TARGETS, temperature=temperature)
    assert value <= 1e-4
    assert ece_from_logits(THREE_TO_ONE_LOGITS, THREE_TO_ONE_TARGETS) > 0.13  # T = 1: 0.88 vs 0.75


@pytest.mark.parametrize("objective", ["ece", "nll"])
def test_lbfgsb_parity_method_solves_the_hand_case(objective: str) -> None:
    temperature = fit_temperature(
        THREE_TO_ONE_LOGITS, THREE_TO_ONE_TARGETS, objective=objective, optimizer="lbfgsb"
    )
    assert temperature == pytest.approx(2.0 / math.log(3.0), abs=1e-3)


@pytest.mark.parametrize("objective", ["ece", "nll"])
def test_all_correct_goes_to_lower_bound_with_warning(objective: str) -> None:
    logits = np.array([[2.0, 0.0], [0.0, 2.0]])
    with pytest.warns(TemperatureAtBoundWarning, match="lower bound 0.001.*correct"):
        temperature = fit_temperature(logits, [0, 1], objective=objective)
    assert temperature == 1e-3
    np.testing.assert_array_equal((logits / temperature).argmax(1), logits.argmax(1))


@pytest.mark.parametrize("objective", ["ece", "nll"])
def test_all_wrong_goes_to_upper_bound_with_warning(objective: str) -> None:
    logits = np.array([[2.0, 0.0], [0.0, 2.0]])
    with pytest.warns(TemperatureAtBoundWarning, match="upper bound 100.*wrong"):
        temperature = fit_temperature(logits, [1, 0], objective=objective)
    assert temperature == 100.0
    np.testing.assert_array_equal((logits / temperature).argmax(1), logits.argmax(1))


def test_custom_bounds_are_respected() -> None:
    with pytest.warns(TemperatureAtBoundWarning, match="lower bound 2"):
        low = fit_temperature(
            THREE_TO_ONE_LOGITS, THREE_TO_ONE_TARGETS, objective="nll", bounds=(2.0, 5.0)
        )
    assert low == 2.0
    with pytest.warns(TemperatureAtBoundWarning, match="upper bound 1.5"):
        high = fit_temperature(
            THREE_TO_ONE_LOGITS, THREE_TO_ONE_TARGETS, objective="nll", bounds=(0.5, 1.5)
        )
    assert high == 1.5


def test_nll_fit_finds_the_global_minimum(overconfident: tuple[np.ndarray, np.ndarray]) -> None:
    logits, targets = overconfident
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no bound warning for an interior optimum
        temperature = fit_temperature(logits, targets, objective="nll")
    reference = minimize_scalar(
        lambda t: nll_from_logits(logits, targets, temperature=t),
        bounds=(0.5, 10.0),
        method="bounded",
        options={"xatol": 1e-9},
    )
    assert temperature == pytest.approx(reference.x, rel=1e-5)
    assert 2.5 < temperature < 3.5
    assert nll_from_logits(logits, targets, temperature=temperature) < nll_from_logits(
        logits, targets
    )


def test_ece_fit_improves_on_t1_and_on_the_nll_optimum(
    overconfident: tuple[np.ndarray, np.ndarray],
) -> None:
    logits, targets = overconfident
    temperature = fit_temperature(logits, targets)
    fitted = ece_from_logits(logits, targets, temperature=temperature)
    assert 1e-3 < temperature < 100.0
    assert fitted < 0.2 * ece_from_logits(logits, targets)
    t_nll = fit_temperature(logits, targets, objective="nll")
    assert fitted <= ece_from_logits(logits, targets, temperature=t_nll)
    dense = np.geomspace(1e-3, 100.0, 3_001)
    best_dense = min(ece_from_logits(logits, targets, temperature=t) for t in dense[1_800:2_300])
    assert fitted <= best_dense + 1e-3


def test_fit_is_deterministic_finite_and_keeps_predictions(
    overconfident: tuple[np.ndarray, np.ndarray],
) -> None:
    logits, targets = overconfident
    first = fit_temperature(logits, targets)
    second = fit_temperature(torch.from_numpy(logits).float(), torch.from_numpy(targets))
    assert first == fit_temperature(logits, targets)
    assert type(first) is float and math.isfinite(first)
    assert second == pytest.approx(first, rel=1e-3)  # float32 logits, same optimum
    np.testing.assert_array_equal((logits / first).argmax(1), logits.argmax(1))


def test_helpers_match_the_probability_metrics(
    overconfident: tuple[np.ndarray, np.ndarray],
) -> None:
    logits, targets = overconfident
    for temperature in (0.1, 1.0, 2.7):
        probs = _softmax(logits / temperature)
        assert ece_from_logits(logits, targets, temperature=temperature) == pytest.approx(
            ece(probs, targets), abs=1e-12
        )
        assert nll_from_logits(logits, targets, temperature=temperature) == pytest.approx(
            nll(probs, targets), rel=1e-10
        )
    hand = ece_from_logits([[3.0, 0.0], [0.25, 0.0]], [0, 1])
    assert hand == pytest.approx(0.304801, abs=5e-7)


def test_nll_from_logits_needs_no_clamp() -> None:
    value = nll_from_logits([[0.0, -2000.0]], [1])
    assert value == pytest.approx(2000.0)  # the probability 0 as float64, the NLL still exact


def test_calibrated_probs_are_the_softmax_of_logits_over_t() -> None:
    """METHOD.md §4: p = softmax(z / T), computed here in float64 from the formula."""
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    got = calibrated_probs(logits, 0.25)
    z = logits.double() / 0.25
    want = torch.exp(z - z.max(1, keepdim=True).values)
    want = want / want.sum(1, keepdim=True)
    assert got.dtype == torch.float64 and torch.allclose(got, want, atol=1e-12)
    assert torch.equal(got.argmax(1), logits.argmax(1))
    with pytest.raises(DismaxError, match="temperature must be finite and > 0"):
        calibrated_probs(logits, 0.0)
    with pytest.raises(DismaxError, match="expected \\(B, C\\)"):
        calibrated_probs(logits[0], 2.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"objective": "brier"}, "unknown calibration objective 'brier'; choose one of: ece, nll"),
        ({"optimizer": "adam"}, "unknown calibration optimizer 'adam'"),
        ({"bounds": (0.0, 10.0)}, "bounds must satisfy 0 < low < high"),
        ({"bounds": (5.0, 1.0)}, "bounds must satisfy 0 < low < high"),
        ({"bounds": (1e-3, float("inf"))}, "bounds must satisfy 0 < low < high"),
        ({"bounds": (1.0,)}, "bounds must be two numbers"),
        ({"num_bins": 0}, "num_bins must be an integer >= 1"),
        ({"grid_size": 1}, "grid_size must be an integer >= 2"),
    ],
)
def test_invalid_options_raise(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DismaxError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fit_temperature(THREE_TO_ONE_LOGITS, THREE_TO_ONE_TARGETS, **kwargs)  # type: ignore[arg-type]


def test_invalid_data_raise() -> None:
    with pytest.raises(DismaxError, match=r"targets must lie in \[0, 1\]"):
        fit_temperature([[1.0, 0.0]], [2])
    with pytest.raises(DismaxError, match="targets has 2 entries but there are 1 rows"):
        fit_temperature([[1.0, 0.0]], [0, 1])
    with pytest.raises(DismaxError, match="need at least 2"):
        fit_temperature([[1.0], [2.0]], [0, 0])
    with pytest.raises(DismaxError, match="logits is empty"):
        fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int))
    with pytest.raises(DismaxError, match="logits holds 1 NaN or infinite value"):
        fit_temperature([[1.0, float("nan")]], [0])
    with pytest.raises(DismaxError, match="logits must have 2 dimensions"):
        fit_temperature([1.0, 0.0], [0])
    with pytest.raises(DismaxError, match="temperature must be finite and > 0"):
        nll_from_logits([[1.0, 0.0]], [0], temperature=-1.0)
