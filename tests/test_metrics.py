"""Tests for dismax_cli.core.metrics: hand cases from the issue and independent references."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy.stats import rankdata
from sklearn.metrics import accuracy_score, roc_curve

from dismax_cli.core.metrics import (
    NLL_PROBABILITY_FLOOR,
    accuracy,
    aupr_in,
    aupr_out,
    auroc,
    detection_accuracy,
    ece,
    fpr_at_95_tpr,
    nll,
)
from dismax_cli.errors import DismaxError

PAIR_METRICS: list[Callable[..., float]] = [
    auroc,
    aupr_in,
    aupr_out,
    fpr_at_95_tpr,
    detection_accuracy,
]


# ---------------------------------------------------------------- independent references


def _mann_whitney_auroc(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    ranks = rankdata(np.concatenate([id_scores, ood_scores]))  # average ranks: ties count 1/2
    n_id, n_ood = id_scores.size, ood_scores.size
    return float((ranks[:n_id].sum() - n_id * (n_id + 1) / 2) / (n_id * n_ood))


def _average_precision(positive: np.ndarray, negative: np.ndarray) -> float:
    """AP = Σ (R_i - R_{i-1}) P_i over the distinct thresholds, from the positives' view."""
    thresholds = np.unique(np.concatenate([positive, negative]))[::-1]
    tp = np.array([(positive >= t).sum() for t in thresholds], dtype=np.float64)
    fp = np.array([(negative >= t).sum() for t in thresholds], dtype=np.float64)
    recall = tp / positive.size
    precision = tp / (tp + fp)
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def _roc(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[np.ndarray, ...]:
    labels = np.concatenate([np.ones(id_scores.size), np.zeros(ood_scores.size)])
    fpr, tpr, _ = roc_curve(
        labels, np.concatenate([id_scores, ood_scores]), drop_intermediate=False
    )
    return fpr, tpr


def _fpr_at_95_reference(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """The first point of the full ROC curve whose TPR reaches 95 %, compared in integers."""
    fpr, tpr = _roc(id_scores, ood_scores)
    true_positives = np.rint(tpr * id_scores.size)
    first = int(np.argmax(100 * true_positives >= 95 * id_scores.size))
    return float(fpr[first])


def _detection_accuracy_reference(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    fpr, tpr = _roc(id_scores, ood_scores)  # starts at (0, 0): everything called OOD
    return float(np.max(0.5 * (tpr + 1.0 - fpr)))


def _ece_reference(probs: np.ndarray, targets: np.ndarray, num_bins: int) -> float:
    """Guo et al.'s loop: bins (lower, upper], with a confidence of 0 added to the first bin."""
    confidences = probs.max(axis=1)
    correct = probs.argmax(axis=1) == targets
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    total = 0.0
    for b in range(num_bins):
        in_bin = (confidences > edges[b]) & (confidences <= edges[b + 1])
        if b == 0:
            in_bin |= confidences == 0.0
        if in_bin.any():
            gap = abs(correct[in_bin].mean() - confidences[in_bin].mean())
            total += in_bin.mean() * gap
    return total


@pytest.fixture(scope="module")
def tied_scores() -> tuple[np.ndarray, np.ndarray]:
    """10,000 ID and 7,000 OOD scores on a coarse grid (many ties), overlapping."""
    rng = np.random.default_rng(1234)
    id_scores = np.round(rng.normal(1.0, 1.0, 10_000), 1)
    ood_scores = np.round(rng.normal(0.0, 1.0, 7_000), 1)
    return id_scores, ood_scores


# ---------------------------------------------------------------- AUROC


def test_auroc_counts_ties_as_half() -> None:
    assert auroc([1, 1, 1, 0.8], [1, 1, 0.3, 0.2]) == pytest.approx(0.6875, abs=1e-15)


def test_auroc_uses_ranks_only_never_squashes_unbounded_scores() -> None:
    assert auroc([300, 400], [120, 130]) == 1.0
    for k in (3, 5, 8):
        id_scores = 1000.0 + np.arange(k)
        ood_scores = 1000.0 + np.arange(k) + 0.5
        # ID i beats OOD j exactly when i > j: k(k-1)/2 of the k^2 pairs.
        expected = (k * (k - 1) / 2) / k**2
        assert auroc(id_scores, ood_scores) == pytest.approx(expected, abs=1e-15)
        as_float32 = auroc(torch.tensor(id_scores).float(), torch.tensor(ood_scores).float())
        assert as_float32 == pytest.approx(expected, abs=1e-15)


def test_auroc_direction_higher_is_in_distribution() -> None:
    assert auroc([0.9, 0.8], [0.3, 0.6]) == 1.0
    assert auroc([0.3, 0.6], [0.9, 0.8]) == 0.0


def test_auroc_matches_mann_whitney(tied_scores: tuple[np.ndarray, ...]) -> None:
    # auroc() is scikit-learn's roc_auc_score, so the reference is the rank statistic (Mann-
    # Whitney U / (n_id n_ood), ties 1/2) and the pair count, not scikit-learn again.
    id_scores, ood_scores = tied_scores
    value = auroc(id_scores, ood_scores)
    assert value == pytest.approx(_mann_whitney_auroc(id_scores, ood_scores), abs=1e-12)
    wins = 0.0  # every (ID, OOD) pair, counted in chunks of 500 ID scores (small arrays)
    for start in range(0, len(id_scores), 500):
        diff = id_scores[start : start + 500, None] - ood_scores[None, :]
        wins += float(np.sum(diff > 0) + 0.5 * np.sum(diff == 0))
    pairs = wins / (len(id_scores) * len(ood_scores))
    assert value == pytest.approx(pairs, abs=1e-12)
    assert 0.7 < value < 0.8  # d' = 1


# ---------------------------------------------------------------- AUPR


def test_aupr_depends_on_class_balance() -> None:
    id_scores = np.linspace(0.55, 1.0, 10)
    ood_scores = np.linspace(0.30, 0.75, 10)
    assert auroc(id_scores, ood_scores) == pytest.approx(0.88, abs=1e-12)
    assert aupr_in(id_scores, ood_scores) == pytest.approx(0.8818, abs=5e-5)
    assert aupr_out(id_scores, ood_scores) == pytest.approx(0.8779, abs=5e-5)
    repeated = np.tile(ood_scores, 5)
    assert auroc(id_scores, repeated) == pytest.approx(0.88, abs=1e-12)
    assert aupr_in(id_scores, repeated) == pytest.approx(0.7073, abs=5e-5)
    assert aupr_out(id_scores, repeated) == pytest.approx(0.9691, abs=5e-5)


def test_aupr_matches_brute_force(tied_scores: tuple[np.ndarray, ...]) -> None:
    # aupr_in/aupr_out are scikit-learn's average_precision_score; the reference is the step
    # sum over thresholds written out above, not scikit-learn again.
    id_scores, ood_scores = tied_scores
    value_in = aupr_in(id_scores, ood_scores)
    value_out = aupr_out(id_scores, ood_scores)
    assert value_in == pytest.approx(_average_precision(id_scores, ood_scores), abs=1e-12)
    assert value_out == pytest.approx(_average_precision(-ood_scores, -id_scores), abs=1e-12)


def test_aupr_hand_computed_with_a_tie() -> None:
    # Scores ID [0.9, 0.5], OOD [0.7, 0.5]. Thresholds 0.9: P 1/1, R 1/2; 0.7: no new ID;
    # 0.5 (the tie, both at once): P 2/4, R 2/2. AP-IN = 1/2 * 1 + 1/2 * 1/2 = 0.75.
    assert aupr_in([0.9, 0.5], [0.7, 0.5]) == pytest.approx(0.75, abs=1e-15)
    # OOD positive, scores negated: OOD [-0.7, -0.5], ID [-0.9, -0.5]. -0.5 (tie): P 1/2,
    # R 1/2; -0.7: P 2/3, R 1. AP-OUT = 1/2 * 1/2 + 1/2 * 2/3 = 7/12.
    assert aupr_out([0.9, 0.5], [0.7, 0.5]) == pytest.approx(7 / 12, abs=1e-15)


def test_aupr_perfect_separation() -> None:
    assert aupr_in([5.0, 6.0], [1.0, 2.0, 3.0]) == 1.0
    assert aupr_out([5.0, 6.0], [1.0, 2.0, 3.0]) == 1.0


# ---------------------------------------------------------------- FPR@95TPR


def test_fpr_at_95_tpr_exact_rule_not_nearest_point() -> None:
    id_scores = [*range(30, 8, -1), -1]  # 22 values 30..9, then -1: 23 scores
    assert len(id_scores) == 23
    # k = ceil(0.95 * 23) = 22 -> t* = 9; OOD >= 9 is only 9.5.
    assert fpr_at_95_tpr(id_scores, [9.5, 8, 7, 6, 5, 4, 3, 2, 1, 0]) == pytest.approx(0.1)


def test_fpr_at_95_tpr_needs_the_last_id_score() -> None:
    id_scores = [*range(20, 2, -1), -1]  # 18 values 20..3, then -1: 19 scores
    assert len(id_scores) == 19
    ood_scores = [3.5, 2.5, 2, 1.5, 1, 0.5, 0.4, 0.3, 0.2, 0.1]
    # k = ceil(0.95 * 19) = 19 -> t* = -1, below every OOD score.
    assert fpr_at_95_tpr(id_scores, ood_scores) == 1.0
    assert auroc(id_scores, ood_scores) == pytest.approx(179 / 190, abs=1e-15)
    assert auroc(id_scores, ood_scores) == pytest.approx(0.942105, abs=5e-7)


def test_fpr_at_95_tpr_counts_ties_as_positives() -> None:
    shared = np.arange(1.0, 21.0)  # each score held by one ID and one OOD sample
    # k = 19 -> t* = 2; OOD scores >= 2: 19 of 20.
    assert fpr_at_95_tpr(shared, shared) == pytest.approx(0.95, abs=1e-15)


def test_fpr_at_95_tpr_small_and_exact_cases() -> None:
    assert fpr_at_95_tpr([300, 400], [120, 130]) == 0.0
    assert fpr_at_95_tpr([0.0], [0.0, -1.0, 1.0]) == pytest.approx(2 / 3)
    # n_id = 20: k = 19 exactly (0.95 * 20 must not round up to 20).
    id_scores = np.arange(20.0)  # t* = 1
    assert fpr_at_95_tpr(id_scores, [0.5, 1.0, 1.5, -3.0]) == pytest.approx(0.5)


def test_fpr_at_95_tpr_matches_full_roc_curve(tied_scores: tuple[np.ndarray, ...]) -> None:
    id_scores, ood_scores = tied_scores
    value = fpr_at_95_tpr(id_scores, ood_scores)
    assert value == pytest.approx(_fpr_at_95_reference(id_scores, ood_scores), abs=1e-15)
    rng = np.random.default_rng(7)
    for n_id in (1, 19, 20, 21, 99, 100, 101, 333):
        ids = rng.integers(0, 12, n_id).astype(np.float64)
        oods = rng.integers(-3, 9, 57).astype(np.float64)
        assert fpr_at_95_tpr(ids, oods) == pytest.approx(_fpr_at_95_reference(ids, oods))


# ---------------------------------------------------------------- detection accuracy


def test_detection_accuracy_hand_cases() -> None:
    # t = 1: TPR 1, TNR 1/2 -> 0.75 (t = 3: 2/3; t = 2: 7/12).
    assert detection_accuracy([1.0, 2.0, 3.0], [0.0, 2.5]) == pytest.approx(0.75)
    # ID entirely below OOD: the best threshold classifies everything one way -> 0.5.
    assert detection_accuracy([0.0, 1.0], [2.0, 3.0]) == 0.5
    assert detection_accuracy([300, 400], [120, 130]) == 1.0
    assert detection_accuracy([1.0, 1.0], [1.0]) == 0.5


def test_detection_accuracy_matches_full_roc_curve(tied_scores: tuple[np.ndarray, ...]) -> None:
    id_scores, ood_scores = tied_scores
    value = detection_accuracy(id_scores, ood_scores)
    assert value == pytest.approx(_detection_accuracy_reference(id_scores, ood_scores), abs=1e-15)


# ---------------------------------------------------------------- shared pair behaviour


@pytest.mark.parametrize("metric", PAIR_METRICS)
def test_pair_metrics_return_plain_floats_in_unit_interval(
    metric: Callable[..., float], tied_scores: tuple[np.ndarray, ...]
) -> None:
    value = metric(*tied_scores)
    assert type(value) is float
    assert 0.0 <= value <= 1.0


@pytest.mark.parametrize("metric", PAIR_METRICS)
def test_pair_metrics_agree_on_torch_numpy_and_lists(metric: Callable[..., float]) -> None:
    rng = np.random.default_rng(3)
    id_scores = rng.integers(0, 20, 50).astype(np.float32)
    ood_scores = rng.integers(-5, 15, 40).astype(np.float32)
    expected = metric(id_scores, ood_scores)
    assert metric(torch.from_numpy(id_scores), torch.from_numpy(ood_scores)) == expected
    assert metric(id_scores.tolist(), ood_scores.tolist()) == expected


@pytest.mark.parametrize("metric", PAIR_METRICS)
def test_pair_metrics_name_the_empty_side(metric: Callable[..., float]) -> None:
    with pytest.raises(DismaxError, match="id_scores is empty"):
        metric([], [0.5, 0.2])
    with pytest.raises(DismaxError, match="ood_scores is empty"):
        metric(torch.tensor([0.5]), torch.tensor([]))


@pytest.mark.parametrize("metric", PAIR_METRICS)
def test_pair_metrics_reject_bad_scores(metric: Callable[..., float]) -> None:
    with pytest.raises(DismaxError, match="ood_scores holds 1 NaN"):
        metric([0.5, 0.6], [0.1, float("nan")])
    with pytest.raises(DismaxError, match="id_scores holds 1 NaN or infinite"):
        metric([float("inf"), 0.6], [0.1])
    with pytest.raises(DismaxError, match=r"id_scores must have 1 dimension \(N_id,\)"):
        metric(np.zeros((2, 2)), [0.1])


# ---------------------------------------------------------------- accuracy, NLL, ECE


def test_ece_confidence_one_lands_in_last_bin() -> None:
    probs = [[0.05, 0.95], [0.0, 1.0]]
    # both in (0.9, 1]: accuracy 1/2, confidence 0.975.
    assert ece(probs, [1, 0], num_bins=10) == pytest.approx(0.475, abs=1e-12)


def test_ece_takes_probabilities() -> None:
    probs = torch.softmax(torch.tensor([[3.0, 0.0], [0.25, 0.0]], dtype=torch.float64), dim=1)
    assert ece(probs, torch.tensor([0, 1])) == pytest.approx(0.304801, abs=5e-7)
    with pytest.raises(DismaxError, match="pass softmax"):
        ece([[3.0, 0.0], [0.25, 0.0]], [0, 1])


def test_ece_bins_are_right_closed() -> None:
    # Confidence 0.2 sits on an edge and belongs to (0.1, 0.2], together with 0.15.
    probs = [[0.2] * 5 + [0.0, 0.0], [0.15] * 6 + [0.1]]
    targets = [0, 6]  # first correct, second wrong
    # one bin: accuracy 1/2, confidence 0.175 -> 0.325 (split bins would give 0.475).
    assert ece(probs, targets, num_bins=10) == pytest.approx(0.325, abs=1e-12)


def test_ece_accuracy_nll_match_references() -> None:
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((2_000, 10)) * 3.0
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    targets = rng.integers(0, 10, 2_000)
    targets[:1_000] = probs[:1_000].argmax(axis=1)  # about half correct
    for num_bins in (1, 10, 15):
        expected = _ece_reference(probs, targets, num_bins)
        assert ece(probs, targets, num_bins=num_bins) == pytest.approx(expected, abs=1e-12)
    assert accuracy(probs, targets) == pytest.approx(accuracy_score(targets, probs.argmax(1)))
    expected_nll = -np.mean(np.log(probs[np.arange(2_000), targets]))
    assert nll(probs, targets) == pytest.approx(expected_nll, rel=1e-12)
    as_torch = torch.from_numpy(probs).float()
    assert ece(as_torch, torch.from_numpy(targets)) == pytest.approx(ece(probs, targets), abs=1e-6)


def test_accuracy_hand_case() -> None:
    probs = [[0.7, 0.3], [0.4, 0.6], [0.5, 0.5], [0.1, 0.9]]
    assert accuracy(probs, [0, 0, 0, 1]) == 0.75  # a tie predicts the first class


def test_nll_stays_finite_when_the_target_has_zero_probability() -> None:
    value = nll([[1.0, 0.0], [0.5, 0.5]], [1, 0])
    assert np.isfinite(value)
    assert value == pytest.approx((-np.log(NLL_PROBABILITY_FLOOR) + np.log(2.0)) / 2)
    assert -np.log(NLL_PROBABILITY_FLOOR) == pytest.approx(708.396, abs=1e-3)


@pytest.mark.parametrize("metric", [accuracy, nll, ece])
def test_prediction_metrics_reject_bad_inputs(metric: Callable[..., float]) -> None:
    probs = [[0.5, 0.5], [0.9, 0.1]]
    with pytest.raises(DismaxError, match=r"targets must lie in \[0, 1\] for 2 classes"):
        metric(probs, [0, 2])
    with pytest.raises(DismaxError, match="targets must be integer class indices"):
        metric(probs, [0.0, 1.0])
    with pytest.raises(DismaxError, match="targets has 1 entries but there are 2 rows"):
        metric(probs, [0])
    with pytest.raises(DismaxError, match="probs is empty"):
        metric(np.zeros((0, 2)), np.zeros(0, dtype=int))
    with pytest.raises(DismaxError, match="probs rows must sum to 1, row 1"):
        metric([[0.5, 0.5], [0.5, 0.4]], [0, 1])
    with pytest.raises(DismaxError, match="probs holds 1 NaN"):
        metric([[0.5, 0.5], [float("nan"), 0.4]], [0, 1])


def test_ece_rejects_bad_bin_counts() -> None:
    for bad in (0, -3, 2.5, True):
        with pytest.raises(DismaxError, match="num_bins must be an integer >= 1"):
            ece([[0.5, 0.5]], [0], num_bins=bad)  # type: ignore[arg-type]
