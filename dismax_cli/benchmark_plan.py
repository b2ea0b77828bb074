"""A benchmark's plan: which runs it trains (:func:`planned_runs`), where each run lives
(:func:`run_dir_for`, the run key), and how many progress lines it prints.

The run folder's key is the training config's identity plus the data's hash, so the same
settings on the same data find the same folder and a finished run is reused (METHOD.md §6).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dismax_cli.benchmark_config import BenchmarkConfig
from dismax_cli.core.methods import get_method
from dismax_cli.engine import ProgressCallback, RunData, TrainConfig


def default_runs_dir() -> Path:
    """``DISMAX_RUNS_DIR``, else ``$XDG_CACHE_HOME/dismax/runs`` (``~/.cache/dismax/runs``)."""
    env = os.environ.get("DISMAX_RUNS_DIR")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "dismax" / "runs"


def run_dir_for(runs_dir: Path, config: TrainConfig, data_hash: str) -> Path:
    """The deterministic folder of a run: same settings and same data -> same folder (reuse)."""
    identity = json.dumps({**config.identity(), "data": data_hash}, sort_keys=True)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
    model = config.model.replace(":", "-").replace("/", "-")  # torchvision:NAME, timm:a/b
    return runs_dir / f"{config.method}-{model}-seed{config.seed}-{digest}"


def run_data_hash(data: RunData) -> str:
    """The data part of every run folder's key: the training pixels and the validation carve."""
    return hashlib.sha256(
        (data.train.pixels_sha256() + data.split.val_indices_sha256).encode()
    ).hexdigest()


@dataclass(frozen=True)
class PlannedRun:
    """One training of a benchmark: ``method`` at ``seed``; ``member`` m > 0 for the extra
    members of a deep ensemble (trained with seed ``seed + 1000 m``), else 0."""

    method: str
    seed: int
    member: int
    config: TrainConfig

    @property
    def label(self) -> str:
        """How progress lines and summaries name the run (``softmax seed 1000``)."""
        return f"{self.config.method} seed {self.config.seed}"


def planned_runs(config: BenchmarkConfig) -> list[PlannedRun]:
    """Every training ``run_benchmark(config)`` needs, in the order it trains them.

    Per seed: each single-model method of :meth:`BenchmarkConfig.trained_methods` (member 0),
    then members 1 .. ensemble_size − 1 of each ensemble; a run two ensembles share is listed
    once. ``dismax benchmark --shard`` splits this list (:mod:`dismax_cli.sharding`).
    """
    plan: list[PlannedRun] = []
    seen: set[str] = set()

    def add(method: str, seed: int, member: int) -> None:
        train = config.train_config(method, seed + 1000 * member)
        key = json.dumps(train.identity(), sort_keys=True)
        if key not in seen:
            seen.add(key)
            plan.append(PlannedRun(method, seed, member, train))

    for seed in (config.train.seed + k for k in range(config.seeds)):
        for method in config.trained_methods():
            add(method, seed, 0)
        for method in config.methods:
            member_method = get_method(method).members_of
            for m in range(1, config.ensemble_size if member_method else 1):
                add(member_method, seed, m)  # type: ignore[arg-type]
    return plan


@dataclass
class BenchmarkProgress:
    """Callbacks the CLI uses to show what is happening (all optional).

    ``stage`` gets one line per step (:func:`benchmark_steps` of them for a benchmark,
    :func:`score_steps` for ``dismax score``); ``status`` what is being done now (for a live
    display); ``train`` makes a training progress callback for a run label.
    """

    stage: Callable[[str], None] | None = None
    train: Callable[[str], ProgressCallback | None] | None = None
    status: Callable[[str], None] | None = None

    def say(self, text: str) -> None:
        if self.stage is not None:
            self.stage(text)

    def now(self, text: str) -> None:
        if self.status is not None:
            self.status(text)


def benchmark_steps(config: BenchmarkConfig) -> int:
    """How many ``stage`` lines :func:`~dismax_cli.benchmark.run_benchmark` prints for ``config``.

    Loading, then per seed: one per run trained or reused, one per calibration, one for the
    throughput timing and one per method scored.
    """
    needed = config.trained_methods()
    ensembles = [m for m in config.methods if get_method(m).members_of]
    runs = len(needed) + len(ensembles) * (config.ensemble_size - 1)
    calibrations = len(needed) + len(ensembles)
    return 1 + config.seeds * (runs + calibrations + 1 + len(config.methods))


def score_steps(n_ood: int) -> int:
    """How many ``stage`` lines ``score_checkpoint`` prints for ``n_ood`` OOD sets."""
    return 2 + 2 * n_ood


__all__ = [
    "BenchmarkProgress",
    "PlannedRun",
    "benchmark_steps",
    "default_runs_dir",
    "planned_runs",
    "run_data_hash",
    "run_dir_for",
    "score_steps",
]
