"""Plots as PNG bytes: reliability diagrams, score histograms, ROC, PR and risk-coverage curves.

Every function takes arrays (never files) and returns the bytes of one PNG of a stated size in
pixels (default 800 × 600 at dpi 100). Drawing uses matplotlib's ``Figure`` and the Agg canvas
directly: pyplot is never imported, no global backend is selected, and the drawing runs under
matplotlib's default style (``rcParamsDefault``) whatever another caller set, so the same arrays
give byte-identical PNG files (the PNG carries no software name or timestamp).

Per-sample data (ID targets, ID logits at T = 1, the fitted temperature, the default score on the
ID test split and on each OOD set) is kept in one ``.npz`` file: :func:`save_per_sample` writes it
atomically and byte-deterministically and returns its sha256, which a report can store to name
it; :func:`load_per_sample` reads it back (and refuses a file whose hash differs from the one
given); :func:`draw_all` writes every plot kind for every method and OOD set.

Conventions follow METHOD.md: higher score = more in-distribution and ID is the positive class
(§3, §5); the reliability diagram uses the 15 equal-width bins of the ECE (§5); probabilities
after calibration are ``softmax(logits / T)`` and OOD scores are computed at T = 1 (§3, §4).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dismax_cli.core.uncertainty import aurc, reliability_bins, sorted_with_tie_means
from dismax_cli.errors import DismaxError
from dismax_cli.fileio import atomic_write_bytes

#: Default size of every plot: 800 × 600 pixels at 100 dots per inch.
DEFAULT_WIDTH_PX = 800
DEFAULT_HEIGHT_PX = 600
DEFAULT_DPI = 100
#: The PNG signature every returned image starts with.
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Version of the per-sample npz layout (stored in its index).
PER_SAMPLE_FORMAT = 1
_INDEX_KEY = "index"
# A fixed timestamp for the npz members, so equal data give byte-identical files.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


# --------------------------------------------------------------------------- drawing


def _check_size(width_px: int, height_px: int, dpi: int) -> None:
    for name, value in (("width_px", width_px), ("height_px", height_px), ("dpi", dpi)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise DismaxError(f"{name} must be a positive whole number of pixels, got {value!r}")
    if width_px % dpi or height_px % dpi:
        # Matplotlib rounds a figure of a fractional inch size; whole inches keep the size exact.
        raise DismaxError(
            f"the plot size {width_px}x{height_px} px must be a multiple of dpi {dpi} "
            "(e.g. 800x600 at dpi 100)"
        )


def _new_figure(width_px: int, height_px: int, dpi: int):  # -> matplotlib Figure
    from matplotlib.figure import Figure

    _check_size(width_px, height_px, dpi)
    return Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)


def _style():  # -> a context manager with matplotlib's default style
    import matplotlib

    defaults = {k: v for k, v in matplotlib.rcParamsDefault.items() if k != "backend"}
    return matplotlib.rc_context(rc=defaults)


def _png(figure, dpi: int) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def _vector(values: object, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise DismaxError(f"{name} must be one-dimensional (N,), got shape {array.shape}")
    if array.size == 0:
        raise DismaxError(f"{name} is empty: a plot needs at least one sample")
    if not np.all(np.isfinite(array)):
        raise DismaxError(f"{name} holds NaN or infinite values: plot finite scores only")
    return array


def _curve_inputs(
    curves: Mapping[str, tuple[object, object]],
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    if not curves:
        raise DismaxError("no curves to draw: pass at least one method's (id_scores, ood_scores)")
    out = []
    for label, (id_scores, ood_scores) in curves.items():
        id_array = _vector(id_scores, f"id_scores of {label!r}")
        ood_array = _vector(ood_scores, f"ood_scores of {label!r}")
        out.append((label, id_array, ood_array))
    return out


def reliability_diagram(
    probs_before: object,
    targets: object,
    *,
    probs_after: object | None = None,
    title: str = "",
    num_bins: int = 15,
    width_px: int = DEFAULT_WIDTH_PX,
    height_px: int = DEFAULT_HEIGHT_PX,
    dpi: int = DEFAULT_DPI,
) -> bytes:
    """Draw the top-label reliability diagram, before and after calibration side by side.

    Each panel shows, per equal-width confidence bin (the ECE's bins, METHOD.md §5, from
    :func:`~dismax_cli.core.uncertainty.reliability_bins`), the bin's accuracy as a bar, its mean
    confidence as a marker, the diagonal of perfect calibration, the 15-bin ECE in the title, and
    below it the number of samples in each bin (log scale; the count is written on each bar).

    Args:
        probs_before: Class probabilities at T = 1.
        targets: Integer class indices.
        probs_after: Class probabilities at the calibrated temperature, ``softmax(logits / T)``
            (§4); ``None`` draws the "before" panel alone.
        title: A caption, e.g. the method's name.
        num_bins: The number of equal-width bins (15 as in the paper).
        width_px, height_px, dpi: The PNG's size in pixels and its resolution.

    Returns:
        The PNG file's bytes, ``width_px`` × ``height_px`` pixels.

    Shape:
        probs_before, probs_after: ``(N, C)``; targets: ``(N,)``.

    Raises:
        DismaxError: If the probabilities or targets are invalid (see ``reliability_bins``) or
            the size is not a positive multiple of ``dpi``.

    References:
        Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks",
        arXiv:1706.04599.
    """
    panels = [("before calibration (T = 1)", reliability_bins(probs_before, targets, num_bins))]
    if probs_after is not None:
        panels.append(("after calibration", reliability_bins(probs_after, targets, num_bins)))
    with _style():
        figure = _new_figure(width_px, height_px, dpi)
        grid = figure.add_gridspec(2, len(panels), height_ratios=(3, 1), hspace=0.08)
        for column, (name, bins) in enumerate(panels):
            top = figure.add_subplot(grid[0, column])
            bottom = figure.add_subplot(grid[1, column], sharex=top)
            total = sum(b.count for b in bins)
            ece = sum(
                b.count / total * abs(b.accuracy - b.confidence)  # type: ignore[operator]
                for b in bins
                if b.count
            )
            lefts = [b.lower for b in bins]
            widths = [b.upper - b.lower for b in bins]
            accuracies = [b.accuracy or 0.0 for b in bins]
            top.bar(lefts, accuracies, width=widths, align="edge", edgecolor="black",
                    color="tab:blue", label="accuracy")
            filled = [b for b in bins if b.count]
            top.plot([b.confidence for b in filled], [b.accuracy for b in filled], "o",
                     color="tab:red", label="mean confidence")
            top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
            top.set_xlim(0, 1)
            top.set_ylim(0, 1)
            top.set_title(f"{name}\nECE {100 * ece:.2f}%", fontsize=10)
            top.tick_params(labelbottom=False)
            if column == 0:
                top.set_ylabel("accuracy")
                top.legend(loc="upper left", fontsize=8)
            counts = [b.count for b in bins]
            bottom.bar(lefts, [max(c, 0.5) if c else 0 for c in counts], width=widths,
                       align="edge", edgecolor="black", color="tab:gray")
            bottom.set_yscale("log")
            bottom.set_ylim(0.5, max(counts) * 8)
            for b in bins:
                if b.count:
                    bottom.text((b.lower + b.upper) / 2, b.count * 1.3, str(b.count),
                                ha="center", va="bottom", fontsize=6, rotation=90)
            bottom.set_xlabel("top-label confidence")
            if column == 0:
                bottom.set_ylabel("samples")
        if title:
            figure.suptitle(title)
        return _png(figure, dpi)


def score_histograms(
    id_scores: object,
    ood_scores: object,
    *,
    score: str = "score",
    id_label: str = "ID",
    ood_label: str = "OOD",
    title: str = "",
    bins: int = 50,
    width_px: int = DEFAULT_WIDTH_PX,
    height_px: int = DEFAULT_HEIGHT_PX,
    dpi: int = DEFAULT_DPI,
) -> bytes:
    """Draw the ID and OOD score histograms of one OOD set on shared bins (density scale).

    Args:
        id_scores: Scores of the ID test samples (higher = more in-distribution, METHOD.md §3).
        ood_scores: Scores of the OOD samples.
        score: The score's name for the x label (e.g. ``mmles``).
        id_label, ood_label: Legend names of the two sets.
        title: A caption, e.g. the method's name.
        bins: The number of equal-width bins spanning both sets.
        width_px, height_px, dpi: The PNG's size in pixels and its resolution.

    Returns:
        The PNG file's bytes, ``width_px`` × ``height_px`` pixels.

    Shape:
        id_scores: ``(N_id,)``; ood_scores: ``(N_ood,)``.

    Raises:
        DismaxError: If a side is empty, not one-dimensional or not finite, ``bins`` < 1, or the
            size is not a positive multiple of ``dpi``.
    """
    id_array = _vector(id_scores, "id_scores")
    ood_array = _vector(ood_scores, "ood_scores")
    if not isinstance(bins, int) or bins < 1:
        raise DismaxError(f"bins must be a positive whole number, got {bins!r}")
    low = float(min(id_array.min(), ood_array.min()))
    high = float(max(id_array.max(), ood_array.max()))
    if high == low:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)
    with _style():
        figure = _new_figure(width_px, height_px, dpi)
        axes = figure.add_subplot()
        axes.hist(id_array, bins=edges, density=True, alpha=0.55, color="tab:blue",
                  label=f"{id_label} (n = {id_array.size:,})")
        axes.hist(ood_array, bins=edges, density=True, alpha=0.55, color="tab:orange",
                  label=f"{ood_label} (n = {ood_array.size:,})")
        axes.set_xlabel(f"{score} (higher = more in-distribution)")
        axes.set_ylabel("density")
        axes.legend()
        axes.set_title(title or f"{score}: {id_label} vs {ood_label}")
        return _png(figure, dpi)


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

    inputs = _curve_inputs(curves)
    with _style():
        figure = _new_figure(width_px, height_px, dpi)
        axes = figure.add_subplot()
        for label, id_array, ood_array in inputs:
            labels = np.concatenate([np.ones(id_array.size), np.zeros(ood_array.size)])
            scores = np.concatenate([id_array, ood_array])
            fpr, tpr, _ = roc_curve(labels, scores)
            area = roc_auc_score(labels, scores)
            axes.plot(fpr, tpr, label=f"{label} (AUROC {100 * area:.2f}%)")
        axes.plot([0, 1], [0, 1], "--", color="gray", label="chance")
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.01)
        axes.set_xlabel("false positive rate (OOD accepted as ID)")
        axes.set_ylabel("true positive rate (ID accepted)")
        axes.set_title(f"ROC, ID positive: {ood_label}")
        axes.legend(loc="lower right")
        return _png(figure, dpi)


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

    inputs = _curve_inputs(curves)
    with _style():
        figure = _new_figure(width_px, height_px, dpi)
        axes = figure.add_subplot()
        base = None
        for label, id_array, ood_array in inputs:
            labels = np.concatenate([np.ones(id_array.size), np.zeros(ood_array.size)])
            scores = np.concatenate([id_array, ood_array])
            precision, recall, _ = precision_recall_curve(labels, scores)
            area = average_precision_score(labels, scores)
            axes.plot(recall, precision, label=f"{label} (AUPR-IN {100 * area:.2f}%)")
            base = id_array.size / labels.size
        axes.axhline(base, linestyle=":", color="gray", label="chance")
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.01)
        axes.set_xlabel("recall (ID accepted)")
        axes.set_ylabel("precision (ID among accepted)")
        axes.set_title(f"Precision-recall, ID positive: {ood_label}")
        axes.legend(loc="lower left")
        return _png(figure, dpi)


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
    with _style():
        figure = _new_figure(width_px, height_px, dpi)
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
        return _png(figure, dpi)


# --------------------------------------------------------------------------- per-sample data


@dataclass(frozen=True)
class MethodSamples:
    """One method's per-sample outputs.

    Attributes:
        logits: ID test logits at T = 1 (§3), float ``(N, C)``.
        temperature: The calibrated temperature T (§4); probabilities after calibration are
            ``softmax(logits / T)``.
        score: The name of the default OOD score (e.g. ``mmles``).
        id_scores: That score on the ID test samples, ``(N,)``.
        ood_scores: OOD set name → that score on its samples, ``(N_ood,)`` each.
    """

    logits: np.ndarray
    temperature: float
    score: str
    id_scores: np.ndarray
    ood_scores: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class PerSample:
    """Per-sample data of a report: ID targets ``(N,)`` and each method's outputs."""

    targets: np.ndarray
    methods: dict[str, MethodSamples]


