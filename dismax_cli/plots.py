"""Plots as PNG bytes: reliability diagrams, score histograms, ROC, PR and risk-coverage curves.

Every function takes arrays (never files) and returns the bytes of one PNG of a stated size in
pixels (default 800 × 600 at dpi 100), drawn on :mod:`dismax_cli.plot_canvas` (no pyplot, the
default style: the same arrays give byte-identical PNG files). :func:`draw_all` writes every
plot kind for every method and OOD set of the per-sample data (:mod:`dismax_cli.per_sample`,
whose names this module re-exports: ``PerSample``, ``save_per_sample``, ``load_per_sample`` ...).

The ROC, PR and risk-coverage curves live in :mod:`dismax_cli.plot_curves` (re-exported here).
Conventions follow METHOD.md: higher score = more in-distribution and ID is the positive class
(§3, §5); the reliability diagram uses the 15 equal-width bins of the ECE (§5); probabilities
after calibration are ``softmax(logits / T)`` and OOD scores are computed at T = 1 (§3, §4).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from dismax_cli.core.uncertainty import reliability_bins
from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q
from dismax_cli.fileio import atomic_write_bytes
from dismax_cli.per_sample import (
    PER_SAMPLE_FORMAT,
    MethodSamples,
    PerSample,
    load_per_sample,
    per_sample_bytes,
    save_per_sample,
    validate_per_sample,
)
from dismax_cli.plot_canvas import (
    DEFAULT_DPI,
    DEFAULT_HEIGHT_PX,
    DEFAULT_WIDTH_PX,
    PNG_MAGIC,
    new_figure,
    png_bytes,
    png_size,
    style,
    vector,
)
from dismax_cli.plot_curves import (
    pr_curves,
    risk_coverage_curves,
    risk_coverage_points,
    roc_curves,
)


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
    with style():
        figure = new_figure(width_px, height_px, dpi)
        grid = figure.add_gridspec(2, len(panels), height_ratios=(3, 1), hspace=0.08)
        for column, (name, bins) in enumerate(panels):
            top = figure.add_subplot(grid[0, column])
            bottom = figure.add_subplot(grid[1, column], sharex=top)
            _accuracy_panel(top, bins, f"{name}\nECE {100 * _ece_of_bins(bins):.2f}%")
            _count_panel(bottom, bins)
            if column == 0:
                top.set_ylabel("accuracy")
                top.legend(loc="upper left", fontsize=8)
                bottom.set_ylabel("samples")
        if title:
            figure.suptitle(title)
        return png_bytes(figure, dpi)


def _ece_of_bins(bins: list) -> float:
    """The ECE of reliability bins: ``Σ_b n_b / N · |acc_b − conf_b|`` (METHOD.md §5)."""
    total = sum(b.count for b in bins)
    return sum(
        b.count / total * abs(b.accuracy - b.confidence)  # type: ignore[operator]
        for b in bins
        if b.count
    )


def _accuracy_panel(axes, bins: list, title: str) -> None:
    """Bars of each bin's accuracy, markers at its mean confidence, and the diagonal."""
    lefts = [b.lower for b in bins]
    widths = [b.upper - b.lower for b in bins]
    accuracies = [b.accuracy or 0.0 for b in bins]
    axes.bar(lefts, accuracies, width=widths, align="edge", edgecolor="black",
             color="tab:blue", label="accuracy")
    filled = [b for b in bins if b.count]
    axes.plot([b.confidence for b in filled], [b.accuracy for b in filled], "o",
              color="tab:red", label="mean confidence")
    axes.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_title(title, fontsize=10)
    axes.tick_params(labelbottom=False)


def _count_panel(axes, bins: list) -> None:
    """Bars of each bin's sample count on a log scale, the count written on each bar."""
    lefts = [b.lower for b in bins]
    widths = [b.upper - b.lower for b in bins]
    counts = [b.count for b in bins]
    axes.bar(lefts, [max(c, 0.5) if c else 0 for c in counts], width=widths,
             align="edge", edgecolor="black", color="tab:gray")
    axes.set_yscale("log")
    axes.set_ylim(0.5, max(counts) * 8)
    for b in bins:
        if b.count:
            axes.text((b.lower + b.upper) / 2, b.count * 1.3, str(b.count),
                      ha="center", va="bottom", fontsize=6, rotation=90)
    axes.set_xlabel("top-label confidence")


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
    id_array = vector(id_scores, "id_scores")
    ood_array = vector(ood_scores, "ood_scores")
    if not isinstance(bins, int) or bins < 1:
        raise DismaxError(f"bins must be a positive whole number, got {q(bins)}")
    low = float(min(id_array.min(), ood_array.min()))
    high = float(max(id_array.max(), ood_array.max()))
    if high == low:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)
    with style():
        figure = new_figure(width_px, height_px, dpi)
        axes = figure.add_subplot()
        axes.hist(id_array, bins=edges, density=True, alpha=0.55, color="tab:blue",
                  label=f"{id_label} (n = {id_array.size:,})")
        axes.hist(ood_array, bins=edges, density=True, alpha=0.55, color="tab:orange",
                  label=f"{ood_label} (n = {ood_array.size:,})")
        axes.set_xlabel(f"{score} (higher = more in-distribution)")
        axes.set_ylabel("density")
        axes.legend()
        axes.set_title(title or f"{score}: {id_label} vs {ood_label}")
        return png_bytes(figure, dpi)


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
    validate_per_sample(per_sample)
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
        raise DismaxError(f"plot folder {q(out)} is a file: pass a folder for the plots")
    files = plot_files(per_sample)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in files.items():
        path = out / name
        atomic_write_bytes(path, data)
        paths.append(path)
    return paths


__all__ = [
    "PER_SAMPLE_FORMAT",
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
