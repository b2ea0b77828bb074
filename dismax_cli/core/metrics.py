"""Classification, calibration and OOD-detection metrics, as plain Python floats in [0, 1].

Two families:

- **Pair metrics** ``f(id_scores, ood_scores) -> float`` (:func:`auroc`, :func:`aupr_in`,
  :func:`aupr_out`, :func:`fpr_at_95_tpr`, :func:`detection_accuracy`) compare the scores of the
  in-distribution (ID) test set with those of one OOD set. Scores follow
  :mod:`dismax_cli.core.scores`: **higher = more in-distribution**, and **ID is the positive
  class** everywhere except AUPR-OUT (OOD positive, scores negated). Only the ranks (order and
  ties) of the scores matter: unbounded scores are never squashed. Every threshold is used (no
  curve thinning). AUPR depends on the class balance, so callers report ``n_id`` and ``n_ood``
  with every pair metric.
- **Prediction metrics** on probabilities ``(N, C)`` and integer targets ``(N,)``:
  :func:`accuracy`, :func:`nll`, :func:`ece`.

Inputs may be torch tensors, numpy arrays or lists; they are converted to float64 numpy arrays.
Empty, misshapen or non-finite inputs raise :class:`~dismax_cli.errors.DismaxError`.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from dismax_cli.core._arrays import ArrayLike, to_numpy_float64, to_numpy_targets
from dismax_cli.core.tpr import tpr_fraction
from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q

# Smallest positive normal float64 (about 2.2e-308): nll clamps p_y here, so -log p_y <= 708.4.
NLL_PROBABILITY_FLOOR: float = float(np.finfo(np.float64).tiny)

# Tolerances for recognising probabilities (float32 softmax rows sum to 1 within ~1e-6).
_PROB_RANGE_TOLERANCE = 1e-6
_PROB_SUM_TOLERANCE = 1e-3


def score_pair(id_scores: ArrayLike, ood_scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Convert both sides to finite float64 vectors and reject an empty side, naming it.

    Shapes: ``id_scores`` (N_id,), ``ood_scores`` (N_ood,) -> two float64 numpy vectors.
    Shared by the pair metrics here and by :mod:`dismax_cli.core.bootstrap`.

    Raises:
        DismaxError: for a side that is empty, not one-dimensional or not finite.
    """
    id_array = to_numpy_float64(id_scores, name="id_scores", ndim=1, layout="(N_id,)")
    ood_array = to_numpy_float64(ood_scores, name="ood_scores", ndim=1, layout="(N_ood,)")
    if id_array.size == 0:
        raise DismaxError(
            "id_scores is empty (no in-distribution scores); score the ID test set first"
        )
    if ood_array.size == 0:
        raise DismaxError("ood_scores is empty (no OOD scores); check the OOD dataset is not empty")
    return id_array, ood_array


