"""Helpers the test modules import: the repository's paths and the one ``dismax`` launcher.

Tests call the CLI in-process through typer's ``CliRunner`` unless they need a real process
(exit codes seen by a shell, signals, pipes, several processes at once); those use
:func:`run_dismax` (or ``dismax`` in a shell), served by the fork server of ``forkserver.py``.
Tests of what a fresh interpreter imports use :class:`ImportProbe` (or ``python -c``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The repository root.
REPO = Path(__file__).resolve().parents[1]
#: The real datasets beside the repository (``../shared/data``, read-only; tests that need a
#: file there skip with that reason when it is absent).
SHARED_DATA = REPO.parent / "shared" / "data"


def dismax_command() -> list[str]:
    """The ``dismax`` command: the first on ``PATH``, else ``python -m dismax_cli``.

    In a test session the first on ``PATH`` is the fork server's shim (``tests/forkserver.py``,
    installed by ``conftest.py``): a real process of its own per command, without the import
    time of a fresh interpreter.
    """
    exe = shutil.which("dismax")
    return [exe] if exe else [sys.executable, "-m", "dismax_cli"]


def run_dismax(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    timeout: float = 900,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``dismax ARGS...`` as a real process and return it (stdout and stderr as text).

    ``env`` defaults to this process's environment.
    """
    return subprocess.run(
        [*dismax_command(), *args],
        capture_output=True,
        text=True,
        env=dict(os.environ if env is None else env),
        cwd=cwd,
        timeout=timeout,
        input=input,
    )


#: The modules a usage error or ``--help`` must answer without (README "Design notes").
HEAVY_MODULES = ("torch", "torchvision", "sklearn", "scipy")

_PROBE_SERVER = r'''
import io, json, os, sys, tempfile, traceback
import dismax_cli.cli.app  # what every dismax command imports first
channel = os.fdopen(os.dup(1), "w")
for line in sys.stdin:
    request = json.loads(line)
    out, err, res = (tempfile.mkstemp()[1] for _ in range(3))
    pid = os.fork()
    if pid == 0:
        os.chdir(request["cwd"]); os.environ.clear(); os.environ.update(request["env"])
        for fd, path in ((1, out), (2, err)):
            os.dup2(os.open(path, os.O_WRONLY | os.O_TRUNC), fd)
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)
        code = 0
        try:
            exec(compile(request["code"], "<probe>", "exec"), {"__name__": "__main__"})
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            if not isinstance(stop.code, int | None):
                print(stop.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush(); sys.stderr.flush()
        with open(res, "w") as fh:
            json.dump({"code": code, "loaded": sorted(sys.modules)}, fh)
        os._exit(0)
    os.waitpid(pid, 0)
    with open(res) as fh:
        result = json.load(fh)
    for key, path in (("stdout", out), ("stderr", err)):
        with open(path) as fh:
            result[key] = fh.read()
    for path in (out, err, res):
        os.unlink(path)
    channel.write(json.dumps(result) + "\n"); channel.flush()
'''


@dataclass
class ProbeResult:
    """What :class:`ImportProbe` saw: exit code, output and every module loaded by the end."""

    code: int
    stdout: str
    stderr: str
    loaded: frozenset[str]

    def heavy(self, names: tuple[str, ...] = HEAVY_MODULES) -> list[str]:
        """Which of ``names`` (top-level packages) were imported."""
        return [name for name in names if name in self.loaded]


class ImportProbe:
    """Runs Python snippets as a fresh ``python -c`` would, for tests of what gets imported.

    One fresh interpreter imports ``dismax_cli.cli.app`` (the first import of every ``dismax``
    command, so the modules it loads are in every result) and forks a process per snippet, in
    the snippet's cwd and environment; instead of ~0.5 CPU-s of interpreter and CLI start-up
    per snippet, each costs a fork (~20 ms). Use it as a context manager.
    """

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _PROBE_SERVER], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

    def run(
        self, code: str, *, cwd: Path | str | None = None, env: Mapping[str, str] | None = None
    ) -> ProbeResult:
        """Run ``code`` (a ``python -c`` script) and return what it did."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        request = {
            "code": code,
            "cwd": str(cwd if cwd is not None else os.getcwd()),
            "env": dict(os.environ if env is None else env),
        }
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the import probe died (exit {self._proc.wait()})")
        result = json.loads(line)
        return ProbeResult(
            code=result["code"], stdout=result["stdout"], stderr=result["stderr"],
            loaded=frozenset(m.partition(".")[0] for m in result["loaded"]),
        )  # fmt: skip

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(timeout=30)

    def __enter__(self) -> ImportProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def offline_env(home: Path) -> dict[str, str]:
    """The variables of an offline CLI test in ``home``: its own data and runs folders, no
    network, one timing round, plain output 160 columns wide (a CliRunner ``env``)."""
    return {
        "DISMAX_DATA_DIR": str(home / "data"),
        "DISMAX_RUNS_DIR": str(home / "runs"),
        "DISMAX_OFFLINE": "1",
        "DISMAX_TIMING_SECONDS": "0",
        "COLUMNS": "160",
        "NO_COLOR": "1",
    }


def invoke_in(home: Path, *args: str) -> Any:
    """Run ``dismax ARGS`` in-process (typer's ``CliRunner``) with ``home`` as the working
    directory and :func:`offline_env`; return the result."""
    from typer.testing import CliRunner

    from dismax_cli.cli.app import app

    cwd = os.getcwd()
    os.chdir(home)
    try:
        return CliRunner().invoke(app, list(args), env=offline_env(home))
    finally:
        os.chdir(cwd)


def probe_cli(
    probe: ImportProbe, home: Path, args: list[str], env: Mapping[str, str] | None = None
) -> Any:
    """Run ``dismax ARGS`` in ``home`` as a fresh interpreter would (``probe``, the session's
    :class:`ImportProbe`), with :func:`offline_env` and ``env``: what it imports is seen."""
    code = f"import sys\nfrom dismax_cli.cli.app import main\nsys.exit(main({args!r}))\n"
    return probe.run(code, cwd=home, env={**os.environ, **offline_env(home), **(env or {})})


def refused_before_torch(
    probe: ImportProbe,
    home: Path,
    args: list[str],
    env: Mapping[str, str] | None = None,
    *,
    one_line: bool = True,
) -> str:
    """Run ``dismax ARGS`` (:func:`probe_cli`) and check it is a bad value answered at once:
    exit 2, none of :data:`HEAVY_MODULES` imported, and (``one_line``) one line on stderr
    with no traceback or internal error; Click's usage errors are three lines (pass
    ``one_line=False``). Returns that line, or all of stderr."""
    result = probe_cli(probe, home, args, env)
    assert result.code == 2, result.stderr
    assert result.heavy(HEAVY_MODULES) == [], args
    if not one_line:
        return result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    return lines[0]

