"""Uncertainty metrics on probabilities: Brier score, AURC, adaptive and classwise ECE, and the
per-bin data of the reliability diagram, as plain Python floats.

All functions take predicted class probabilities ``probs`` ``(N, C)`` (softmax outputs, rows in
[0, 1] summing to 1) and integer ``targets`` ``(N,)``, validated exactly as in
:mod:`dismax_cli.core.metrics` (torch tensors, numpy arrays or lists; converted to float64).
The top-label confidence is ``max_c p_c`` and a prediction is correct when ``argmax_c p_c`` (the
first index on ties) equals the target, as for :func:`~dismax_cli.core.metrics.accuracy` and
:func:`~dismax_cli.core.metrics.ece` (METHOD.md §5). Every metric here is lower-is-better and a
fraction (the Brier score lies in [0, 2]).

**Ties in confidence** (AURC, adaptive ECE) are handled deterministically and independently of
the order of the samples: samples with exactly equal confidence cannot be told apart by any
threshold, so each of them counts with the *mean correctness of its tie group*. For AURC this
equals the average of the AURC over every ordering of the tied samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dismax_cli.core._arrays import ArrayLike
from dismax_cli.core.metrics import (
    check_num_bins,
    equal_width_bin_indices,
    probabilities_and_targets,
)


def top_label(probs: ArrayLike, targets: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validated top-label confidences ``(N,)`` and correctness ``(N,)`` (float 0/1)."""
    array, target_array = probabilities_and_targets(probs, targets)
    confidences = array.max(axis=1)
    correct = (np.argmax(array, axis=1) == target_array).astype(np.float64)
    return confidences, correct


