"""Pieces shared by every command: error handling, output formats, multi-value options."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from dismax_cli.errors import DismaxError
from dismax_cli.fileio import atomic_write_bytes
from dismax_cli.render import report_renderable
from dismax_cli.reports import Report, to_json

#: Exit code for user errors (bad option values, missing files, bad checkpoints).
EXIT_USER_ERROR = 1
#: Exit code when ``dismax benchmark --require`` finds a requirement that does not hold.
EXIT_REQUIREMENT_FAILED = 3

#: Options that take several values after one flag (``--ood svhn lsun``).
MULTI_VALUE_OPTIONS = ("--ood", "--methods", "--require")

#: Progress, tables and messages go to stderr so that stdout carries machine output only.
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


class OutputFormat(StrEnum):
    """How a command writes its result to stdout."""

    table = "table"
    json = "json"


class Objective(StrEnum):
    """Temperature-calibration objective (METHOD.md §4)."""

    ece = "ece"
    nll = "nll"


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

    No dataset spec names one, so ``dismax score --ood uniform runs/x`` works too.
    """
    path = Path(token)
    return (path.suffix == ".pt" and path.is_file()) or (path / "checkpoint.pt").is_file()


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
    return [p for p in parts if p]


class MultiValueCommand(TyperCommand):
    """A command whose multi-value options accept ``--ood a b c``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_multi_value_options(args))


class MultiValueGroup(TyperGroup):
    """A group (``dismax benchmark [show]``) whose own options accept ``--ood a b c``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_multi_value_options(args))


#: Set by the root ``--debug`` option: user errors then raise with their traceback.
_STATE = {"debug": False}


def set_debug(enabled: bool) -> None:
    _STATE["debug"] = bool(enabled)


def debug_enabled() -> bool:
    return _STATE["debug"]


def handle_errors(func: F) -> F:
    """Turn :class:`DismaxError` (and unreadable user files) into one line on stderr and exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DismaxError as exc:
            if debug_enabled():
                raise
            # User text (paths, specs like digits[0-5]) must not be read as rich markup.
            err_console.print(
                f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(EXIT_USER_ERROR) from None
        except KeyboardInterrupt:
            err_console.print("[bold red]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


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
    if path.is_dir():
        raise DismaxError(f"{what} {str(path)!r} is a folder: name a file inside it")
    target = path.resolve()
    for other in protected:
        if other.resolve() == target:
            raise DismaxError(
                f"{what} {str(path)!r} would overwrite {str(other)!r}, which this command reads "
                "or writes: choose another file name"
            )
    parent = target.parent
    if not parent.is_dir():
        raise DismaxError(
            f"cannot write {what} {str(path)!r}: folder {str(parent)!r} does not exist"
        )
    if not os.access(parent, os.W_OK):
        raise DismaxError(
            f"cannot write {what} {str(path)!r}: folder {str(parent)!r} is not writable"
        )


def write_report_outputs(report: Report, *, out: Path | None, output_format: OutputFormat) -> None:
    """Write the report atomically to ``out`` (if given), then JSON or tables to stdout."""
    text = to_json(report)
    if out is not None:
        try:
            atomic_write_bytes(out, (text + "\n").encode())
        except OSError as exc:
            raise DismaxError(f"cannot write --out {str(out)!r}: {exc.strerror}") from None
    if output_format is OutputFormat.json:
        write_stdout(text)
    else:
        stdout_console().print(report_renderable(report))


def stdout_console() -> Console:
    """A console for tables on stdout; 160 columns wide when stdout is not a terminal."""
    console = Console()
    return console if console.is_terminal else Console(width=160)
