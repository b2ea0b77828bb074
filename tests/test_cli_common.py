"""Shared CLI plumbing (``dismax_cli/cli/common.py``): a closed stdout, how messages quote paths.

Issue 10 leftovers. A reader that goes away (``dismax ... | head -1``) ends the command quietly
with status 141 (128 + SIGPIPE, what a shell reports for a Unix tool SIGPIPE ended), not an
``internal error: BrokenPipeError`` line; paths in messages are quoted as typed (``'PATH'``),
never as Python ``repr`` escapes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import dismax_command
from typer.testing import CliRunner

from dismax_cli.cli.app import app
from dismax_cli.cli.common import EXIT_BROKEN_PIPE
from dismax_cli.errors import quote_path

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "benchmarks" / "results" / "cifar10-cpu.json"


def _run_into_closed_pipe(
    args: list[str], *, stream: str = "stdout"
) -> subprocess.CompletedProcess[str]:
    """Run ``dismax ARGS`` with ``stream`` a pipe whose reader has already gone.

    The read end is closed before the process starts, so every write gets EPIPE: the same as
    ``| head -1`` once head has exited, without the race of a real reader.
    """
    read_end, write_end = os.pipe()
    os.close(read_end)
    other = {"stdout": "stderr", "stderr": "stdout"}[stream]
    try:
        return subprocess.run(
            [*dismax_command(), *args],
            **{stream: write_end, other: subprocess.PIPE},
            text=True,
            timeout=300,
            cwd=REPO,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    "args",
    [
        ["benchmark", "show", str(REPORT), "--format", "json"],  # JSON on stdout
        ["benchmark", "show", str(REPORT)],  # a rich table on stdout
        ["datasets", "--format", "json"],
        ["--version"],  # Click's own echo
        ["train", "--help"],
    ],
)
def test_a_closed_stdout_ends_the_command_quietly_with_141(args: list[str]) -> None:
    proc = _run_into_closed_pipe(args)
    assert proc.returncode == EXIT_BROKEN_PIPE == 141, proc.stderr
    # Nothing at all on stderr: no "internal error", no "Exception ignored ... BrokenPipeError".
    assert proc.stderr == ""


def test_a_closed_stderr_ends_an_error_quietly_with_141() -> None:
    # The one-line error has no reader either: no traceback from the handler itself.
    proc = _run_into_closed_pipe(["benchmark", "show", "no-such-report.json"], stream="stderr")
    assert proc.returncode == 141
    assert proc.stdout == ""


def test_a_reader_that_stops_after_one_line_gets_that_line(tmp_path: Path) -> None:
    """The README's case, through a shell: ``... --format json | head -1`` prints ``{``."""
    script = (
        f'"{sys.executable}" -m dismax_cli benchmark show "{REPORT}" --format json 2>"{tmp_path}/e"'
        ' | head -1; echo "status ${PIPESTATUS[0]}"'
    )
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=REPO)
    lines = proc.stdout.splitlines()
    assert lines[0] == "{"
    # 0 when the whole report fit in the pipe before head left, else 141; never 1.
    assert lines[1] in ("status 0", "status 141")
    assert (tmp_path / "e").read_text() == ""


# ----------------------------------------------------------------------------- quoting paths


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("runs/it's/r.json", "'runs/it's/r.json'"),  # repr would switch to double quotes
        ("C:\\out\\r.json", "'C:\\out\\r.json'"),  # repr would double each backslash
        ("résumé ü/r.json", "'résumé ü/r.json'"),
        ("a\nb.json", "'a\\nb.json'"),  # a control character: escaped, the line stays one
        ("tab\there", "'tab\\there'"),
    ],
)
def test_quote_path_shows_the_path_as_typed(path: str, shown: str) -> None:
    assert quote_path(path) == shown
    assert quote_path(Path(path)) == shown


@pytest.mark.parametrize("name", ["it's", "ü \\ x", "l'été"])
def test_output_checks_quote_paths_as_typed(tmp_path: Path, name: str) -> None:
    folder = tmp_path / name
    target = folder / "r.json"
    result = runner.invoke(app, ["benchmark", "--out", str(target)])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: cannot write --out '{target}': folder '{folder.resolve()}' does not exist"
    )
    folder.mkdir()
    result = runner.invoke(app, ["benchmark", "--out", str(folder)])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: --out '{folder}' is a folder: name a file inside it"


def test_the_cli_prints_a_quoted_path_on_one_line(tmp_path: Path) -> None:
    target = tmp_path / "it's\nü" / "r.json"
    result = runner.invoke(app, ["benchmark", "--out", str(target)])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"error: cannot write --out '{tmp_path}/it's\\nü/r.json': folder "
        f"'{tmp_path.resolve()}/it's\\nü' does not exist"
    ]


def test_a_page_into_a_pipe_whose_reader_left_ends_quietly_with_141() -> None:
    """``show R --html /dev/stdout | head -c 100`` said "cannot write --html ...: Broken pipe"
    (exit 1; tester, session 6). A pipe on fd 3 whose read end is closed gets EPIPE on the
    first write, without the race of a real reader; stdout stays a normal pipe."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    report = Path(__file__).parent / "data" / "cifar10-cpu-v1.json"  # tables only: quick
    try:
        proc = subprocess.run(
            # a fresh interpreter: the fork server's shim passes on fds 0-2 only
            [sys.executable, "-m", "dismax_cli", "show", str(report), "--html",
             f"/dev/fd/{write_end}"],
            pass_fds=(write_end,), capture_output=True, text=True, timeout=300, cwd=REPO,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == ""