def sorted_with_tie_means(
    confidences: np.ndarray, correct: np.ndarray, *, descending: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Sort by confidence; give each sample the mean correctness of its group of equal confidence.

    Returns the sorted confidences and the tie-averaged correctness in the same order; both are
    independent of the input order of the samples.
    """
    unique, inverse, counts = np.unique(confidences, return_inverse=True, return_counts=True)
    group_correct = np.bincount(inverse, weights=correct, minlength=unique.size) / counts
    # Every member of a group gets the same value, so the order inside a group does not matter.
    order = np.repeat(np.arange(unique.size), counts)
    if descending:
        order = order[::-1]
    return unique[order], group_correct[order]


def brier_score(probs: ArrayLike, targets: ArrayLike) -> float:
    """Compute the multiclass Brier score (lower is better).

    Definition: ``mean_n Σ_c (p_{n,c} - onehot(y_n)_c)²``. Convention: the squared error is
    **summed over the C classes and not divided by C** (Brier's original multi-category form), so
    the score lies in [0, 2]: 0 for a confident correct prediction, 2 for a confident wrong one.
    Divide by C for the per-class mean some libraries report.

    Args:
        probs: Predicted class probabilities (softmax outputs).
        targets: Integer class indices in ``[0, C)``.

    Returns:
        The Brier score in [0, 2].

    Shape:
        probs: ``(N, C)``; targets: ``(N,)``.

    Raises:
        DismaxError: If there are no samples, the shapes disagree, the probabilities are not in
            [0, 1] or their rows do not sum to 1, or a target is out of range.

    References:
        Brier, "Verification of forecasts expressed in terms of probability", Monthly Weather
        Review 78(1), 1950.
    """
    array, target_array = probabilities_and_targets(probs, targets)
    onehot = np.zeros_like(array)
    onehot[np.arange(array.shape[0]), target_array] = 1.0
    return float(np.mean(np.sum((array - onehot) ** 2, axis=1)))


def aurc(probs: ArrayLike, targets: ArrayLike) -> float:
    """Compute the area under the risk-coverage curve (lower is better).

    Definition: rank the samples by top-label confidence ``max_c p_c``, most confident first.
    Covering the ``k`` most confident samples (coverage ``k/N``) has selective risk
    ``risk_k = (errors among them) / k`` (0-1 loss of the top-label prediction), and
    ``AURC = (1/N) Σ_{k=1..N} risk_k``, the standard definition of Geifman et al. (one curve
    point per sample). Ties in confidence: the tied samples are exchangeable, so each one counts
    with the mean error of its tie group; this equals the mean AURC over every order of the tied
    samples and does not depend on the order of the input rows.

    Args:
        probs: Predicted class probabilities (softmax outputs).
        targets: Integer class indices in ``[0, C)``.

    Returns:
        The AURC in [0, 1] (0 when every prediction is correct, 1 when every one is wrong).

    Shape:
        probs: ``(N, C)``; targets: ``(N,)``.

    Raises:
        DismaxError: If there are no samples, the shapes disagree, the probabilities are not in
            [0, 1] or their rows do not sum to 1, or a target is out of range.

    References:
        Geifman and El-Yaniv, "Selective Classification for Deep Neural Networks",
        arXiv:1705.08500 (NeurIPS 2017).
        Geifman, Uziel and El-Yaniv, "Bias-Reduced Uncertainty Estimation for Deep Neural
        Classifiers", arXiv:1805.08206 (ICLR 2019).
    """
    confidences, correct = top_label(probs, targets)
    _, correct_sorted = sorted_with_tie_means(confidences, correct, descending=True)
    errors = np.cumsum(1.0 - correct_sorted)
    risks = errors / np.arange(1, errors.size + 1)
    return float(np.mean(risks))


def adaptive_ece(probs: ArrayLike, targets: ArrayLike, *, num_bins: int = 15) -> float:
    """Compute the top-label ECE with equal-mass (adaptive) bins (lower is better).

    Definition: sort the samples by top-label confidence (ascending) and split them into
    ``num_bins`` bins of equal count: with ``N = q·M + r``, the first ``r`` bins hold ``q + 1``
    samples and the others ``q`` (``numpy.array_split``); then
    ``ECE = Σ_b (n_b / N) |acc_b - conf_b|`` as in :func:`~dismax_cli.core.metrics.ece`. Empty
    bins (when ``N < M``) add 0. Ties in confidence: samples of equal confidence that a bin
    boundary would split count with the mean correctness of their tie group, so the value does
    not depend on the order of the rows. This is the top-label variant; Nixon et al.'s ACE also
    averages over classes.

    Args:
        probs: Predicted class probabilities (softmax outputs).
        targets: Integer class indices in ``[0, C)``.
        num_bins: The number of equal-mass bins M; 15 by default.

    Returns:
        The adaptive ECE in [0, 1].

    Shape:
        probs: ``(N, C)``; targets: ``(N,)``.

    Raises:
        DismaxError: If there are no samples, the shapes disagree, the probabilities are not in
            [0, 1] or their rows do not sum to 1, a target is out of range, or ``num_bins`` is not
            a positive integer.

    References:
        Nixon, Dusenberry, Zhang, Jerfel and Tran, "Measuring Calibration in Deep Learning",
        arXiv:1904.01685 (CVPR Workshops 2019).
    """
    check_num_bins(num_bins)
    confidences, correct = top_label(probs, targets)
    sorted_confidences, sorted_correct = sorted_with_tie_means(
        confidences, correct, descending=False
    )
    count = confidences.size
    bins = int(num_bins)
    sizes = np.full(bins, count // bins)
    sizes[: count % bins] += 1
    bin_of = np.repeat(np.arange(bins), sizes)
    confidence_sums = np.bincount(bin_of, weights=sorted_confidences, minlength=bins)
    correct_sums = np.bincount(bin_of, weights=sorted_correct, minlength=bins)
    return float(np.sum(np.abs(correct_sums - confidence_sums)) / count)


def classwise_ece(probs: ArrayLike, targets: ArrayLike, *, num_bins: int = 15) -> float:
    """Compute the classwise ECE, averaged over classes (lower is better).

    Definition: for each class ``c``, bin the probabilities ``p_{n,c}`` of all N samples into
    ``num_bins`` equal-width bins with METHOD.md §5's boundaries (``[0, 1/M], (1/M, 2/M], ...,
    ((M-1)/M, 1]``); ``ECE_c = Σ_b (n_{c,b} / N) |freq_{c,b} - conf_{c,b}|`` where
    ``freq_{c,b}`` is the fraction of the bin's samples whose target is ``c`` and ``conf_{c,b}``
    their mean ``p_{n,c}``; empty bins add 0. ``classwise-ECE = (1/C) Σ_c ECE_c``, every class
    counting equally (also a class that never occurs as a target).

    Args:
        probs: Predicted class probabilities (softmax outputs).
        targets: Integer class indices in ``[0, C)``.
        num_bins: The number of equal-width bins per class; 15 by default.

    Returns:
        The classwise ECE in [0, 1].

    Shape:
        probs: ``(N, C)``; targets: ``(N,)``.

    Raises:
        DismaxError: If there are no samples, the shapes disagree, the probabilities are not in
            [0, 1] or their rows do not sum to 1, a target is out of range, or ``num_bins`` is not
            a positive integer.

    References:
        Kull, Perello-Nieto, Kängsepp, Silva Filho, Song and Flach, "Beyond temperature scaling:
        Obtaining well-calibrated multiclass probabilities with Dirichlet calibration",
        arXiv:1910.12656 (NeurIPS 2019).
    """
    check_num_bins(num_bins)
    array, target_array = probabilities_and_targets(probs, targets)
    count, num_classes = array.shape
    bins = int(num_bins)
    onehot = np.zeros_like(array)
    onehot[np.arange(count), target_array] = 1.0
    # One flat bin index per (class, bin) pair: class c owns bins c*M .. c*M + M - 1.
    flat = equal_width_bin_indices(array, bins) + bins * np.arange(num_classes)[None, :]
    size = bins * num_classes
    confidence_sums = np.bincount(flat.ravel(), weights=array.ravel(), minlength=size)
    hit_sums = np.bincount(flat.ravel(), weights=onehot.ravel(), minlength=size)
    per_class = np.abs(hit_sums - confidence_sums).reshape(num_classes, bins).sum(axis=1) / count
    return float(np.mean(per_class))


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of a reliability diagram (METHOD.md §5's equal-width binning).

    Attributes:
        lower: The bin's lower edge (exclusive, except 0.0 for the first bin).
        upper: The bin's upper edge (inclusive).
        count: The number of samples whose top-label confidence falls in the bin.
        accuracy: The fraction of those samples predicted correctly; ``None`` for an empty bin.
        confidence: Their mean top-label confidence; ``None`` for an empty bin.
    """

    lower: float
    upper: float
    count: int
    accuracy: float | None
    confidence: float | None


def reliability_bins(
    probs: ArrayLike, targets: ArrayLike, num_bins: int = 15
) -> tuple[ReliabilityBin, ...]:
    """Compute the per-bin data of the top-label reliability diagram.

    Definition: the bins of :func:`~dismax_cli.core.metrics.ece` exactly (METHOD.md §5):
    ``num_bins`` equal-width bins ``[0, 1/M], (1/M, 2/M], ..., ((M-1)/M, 1]`` on the top-label
    confidence, the first closed at 0 and the last at 1, edges ``linspace(0, 1, M+1)``. For each
    bin: its edges, its sample count ``n_b``, its accuracy ``acc_b`` and mean confidence
    ``conf_b``, so that ``Σ_b (n_b / N) |acc_b - conf_b|`` over the non-empty bins equals
    ``ece(probs, targets, num_bins=M)`` (to float rounding). Empty bins are listed with count 0
    and ``None`` for accuracy and confidence.

    Args:
        probs: Predicted class probabilities (softmax outputs).
        targets: Integer class indices in ``[0, C)``.
        num_bins: The number of equal-width bins M; the paper uses 15.

    Returns:
        ``num_bins`` :class:`ReliabilityBin` records, lowest bin first.

    Shape:
        probs: ``(N, C)``; targets: ``(N,)``.

    Raises:
        DismaxError: If there are no samples, the shapes disagree, the probabilities are not in
            [0, 1] or their rows do not sum to 1, a target is out of range, or ``num_bins`` is not
            a positive integer.

    References:
        DeGroot and Fienberg, "The Comparison and Evaluation of Forecasters", The Statistician
        32(1/2), 1983.
        Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks",
        arXiv:1706.04599.
    """
    check_num_bins(num_bins)
    confidences, correct = top_label(probs, targets)
    bins = int(num_bins)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = equal_width_bin_indices(confidences, bins)
    counts = np.bincount(index, minlength=bins)
    confidence_sums = np.bincount(index, weights=confidences, minlength=bins)
    correct_sums = np.bincount(index, weights=correct, minlength=bins)
    records = []
    for b in range(bins):
        n = int(counts[b])
        records.append(
            ReliabilityBin(
                lower=float(edges[b]),
                upper=float(edges[b + 1]),
                count=n,
                accuracy=float(correct_sums[b] / n) if n else None,
                confidence=float(confidence_sums[b] / n) if n else None,
            )
        )
    return tuple(records)


__all__ = [
    "ReliabilityBin",
    "adaptive_ece",
    "aurc",
    "brier_score",
    "classwise_ece",
    "reliability_bins",
]
