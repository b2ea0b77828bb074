"""Curves of several methods in one PNG: ROC and precision-recall (ID positive), risk-coverage.

Drawn on :mod:`dismax_cli.plot_canvas` (no pyplot, matplotlib's default style, byte-identical
PNG files for the same arrays); re-exported by :mod:`dismax_cli.plots`. Higher score = more
in-distribution and ID is the positive class (METHOD.md §3, §5).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from dismax_cli.core.uncertainty import aurc, sorted_with_tie_means
from dismax_cli.errors import DismaxError
from dismax_cli.plot_canvas import (
    DEFAULT_DPI,
    DEFAULT_HEIGHT_PX,
    DEFAULT_WIDTH_PX,
    curve_inputs,
    new_figure,
    png_bytes,
    style,
)

#: Draws one method's curve: (axes, legend label, labels (N,) with ID = 1, scores (N,)).
_Draw = Callable[[Any, str, np.ndarray, np.ndarray], None]
#: Draws the chance line: (axes, fraction of ID samples among the last method's samples).
_Finish = Callable[[Any, float], None]


def roc_curves(
    curves: Mapping[str, tuple[object, object]],
    *,
    ood_label: str = "OOD",
    width_px: int = DEFAULT_WIDTH_PX,
    height_px: int = DEFAULT_HEIGHT_PX,
    dpi: int = DEFAULT_DPI,
) -> bytes:
    """Draw the ROC curves (ID positive) of several methods on one OOD set.

    The curves come from scikit-learn's ``roc_curve`` with ID labelled 1 (METHOD.md §5); the
    legend gives each method's AUROC (``roc_auc_score``).

    Args:
        curves: Method label → ``(id_scores, ood_scores)``, in legend order.
        ood_label: The OOD set's name for the title.
        width_px, height_px, dpi: The PNG's size in pixels and its resolution.

    Returns:
        The PNG file's bytes, ``width_px`` × ``height_px`` pixels.

    Shape:
        each id_scores: ``(N_id,)``; each ood_scores: ``(N_ood,)``.

    Raises:
        DismaxError: If ``curves`` is empty, a side is empty or not finite, or the size is not a
            positive multiple of ``dpi``.

    References:
        Hendrycks and Gimpel, "A Baseline for Detecting Misclassified and Out-of-Distribution
        Examples in Neural Networks", arXiv:1610.02136.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    def draw(axes, label: str, labels: np.ndarray, scores: np.ndarray) -> None:
        fpr, tpr, _ = roc_curve(labels, scores)
        area = roc_auc_score(labels, scores)
        axes.plot(fpr, tpr, label=f"{label} (AUROC {100 * area:.2f}%)")

    def finish(axes, base: float) -> None:
        axes.plot([0, 1], [0, 1], "--", color="gray", label="chance")

    return _id_positive_curves(
        curves, draw, finish, (width_px, height_px, dpi),
        xlabel="false positive rate (OOD accepted as ID)",
        ylabel="true positive rate (ID accepted)",
        title=f"ROC, ID positive: {ood_label}", legend="lower right",
    )


def _id_positive_curves(
    curves: Mapping[str, tuple[object, object]],
    draw: _Draw,
    finish: _Finish,
    size: tuple[int, int, int],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    legend: str,
) -> bytes:
    """One figure of a curve per method over ID (label 1) and OOD (label 0) scores (§5)."""
    inputs = curve_inputs(curves)
    width_px, height_px, dpi = size
    with style():
        figure = new_figure(width_px, height_px, dpi)
        axes = figure.add_subplot()
        base = 0.0
        for label, id_array, ood_array in inputs:
            labels = np.concatenate([np.ones(id_array.size), np.zeros(ood_array.size)])
            draw(axes, label, labels, np.concatenate([id_array, ood_array]))
            base = id_array.size / labels.size
        finish(axes, base)
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.01)
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        axes.set_title(title)
        axes.legend(loc=legend)
        return png_bytes(figure, dpi)