def _roc_auc_score(labels: np.ndarray, scores: np.ndarray) -> float:
    # scikit-learn is imported on first use: since 1.9 it imports rich (its progress-bar
    # callback) when installed, and importing dismax_cli.core must not load rich.
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def _average_precision_score(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score  # on first use, see _roc_auc_score

    return float(average_precision_score(labels, scores))


def _labelled(id_array: np.ndarray, ood_array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stack the scores with labels 1 for ID and 0 for OOD."""
    labels = np.concatenate([np.ones(id_array.size), np.zeros(ood_array.size)])
    return labels, np.concatenate([id_array, ood_array])


def _count_at_or_above(sorted_ascending: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    """Count the values ``>= t`` for each threshold ``t`` (exact, ties included)."""
    return sorted_ascending.size - np.searchsorted(sorted_ascending, thresholds, side="left")


def auroc(id_scores: ArrayLike, ood_scores: ArrayLike) -> float:
    """Compute the area under the ROC curve, ID positive.

    Definition: the probability that a random ID sample scores above a random OOD sample, ties
    counting ½ (the normalised Mann-Whitney U statistic), computed with scikit-learn's
    ``roc_auc_score`` (exact on the full curve). ID is the positive class; higher scores = more
    in-distribution. 0.5 is chance.

    Args:
        id_scores: Scores of the in-distribution test samples.
        ood_scores: Scores of the OOD samples.

    Returns:
        The AUROC in [0, 1].

    Shape:
        id_scores: ``(N_id,)``; ood_scores: ``(N_ood,)``.

    Raises:
        DismaxError: If a side is empty (the message names which), not one-dimensional, or holds
            NaN or infinite values.

    References:
        Hanley and McNeil, "The meaning and use of the area under a receiver operating
        characteristic (ROC) curve", Radiology 143(1), 1982.
        Hendrycks and Gimpel, "A Baseline for Detecting Misclassified and Out-of-Distribution
        Examples in Neural Networks", arXiv:1610.02136.
    """
    labels, scores = _labelled(*score_pair(id_scores, ood_scores))
    return _roc_auc_score(labels, scores)


def aupr_in(id_scores: ArrayLike, ood_scores: ArrayLike) -> float:
    """Compute the area under the precision-recall curve with ID as the positive class.

    Definition: average precision ``AP = Σ_n (R_n - R_{n-1}) P_n`` over every distinct score
    threshold (no interpolation), scikit-learn's ``average_precision_score`` with labels ID = 1
    and the scores as given (higher = more in-distribution). Depends on the class balance: its
    chance level is ``n_id / (n_id + n_ood)``, so report ``n_id`` and ``n_ood`` with it.

    Args:
        id_scores: Scores of the in-distribution test samples.
        ood_scores: Scores of the OOD samples.

    Returns:
        AUPR-IN in [0, 1].

    Shape:
        id_scores: ``(N_id,)``; ood_scores: ``(N_ood,)``.

    Raises:
        DismaxError: If a side is empty (the message names which), not one-dimensional, or holds
            NaN or infinite values.

    References:
        Hendrycks and Gimpel, "A Baseline for Detecting Misclassified and Out-of-Distribution
        Examples in Neural Networks", arXiv:1610.02136.
    """
    labels, scores = _labelled(*score_pair(id_scores, ood_scores))
    return _average_precision_score(labels, scores)


def aupr_out(id_scores: ArrayLike, ood_scores: ArrayLike) -> float:
    """Compute the area under the precision-recall curve with OOD as the positive class.

    Definition: average precision (as in :func:`aupr_in`) with labels OOD = 1 and the **negated**
    scores (so that higher = more OOD). The DisMax paper's "AUPR" columns are AUPR-OUT. Depends
    on the class balance: its chance level is ``n_ood / (n_id + n_ood)``, so report ``n_id`` and
    ``n_ood`` with it.

    Args:
        id_scores: Scores of the in-distribution test samples (higher = more ID).
        ood_scores: Scores of the OOD samples.

    Returns:
        AUPR-OUT in [0, 1].

    Shape:
        id_scores: ``(N_id,)``; ood_scores: ``(N_ood,)``.

    Raises:
        DismaxError: If a side is empty (the message names which), not one-dimensional, or holds
            NaN or infinite values.

    References:
        Hendrycks and Gimpel, "A Baseline for Detecting Misclassified and Out-of-Distribution
        Examples in Neural Networks", arXiv:1610.02136.
        Macêdo, Zanchettin and Ludermir, "Distinction Maximization Loss", arXiv:2205.05874.
    """
    labels, scores = _labelled(*score_pair(id_scores, ood_scores))
    return _average_precision_score(1.0 - labels, -scores)


#: The two FPR@95TPR conventions of the field: ``ours`` (ID positive, METHOD.md §5) and
#: ``openood`` (OpenOOD v1.5: OOD positive).
FPR_CONVENTIONS = ("ours", "openood")


def fpr_at_95_tpr(
    id_scores: ArrayLike, ood_scores: ArrayLike, *, convention: str = "ours"
) -> float:
    """Compute the false positive rate at 95 % true positive rate (lower is better).

    Definition (exact rule, METHOD.md §5): the threshold ``t*`` is the largest ID score such that
    at least 95 % of the ID scores are ``>= t*``, i.e. the k-th largest ID score with
    ``k = ceil(0.95 · n_id)`` (computed in integers); FPR@95TPR is the fraction of OOD scores
    ``>= t*``. Ties count as detected ID. No interpolation and no curve thinning; the paper's
    TNR@95TPR is ``1 - fpr_at_95_tpr`` (its code takes the ROC point nearest to 95 % TPR, which
    can differ).

    ``convention="openood"`` is OpenOOD v1.5's quantity, with **OOD as the positive class**: the
    threshold ``t*`` is the k-th smallest OOD score with ``k = ceil(0.95 · n_ood)`` (the first
    point of ``roc_curve(ood_indicator, -score)`` whose TPR is ``>= 0.95``), and the value is the
    fraction of *ID* scores ``<= t*`` (ID samples called OOD while 95 % of the OOD samples are
    caught); ties count as called OOD. The two conventions are different quantities, not two
    roundings of one.

    Args:
        id_scores: Scores of the in-distribution test samples (higher = more ID).
        ood_scores: Scores of the OOD samples.
        convention: ``"ours"`` (default) or ``"openood"`` (:data:`FPR_CONVENTIONS`).

    Returns:
        FPR@95TPR in [0, 1].

    Shape:
        id_scores: ``(N_id,)``; ood_scores: ``(N_ood,)``.

    Raises:
        DismaxError: If a side is empty (the message names which), not one-dimensional, or holds
            NaN or infinite values, or for an unknown convention.

    References:
        Liang, Li and Srikant, "Enhancing The Reliability of Out-of-distribution Image Detection
        in Neural Networks" (ODIN), arXiv:1706.02690. Zhang et al., "OpenOOD v1.5: Enhanced
        Benchmark for Out-of-Distribution Detection", arXiv:2306.09301 (the ``openood`` rule).
    """
    if convention not in FPR_CONVENTIONS:
        raise DismaxError(
            f"unknown FPR@95TPR convention {q(convention)}: choose one of "
            f"{', '.join(FPR_CONVENTIONS)}"
        )
    id_array, ood_array = score_pair(id_scores, ood_scores)
    if convention == "openood":
        k = (95 * ood_array.size + 99) // 100  # ceil(0.95 * n_ood), in integers
        threshold = np.sort(ood_array)[k - 1]
        return float(np.count_nonzero(id_array <= threshold) / id_array.size)
    threshold = _kth_largest_at_tpr(id_array, Fraction(19, 20))
    return float(_count_at_or_above(np.sort(ood_array), threshold) / ood_array.size)


def _kth_largest_at_tpr(id_array: np.ndarray, ratio: Fraction) -> float:
    """The k-th largest of ``id_array``, ``k = ceil(ratio · n)`` in exact rational arithmetic."""
    k = max(1, -(-ratio.numerator * id_array.size // ratio.denominator))
    return float(np.sort(id_array)[::-1][k - 1])


def tpr_threshold(id_scores: ArrayLike, *, tpr: float = 0.95) -> float:
    """Compute the score threshold that keeps ``tpr`` of the ID scores (FPR@95TPR's rule).

    The threshold ``t*`` is the largest ID score such that at least ``tpr`` of the ID scores are
    ``>= t*``: the k-th largest ID score with ``k = ceil(tpr · n_id)`` (``tpr`` read as the
    decimal fraction it was written as, so 0.95 · 20 is exactly 19). With ``tpr=0.95`` it is the
    threshold :func:`fpr_at_95_tpr` uses (METHOD.md §5): a sample is called in-distribution
    when its score is ``>= t*``.

    Args:
        id_scores: Scores of in-distribution samples (higher = more ID).
        tpr: The true positive rate to keep, in (0, 1].

    Returns:
        The threshold, one of the ID scores.

    Shape:
        id_scores: ``(N_id,)``.

    Raises:
        DismaxError: If ``id_scores`` is empty, not one-dimensional or not finite, or ``tpr`` is
            not a real number in (0, 1] (see :func:`tpr_fraction` for the types taken).

    References:
        Liang, Li and Srikant, "Enhancing The Reliability of Out-of-distribution Image Detection
        in Neural Networks" (ODIN), arXiv:1706.02690 (the TPR-95 % operating point).
    """
    ratio = tpr_fraction(tpr)
    id_array = to_numpy_float64(id_scores, name="id_scores", ndim=1, layout="(N_id,)")
    if id_array.size == 0:
        raise DismaxError("id_scores is empty (no in-distribution scores); score an ID set first")
    return _kth_largest_at_tpr(id_array, ratio)


def detection_accuracy(id_scores: ArrayLike, ood_scores: ArrayLike) -> float:
    """Compute the best balanced detection accuracy over all thresholds, ID positive.

    Definition: ``max_t ½ (TPR(t) + TNR(t))`` where a sample is called ID when its score is
    ``>= t``, ``TPR(t)`` is the fraction of ID scores ``>= t`` and ``TNR(t)`` the fraction of OOD
    scores ``< t``. The maximum runs over every distinct score and ``t = +inf`` (everything
    called OOD), so it is at least 0.5.

    Args:
        id_scores: Scores of the in-distribution test samples (higher = more ID).
        ood_scores: Scores of the OOD samples.

    Returns:
        The detection accuracy in [0.5, 1].

    Shape:
        id_scores: ``(N_id,)``; ood_scores: ``(N_ood,)``.

    Raises:
        DismaxError: If a side is empty (the message names which), not one-dimensional, or holds
            NaN or infinite values.

    References:
        Liang, Li and Srikant, "Enhancing The Reliability of Out-of-distribution Image Detection
        in Neural Networks" (ODIN), arXiv:1706.02690.
    """
    id_array, ood_array = score_pair(id_scores, ood_scores)
    thresholds = np.unique(np.concatenate([id_array, ood_array]))
    tpr = _count_at_or_above(np.sort(id_array), thresholds) / id_array.size
    fpr = _count_at_or_above(np.sort(ood_array), thresholds) / ood_array.size
    best = float(np.max(0.5 * (tpr + 1.0 - fpr)))
    return max(best, 0.5)  # t = +inf: TPR = 0, TNR = 1


def probabilities_and_targets(
    probs: ArrayLike, targets: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Validate probabilities ``(N, C)`` (rows in [0, 1] summing to 1) and targets ``(N,)``."""
    array = to_numpy_float64(probs, name="probs", ndim=2, layout="(N, C)")
    if array.shape[0] == 0:
        raise DismaxError("probs is empty (no samples); pass at least one row of probabilities")
    if array.shape[1] == 0:
        raise DismaxError("probs has 0 classes (shape (N, 0)); pass at least one class column")
    low, high = float(array.min()), float(array.max())
    if low < -_PROB_RANGE_TOLERANCE or high > 1.0 + _PROB_RANGE_TOLERANCE:
        raise DismaxError(
            f"probs must lie in [0, 1], got values in [{low:.4g}, {high:.4g}]; "
            "pass softmax(logits), not logits"
        )
    row_sums = array.sum(axis=1)
    worst = int(np.argmax(np.abs(row_sums - 1.0)))
    if abs(row_sums[worst] - 1.0) > _PROB_SUM_TOLERANCE:
        raise DismaxError(
            f"probs rows must sum to 1, row {worst} sums to {row_sums[worst]:.6g}; "
            "pass softmax(logits) over the class dimension"
        )
    target_array = to_numpy_targets(targets, num_classes=array.shape[1], num_samples=array.shape[0])
    return np.clip(array, 0.0, 1.0), target_array


def equal_width_bin_indices(values: np.ndarray, num_bins: int) -> np.ndarray:
    """Assign each value in [0, 1] to one of ``num_bins`` equal-width bins (METHOD.md §5).

    Bins are ``[0, 1/M], (1/M, 2/M], ..., ((M-1)/M, 1]`` with boundaries ``linspace(0, 1, M+1)``:
    right-closed, the first also closed at 0 (0.0 lands in bin 0, 1.0 in bin M-1). The one bin
    rule of the ECE, the classwise ECE and the reliability diagram.
    """
    inner_edges = np.linspace(0.0, 1.0, num_bins + 1)[1:-1]
    return np.searchsorted(inner_edges, values, side="left")  # edge[b-1] < v <= edge[b]


def binned_ece(confidences: np.ndarray, correct: np.ndarray, num_bins: int) -> float:
    """ECE from top-label confidences and correctness: ``Σ_b (n_b / N) |acc_b - conf_b|``.

    Bins are ``[0, 1/M], (1/M, 2/M], ..., ((M-1)/M, 1]`` with boundaries ``linspace(0, 1, M+1)``:
    right-closed, the first also closed at 0, so a confidence of exactly 1.0 falls in the last bin
    and 0.0 in the first. Empty bins add 0 (METHOD.md §5). Shared by :func:`ece` and the
    temperature fit of :mod:`dismax_cli.core.calibration`.

    Shapes: ``confidences`` (N,) float64 in [0, 1]; ``correct`` (N,) bool or 0/1. Returns a
    fraction in [0, 1]. Inputs are not validated (the callers have).
    """
    bins = equal_width_bin_indices(confidences, num_bins)
    confidence_sums = np.bincount(bins, weights=confidences, minlength=num_bins)
    correct_sums = np.bincount(bins, weights=correct.astype(np.float64), minlength=num_bins)
    return float(np.sum(np.abs(correct_sums - confidence_sums)) / confidences.size)


def check_num_bins(num_bins: int) -> None:
    """Reject a number of ECE bins that is not a positive integer.

    Raises:
        DismaxError: If ``num_bins`` is not an integer >= 1.
    """
    if isinstance(num_bins, bool) or not isinstance(num_bins, int | np.integer) or num_bins < 1:
        raise DismaxError(f"num_bins must be an integer >= 1, got {q(num_bins)}; the paper uses 15")


def accuracy(probs: ArrayLike, targets: ArrayLike) -> float:
    """Compute the top-1 accuracy.

    Definition: the fraction of samples whose predicted class ``argmax_c p_c`` (the first index on
    ties) equals the target. No positive class (a classification metric; higher is better).

    Args:
        probs: Predicted class probabilities (softmax outputs; logits give the same argmax but are
            rejected by the probability checks).
        targets: Integer class indices in ``[0, C)``.

    Returns:
        The accuracy in [0, 1].

    Shape:
        probs: ``(N, C)``; targets: ``(N,)``.

    Raises:
        DismaxError: If there are no samples, the shapes disagree, the probabilities are not in
            [0, 1] or their rows do not sum to 1, or a target is out of range.

    References:
        Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks",
        arXiv:1706.04599.
    """
    array, target_array = probabilities_and_targets(probs, targets)
    return float(np.mean(np.argmax(array, axis=1) == target_array))


def nll(probs: ArrayLike, targets: ArrayLike) -> float:
    """Compute the negative log-likelihood of the targets (natural log; lower is better).

    Definition: ``mean_n -log p_{n, y_n}``. A zero probability of the target is clamped at the
    smallest positive normal float64, ``NLL_PROBABILITY_FLOOR`` (about 2.2e-308), so each term is
    at most about 708.4 and the result stays finite. No positive class. For logits, prefer
    :func:`dismax_cli.core.calibration.nll_from_logits`, which needs no clamp.

    Args:
        probs: Predicted class probabilities (softmax outputs).
        targets: Integer class indices in ``[0, C)``.

    Returns:
        The mean NLL, >= 0.

    Shape:
        probs: ``(N, C)``; targets: ``(N,)``.

    Raises:
        DismaxError: If there are no samples, the shapes disagree, the probabilities are not in
            [0, 1] or their rows do not sum to 1, or a target is out of range.

    References:
        Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks",
        arXiv:1706.04599.
    """
    array, target_array = probabilities_and_targets(probs, targets)
    target_probs = array[np.arange(array.shape[0]), target_array]
    return float(np.mean(-np.log(np.maximum(target_probs, NLL_PROBABILITY_FLOOR))))


def ece(probs: ArrayLike, targets: ArrayLike, *, num_bins: int = 15) -> float:
    """Compute the expected calibration error of the top-label confidence (lower is better).

    Definition: with confidence ``conf_n = max_c p_{n,c}`` and correctness
    ``argmax_c p_{n,c} == y_n``, ``ECE = Σ_b (n_b / N) |acc_b - conf_b|`` over ``num_bins``
    equal-width bins ``[0, 1/M], (1/M, 2/M], ..., ((M-1)/M, 1]``: right-closed, the first bin
    closed at 0 and the last at 1 (a confidence of exactly 1.0 lands in the last bin). Empty bins
    add 0. No positive class. Takes probabilities: apply the softmax to logits first.

    Args:
        probs: Predicted class probabilities (softmax outputs).
        targets: Integer class indices in ``[0, C)``.
        num_bins: The number of equal-width bins M; the paper uses 15.

    Returns:
        The ECE in [0, 1].

    Shape:
        probs: ``(N, C)``; targets: ``(N,)``.

    Raises:
        DismaxError: If there are no samples, the shapes disagree, the probabilities are not in
            [0, 1] or their rows do not sum to 1, a target is out of range, or ``num_bins`` is not
            a positive integer.

    References:
        Naeini, Cooper and Hauskrecht, "Obtaining Well Calibrated Probabilities Using Bayesian
        Binning", AAAI 2015.
        Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks",
        arXiv:1706.04599.
    """
    check_num_bins(num_bins)
    array, target_array = probabilities_and_targets(probs, targets)
    confidences = array.max(axis=1)
    correct = np.argmax(array, axis=1) == target_array
    return binned_ece(confidences, correct, int(num_bins))


__all__ = [
    "NLL_PROBABILITY_FLOOR",
    "accuracy",
    "aupr_in",
    "aupr_out",
    "auroc",
    "detection_accuracy",
    "ece",
    "fpr_at_95_tpr",
    "nll",
    "tpr_threshold",
]
