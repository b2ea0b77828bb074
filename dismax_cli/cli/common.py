"""Terminal output and exit codes shared by every command: consoles, ``say``/``warn``, the one-line
error report (:func:`error_exit_code`), output formats."""

from __future__ import annotations

import errno
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

from dismax_cli.config import InvalidValueError
from dismax_cli.core.metric_table import CALIBRATION_OBJECTIVES
from dismax_cli.errors import DismaxError, quote_path

if TYPE_CHECKING:  # the report modules load only when a command writes a report
    from dismax_cli.reports import Report

#: Exit code for user errors (missing files, bad checkpoints, unavailable data or devices) and,
#: with an ``internal error:`` line, for bugs.
EXIT_USER_ERROR = 1
#: Exit code for usage errors: an unknown option, a missing argument or an invalid value of any
#: option, given on the command line or in a ``--config`` file (Click uses 2 as well).
EXIT_USAGE_ERROR = 2
#: Exit code when ``dismax benchmark --require`` finds a requirement that does not hold.
EXIT_REQUIREMENT_FAILED = 3
#: Exit status when the reader of our output has gone (``dismax ... | head -1``): 128 + SIGPIPE,
#: the status a shell reports for a Unix tool that SIGPIPE ended (README "Design notes").
EXIT_BROKEN_PIPE = 141

def plain_output(stream: Any = None) -> bool:
    """True when ``stream`` (default stderr) must get plain lines without any escape code.

    That is when it is not a terminal (a CI log, a pipe, a file), when ``NO_COLOR`` is set to
    anything non-empty (https://no-color.org), or when ``TERM=dumb``. Then there are no live bars,
    no colours and no cursor movement: progress is one plain line per step.
    """
    stream = sys.stderr if stream is None else stream
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        tty = False
    return (
        not tty or bool(os.environ.get("NO_COLOR")) or os.environ.get("TERM", "").lower() == "dumb"
    )


def make_console(*, stderr: bool) -> Console:
    """A rich console on stderr or stdout that follows :func:`plain_output` for that stream.

    Plain: no colour system and no terminal features, so rich writes no ANSI codes (even under
    ``FORCE_COLOR``); the width is ``COLUMNS`` when set, else 80. On a terminal: rich's defaults.
    Syntax highlighting is off everywhere: messages carry user text (paths, specs), not code.
    """
    stream = sys.stderr if stderr else sys.stdout
    if plain_output(stream):
        return _Console(
            stderr=stderr, color_system=None, force_terminal=False, no_color=True, highlight=False
        )
    return _Console(stderr=stderr, highlight=False)


class _Console(Console):
    """A rich console whose closed pipe is handled by the CLI's error handler, like any write.

    (rich's own handling exits with status 1 and points stdout at /dev/null even when the
    console writes to stderr.)
    """

    def on_broken_pipe(self) -> None:
        self.quiet = True  # write nothing more; the handler exits with EXIT_BROKEN_PIPE
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


def _to_devnull(stream: Any) -> None:
    try:
        fd = stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError, AttributeError):
        return  # not a real file (a test's buffer), or already gone
    os.dup2(devnull, fd)
    os.close(devnull)