def pr_curves(
    curves: Mapping[str, tuple[object, object]],
    *,
    ood_label: str = "OOD",
    width_px: int = DEFAULT_WIDTH_PX,
    height_px: int = DEFAULT_HEIGHT_PX,
    dpi: int = DEFAULT_DPI,
) -> bytes:
    """Draw the precision-recall curves (ID positive) of several methods on one OOD set.

    The curves come from scikit-learn's ``precision_recall_curve`` with ID labelled 1; the legend
    gives each method's AUPR-IN (``average_precision_score``, METHOD.md §5) and the dotted line
    is the precision of chance, the fraction of ID samples.

    Args:
        curves: Method label → ``(id_scores, ood_scores)``, in legend order.
        ood_label: The OOD set's name for the title.
        width_px, height_px, dpi: The PNG's size in pixels and its resolution.

    Returns:
        The PNG file's bytes, ``width_px`` × ``height_px`` pixels.

    Shape:
        each id_scores: ``(N_id,)``; each ood_scores: ``(N_ood,)``.

    Raises:
        DismaxError: If ``curves`` is empty, a side is empty or not finite, or the size is not a
            positive multiple of ``dpi``.

    References:
        Saito and Rehmsmeier, "The Precision-Recall Plot Is More Informative than the ROC Plot
        When Evaluating Binary Classifiers on Imbalanced Datasets", PLoS ONE 10(3), 2015.
    """
    from sklearn.metrics import average_precision_score, precision_recall_curve

    def draw(axes, label: str, labels: np.ndarray, scores: np.ndarray) -> None:
        precision, recall, _ = precision_recall_curve(labels, scores)
        area = average_precision_score(labels, scores)
        axes.plot(recall, precision, label=f"{label} (AUPR-IN {100 * area:.2f}%)")

    def finish(axes, base: float) -> None:
        axes.axhline(base, linestyle=":", color="gray", label="chance")

    return _id_positive_curves(
        curves, draw, finish, (width_px, height_px, dpi),
        xlabel="recall (ID accepted)", ylabel="precision (ID among accepted)",
        title=f"Precision-recall, ID positive: {ood_label}", legend="lower left",
    )


def risk_coverage_points(probs: object, targets: object) -> tuple[np.ndarray, np.ndarray]:
    """Return the risk-coverage curve whose mean is :func:`~dismax_cli.core.uncertainty.aurc`.

    Coverage ``k/N`` keeps the ``k`` most confident samples (top-label confidence); the selective
    risk is their error rate, tied confidences counting with their group's mean error.

    Shape:
        probs: ``(N, C)``; targets: ``(N,)``; returns coverage ``(N,)`` and risk ``(N,)``.

    Raises:
        DismaxError: If the probabilities or targets are invalid (see ``aurc``).
    """
    from dismax_cli.core.uncertainty import top_label

    confidences, correct = top_label(probs, targets)
    _, correct_sorted = sorted_with_tie_means(confidences, correct, descending=True)
    k = np.arange(1, correct_sorted.size + 1)
    return k / correct_sorted.size, np.cumsum(1.0 - correct_sorted) / k


def risk_coverage_curves(
    methods: Mapping[str, tuple[object, object]],
    *,
    title: str = "Risk-coverage",
    width_px: int = DEFAULT_WIDTH_PX,
    height_px: int = DEFAULT_HEIGHT_PX,
    dpi: int = DEFAULT_DPI,
) -> bytes:
    """Draw the risk-coverage curves of several methods (selective classification on ID test).

    The legend gives each method's AURC (:func:`~dismax_cli.core.uncertainty.aurc`, the mean of
    the plotted curve).

    Args:
        methods: Method label → ``(probs, targets)``, in legend order.
        title: The plot's title.
        width_px, height_px, dpi: The PNG's size in pixels and its resolution.

    Returns:
        The PNG file's bytes, ``width_px`` × ``height_px`` pixels.

    Shape:
        each probs: ``(N, C)``; each targets: ``(N,)``.

    Raises:
        DismaxError: If ``methods`` is empty, the probabilities or targets are invalid, or the
            size is not a positive multiple of ``dpi``.

    References:
        Geifman and El-Yaniv, "Selective Classification for Deep Neural Networks",
        arXiv:1705.08500.
    """
    if not methods:
        raise DismaxError("no curves to draw: pass at least one method's (probs, targets)")
    with style():
        figure = new_figure(width_px, height_px, dpi)
        axes = figure.add_subplot()
        for label, (probs, targets) in methods.items():
            coverage, risk = risk_coverage_points(probs, targets)
            area = aurc(probs, targets)  # type: ignore[arg-type]
            axes.plot(coverage, risk, label=f"{label} (AURC {100 * area:.2f}%)")
        axes.set_xlim(0, 1)
        axes.set_ylim(bottom=0)
        axes.set_xlabel("coverage (fraction of most confident ID samples kept)")
        axes.set_ylabel("selective risk (error rate among kept)")
        axes.set_title(title)
        axes.legend(loc="upper left")
        return png_bytes(figure, dpi)


__all__ = ["pr_curves", "risk_coverage_curves", "risk_coverage_points", "roc_curves"]
