"""Tests for dismax_cli.core.uncertainty: hand-computed cases and loop references (METHOD.md §5)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest
import torch

from dismax_cli.core.metrics import ece
from dismax_cli.core.uncertainty import (
    ReliabilityBin,
    adaptive_ece,
    aurc,
    brier_score,
    classwise_ece,
    reliability_bins,
)
from dismax_cli.errors import DismaxError

# ---------------------------------------------------------------- independent references (loops)


def _brier_reference(probs: np.ndarray, targets: np.ndarray) -> float:
    total = 0.0
    for row, target in zip(probs, targets, strict=True):
        for c, p in enumerate(row):
            total += (p - (1.0 if c == target else 0.0)) ** 2
    return total / len(targets)


def _aurc_one_order(errors: list[float]) -> float:
    """(1/N) Σ_k risk_k with the samples in the given order (most confident first)."""
    total, wrong = 0.0, 0.0
    for k, error in enumerate(errors, start=1):
        wrong += error
        total += wrong / k
    return total / len(errors)


def _aurc_reference(probs: np.ndarray, targets: np.ndarray) -> float:
    """Mean of the AURC over every order of the tied samples (brute force; small N only)."""
    confidences = [float(max(row)) for row in probs]
    errors = [
        0.0 if int(np.argmax(row)) == t else 1.0 for row, t in zip(probs, targets, strict=True)
    ]
    levels = sorted(set(confidences), reverse=True)
    groups = [
        [e for c, e in zip(confidences, errors, strict=True) if c == level] for level in levels
    ]
    values = []
    for orders in itertools.product(*[list(itertools.permutations(g)) for g in groups]):
        values.append(_aurc_one_order([e for group in orders for e in group]))
    return sum(values) / len(values)


def _adaptive_ece_reference(probs: np.ndarray, targets: np.ndarray, num_bins: int) -> float:
    """Equal-mass bins of array_split sizes on the sorted confidences; ties share their mean."""
    confidences = [float(max(row)) for row in probs]
    correct = [
        1.0 if int(np.argmax(row)) == t else 0.0 for row, t in zip(probs, targets, strict=True)
    ]
    tie_mean = {}
    for level in set(confidences):
        members = [k for k, c in enumerate(confidences) if c == level]
        tie_mean[level] = sum(correct[k] for k in members) / len(members)
    ordered = sorted(confidences)
    n = len(ordered)
    total, start = 0.0, 0
    for b in range(num_bins):
        size = n // num_bins + (1 if b < n % num_bins else 0)
        chunk = ordered[start : start + size]
        start += size
        if chunk:
            acc = sum(tie_mean[c] for c in chunk) / size
            conf = sum(chunk) / size
            total += size / n * abs(acc - conf)
    return total


def _in_bin(value: float, b: int, edges: np.ndarray) -> bool:
    """Guo et al.'s bins (lower, upper], a value of 0 added to the first bin."""
    return (edges[b] < value <= edges[b + 1]) or (b == 0 and value == 0.0)


def _classwise_ece_reference(probs: np.ndarray, targets: np.ndarray, num_bins: int) -> float:
    n, num_classes = probs.shape
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    per_class = []
    for c in range(num_classes):
        total = 0.0
        for b in range(num_bins):
            members = [k for k in range(n) if _in_bin(probs[k, c], b, edges)]
            if members:
                freq = sum(1.0 for k in members if targets[k] == c) / len(members)
                conf = sum(probs[k, c] for k in members) / len(members)
                total += len(members) / n * abs(freq - conf)
        per_class.append(total)
    return sum(per_class) / num_classes