def closed_pipe_exit_code() -> int:
    """Leave quietly after a write to a closed pipe; return :data:`EXIT_BROKEN_PIPE` (141).

    Each of stdout and stderr that can no longer be flushed is pointed at ``/dev/null``, so the
    flush at interpreter exit cannot fail again ("Exception ignored ... BrokenPipeError").
    Prints nothing: no reader is left, and the shell sees the status it sees for SIGPIPE.
    Source: https://docs.python.org/3/library/signal.html#note-on-sigpipe.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            _to_devnull(stream)
    return EXIT_BROKEN_PIPE


_CONSOLES: dict[tuple[Any, ...], Console] = {}


def stderr_console() -> Console:
    """The console for progress and messages, made for the current stderr and environment.

    Built again when ``sys.stderr``, ``NO_COLOR``, ``TERM`` or ``COLUMNS`` change (tests swap
    them), otherwise the same object, so a live display and ``print`` share one console.
    """
    key = (
        id(sys.stderr),
        os.environ.get("NO_COLOR"),
        os.environ.get("TERM"),
        os.environ.get("COLUMNS"),
    )
    console = _CONSOLES.get(key)
    if console is None:
        _CONSOLES.clear()
        console = _CONSOLES[key] = make_console(stderr=True)
    return console


class _StderrConsole:
    """``err_console``: forwards every attribute to :func:`stderr_console` at the time of use."""

    def __getattr__(self, name: str) -> Any:
        return getattr(stderr_console(), name)


#: Progress, tables and messages go to stderr so that stdout carries machine output only.
#: Print user text through :func:`say` / :func:`warn` (never as markup).
err_console: Console = _StderrConsole()  # type: ignore[assignment]

def user_text(text: object, style: str = "") -> Text:
    """``text`` as a rich ``Text``: shown verbatim, never parsed as markup (``[in]``, ``\\``)."""
    return text if isinstance(text, Text) else Text(str(text), style=style)


def say(text: object, *, style: str = "", prefix: str = "", prefix_style: str = "") -> None:
    """Print one message line on stderr; ``text`` is user text, shown verbatim (no markup).

    ``prefix`` (e.g. ``"warning:"``) is printed before it in ``prefix_style``. The line is not
    wrapped (soft wrap), so a log holds one line per message.
    """
    line = Text()
    if prefix:
        line.append(prefix, style=prefix_style)
        line.append(" ")
    line.append_text(user_text(text, style))
    stderr_console().print(line, soft_wrap=True)


def warn(text: object) -> None:
    """Print ``warning: TEXT`` on stderr (``text`` verbatim)."""
    say(text, prefix="warning:", prefix_style="yellow")


class OutputFormat(StrEnum):
    """How a command writes its result to stdout."""

    table = "table"
    json = "json"


#: Temperature-calibration objective (METHOD.md §4): the metric table's objectives.
Objective = StrEnum("Objective", {name: name for name in CALIBRATION_OBJECTIVES})


def os_error_line(exc: OSError) -> str:
    """``cannot use 'PATH': <reason>`` for an ``OSError`` about a path (the path verbatim)."""
    reason = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
    path = os.fsdecode(exc.filename) if exc.filename is not None else "?"
    return f"cannot use {quote_path(path)}: {reason}"


def error_exit_code(exc: BaseException) -> int:
    """Print one line for ``exc`` on stderr and return the exit code (no traceback).

    :class:`InvalidValueError` (a bad option or config value) exits 2, any other
    :class:`DismaxError` 1, an ``OSError`` about a path 1 (``cannot use 'PATH': reason``, see
    :func:`os_error_line`), ``KeyboardInterrupt`` 130, a write to a closed pipe
    (``BrokenPipeError``) 141 and prints nothing (:func:`closed_pipe_exit_code`); any other
    exception is a bug and prints
    ``internal error: <type>: <message>; rerun with --debug for the traceback`` (exit 1).
    """
    if isinstance(exc, KeyboardInterrupt):
        say("interrupted", style="bold red")
        return 130
    if isinstance(exc, BrokenPipeError):
        return closed_pipe_exit_code()
    if isinstance(exc, DismaxError):
        line, code = str(exc), EXIT_USAGE_ERROR if isinstance(exc, InvalidValueError) else 1
        label = "error:"
    elif isinstance(exc, OSError) and exc.filename is not None:
        # The system refused a path the user gave (too long, no permission, not a folder, ...):
        # a user error naming that path, not a bug.
        line, code, label = os_error_line(exc), EXIT_USER_ERROR, "error:"
    else:
        message = " ".join(str(exc).split()) or "(no message)"
        line = f"{type(exc).__name__}: {message}; rerun with --debug for the traceback"
        code, label = EXIT_USER_ERROR, "internal error:"
    # User text (paths, specs like digits[0-5]) is shown verbatim, never read as rich markup.
    try:
        say(line, prefix=label, prefix_style="bold red")
    except BrokenPipeError:  # stderr's reader has gone too
        return closed_pipe_exit_code()
    return code


def write_stdout(text: str) -> None:
    """Write machine output (JSON) to stdout, nothing else."""
    sys.stdout.write(text)
    if not text.endswith("\n"):
        sys.stdout.write("\n")
    sys.stdout.flush()


def write_report_outputs(report: Report, *, out: Path | None, output_format: OutputFormat) -> None:
    """Write the report atomically to ``out`` (if given), then JSON or tables to stdout."""
    from dismax_cli.engine.distributed import is_main
    from dismax_cli.fileio import atomic_write_bytes
    from dismax_cli.render import report_renderable
    from dismax_cli.reports import to_json

    text = to_json(report)
    if out is not None and is_main():  # under torchrun only rank 0 writes files
        try:
            atomic_write_bytes(out, (text + "\n").encode())
        except OSError as exc:
            raise DismaxError(f"cannot write --out {quote_path(out)}: {exc.strerror}") from None
    if output_format is OutputFormat.json:
        write_stdout(text)
    else:
        stdout_console().print(report_renderable(report), crop=False)


def stdout_console() -> Console:
    """A console for tables on stdout (see :func:`make_console`).

    On a pipe or file the width is ``COLUMNS`` when set, else 80; every table fits 80 columns.
    """
    return make_console(stderr=False)
