"""Fixtures shared by several test modules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def default_benchmark_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of every test that runs the default ``dismax benchmark`` (digits).

    One runs folder for the whole session: the first default benchmark trains its five small
    runs, every later one (the README's quick start and CI-gate examples, the JSON tests) finds
    them finished and only scores. Offline, plain output at 80 columns, and 2 threads: the
    README's sample output was made on 2 cores, and another thread count sums in another order
    and trains slightly different weights.
    """
    home: Path = tmp_path_factory.mktemp("default-benchmark")
    env = dict(os.environ)
    env.update(
        DISMAX_RUNS_DIR=str(home / "runs"),
        DISMAX_DATA_DIR=str(home / "data"),
        DISMAX_OFFLINE="1",
        COLUMNS="80",
        NO_COLOR="1",
        OMP_NUM_THREADS="2",
    )
    env.pop("FORCE_COLOR", None)
    return env