def _random_case(seed: int, n: int, num_classes: int, *, grid: int | None = None):
    """Seeded softmax probabilities and targets; ``grid`` rounds them to multiples of 1/grid."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, (n, num_classes))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    if grid is not None:  # exact multiples of 1/grid: values on the bin edges, many ties
        counts = np.floor(probs * grid).astype(int)
        counts[np.arange(n), probs.argmax(axis=1)] += grid - counts.sum(axis=1)
        probs = counts / grid
    targets = np.where(rng.random(n) < 0.6, probs.argmax(axis=1), rng.integers(0, num_classes, n))
    return probs, targets.astype(np.int64)


# ---------------------------------------------------------------- Brier score


def test_brier_score_hand_case_sums_over_classes() -> None:
    probs = [[0.7, 0.2, 0.1], [0.4, 0.6, 0.0]]
    # sample 0 (y=0): (0.7-1)² + 0.2² + 0.1² = 0.09 + 0.04 + 0.01 = 0.14
    # sample 1 (y=0): (0.4-1)² + 0.6² + 0² = 0.36 + 0.36 = 0.72;  mean (0.14 + 0.72) / 2 = 0.43
    assert brier_score(probs, [0, 0]) == pytest.approx(0.43, abs=1e-15)
    # not divided by C: a confident wrong prediction scores 2, a confident right one 0
    assert brier_score([[0.0, 1.0, 0.0]], [0]) == pytest.approx(2.0, abs=1e-15)
    assert brier_score([[0.0, 1.0, 0.0]], [1]) == 0.0


def test_brier_score_matches_loop_reference() -> None:
    probs, targets = _random_case(0, 300, 5)
    expected = _brier_reference(probs, targets)
    assert brier_score(probs, targets) == pytest.approx(expected, abs=1e-12)
    as_torch = brier_score(torch.from_numpy(probs).float(), torch.from_numpy(targets))
    assert as_torch == pytest.approx(expected, abs=1e-6)


# ---------------------------------------------------------------- AURC


def test_aurc_hand_case() -> None:
    # confidences 0.9 (right), 0.8 (wrong), 0.7 (right), 0.6 (wrong), most confident first:
    # risks 0/1, 1/2, 1/3, 2/4 -> AURC = (0 + 1/2 + 1/3 + 1/2) / 4 = (4/3) / 4 = 1/3
    probs = [[0.6, 0.4], [0.3, 0.7], [0.8, 0.2], [0.9, 0.1]]  # rows in shuffled order
    targets = [1, 1, 1, 0]
    assert aurc(probs, targets) == pytest.approx(1 / 3, abs=1e-15)


def test_aurc_ties_average_over_orders() -> None:
    # 0.8 right and 0.8 wrong tied, then 0.6 right. Order (right, wrong): risks 0, 1/2, 1/3;
    # order (wrong, right): 1, 1/2, 1/3. Mean AURC = ((5/6)/3 + (11/6)/3) / 2 = 4/9.
    probs = [[0.8, 0.2], [0.8, 0.2], [0.6, 0.4]]
    assert aurc(probs, [0, 1, 0]) == pytest.approx(4 / 9, abs=1e-15)
    assert aurc(probs[::-1], [0, 1, 0][::-1]) == pytest.approx(4 / 9, abs=1e-15)


def test_aurc_extremes() -> None:
    assert aurc([[0.9, 0.1], [0.6, 0.4]], [0, 0]) == 0.0
    assert aurc([[0.9, 0.1], [0.6, 0.4]], [1, 1]) == 1.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_aurc_matches_brute_force_over_tie_orders(seed: int) -> None:
    probs, targets = _random_case(seed, 7, 3, grid=5)  # 7 samples on a grid: many ties
    assert aurc(probs, targets) == pytest.approx(_aurc_reference(probs, targets), abs=1e-12)


def test_aurc_matches_loop_reference_without_ties() -> None:
    probs, targets = _random_case(4, 400, 10)
    confidences = probs.max(axis=1)
    order = sorted(range(len(targets)), key=lambda k: -confidences[k])
    errors = [0.0 if probs[k].argmax() == targets[k] else 1.0 for k in order]
    assert aurc(probs, targets) == pytest.approx(_aurc_one_order(errors), abs=1e-12)


def test_aurc_and_adaptive_ece_ignore_row_order_with_ties() -> None:
    probs, targets = _random_case(5, 500, 4, grid=10)
    permutation = np.random.default_rng(6).permutation(500)
    assert aurc(probs, targets) == aurc(probs[permutation], targets[permutation])
    assert adaptive_ece(probs, targets) == pytest.approx(
        adaptive_ece(probs[permutation], targets[permutation]), abs=1e-15
    )


# ---------------------------------------------------------------- adaptive ECE


def test_adaptive_ece_hand_case() -> None:
    # sorted confidences / correct: 0.55 no, 0.6 yes | 0.7 yes, 0.8 no | 0.9 yes, 0.95 yes
    # bin gaps: |0.5 - 0.575| = 0.075, |0.5 - 0.75| = 0.25, |1 - 0.925| = 0.075
    # ECE = (2/6)(0.075 + 0.25 + 0.075) = 0.4 / 3
    probs = [[0.55, 0.45], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8], [0.9, 0.1], [0.05, 0.95]]
    targets = [1, 0, 1, 0, 0, 1]
    assert adaptive_ece(probs, targets, num_bins=3) == pytest.approx(0.4 / 3, abs=1e-15)
    # one bin: |4/6 - 4.5/6| = 0.5/6
    assert adaptive_ece(probs, targets, num_bins=1) == pytest.approx(0.5 / 6, abs=1e-15)


def test_adaptive_ece_uneven_bins_and_ties_at_boundary() -> None:
    # N = 3, M = 2: bins of 2 and 1. Two tied 0.7 (one right, one wrong) straddle the boundary,
    # so each counts 0.5 correct: sorted 0.6 (right), 0.7 (0.5), 0.7 (0.5)
    # bin 0: |(1 + 0.5)/2 - 0.65| = 0.1; bin 1: |0.5 - 0.7| = 0.2; ECE = (2/3)0.1 + (1/3)0.2
    probs = [[0.7, 0.3], [0.6, 0.4], [0.7, 0.3]]
    assert adaptive_ece(probs, [0, 0, 1], num_bins=2) == pytest.approx(0.4 / 3, abs=1e-15)
    assert adaptive_ece(probs, [1, 0, 0], num_bins=2) == pytest.approx(0.4 / 3, abs=1e-15)


@pytest.mark.parametrize(("seed", "grid", "num_bins"), [(7, None, 15), (8, 10, 15), (9, 20, 4)])
def test_adaptive_ece_matches_loop_reference(seed: int, grid: int | None, num_bins: int) -> None:
    probs, targets = _random_case(seed, 401, 6, grid=grid)
    expected = _adaptive_ece_reference(probs, targets, num_bins)
    assert adaptive_ece(probs, targets, num_bins=num_bins) == pytest.approx(expected, abs=1e-12)


def test_adaptive_ece_more_bins_than_samples() -> None:
    # each sample its own bin, the rest empty: (1/2)|1 - 0.9| + (1/2)|0 - 0.6| = 0.35
    assert adaptive_ece([[0.9, 0.1], [0.6, 0.4]], [0, 1]) == pytest.approx(0.35, abs=1e-15)


# ---------------------------------------------------------------- classwise ECE


def test_classwise_ece_hand_case() -> None:
    # M = 2, bins [0, 0.5], (0.5, 1]; targets both class 0.
    # class 0: 0.4 -> bin 0 (freq 1, gap 0.6), 0.8 -> bin 1 (freq 1, gap 0.2): (0.6 + 0.2)/2 = 0.4
    # class 1: 0.6 -> bin 1 (freq 0, gap 0.6), 0.2 -> bin 0 (freq 0, gap 0.2): 0.4
    # class 2: 0.0 -> bin 0 twice (freq 0, conf 0): 0.   Mean (0.4 + 0.4 + 0) / 3 = 0.8 / 3
    probs = [[0.8, 0.2, 0.0], [0.4, 0.6, 0.0]]
    assert classwise_ece(probs, [0, 0], num_bins=2) == pytest.approx(0.8 / 3, abs=1e-15)
    # 0.5 sits on the inner edge and belongs to bin 0 (right-closed). Targets (0, 2):
    # class 0: 0.5 (hit), 0.4 -> bin 0: freq 1/2, conf 0.45, gap 0.05
    # class 1: 0.3, 0.1 -> bin 0: freq 0, conf 0.2, gap 0.2
    # class 2: 0.2, 0.5 (hit) -> bin 0: freq 1/2, conf 0.35, gap 0.15;  mean 0.4 / 3
    # (0.5 in bin 1 instead would give (0.45 + 0.2 + 0.35) / 3 = 1/3)
    probs = [[0.5, 0.3, 0.2], [0.4, 0.1, 0.5]]
    assert classwise_ece(probs, [0, 2], num_bins=2) == pytest.approx(0.4 / 3, abs=1e-15)


@pytest.mark.parametrize(("seed", "grid", "num_bins"), [(10, None, 15), (11, 10, 10), (12, 20, 5)])
def test_classwise_ece_matches_loop_reference(seed: int, grid: int | None, num_bins: int) -> None:
    probs, targets = _random_case(seed, 150, 4, grid=grid)
    expected = _classwise_ece_reference(probs, targets, num_bins)
    assert classwise_ece(probs, targets, num_bins=num_bins) == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------- reliability bins


def test_reliability_bins_hand_case() -> None:
    # M = 4: bins [0, .25], (.25, .5], (.5, .75], (.75, 1]. Confidences 0.5 (right), 0.75
    # (wrong), 1.0 (right), 0.8 (wrong): 0.5 -> bin 1, 0.75 -> bin 2, 1.0 and 0.8 -> bin 3.
    probs = [[0.5, 0.5], [0.25, 0.75], [1.0, 0.0], [0.2, 0.8]]
    bins = reliability_bins(probs, [0, 0, 0, 0], num_bins=4)
    assert [b.count for b in bins] == [0, 1, 1, 2]
    assert [(b.lower, b.upper) for b in bins] == [(0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1)]
    assert bins[0] == ReliabilityBin(0.0, 0.25, 0, None, None)
    assert (bins[1].accuracy, bins[1].confidence) == (1.0, 0.5)
    assert (bins[2].accuracy, bins[2].confidence) == (0.0, 0.75)
    assert bins[3].accuracy == 0.5
    assert bins[3].confidence == pytest.approx(0.9, abs=1e-15)
    # ECE = (1/4)|1 - 0.5| + (1/4)|0 - 0.75| + (2/4)|0.5 - 0.9| = 0.125 + 0.1875 + 0.2 = 0.5125
    assert ece(probs, [0, 0, 0, 0], num_bins=4) == pytest.approx(0.5125, abs=1e-15)


def _ece_from_bins(bins: tuple[ReliabilityBin, ...]) -> float:
    total = sum(b.count for b in bins)
    return sum(
        b.count / total * abs(b.accuracy - b.confidence)  # type: ignore[operator]
        for b in bins
        if b.count
    )


@pytest.mark.parametrize(
    ("seed", "grid", "num_bins"),
    [(13, None, 15), (14, 10, 10), (15, 15, 15), (16, 20, 5), (17, 12, 3)],
)
def test_reliability_bins_reproduce_ece_and_guo_binning(
    seed: int, grid: int | None, num_bins: int
) -> None:
    probs, targets = _random_case(seed, 600, 3, grid=grid)  # grid: confidences on the edges
    bins = reliability_bins(probs, targets, num_bins=num_bins)
    assert len(bins) == num_bins
    assert _ece_from_bins(bins) == pytest.approx(ece(probs, targets, num_bins=num_bins), abs=1e-14)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    confidences = probs.max(axis=1)
    correct = probs.argmax(axis=1) == targets
    for b, record in enumerate(bins):
        members = [k for k in range(len(targets)) if _in_bin(confidences[k], b, edges)]
        assert record.count == len(members)
        assert (record.lower, record.upper) == (edges[b], edges[b + 1])
        if members:
            assert record.accuracy == pytest.approx(np.mean(correct[members]), abs=1e-12)
            assert record.confidence == pytest.approx(np.mean(confidences[members]), abs=1e-12)
    assert sum(b.count for b in bins) == len(targets)


def test_reliability_bins_default_is_fifteen_and_one_lands_last() -> None:
    bins = reliability_bins([[1.0, 0.0], [0.5, 0.5]], [1, 0])
    assert len(bins) == 15
    assert bins[-1].count == 1 and bins[-1].accuracy == 0.0 and bins[-1].confidence == 1.0
    assert bins[7].count == 1  # 0.5 in (7/15, 8/15]


# ---------------------------------------------------------------- errors

METRICS: list[Callable[..., object]] = [
    brier_score,
    aurc,
    adaptive_ece,
    classwise_ece,
    reliability_bins,
]


@pytest.mark.parametrize("metric", METRICS)
def test_bad_inputs_are_user_errors(metric: Callable[..., object]) -> None:
    with pytest.raises(DismaxError, match="probs is empty"):
        metric(np.zeros((0, 3)), np.zeros(0, dtype=np.int64))
    with pytest.raises(DismaxError, match="pass softmax"):
        metric([[3.0, -2.0]], [0])
    with pytest.raises(DismaxError, match="targets must lie in"):
        metric([[0.5, 0.5]], [2])
    with pytest.raises(DismaxError, match="NaN or infinite"):
        metric([[float("nan"), 0.5]], [0])
    with pytest.raises(DismaxError, match="one target per row"):
        metric([[0.5, 0.5]], [0, 1])


@pytest.mark.parametrize("metric", [adaptive_ece, classwise_ece, reliability_bins])
def test_bad_bin_counts_are_user_errors(metric: Callable[..., object]) -> None:
    for bad in (0, -3, 2.5, True):
        with pytest.raises(DismaxError, match="num_bins must be an integer >= 1"):
            metric([[0.5, 0.5]], [0], num_bins=bad)
