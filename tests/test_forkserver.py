"""The tests' fork server (tests/forkserver.py) runs a command as a fresh ``dismax`` process would.

Each case runs the same command through the shim (``dismax`` on ``PATH`` in a test session) and
as a fresh interpreter (``python -m dismax_cli``) and compares what a caller sees: stdout,
stderr, exit status, files written in the working directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import forkserver
import pytest
from support import REPO, dismax_command

pytestmark = pytest.mark.skipif(
    os.environ.get(forkserver.ENABLE_VARIABLE, "1").strip() == "0",
    reason="DISMAX_TEST_FORK=0: every dismax command is a fresh process in this session",
)

REPORT = REPO / "benchmarks" / "results" / "cifar10-cpu.json"


def _both(args: list[str], cwd: Path, **kwargs: object) -> tuple[subprocess.CompletedProcess, ...]:
    """Run ``dismax ARGS`` through the shim, then fresh; the first must have been forked."""
    shim = dismax_command()
    assert "dismax-fork-" in shim[0], shim
    before = len(forkserver.served())
    forked = subprocess.run([*shim, *args], capture_output=True, text=True, cwd=cwd, **kwargs)
    forked_now = forkserver.served()[before:]
    fresh = subprocess.run(
        [sys.executable, "-m", "dismax_cli", *args], capture_output=True, text=True, cwd=cwd,
        **kwargs,
    )  # fmt: skip
    return forked, fresh, forked_now


@pytest.mark.parametrize(
    "args",
    [
        ["benchmark", "show", str(REPORT), "--format", "json"],
        ["train", "--dataset", "digits", "--epochs", "two", "--out", "x"],  # usage error: 2
        ["score", "no-such-run", "--ood", "uniform"],  # a user error: 1 line, exit 1
        ["--version"],
    ],
)
def test_forked_and_fresh_commands_print_and_exit_alike(args: list[str], tmp_path: Path) -> None:
    forked, fresh, served = _both(args, tmp_path)
    assert served == [args]
    assert (forked.returncode, forked.stdout, forked.stderr) == (
        fresh.returncode,
        fresh.stdout,
        fresh.stderr,
    )


def test_a_forked_command_works_in_its_own_cwd_inside_a_shell_pipeline(tmp_path: Path) -> None:
    """Relative paths resolve in the caller's cwd; redirections reach the forked command."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shim = dismax_command()[0]
    proc = subprocess.run(
        ["bash", "-c", f"cat '{REPORT}' > in.json && '{shim}' benchmark show in.json --format json"
                       " > out.json"],
        cwd=tmp_path / "a", capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert forkserver.served()[-1] == ["benchmark", "show", "in.json", "--format", "json"]
    assert (tmp_path / "a" / "out.json").read_text().lstrip().startswith("{")
    assert not list((tmp_path / "b").iterdir())


def test_an_environment_that_changes_interpreter_start_gets_a_fresh_interpreter(
    tmp_path: Path,
) -> None:
    """``PYTHONPROFILEIMPORTTIME`` is read at start: only a fresh interpreter reports imports."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    forked, fresh, served = _both(["--version"], tmp_path, env=env)
    assert served == []  # not forked
    assert "import time:" in fresh.stderr
    assert "import time:" in forked.stderr
    assert forked.stdout == fresh.stdout
    before = len(forkserver.served())
    plain = subprocess.run(dismax_command() + ["--version"], capture_output=True, text=True)
    assert "import time:" not in plain.stderr and plain.returncode == 0
    assert forkserver.served()[before:] == [["--version"]]
