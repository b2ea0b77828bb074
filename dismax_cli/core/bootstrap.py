"""Seeded percentile-bootstrap intervals for the OOD pair metrics, and paired differences.

What an interval means: the ID test scores and the OOD scores are each resampled with
replacement to their own size (a *stratified* bootstrap: ``n_id`` and ``n_ood`` stay fixed), the
metric is recomputed on every resample, and the interval is the central ``level`` fraction of
those values (the percentile method, ``numpy.quantile``'s linear interpolation). It measures how
much the metric would move with another draw of test samples from the same distributions; it
says nothing about the spread over training seeds, which is reported separately.
:func:`paired_bootstrap_difference` resamples the *same* test samples for two methods (the same
indices for both), so their shared sample noise cancels and the interval of a method against
itself is exactly ``[0, 0]``.

The resample indices depend only on ``(seed, n_id, n_ood)``: ``SeedSequence(seed).spawn(2)``
seeds two ``numpy.random.Generator`` streams (PCG64), one drawing the ID indices and one the OOD
indices, resample after resample (row-major), in blocks of :data:`RESAMPLE_BLOCK` resamples; so
resample ``r`` is the same for any ``resamples > r`` and any block size.

AUROC, AUPR-IN, AUPR-OUT, FPR@95TPR and the detection accuracy are computed for a whole block of
resamples at once from the multiplicities of the pooled sample's distinct scores (one
``bincount`` per side, cumulative sums over the sorted distinct scores, integer counts), which
equals the exact metric of :mod:`dismax_cli.core.metrics` on each resample to float rounding,
ties included. Any other pair metric ``f(id_scores, ood_scores) -> float`` is accepted and is
called once per resample (slow).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from dismax_cli.core import metrics
from dismax_cli.core._arrays import ArrayLike
from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q

RESAMPLE_BLOCK: int = 10
"""Resamples drawn and evaluated together: each block's arrays hold 10 · (n_id + n_ood) int64
values, small enough to stay in the CPU cache (blocks of 50 ran about 2× slower)."""

PairMetric = Callable[[ArrayLike, ArrayLike], float]


@dataclass(frozen=True)
class BootstrapInterval:
    """A percentile-bootstrap interval of a metric (or of a paired difference).

    Attributes:
        value: The metric on the full sample (for a paired difference: method A minus method B).
        low: The ``(1 - level) / 2`` quantile of the resampled values.
        high: The ``(1 + level) / 2`` quantile of the resampled values.
        resamples: The number of bootstrap resamples.
        seed: The seed of the generators that drew the resample indices (see the module).
        level: The interval's coverage, e.g. 0.95.
    """

    value: float
    low: float
    high: float
    resamples: int
    seed: int
    level: float


# ---------------------------------------------------------------- vectorised pair metrics
#
# Every function takes the multiplicities of the pooled sample's distinct scores (ascending) in
# the resamples of one block, ``id_weights`` and ``ood_weights`` of shape (b, G) (int64), and
# returns the metric of each resample, shape (b,).


def _from_top(weights: np.ndarray) -> np.ndarray:
    """Count the samples scoring ``>= value``, for the distinct values in DESCENDING order.

    Column ``j`` of the result belongs to the ``j``-th largest distinct value (the reversed
    order; sums and maxima over the values do not depend on the order): shape (b, G).
    """
    return np.cumsum(weights[:, ::-1], axis=1)


def _auroc_resampled(id_weights: np.ndarray, ood_weights: np.ndarray) -> np.ndarray:
    # Mann-Whitney: Σ_g W_id[g] (#OOD below g + ½ #OOD at g), in integers (doubled).
    ood_below = np.cumsum(ood_weights, axis=1) - ood_weights
    doubled = np.sum(id_weights * (2 * ood_below + ood_weights), axis=1)
    n_id, n_ood = int(id_weights[0].sum()), int(ood_weights[0].sum())
    return doubled / (2.0 * n_id * n_ood)


def _average_precision(
    positive_weights: np.ndarray, positive_at_or_past: np.ndarray, negative_at_or_past: np.ndarray
) -> np.ndarray:
    """AP = Σ_t (ΔR_t) P_t over the thresholds, from counts at or past each threshold.

    All three arrays list the thresholds in the same order (any order: the sum ignores it).
    """
    precision = positive_at_or_past / np.maximum(positive_at_or_past + negative_at_or_past, 1)
    return np.sum(positive_weights * precision, axis=1) / positive_weights[0].sum()


def _aupr_in_resampled(id_weights: np.ndarray, ood_weights: np.ndarray) -> np.ndarray:
    return _average_precision(id_weights[:, ::-1], _from_top(id_weights), _from_top(ood_weights))


def _aupr_out_resampled(id_weights: np.ndarray, ood_weights: np.ndarray) -> np.ndarray:
    # OOD positive with negated scores: thresholds run from the lowest score upwards.
    return _average_precision(
        ood_weights, np.cumsum(ood_weights, axis=1), np.cumsum(id_weights, axis=1)
    )


def _fpr_at_95_tpr_resampled(id_weights: np.ndarray, ood_weights: np.ndarray) -> np.ndarray:
    n_id = int(id_weights[0].sum())
    k = (95 * n_id + 99) // 100  # ceil(0.95 · n_id), as in metrics.fpr_at_95_tpr
    id_at_or_above = _from_top(id_weights)  # non-decreasing: largest distinct value first
    # t* = the k-th largest ID score = the largest distinct value with >= k ID scores at or
    # above it = the first column (descending values) whose count reaches k.
    threshold = np.count_nonzero(id_at_or_above < k, axis=1)
    ood_at_or_above = _from_top(ood_weights)
    rows = np.arange(id_weights.shape[0])
    return ood_at_or_above[rows, threshold] / ood_weights[0].sum()


def _detection_accuracy_resampled(id_weights: np.ndarray, ood_weights: np.ndarray) -> np.ndarray:
    tpr = _from_top(id_weights) / id_weights[0].sum()
    fpr = _from_top(ood_weights) / ood_weights[0].sum()
    return np.maximum(np.max(0.5 * (tpr + 1.0 - fpr), axis=1), 0.5)  # t = +inf gives 0.5


_VECTORISED: dict[Callable[..., float], Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    metrics.auroc: _auroc_resampled,
    metrics.aupr_in: _aupr_in_resampled,
    metrics.aupr_out: _aupr_out_resampled,
    metrics.fpr_at_95_tpr: _fpr_at_95_tpr_resampled,
    metrics.detection_accuracy: _detection_accuracy_resampled,
}

_BY_NAME: dict[str, Callable[..., float]] = {
    "auroc": metrics.auroc,
    "aupr_in": metrics.aupr_in,
    "aupr_out": metrics.aupr_out,
    "fpr_at_95_tpr": metrics.fpr_at_95_tpr,
    "detection_accuracy": metrics.detection_accuracy,
    "AUROC": metrics.auroc,
    "AUPR-IN": metrics.aupr_in,
    "AUPR-OUT": metrics.aupr_out,
    "FPR@95TPR": metrics.fpr_at_95_tpr,
    "DETACC": metrics.detection_accuracy,
}


def _resolve_metric(metric: PairMetric | str) -> PairMetric:
    if isinstance(metric, str):
        if metric not in _BY_NAME:
            names = ", ".join(sorted(_BY_NAME))
            raise DismaxError(f"unknown pair metric {q(metric)}; choose one of: {names}")
        return _BY_NAME[metric]
    if not callable(metric):
        raise DismaxError(
            f"metric must be a pair metric f(id_scores, ood_scores) or its name, got {q(metric)}; "
            "pass e.g. dismax_cli.core.metrics.auroc or 'AUROC'"
        )
    return metric


# ---------------------------------------------------------------- validation and indices


def _check_options(resamples: int, seed: int, level: float | None) -> None:
    if isinstance(resamples, bool) or not isinstance(resamples, int | np.integer) or resamples < 1:
        raise DismaxError(
            f"resamples must be an integer >= 1, got {q(resamples)}; 1000 is the default"
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise DismaxError(f"seed must be an integer >= 0, got {q(seed)}; 0 is the default")
    if level is not None:
        valid = isinstance(level, int | float | np.floating) and not isinstance(level, bool)
        if not valid or not (0.0 < float(level) < 1.0):
            raise DismaxError(
                f"level must be a number strictly between 0 and 1, got {q(level)}; "
                "use 0.95 for a 95 % interval"
            )


def _index_blocks(
    n_id: int, n_ood: int, resamples: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield the resample indices block by block: ``(b, n_id)`` and ``(b, n_ood)`` int64."""
    id_stream, ood_stream = (
        np.random.default_rng(child) for child in np.random.SeedSequence(int(seed)).spawn(2)
    )
    for start in range(0, resamples, RESAMPLE_BLOCK):
        block = min(RESAMPLE_BLOCK, resamples - start)
        id_indices = id_stream.integers(0, n_id, size=(block, n_id))
        ood_indices = ood_stream.integers(0, n_ood, size=(block, n_ood))
        yield id_indices, ood_indices