def _validate(per_sample: PerSample) -> None:
    targets = np.asarray(per_sample.targets)
    if targets.ndim != 1 or targets.size == 0 or not np.issubdtype(targets.dtype, np.integer):
        raise DismaxError(
            f"targets must be a non-empty integer vector (N,), got dtype {targets.dtype} and "
            f"shape {targets.shape}"
        )
    if not per_sample.methods:
        raise DismaxError("the per-sample data holds no method: add at least one")
    n = targets.size
    for name, m in per_sample.methods.items():
        logits = np.asarray(m.logits)
        if logits.ndim != 2 or logits.shape[0] != n:
            raise DismaxError(
                f"logits of {name!r} must have shape (N, C) with N = {n} targets, got "
                f"{logits.shape}"
            )
        if np.asarray(m.id_scores).shape != (n,):
            raise DismaxError(
                f"id_scores of {name!r} must have shape ({n},), got {np.asarray(m.id_scores).shape}"
            )
        if not (isinstance(m.temperature, int | float) and math.isfinite(m.temperature)
                and m.temperature > 0):
            raise DismaxError(
                f"temperature of {name!r} must be a positive finite number, got {m.temperature!r}"
            )


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def per_sample_bytes(per_sample: PerSample) -> bytes:
    """Serialise per-sample data to ``.npz`` bytes (deterministic: equal data, equal bytes).

    Layout: ``targets.npy``; per method ``i`` ``m{i}_logits.npy``, ``m{i}_id_scores.npy`` and
    ``m{i}_ood{j}.npy``; ``index.npy`` a JSON string naming the methods, scores, temperatures
    and OOD sets (so any name works; no pickle is needed to read it).

    Raises:
        DismaxError: If the shapes disagree (see :class:`PerSample`).
    """
    _validate(per_sample)
    members: dict[str, np.ndarray] = {"targets": np.asarray(per_sample.targets, dtype=np.int64)}
    index: dict[str, object] = {"format": PER_SAMPLE_FORMAT, "methods": []}
    for i, (name, m) in enumerate(per_sample.methods.items()):
        members[f"m{i}_logits"] = np.asarray(m.logits)
        members[f"m{i}_id_scores"] = np.asarray(m.id_scores)
        oods = []
        for j, (ood, scores) in enumerate(m.ood_scores.items()):
            members[f"m{i}_ood{j}"] = np.asarray(scores)
            oods.append(ood)
        index["methods"].append(  # type: ignore[attr-defined]
            {"name": name, "score": m.score, "temperature": float(m.temperature), "ood": oods}
        )
    members[_INDEX_KEY] = np.array([json.dumps(index, sort_keys=True)])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, array in members.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, _npy_bytes(array))
    return buffer.getvalue()


