"""Fixtures shared by several test modules, and the suite's process settings.

The suite runs in two pytest-xdist workers (``-n 2`` in pyproject's addopts; README "Tests").
What is shared:

* :func:`default_benchmark_env`: one runs folder for the whole session, in every worker. The
  first default ``dismax benchmark`` trains its five small digits runs (under a file lock, so
  two workers never train them twice); every later one (the README's quick start and CI-gate
  examples, the JSON, detector and figure tests) finds them finished and only scores.
* :data:`support.SHARED_DATA` and :func:`support.run_dismax` (``tests/support.py``): the one path
  to ``../shared/data`` and the one launcher of a real ``dismax`` process.
* The fork server (``tests/forkserver.py``, started in :func:`pytest_configure`): ``dismax`` on
  ``PATH`` is its shim, so each real ``dismax`` process of a test (``run_dismax``, README shell
  blocks, shard jobs) is forked from an interpreter that has imported torch and the package
  already (~3 CPU-s less per process); ``DISMAX_TEST_FORK=0`` runs them all from scratch.

Process settings, made here before torch is imported by any test:

* ``OMP_WAIT_POLICY=PASSIVE`` (inherited by every subprocess): OpenMP threads that wait sleep
  instead of spinning. Two workers and their subprocesses share 2 cores; a spinning wait steals
  the core another process needs (measured: the same 2-thread training step took 14.8 s
  spinning and 6.7 s passive on the loaded machine). Results do not change: it is how threads
  wait, not what they compute.
* ``DISMAX_TIMING_SECONDS=0``: the Cost table times each method for the minimum number of
  rounds instead of at least one CPU-second each (tests read the table's shape, not its
  speeds; ``benchmarks/speed/`` measures speeds).
* ``OMP_NUM_THREADS=1`` in each xdist worker (and the processes it starts) unless set; the
  default benchmark's runs are still trained with 2 threads (the README's sample output).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("DISMAX_TIMING_SECONDS", "0")
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1) > 1:
    # One thread per worker, in the worker and in the processes it starts (they inherit it),
    # so that an in-process run and a subprocess run sum in the same order (bit-identical
    # resume tests) and two workers do not ask for four threads on two cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import forkserver  # noqa: E402
import pytest  # noqa: E402
from support import ImportProbe, run_dismax  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    """Start this process's ``dismax`` fork server (not in the xdist controller: no tests)."""
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return
    forkserver.install()


@pytest.fixture(scope="session")
def import_probe() -> Iterator[ImportProbe]:
    """This worker's :class:`support.ImportProbe`: snippets run as in a fresh interpreter."""
    with ImportProbe() as probe:
        yield probe


def _session_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A folder every xdist worker of this session sees (the workers' common temp root)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # .../pytest-N/popen-gwK -> .../pytest-N, shared by the workers
    path = base / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def default_benchmark_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of every test that runs the default ``dismax benchmark`` (digits).

    One runs folder for the whole session, trained by the first worker that needs it (under an
    exclusive lock; the others wait and then reuse). Offline, plain output at 80 columns, and 2
    threads: the README's sample output was made on 2 cores, and another thread count sums in
    another order and trains slightly different weights.
    """
    home = _session_dir(tmp_path_factory, "default-benchmark")
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
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (home / "trained").exists():
                proc = run_dismax("benchmark", "--quiet", env=env, cwd=home, timeout=1800)
                assert proc.returncode == 0, proc.stderr
                (home / "trained").write_text("the default benchmark's runs are finished\n")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return env


def _time_one_round(patch: pytest.MonkeyPatch) -> None:
    """Make in-process benchmarks time each model (``measure_throughputs``, 7 rounds) and each
    (method, score) (``measure_score_costs``, 3 rounds) for one interleaved round.

    For tests that read the Cost table's and speed column's shape or the metrics, never a
    speed's value (a test that reads one, e.g. ``test_benchmark``'s ensemble efficiency,
    runs without it). With ``DISMAX_TIMING_SECONDS=0`` the fixed rounds are all the timing does.
    """
    import dismax_cli.benchmark as bench
    from dismax_cli import detection

    for module, name in ((bench, "measure_throughputs"), (detection, "measure_score_costs")):
        timed = getattr(module, name)
        patch.setattr(module, name, lambda *a, _t=timed, **k: _t(*a, **{**k, "rounds": 1}))


@pytest.fixture
def one_timing_round(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test's in-process benchmarks time one round (:func:`_time_one_round`)."""
    _time_one_round(monkeypatch)


@pytest.fixture(scope="session")
def time_one_round() -> Callable[[pytest.MonkeyPatch], None]:
    """:func:`_time_one_round` for module-scoped fixtures: call it with a
    ``pytest.MonkeyPatch.context()`` around their benchmark runs."""
    return _time_one_round


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training or scoring now fails the test: an output check must refuse before any work."""
    from dismax_cli import benchmark

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the command started its work before refusing the output path")

    monkeypatch.setattr(benchmark, "run_benchmark", fail)
    monkeypatch.setattr(benchmark, "score_checkpoint", fail)