def resample_indices(
    n_id: int, n_ood: int, *, resamples: int = 1000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Return the bootstrap resample indices that :func:`bootstrap_interval` uses.

    Args:
        n_id: The number of ID test samples.
        n_ood: The number of OOD samples.
        resamples: The number of resamples R.
        seed: The seed of the ``SeedSequence`` behind the two index streams (ID, OOD).

    Returns:
        ``(id_indices, ood_indices)``: row ``r`` indexes the ID (OOD) samples of resample ``r``,
        drawn uniformly with replacement; row ``r`` does not depend on R.

    Shape:
        id_indices: ``(R, n_id)``; ood_indices: ``(R, n_ood)``; int64.

    Raises:
        DismaxError: If a side has no samples, ``resamples`` < 1 or ``seed`` < 0.

    References:
        Efron and Tibshirani, "An Introduction to the Bootstrap", Chapman & Hall, 1993.
    """
    _check_options(resamples, seed, None)
    for name, n in (("n_id", n_id), ("n_ood", n_ood)):
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise DismaxError(f"{name} must be an integer >= 1, got {q(n)}; a side is empty")
    blocks = list(_index_blocks(int(n_id), int(n_ood), int(resamples), int(seed)))
    return np.concatenate([b[0] for b in blocks]), np.concatenate([b[1] for b in blocks])


class _Grouped:
    """The pooled sample's distinct scores and each sample's position among them."""

    def __init__(self, id_array: np.ndarray, ood_array: np.ndarray) -> None:
        pooled = np.concatenate([id_array, ood_array])
        _, inverse = np.unique(pooled, return_inverse=True)
        self.size = int(inverse.max()) + 1
        self.id_groups = inverse[: id_array.size]
        self.ood_groups = inverse[id_array.size :]

    def weights(self, groups: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """Multiplicities ``(b, G)`` of the distinct scores in each resample of a block."""
        block = indices.shape[0]
        flat = groups[indices] + (self.size * np.arange(block))[:, None]
        return np.bincount(flat.ravel(), minlength=block * self.size).reshape(block, self.size)


def _resampled_values(
    metric: PairMetric,
    sides: list[tuple[np.ndarray, np.ndarray]],
    resamples: int,
    seed: int,
) -> list[np.ndarray]:
    """The metric on every resample, for each ``(id, ood)`` side pair, with shared indices."""
    n_id, n_ood = sides[0][0].size, sides[0][1].size
    vectorised = _VECTORISED.get(metric)
    grouped = [_Grouped(i, o) for i, o in sides] if vectorised is not None else []
    values: list[list[np.ndarray]] = [[] for _ in sides]
    for id_indices, ood_indices in _index_blocks(n_id, n_ood, resamples, seed):
        for s, (id_array, ood_array) in enumerate(sides):
            if vectorised is not None:
                g = grouped[s]
                block_values = vectorised(
                    g.weights(g.id_groups, id_indices), g.weights(g.ood_groups, ood_indices)
                )
            else:
                block_values = np.array(
                    [
                        float(metric(id_array[i], ood_array[o]))
                        for i, o in zip(id_indices, ood_indices, strict=True)
                    ]
                )
            values[s].append(np.asarray(block_values, dtype=np.float64))
    return [np.concatenate(v) for v in values]


def _interval(
    value: float, resampled: np.ndarray, resamples: int, seed: int, level: float
) -> BootstrapInterval:
    tail = (1.0 - float(level)) / 2.0
    low, high = np.quantile(resampled, [tail, 1.0 - tail])
    return BootstrapInterval(
        value=float(value),
        low=float(low),
        high=float(high),
        resamples=int(resamples),
        seed=int(seed),
        level=float(level),
    )


def bootstrap_distribution(
    metric: PairMetric | str,
    id_scores: ArrayLike,
    ood_scores: ArrayLike,
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Compute a pair metric on every stratified bootstrap resample.

    Resample ``r`` takes the ID scores at ``resample_indices(...)[0][r]`` and the OOD scores at
    ``resample_indices(...)[1][r]``; the value is ``metric`` of those two vectors (vectorised for
    the five metrics of :mod:`dismax_cli.core.metrics`, see the module docstring).

    Args:
        metric: A pair metric ``f(id_scores, ood_scores) -> float`` (e.g.
            :func:`~dismax_cli.core.metrics.auroc`) or its name (``"auroc"`` or ``"AUROC"``).
        id_scores: Scores of the in-distribution test samples (higher = more ID).
        ood_scores: Scores of the OOD samples.
        resamples: The number of resamples R.
        seed: The seed of the generators that draw the indices (see the module docstring).

    Returns:
        The metric on each resample, float64.

    Shape:
        id_scores: ``(N_id,)``; ood_scores: ``(N_ood,)``; returns ``(R,)``.

    Raises:
        DismaxError: If a side is empty, not one-dimensional or not finite, the metric is unknown,
            ``resamples`` < 1 or ``seed`` < 0.

    References:
        Efron and Tibshirani, "An Introduction to the Bootstrap", Chapman & Hall, 1993.
    """
    function = _resolve_metric(metric)
    _check_options(resamples, seed, None)
    id_array, ood_array = metrics.score_pair(id_scores, ood_scores)
    return _resampled_values(function, [(id_array, ood_array)], int(resamples), int(seed))[0]


def bootstrap_interval(
    metric: PairMetric | str,
    id_scores: ArrayLike,
    ood_scores: ArrayLike,
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> BootstrapInterval:
    """Compute a percentile-bootstrap interval of a pair metric over the test samples.

    Stratified: the ID scores and the OOD scores are each resampled with replacement to their own
    size, ``resamples`` times, from a ``numpy.random.Generator`` seeded with ``seed`` (the same
    seed gives the same interval). The interval is ``[q_{(1-level)/2}, q_{(1+level)/2}]`` of the
    resampled values (percentile method). It reflects test-sample noise only, not the spread over
    training seeds.

    Args:
        metric: A pair metric ``f(id_scores, ood_scores) -> float`` or its name (``"auroc"`` /
            ``"AUROC"``, ``"aupr_in"`` / ``"AUPR-IN"``, ``"aupr_out"`` / ``"AUPR-OUT"``,
            ``"fpr_at_95_tpr"`` / ``"FPR@95TPR"``, ``"detection_accuracy"`` / ``"DETACC"``).
        id_scores: Scores of the in-distribution test samples (higher = more ID).
        ood_scores: Scores of the OOD samples.
        resamples: The number of bootstrap resamples; 1000 by default.
        seed: The seed of the resampling generator; 0 by default.
        level: The interval's coverage, strictly between 0 and 1; 0.95 by default.

    Returns:
        A :class:`BootstrapInterval` with the full-sample value (the exact metric) and the bounds.

    Shape:
        id_scores: ``(N_id,)``; ood_scores: ``(N_ood,)``.

    Raises:
        DismaxError: If a side is empty (the message names which), not one-dimensional or not
            finite, the metric is unknown, ``resamples`` < 1, ``seed`` < 0, or ``level`` is not
            in (0, 1).

    References:
        Efron and Tibshirani, "An Introduction to the Bootstrap", Chapman & Hall, 1993.
    """
    function = _resolve_metric(metric)
    _check_options(resamples, seed, level)
    id_array, ood_array = metrics.score_pair(id_scores, ood_scores)
    value = function(id_array, ood_array)
    resampled = _resampled_values(function, [(id_array, ood_array)], int(resamples), int(seed))
    return _interval(value, resampled[0], resamples, seed, level)


def paired_bootstrap_difference(
    metric: PairMetric | str,
    id_a: ArrayLike,
    ood_a: ArrayLike,
    id_b: ArrayLike,
    ood_b: ArrayLike,
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> BootstrapInterval:
    """Compute a paired percentile-bootstrap interval of ``metric(A) - metric(B)``.

    Methods A and B score the same test samples (row ``i`` of ``id_a`` and ``id_b`` is the same
    image, likewise for the OOD sides). Each resample draws one set of indices (stratified, as in
    :func:`bootstrap_interval`) and applies it to **both** methods, so the sample noise they share
    cancels; the difference of a method with itself is 0 on every resample and its interval is
    exactly ``[0, 0]``. An interval that excludes 0 says the difference is larger than the
    test-sample noise.

    Args:
        metric: A pair metric or its name, as for :func:`bootstrap_interval`.
        id_a: Method A's scores of the ID test samples.
        ood_a: Method A's scores of the OOD samples.
        id_b: Method B's scores of the same ID test samples.
        ood_b: Method B's scores of the same OOD samples.
        resamples: The number of bootstrap resamples; 1000 by default.
        seed: The seed of the resampling generator; 0 by default.
        level: The interval's coverage, strictly between 0 and 1; 0.95 by default.

    Returns:
        A :class:`BootstrapInterval` whose ``value`` is ``metric(A) - metric(B)`` on the full
        sample and whose bounds are quantiles of the per-resample differences.

    Shape:
        id_a, id_b: ``(N_id,)``; ood_a, ood_b: ``(N_ood,)``.

    Raises:
        DismaxError: If a side is empty, not one-dimensional or not finite, A and B do not have
            the same numbers of ID and OOD samples, the metric is unknown, ``resamples`` < 1,
            ``seed`` < 0, or ``level`` is not in (0, 1).

    References:
        Efron and Tibshirani, "An Introduction to the Bootstrap", Chapman & Hall, 1993.
    """
    function = _resolve_metric(metric)
    _check_options(resamples, seed, level)
    side_a = metrics.score_pair(id_a, ood_a)
    side_b = metrics.score_pair(id_b, ood_b)
    if side_a[0].size != side_b[0].size or side_a[1].size != side_b[1].size:
        raise DismaxError(
            f"paired bootstrap needs both methods scored on the same samples, got "
            f"{side_a[0].size} + {side_a[1].size} (A) and {side_b[0].size} + {side_b[1].size} (B) "
            "ID + OOD scores; score the same ID and OOD sets with both methods"
        )
    value = function(*side_a) - function(*side_b)
    resampled_a, resampled_b = _resampled_values(
        function, [side_a, side_b], int(resamples), int(seed)
    )
    return _interval(value, resampled_a - resampled_b, resamples, seed, level)


__all__ = [
    "RESAMPLE_BLOCK",
    "BootstrapInterval",
    "bootstrap_distribution",
    "bootstrap_interval",
    "paired_bootstrap_difference",
    "resample_indices",
]