def save_per_sample(path: str | Path, per_sample: PerSample) -> str:
    """Write per-sample data to an ``.npz`` atomically and return its sha256 (hex).

    The bytes depend on the data only (fixed member timestamps), so the hash names the content:
    a report stores it and :func:`load_per_sample` refuses a file that changed since.

    Raises:
        DismaxError: If the shapes disagree or the folder does not exist.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise DismaxError(
            f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist; create it"
        )
    data = per_sample_bytes(per_sample)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def load_per_sample(path: str | Path, *, sha256: str | None = None) -> PerSample:
    """Read per-sample data written by :func:`save_per_sample`.

    Args:
        path: The ``.npz`` file.
        sha256: The hash the report names; when given, a file with other bytes is refused.

    Raises:
        DismaxError: If the file is missing, is not a per-sample npz, or its sha256 differs.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DismaxError(
            f"cannot read the per-sample file {str(path)!r} ({exc.strerror}): pass the .npz "
            "written beside the report"
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256.lower():
        raise DismaxError(
            f"the per-sample file {str(path)!r} has sha256 {digest}, not the {sha256} the report "
            "names: it changed since the report was written; rerun the benchmark"
        )
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        index = json.loads(str(arrays[_INDEX_KEY].reshape(-1)[0]))
        methods = {}
        for i, m in enumerate(index["methods"]):
            methods[m["name"]] = MethodSamples(
                logits=arrays[f"m{i}_logits"],
                temperature=float(m["temperature"]),
                score=m["score"],
                id_scores=arrays[f"m{i}_id_scores"],
                ood_scores={ood: arrays[f"m{i}_ood{j}"] for j, ood in enumerate(m["ood"])},
            )
        per_sample = PerSample(targets=arrays["targets"], methods=methods)
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError,
            zipfile.BadZipFile) as exc:
        raise DismaxError(
            f"{str(path)!r} is not a dismax per-sample file ({type(exc).__name__}: {exc}); pass "
            "the .npz written beside the report"
        ) from None
    _validate(per_sample)
    return per_sample


