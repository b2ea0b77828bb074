"""Helpers the test modules import: the repository's paths and the one ``dismax`` launcher.

Tests call the CLI in-process through typer's ``CliRunner`` unless they need a real process
(exit codes seen by a shell, signals, pipes, several processes at once); those use
:func:`run_dismax` (or ``dismax`` in a shell), served by the fork server of ``forkserver.py``.
Tests of what a fresh interpreter imports run ``python -c`` themselves.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

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
