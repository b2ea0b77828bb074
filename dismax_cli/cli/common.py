"""Pieces shared by every command: error handling, output formats, multi-value options."""

from __future__ import annotations

import errno
import functools
import os
import sys
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

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

#: Options that take several values after one flag (``--ood svhn lsun``).
MULTI_VALUE_OPTIONS = ("--ood", "--methods", "--require", "--scores")


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

#: ``--quiet``: one definition for every command that shows progress (train, calibrate, score,
#: benchmark).
QUIET_OPTION: Any = typer.Option(
    False,
    "--quiet",
    "-q",
    help="Show no progress (results, warnings and errors still print).",
)


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


F = TypeVar("F", bound=Callable[..., Any])


class OutputFormat(StrEnum):
    """How a command writes its result to stdout."""

    table = "table"
    json = "json"


#: Temperature-calibration objective (METHOD.md §4): the metric table's objectives.
Objective = StrEnum("Objective", {name: name for name in CALIBRATION_OBJECTIVES})


def expand_multi_value_options(args: Sequence[str]) -> list[str]:
    """Rewrite ``--ood a b c`` as ``--ood a --ood b --ood c``.

    Click options take one value each; users of OOD tools write several sets after one flag.
    Values run until the next token that starts with ``-`` (a lone ``-`` is a value). Values may
    also be comma-separated (``--ood a,b``) or the flag repeated.
    """
    out: list[str] = []
    i = 0
    args = list(args)
    while i < len(args):
        token = args[i]
        if token == "--":
            out.extend(args[i:])
            break
        name, eq, inline = token.partition("=")
        if name in MULTI_VALUE_OPTIONS:
            values: list[str] = []
            if eq:
                values.append(inline)
            i += 1
            while (
                i < len(args)
                and not (args[i].startswith("-") and args[i] != "-")
                and not _is_checkpoint_path(args[i])
            ):
                values.append(args[i])
                i += 1
            if not values:
                out.append(name)  # let click report the missing value
                continue
            for value in values:
                for part in _split_commas(name, value):
                    out.extend([name, part])
            continue
        out.append(token)
        i += 1
    return out


def _is_checkpoint_path(token: str) -> bool:
    """A run folder or ``.pt`` file given after ``--ood a b`` is the command's CHECKPOINT.

    No dataset spec names one (a spec is a name or ``npz:``/``imagefolder:PATH``), so
    ``dismax score --ood uniform runs/x`` and ``... --ood uniform runs/x/checkpoint.pt`` work;
    a ``.pt`` path counts even when it does not exist, so the error says that it is missing.
    """
    if ":" in token.split("/", 1)[0] or "=" in token:
        return False
    path = Path(token)
    return path.suffix == ".pt" or (path / "checkpoint.pt").is_file()


def _split_commas(name: str, value: str) -> list[str]:
    # Requirements contain no commas of their own meaning but dataset specs do (``digits[0,2]``),
    # so only split outside brackets.
    if name == "--require":
        return [value]
    parts, depth, current = [], 0, ""
    for ch in value:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    kept = [p for p in parts if p]
    return kept or [value]  # an empty value stays, for the command to name it


class MultiValueCommand(TyperCommand):
    """A command whose multi-value options accept ``--ood a b c``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_multi_value_options(args))


class MultiValueGroup(TyperGroup):
    """A group (``dismax benchmark [show]``) whose own options accept ``--ood a b c``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_multi_value_options(args))


#: Set by ``--debug`` (accepted anywhere on the command line): errors then show their traceback.
_STATE = {"debug": False}


def set_debug(enabled: bool) -> None:
    _STATE["debug"] = bool(enabled)


def debug_enabled() -> bool:
    return _STATE["debug"]


def take_debug_flag(args: Sequence[str]) -> tuple[list[str], bool]:
    """Remove every ``--debug`` before a ``--`` from ``args``; return the rest and whether found.

    ``--debug`` is a global flag: ``dismax --debug train ...`` and ``dismax train ... --debug``
    mean the same, for every command, also when parsing fails.
    """
    out: list[str] = []
    found = False
    for i, token in enumerate(args):
        if token == "--":
            out.extend(args[i:])
            break
        if token == "--debug":
            found = True
        else:
            out.append(token)
    return out, found


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


#: Exceptions that are Click's control flow (typer vendors Click): exit, abort, usage errors.
#: (Found through typer's public BadParameter, whichever Click it uses.)
_CLICK_FLOW = (
    typer.Exit,
    typer.Abort,
    next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"),
)


def _passes_through(exc: BaseException) -> bool:
    """Click's own control flow (exit, abort, usage errors) is not an error to report here."""
    return isinstance(exc, _CLICK_FLOW)