# --------------------------------------------------------------------------- everything


def softmax(logits: object, temperature: float = 1.0) -> np.ndarray:
    """Compute row-wise ``softmax(logits / T)`` in float64 (METHOD.md §4).

    Shape:
        logits: ``(N, C)``; returns ``(N, C)``.
    """
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _slug(name: str) -> str:
    """A file-name-safe, lower-case form of ``name`` (letters, digits, ``.`` and ``_``).

    ``-`` only separates the parts of a plot's file name: a name that the slug changes (any
    other character, upper case, over 60 characters) gets ``-`` and 8 hex digits of its sha256,
    so two names never share a file, also on case-insensitive file systems.
    """
    slug = re.sub(r"[^a-z0-9._]+", "_", name.lower()).strip("._")[:60] or "x"
    if slug != name:
        slug += "-" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return slug


def _add(files: dict[str, bytes], name: str, data: bytes) -> None:
    """Add a plot; a name already taken (only by a crafted hash clash) gets a numbered suffix."""
    stem, n = name[: -len(".png")], 2
    while name.lower() in {k.lower() for k in files}:
        name, n = f"{stem}~{n}.png", n + 1
    files[name] = data


def plot_files(per_sample: PerSample) -> dict[str, bytes]:
    """Draw every plot kind for every method and OOD set: file name → PNG bytes.

    Files: ``reliability-<method>.png`` (before/after calibration), ``hist-<method>-<ood>.png``
    (default score, ID vs OOD), ``roc-<ood>.png`` and ``pr-<ood>.png`` (all methods having that
    set), and ``risk-coverage.png`` (all methods, calibrated probabilities). Names are made
    file-safe and distinct (see :func:`_slug`).

    Raises:
        DismaxError: If the per-sample data is inconsistent.
    """
    _validate(per_sample)
    targets = np.asarray(per_sample.targets)
    files: dict[str, bytes] = {}
    ood_sets: list[str] = []
    risk: dict[str, tuple[object, object]] = {}
    for name, m in per_sample.methods.items():
        after = softmax(m.logits, m.temperature)
        _add(files, f"reliability-{_slug(name)}.png", reliability_diagram(
            softmax(m.logits), targets, probs_after=after,
            title=f"{name}: reliability (T = {m.temperature:.4g})",
        ))
        risk[name] = (after, targets)
        for ood, scores in m.ood_scores.items():
            if ood not in ood_sets:
                ood_sets.append(ood)
            _add(files, f"hist-{_slug(name)}-{_slug(ood)}.png", score_histograms(
                m.id_scores, scores, score=m.score, ood_label=ood, title=f"{name}: {m.score}",
            ))
    for ood in ood_sets:
        curves = {
            f"{name} ({m.score})": (m.id_scores, m.ood_scores[ood])
            for name, m in per_sample.methods.items()
            if ood in m.ood_scores
        }
        _add(files, f"roc-{_slug(ood)}.png", roc_curves(curves, ood_label=ood))
        _add(files, f"pr-{_slug(ood)}.png", pr_curves(curves, ood_label=ood))
    _add(files, "risk-coverage.png", risk_coverage_curves(
        risk, title="Risk-coverage on the ID test split (calibrated)"
    ))
    return files


