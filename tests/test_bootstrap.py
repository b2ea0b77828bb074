"""Tests for dismax_cli.core.bootstrap: vectorised resampled metrics against metrics.py, interval
properties (coverage of the full-sample value, 1/√n shrinkage, paired self-difference [0, 0],
seeding) and input errors."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
import torch

from dismax_cli.core import metrics
from dismax_cli.core.bootstrap import (
    RESAMPLE_BLOCK,
    BootstrapInterval,
    bootstrap_distribution,
    bootstrap_interval,
    paired_bootstrap_difference,
    resample_indices,
)
from dismax_cli.errors import DismaxError

VECTORISED: list[Callable[..., float]] = [
    metrics.auroc,
    metrics.aupr_in,
    metrics.aupr_out,
    metrics.fpr_at_95_tpr,
    metrics.detection_accuracy,
]


def _scores(seed: int, n_id: int, n_ood: int, *, decimals: int | None = None):
    """Seeded ID ~ N(1, 1) and OOD ~ N(0, 1) scores; ``decimals`` rounds them (many ties)."""
    rng = np.random.default_rng(seed)
    id_scores, ood_scores = rng.normal(1.0, 1.0, n_id), rng.normal(0.0, 1.0, n_ood)
    if decimals is not None:
        id_scores, ood_scores = np.round(id_scores, decimals), np.round(ood_scores, decimals)
    return id_scores, ood_scores


CASES = {
    "continuous": _scores(0, 230, 170),
    "coarse ties": _scores(1, 203, 311, decimals=0),  # about 8 distinct values, shared by both
    "grid ties": _scores(2, 97, 60, decimals=1),
    "all equal": (np.full(40, 0.5), np.full(25, 0.5)),
    "one ID sample": (np.array([0.3]), np.array([0.1, 0.3, 0.3, 0.7, -2.0])),
    "one OOD sample": (np.array([0.3, 0.3, 1.0, -1.0, 2.0, 0.5]), np.array([0.3])),
    "separated": (np.arange(50.0) + 100.0, np.arange(30.0)),
}


# ---------------------------------------------------------------- vectorised == exact per resample


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("metric", VECTORISED, ids=lambda m: m.__name__)
def test_vectorised_resamples_equal_exact_metric(metric: Callable[..., float], case: str) -> None:
    id_scores, ood_scores = CASES[case]
    resamples = RESAMPLE_BLOCK + 13  # more than one block, the last one partial
    values = bootstrap_distribution(metric, id_scores, ood_scores, resamples=resamples, seed=5)
    id_indices, ood_indices = resample_indices(
        id_scores.size, ood_scores.size, resamples=resamples, seed=5
    )
    assert values.shape == (resamples,)
    for r in range(resamples):
        expected = metric(id_scores[id_indices[r]], ood_scores[ood_indices[r]])
        assert values[r] == pytest.approx(expected, abs=1e-12), (case, r)


def test_resample_indices_are_stratified_uniform_and_prefix_stable() -> None:
    id_indices, ood_indices = resample_indices(30, 7, resamples=400, seed=11)
    assert id_indices.shape == (400, 30) and ood_indices.shape == (400, 7)
    assert id_indices.min() == 0 and id_indices.max() == 29
    assert ood_indices.min() == 0 and ood_indices.max() == 6
    # uniform with replacement: each index about 1/n of the draws, duplicates inside a resample
    assert np.allclose(np.bincount(id_indices.ravel()) / id_indices.size, 1 / 30, atol=0.005)
    assert any(len(set(row)) < 30 for row in id_indices)
    shorter = resample_indices(30, 7, resamples=73, seed=11)
    assert np.array_equal(shorter[0], id_indices[:73])
    assert np.array_equal(shorter[1], ood_indices[:73])
    other = resample_indices(30, 7, resamples=73, seed=12)
    assert not np.array_equal(other[0], shorter[0])


def test_any_other_pair_metric_is_resampled_with_the_same_indices() -> None:
    id_scores, ood_scores = _scores(3, 40, 30)

    def mean_gap(id_values: np.ndarray, ood_values: np.ndarray) -> float:
        return float(np.mean(id_values) - np.mean(ood_values))

    values = bootstrap_distribution(mean_gap, id_scores, ood_scores, resamples=60, seed=2)
    id_indices, ood_indices = resample_indices(40, 30, resamples=60, seed=2)
    expected = id_scores[id_indices].mean(axis=1) - ood_scores[ood_indices].mean(axis=1)
    assert np.allclose(values, expected, atol=1e-12)


def test_metric_names_and_keys_select_the_metric() -> None:
    id_scores, ood_scores = _scores(4, 50, 50, decimals=1)
    by_function = bootstrap_interval(metrics.aupr_out, id_scores, ood_scores, resamples=50)
    assert bootstrap_interval("AUPR-OUT", id_scores, ood_scores, resamples=50) == by_function
    assert bootstrap_interval("aupr_out", id_scores, ood_scores, resamples=50) == by_function


# ---------------------------------------------------------------- interval properties


def test_interval_is_the_percentile_interval_of_the_resamples() -> None:
    id_scores, ood_scores = _scores(5, 300, 200, decimals=2)
    values = bootstrap_distribution(metrics.auroc, id_scores, ood_scores, resamples=500, seed=9)
    for level in (0.95, 0.5, 0.8):
        interval = bootstrap_interval(
            metrics.auroc, id_scores, ood_scores, resamples=500, seed=9, level=level
        )
        low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
        assert (interval.low, interval.high) == (pytest.approx(low), pytest.approx(high))
        assert interval.value == metrics.auroc(id_scores, ood_scores)
        assert (interval.resamples, interval.seed, interval.level) == (500, 9, level)


@pytest.mark.parametrize("metric", VECTORISED, ids=lambda m: m.__name__)
def test_interval_contains_value_and_shrinks_as_one_over_root_n(
    metric: Callable[..., float],
) -> None:
    # The bootstrap width of one data set is itself noisy (for FPR@95TPR, a tail quantile, very
    # much so), so the width at each n is averaged over 6 independent seeded data sets.
    mean_widths = []
    for n in (1000, 4000):
        widths = []
        for data_seed in range(6):
            id_scores, ood_scores = _scores(100 + data_seed, n, n)
            interval = bootstrap_interval(metric, id_scores, ood_scores, seed=1)
            assert isinstance(interval, BootstrapInterval)
            assert interval.low < interval.value < interval.high
            widths.append(interval.high - interval.low)
        mean_widths.append(np.mean(widths))
    # n quadruples -> the width halves (1/√n), up to bootstrap and sampling noise
    assert 1.6 <= mean_widths[0] / mean_widths[1] <= 2.4


def test_interval_width_matches_the_known_auroc_standard_error() -> None:
    # Hanley-McNeil standard error of the AUROC for n_id = n_ood = 2000 and AUROC A:
    # Q1 = A / (2 - A), Q2 = 2A² / (1 + A), SE² = (A(1-A) + (n-1)(Q1 - A²) + (n-1)(Q2 - A²)) / n²
    id_scores, ood_scores = _scores(7, 2000, 2000)
    interval = bootstrap_interval(metrics.auroc, id_scores, ood_scores, seed=4)
    a, n = interval.value, 2000
    q1, q2 = a / (2 - a), 2 * a**2 / (1 + a)
    se = np.sqrt((a * (1 - a) + (n - 1) * (q1 - a**2) + (n - 1) * (q2 - a**2)) / n**2)
    assert (interval.high - interval.low) / (2 * 1.96 * se) == pytest.approx(1.0, abs=0.15)


def test_same_seed_same_interval_other_seed_other_interval() -> None:
    id_scores, ood_scores = _scores(8, 400, 300)
    first = bootstrap_interval(metrics.fpr_at_95_tpr, id_scores, ood_scores, seed=3)
    again = bootstrap_interval(metrics.fpr_at_95_tpr, id_scores, ood_scores, seed=3)
    other = bootstrap_interval(metrics.fpr_at_95_tpr, id_scores, ood_scores, seed=4)
    assert first == again
    assert (first.low, first.high) != (other.low, other.high)
    assert first.value == other.value
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.low = 0.0  # type: ignore[misc]


def test_torch_and_list_inputs_give_the_same_interval() -> None:
    id_scores, ood_scores = _scores(9, 100, 80, decimals=1)
    expected = bootstrap_interval("AUROC", id_scores, ood_scores, resamples=100)
    as_torch = bootstrap_interval(
        "AUROC", torch.from_numpy(id_scores), torch.from_numpy(ood_scores), resamples=100
    )
    as_list = bootstrap_interval("AUROC", list(id_scores), list(ood_scores), resamples=100)
    assert as_torch == expected and as_list == expected


# ---------------------------------------------------------------- paired differences


@pytest.mark.parametrize("metric", VECTORISED, ids=lambda m: m.__name__)
def test_paired_difference_of_a_method_with_itself_is_exactly_zero(
    metric: Callable[..., float],
) -> None:
    id_scores, ood_scores = _scores(10, 300, 250, decimals=1)
    interval = paired_bootstrap_difference(
        metric, id_scores, ood_scores, id_scores.copy(), ood_scores.copy(), seed=7
    )
    assert (interval.value, interval.low, interval.high) == (0.0, 0.0, 0.0)


def test_paired_difference_uses_the_same_resamples_for_both_methods() -> None:
    id_a, ood_a = _scores(11, 120, 90, decimals=1)
    noise = np.random.default_rng(12)
    id_b, ood_b = id_a + noise.normal(0, 0.7, 120), ood_a + noise.normal(0, 0.7, 90)
    interval = paired_bootstrap_difference(
        metrics.auroc, id_a, ood_a, id_b, ood_b, resamples=80, seed=3, level=0.9
    )
    id_indices, ood_indices = resample_indices(120, 90, resamples=80, seed=3)
    differences = [
        metrics.auroc(id_a[i], ood_a[o]) - metrics.auroc(id_b[i], ood_b[o])
        for i, o in zip(id_indices, ood_indices, strict=True)
    ]
    low, high = np.quantile(differences, [0.05, 0.95])
    assert interval.low == pytest.approx(low, abs=1e-12)
    assert interval.high == pytest.approx(high, abs=1e-12)
    expected_value = metrics.auroc(id_a, ood_a) - metrics.auroc(id_b, ood_b)
    assert interval.value == pytest.approx(expected_value, abs=1e-15)
    # pairing cancels shared noise: narrower than the difference of independent intervals
    alone_a = bootstrap_interval(metrics.auroc, id_a, ood_a, resamples=80, seed=3, level=0.9)
    alone_b = bootstrap_interval(metrics.auroc, id_b, ood_b, resamples=80, seed=3, level=0.9)
    independent = np.hypot(alone_a.high - alone_a.low, alone_b.high - alone_b.low)
    assert interval.high - interval.low < independent


def test_paired_difference_needs_the_same_samples() -> None:
    id_scores, ood_scores = _scores(13, 20, 10)
    with pytest.raises(DismaxError, match="same samples"):
        paired_bootstrap_difference("AUROC", id_scores, ood_scores, id_scores[:-1], ood_scores)
    with pytest.raises(DismaxError, match="same samples"):
        paired_bootstrap_difference("AUROC", id_scores, ood_scores, id_scores, ood_scores[1:])


# ---------------------------------------------------------------- errors


def _call_all(**options: object) -> list[Callable[[], object]]:
    id_scores, ood_scores = _scores(14, 10, 10)
    return [
        lambda: bootstrap_interval("AUROC", id_scores, ood_scores, **options),
        lambda: paired_bootstrap_difference(
            "AUROC", id_scores, ood_scores, id_scores, ood_scores, **options
        ),
    ]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "1000"])
def test_bad_resamples_are_user_errors(bad: object) -> None:
    for call in _call_all(resamples=bad):
        with pytest.raises(DismaxError, match="resamples must be an integer >= 1"):
            call()
    with pytest.raises(DismaxError, match="resamples must be an integer >= 1"):
        resample_indices(3, 3, resamples=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5, -0.1, 95, float("nan"), True, "0.95"])
def test_level_outside_open_unit_interval_is_a_user_error(bad: object) -> None:
    for call in _call_all(level=bad):
        with pytest.raises(DismaxError, match="level must be a number strictly between 0 and 1"):
            call()


@pytest.mark.parametrize("bad", [-1, 1.5, None])
def test_bad_seed_is_a_user_error(bad: object) -> None:
    for call in _call_all(seed=bad):
        with pytest.raises(DismaxError, match="seed must be an integer >= 0"):
            call()


def test_empty_sides_and_bad_metrics_are_user_errors() -> None:
    with pytest.raises(DismaxError, match="id_scores is empty"):
        bootstrap_interval("AUROC", [], [0.1, 0.2])
    with pytest.raises(DismaxError, match="ood_scores is empty"):
        bootstrap_interval(metrics.fpr_at_95_tpr, [0.1, 0.2], [])
    with pytest.raises(DismaxError, match="ood_scores is empty"):
        paired_bootstrap_difference("AUROC", [0.1], [0.2], [0.1], [])
    with pytest.raises(DismaxError, match="NaN or infinite"):
        bootstrap_interval("AUROC", [0.1, float("inf")], [0.2])
    with pytest.raises(DismaxError, match="unknown pair metric 'AUC'"):
        bootstrap_interval("AUC", [0.1], [0.2])
    with pytest.raises(DismaxError, match="metric must be a pair metric"):
        bootstrap_interval(0.5, [0.1], [0.2])  # type: ignore[arg-type]
    with pytest.raises(DismaxError, match="n_ood must be an integer >= 1"):
        resample_indices(3, 0)