def handle_errors(func: F) -> F:
    """Turn every exception of a command into one line on stderr and an exit code.

    See :func:`error_exit_code`; with ``--debug`` the exception propagates with its traceback.
    The root group (:class:`DismaxGroup`) applies the same handler to errors raised while the
    command line is parsed (option callbacks, parameter types).
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (Exception, KeyboardInterrupt) as exc:
            if _passes_through(exc) or debug_enabled():
                raise
            raise typer.Exit(error_exit_code(exc)) from None

    return wrapper  # type: ignore[return-value]


class DismaxGroup(TyperGroup):
    """The root ``dismax`` group: global ``--debug`` and one error handler for everything."""

    def main(self, args: Sequence[str] | None = None, *pargs: Any, **kwargs: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        argv, debug = take_debug_flag(argv)
        set_debug(debug)
        try:
            try:
                return super().main(argv, *pargs, **kwargs)
            finally:
                # Output still buffered meets a closed pipe here, not in the interpreter's
                # exit flush (which would print "Exception ignored" and exit 120).
                if sys.stdout is not None:
                    sys.stdout.flush()
        except SystemExit:
            # Click itself answers a closed pipe during --help or --version with exit 1 after
            # wrapping the streams in its PacifyFlushWrapper; exit as for any closed pipe.
            if type(sys.stdout).__name__.lstrip("_") == "PacifyFlushWrapper":
                sys.exit(closed_pipe_exit_code())
            raise
        except (Exception, KeyboardInterrupt) as exc:
            if _passes_through(exc) or debug:
                raise
            code = error_exit_code(exc)
        if kwargs.get("standalone_mode", True):
            sys.exit(code)
        raise typer.Exit(code)


def write_stdout(text: str) -> None:
    """Write machine output (JSON) to stdout, nothing else."""
    sys.stdout.write(text)
    if not text.endswith("\n"):
        sys.stdout.write("\n")
    sys.stdout.flush()


def check_writable(
    path: Path | None, what: str = "--out", *, protected: tuple[Path, ...] = ()
) -> None:
    """Refuse early (before any work) an output path that cannot or must not be written.

    ``protected`` lists files the command reads (a checkpoint, its log, another output): writing
    over one of them would destroy it.
    """
    if path is None:
        return
    try:
        _check_writable(path, what, protected)
    except OSError as exc:  # a name the system refuses (too long, ...): name it, exit 1
        reason = exc.strerror or exc
        raise DismaxError(f"cannot write {what} {quote_path(path)}: {reason}") from None


def _check_writable(path: Path, what: str, protected: tuple[Path, ...]) -> None:
    if path.is_dir():
        raise DismaxError(f"{what} {quote_path(path)} is a folder: name a file inside it")
    target = path.resolve()
    for other in protected:
        if other.resolve() == target:
            raise DismaxError(
                f"{what} {quote_path(path)} would overwrite {quote_path(other)}, which this "
                "command reads "
                "or writes: choose another file name"
            )
    parent = target.parent
    if not parent.is_dir():
        raise DismaxError(
            f"cannot write {what} {quote_path(path)}: folder {quote_path(parent)} does not exist"
        )
    if not os.access(parent, os.W_OK):
        raise DismaxError(
            f"cannot write {what} {quote_path(path)}: folder {quote_path(parent)} is not writable"
        )


def _check_specs(key: str, *, labelled: bool) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        from dismax_cli.data.registry import check_spec

        for entry in value if isinstance(value, list | tuple) else [value]:
            check_spec(entry, key=key, labelled=labelled)

    return check


def spec_checks() -> dict[str, Callable[[Any], None]]:
    """``build_config`` checks of the dataset keys: a malformed spec or label exits 2."""
    return {
        "dataset": _check_specs("dataset", labelled=False),
        "test_dataset": _check_specs("test_dataset", labelled=False),
        "ood": _check_specs("ood", labelled=True),
    }


def check_option_specs(option: str, values: Sequence[str], *, labelled: bool) -> None:
    """Check specs given to ``option`` (``--ood``) before any work; exit 2 naming it."""
    key = option.lstrip("-").replace("-", "_")
    try:
        _check_specs(key, labelled=labelled)(list(values))
    except InvalidValueError as exc:
        raise InvalidValueError(key, f"invalid value for {option}: {exc}") from None


def check_checkpoint_file(checkpoint: Path) -> None:
    """Refuse early a CHECKPOINT (run folder or ``.pt``) whose file is a folder, FIFO, device.

    A missing file is left to the loader, whose message says how to make one.
    """
    from dismax_cli.engine.checkpoint import checkpoint_path
    from dismax_cli.fileio import file_problem

    path = checkpoint_path(checkpoint)
    problem = file_problem(path)
    if problem is not None and problem != "does not exist":
        raise DismaxError(f"checkpoint {quote_path(path)} {problem} (a run's checkpoint.pt)")


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