def draw_all(per_sample: PerSample, out_dir: str | Path) -> list[Path]:
    """Write every plot of :func:`plot_files` into ``out_dir`` (created) and return the paths.

    All plots are drawn before the first file is written, and each file is written atomically.

    Raises:
        DismaxError: If the data is inconsistent or ``out_dir`` exists and is not a folder.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DismaxError(f"plot folder {str(out)!r} is a file: pass a folder for the plots")
    files = plot_files(per_sample)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in files.items():
        path = out / name
        atomic_write_bytes(path, data)
        paths.append(path)
    return paths


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height in pixels from a PNG's IHDR chunk.

    Raises:
        DismaxError: If ``data`` is not a PNG.
    """
    if data[:8] != PNG_MAGIC or data[12:16] != b"IHDR":
        raise DismaxError("not a PNG image (bad signature or no IHDR chunk first)")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


__all__ = [
    "DEFAULT_DPI",
    "DEFAULT_HEIGHT_PX",
    "DEFAULT_WIDTH_PX",
    "PNG_MAGIC",
    "MethodSamples",
    "PerSample",
    "draw_all",
    "load_per_sample",
    "per_sample_bytes",
    "plot_files",
    "png_size",
    "pr_curves",
    "reliability_diagram",
    "risk_coverage_curves",
    "risk_coverage_points",
    "roc_curves",
    "save_per_sample",
    "score_histograms",
    "softmax",
]
