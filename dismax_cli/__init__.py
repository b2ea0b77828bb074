"""dismax: the DisMax loss (Macêdo et al., 2022, arXiv:2205.05874) and its benchmark.

The public library API lives in :mod:`dismax_cli.core` and is re-exported here.
"""

from __future__ import annotations

__version__ = "0.1.0"

from dismax_cli.errors import DismaxError  # noqa: E402

__all__ = ["DismaxError", "__version__"]
