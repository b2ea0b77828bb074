"""Registers every command module with the app (import order = help order)."""

# isort: off
from dismax_cli.cli import datasets  # noqa: F401  datasets
from dismax_cli.cli import detect  # noqa: F401  detect
from dismax_cli.cli import train  # noqa: F401  train
from dismax_cli.cli import calibrate  # noqa: F401  calibrate
from dismax_cli.cli import score  # noqa: F401  score
from dismax_cli.cli import benchmark  # noqa: F401  benchmark
from dismax_cli.cli import show  # noqa: F401  show (also: benchmark show)
# isort: on
