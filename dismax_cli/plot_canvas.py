"""The canvas every plot of :mod:`dismax_cli.plots` draws on: size checks, style, PNG bytes.

Drawing uses matplotlib's ``Figure`` and the Agg canvas directly: pyplot is never imported, no
global backend is selected, and the drawing runs under matplotlib's default style
(``rcParamsDefault``) whatever another caller set, so the same arrays give byte-identical PNG
files (the PNG carries no software name or timestamp).
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np

from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q

#: Default size of every plot: 800 × 600 pixels at 100 dots per inch.
DEFAULT_WIDTH_PX = 800
DEFAULT_HEIGHT_PX = 600
DEFAULT_DPI = 100
#: The PNG signature every returned image starts with.
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check_size(width_px: int, height_px: int, dpi: int) -> None:
    for name, value in (("width_px", width_px), ("height_px", height_px), ("dpi", dpi)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise DismaxError(f"{name} must be a positive whole number of pixels, got {q(value)}")
    if width_px % dpi or height_px % dpi:
        # Matplotlib rounds a figure of a fractional inch size; whole inches keep the size exact.
        raise DismaxError(
            f"the plot size {width_px}x{height_px} px must be a multiple of dpi {dpi} "
            "(e.g. 800x600 at dpi 100)"
        )


def new_figure(width_px: int, height_px: int, dpi: int):  # -> matplotlib Figure
    from matplotlib.figure import Figure

    check_size(width_px, height_px, dpi)
    return Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)


def style():  # -> a context manager with matplotlib's default style
    import matplotlib

    defaults = {k: v for k, v in matplotlib.rcParamsDefault.items() if k != "backend"}
    return matplotlib.rc_context(rc=defaults)


def png_bytes(figure, dpi: int) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def vector(values: object, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise DismaxError(f"{name} must be one-dimensional (N,), got shape {array.shape}")
    if array.size == 0:
        raise DismaxError(f"{name} is empty: a plot needs at least one sample")
    if not np.all(np.isfinite(array)):
        raise DismaxError(f"{name} holds NaN or infinite values: plot finite scores only")
    return array


def curve_inputs(
    curves: Mapping[str, tuple[object, object]],
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    if not curves:
        raise DismaxError("no curves to draw: pass at least one method's (id_scores, ood_scores)")
    out = []
    for label, (id_scores, ood_scores) in curves.items():
        id_array = vector(id_scores, f"id_scores of {q(label)}")
        ood_array = vector(ood_scores, f"ood_scores of {q(label)}")
        out.append((label, id_array, ood_array))
    return out


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height in pixels from a PNG's IHDR chunk.

    Raises:
        DismaxError: If ``data`` is not a PNG.
    """
    if data[:8] != PNG_MAGIC or data[12:16] != b"IHDR":
        raise DismaxError("not a PNG image (bad signature or no IHDR chunk first)")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


__all__ = ["DEFAULT_DPI", "DEFAULT_HEIGHT_PX", "DEFAULT_WIDTH_PX", "PNG_MAGIC", "png_size"]
