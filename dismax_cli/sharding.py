"""Spread one benchmark over several jobs: ``dismax benchmark --shard I/N``.

A benchmark's trainings (:func:`dismax_cli.benchmark.planned_runs`: every (method, seed, member)
run, ensemble members included) are independent. Shard ``I/N`` trains run k of that list when
``k mod N == I``: deterministic (the list depends on the settings only) and balanced (the shards'
sizes differ by at most one). Shards are numbered from 0, as ``SLURM_ARRAY_TASK_ID`` is with
``#SBATCH --array=0-(N-1)``. Every job writes into the shared runs folder, each run under the
run-folder lock that :func:`~dismax_cli.engine.fit` holds (:mod:`dismax_cli.engine.lock`); a job
that finds one of its runs locked by another job skips it (that job is training it) and says so.
A shard job writes no report; a final ``dismax benchmark`` with the same settings and no
``--shard`` reuses every finished run, trains whatever is still missing, and writes the report.

This module imports neither torch nor the library at import time (the CLI parses ``--shard``
with :func:`parse_shard` before torch loads).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from dismax_cli.config import InvalidValueError
from dismax_cli.errors import quote_value as q

if TYPE_CHECKING:  # pragma: no cover
    from dismax_cli.benchmark import BenchmarkConfig, BenchmarkProgress, PlannedRun

#: The largest N of ``--shard I/N`` (far more jobs than any benchmark has runs).
MAX_SHARDS = 100_000
_FORM = re.compile(r"\s*([+-]?[0-9]+)\s*/\s*([+-]?[0-9]+)\s*")
_FIX = "use I/N with 0 <= I < N (0-based, like SLURM_ARRAY_TASK_ID): --shard 0/4 ... 3/4"

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Share ``index`` of ``count`` (0 <= index < count) of a benchmark's runs."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def select(self, items: Sequence[T]) -> list[T]:
        """The items of this shard: item k when ``k mod count == index``, in their order."""
        return [item for k, item in enumerate(items) if k % self.count == self.index]


def parse_shard(text: object) -> Shard:
    """Parse ``I/N`` (0-based I) into a :class:`Shard`.

    Raises:
        InvalidValueError: (key ``shard``) for anything but two integers with
            0 <= I < N <= :data:`MAX_SHARDS`; the message names the value and the fix.
    """
    match = _FORM.fullmatch(str(text))
    if match is None:
        unset = " (I is empty: is SLURM_ARRAY_TASK_ID set?)" if str(text).startswith("/") else ""
        raise InvalidValueError("shard", f"{q(text)} is not I/N{unset}: {_FIX}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1:
        raise InvalidValueError(
            "shard", f"{q(text)} has N = {count}: N is the number of jobs, at least 1; {_FIX}"
        )
    if count > MAX_SHARDS:
        raise InvalidValueError(
            "shard", f"{q(text)} has N = {count:,}: use at most {MAX_SHARDS:,} jobs"
        )
    if not 0 <= index < count:
        hint = f" (shards are numbered from 0: the last of {count} is {count - 1}/{count})"
        raise InvalidValueError(
            "shard",
            f"{q(text)} is out of range{hint if index == count else ''}: {_FIX}",
        )
    return Shard(index, count)


@dataclass(frozen=True)
class ShardSummary:
    """What one shard job did (``trained``, ``reused``, ``skipped``: run labels) and how many of
    the benchmark's ``total`` runs are not finished yet (``remaining``, over every shard)."""

    shard: Shard
    trained: tuple[str, ...]
    reused: tuple[str, ...]
    skipped: tuple[str, ...]
    remaining: int
    total: int

    def line(self) -> str:
        """The one line ``dismax benchmark --shard`` prints at the end."""
        mine = len(self.trained) + len(self.reused) + len(self.skipped)
        parts = [f"trained {_listed(self.trained)}"]
        if self.reused:
            parts.append(f"reused {_listed(self.reused)} (already finished)")
        if self.skipped:
            parts.append(f"skipped {_listed(self.skipped)} (another job holds it)")
        did = "; ".join(parts)
        report = "run dismax benchmark with the same settings and no --shard to write the report"
        if self.remaining == 0:
            left = f"all {self.total} runs of the benchmark are finished: {report}"
        else:
            left = (
                f"{self.remaining} of the benchmark's {self.total} runs "
                f"{'is' if self.remaining == 1 else 'are'} not finished yet: "
                f"once every shard has ended, {report}"
            )
        return f"shard {self.shard} ({mine} of {self.total} runs): {did}; {left}"


def _listed(labels: Sequence[str]) -> str:
    if not labels:
        return "0 runs"
    return f"{len(labels)} run{'' if len(labels) == 1 else 's'} ({', '.join(labels)})"


def shard_steps(config: BenchmarkConfig, shard: Shard) -> int:
    """How many ``stage`` lines :func:`train_shard` prints: loading, then one per run."""
    from dismax_cli.benchmark import planned_runs

    return 1 + len(shard.select(planned_runs(config)))


def train_shard(
    config: BenchmarkConfig, shard: Shard, progress: BenchmarkProgress | None = None
) -> ShardSummary:
    """Train (or reuse) this shard's runs of ``config`` into its runs folder; no report.

    The data and every OOD set are loaded first, so that a job fails before training when the
    final report could not be made. Runs follow :func:`~dismax_cli.benchmark.planned_runs`,
    split by :meth:`Shard.select`.

    Raises:
        DismaxError: for invalid settings, datasets that cannot be loaded, a damaged run in the
            runs folder, or a failed training.
    """
    from dismax_cli import benchmark as bench
    from dismax_cli.engine import load_checkpoint, load_run_data
    from dismax_cli.engine.lock import RunFolderBusy
    from dismax_cli.errors import DismaxError

    progress = progress or bench.BenchmarkProgress()
    config = config.validate()
    runs_dir = Path(config.runs_dir).expanduser() if config.runs_dir else bench.default_runs_dir()
    progress.say(f"loading {config.dataset} and {len(config.ood)} OOD set(s)")
    data = load_run_data(config.train_config(bench.BASELINE_METHOD, config.seed))
    bench.load_ood_sets(config.ood, like=data.test, data_dir=config.data_dir)
    data_hash = bench.run_data_hash(data)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DismaxError(f"cannot create runs folder {q(runs_dir)}: {exc.strerror}") from None
    plan = bench.planned_runs(config)
    done: dict[str, list[str]] = {"trained": [], "reused": [], "skipped": []}
    for run in shard.select(plan):
        try:
            _, reused = bench._train_or_reuse(run.config, runs_dir, data, data_hash, progress)
        except RunFolderBusy as exc:
            progress.say(f"skipping {run.label}: another job is training it into {exc.run_dir}")
            done["skipped"].append(run.label)
            continue
        done["reused" if reused else "trained"].append(run.label)

    def finished(run: PlannedRun) -> bool:
        ckpt = bench.run_dir_for(runs_dir, run.config, data_hash) / "checkpoint.pt"
        try:
            return ckpt.exists() and load_checkpoint(ckpt).meta.finished
        except DismaxError:
            return False  # damaged: the final benchmark names the folder to delete

    return ShardSummary(
        shard=shard,
        trained=tuple(done["trained"]),
        reused=tuple(done["reused"]),
        skipped=tuple(done["skipped"]),
        remaining=sum(not finished(run) for run in plan),
        total=len(plan),
    )


__all__ = ["MAX_SHARDS", "Shard", "ShardSummary", "parse_shard", "shard_steps", "train_shard"]
