"""Registers every command module with the app (import order = help order)."""

from __future__ import annotations

from dismax_cli.cli import (
    benchmark,  # noqa: F401  benchmark [show]
    datasets,  # noqa: F401  datasets
    detect,  # noqa: F401  detect
    train,  # noqa: F401  train, calibrate, score
)
