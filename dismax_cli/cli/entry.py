"""The one way into the CLI: global ``--debug``, multi-value options, one error handler.

:class:`DismaxGroup` is the root ``dismax`` group. Its ``main`` (Click's public entry, called by
the console script through :func:`dismax_cli.cli.app.main` and by ``CliRunner``) takes
``--debug`` off the command line, expands ``--ood a b`` (:mod:`dismax_cli.cli.multivalue`,
told which options take several values by the command objects' public ``params``), runs Click
with ``standalone_mode=False`` and turns every exception into one line and an exit code
(:func:`dismax_cli.cli.common.error_exit_code`). Commands carry no error handling of their own.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from dismax_cli.cli import multivalue
from dismax_cli.cli.common import EXIT_USER_ERROR, closed_pipe_exit_code, error_exit_code
from dismax_cli.cli.repeats import OptionSpelling, check_repeats
from dismax_cli.config import InvalidValueError

#: Two-word spellings of a command: ``dismax benchmark show`` is ``dismax show``.
COMMAND_ALIASES: dict[tuple[str, str], str] = {("benchmark", "show"): "show"}
#: Multi-value options whose values keep their commas (a requirement is one value).
KEEP_COMMAS = frozenset({"--require"})

#: Click's exception classes, found through typer's public ones (typer vendors Click).
_CLICK_EXCEPTION = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class CommandInterrupted(Exception):
    """Ctrl-C in a command, carried past Click (which would turn it into a silent exit 130)."""


@contextlib.contextmanager
def interrupts_reported() -> Iterator[None]:
    """Registered with ``ctx.with_resource`` by the root callback: re-raises a Ctrl-C in the
    command as :class:`CommandInterrupted`, so that :func:`run` prints ``interrupted``."""
    try:
        yield
    except KeyboardInterrupt as exc:
        raise CommandInterrupted() from exc


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


def command_syntax(command: Any, usage: str) -> multivalue.CommandSyntax:
    """The :class:`~dismax_cli.cli.multivalue.CommandSyntax` of a Click command, from its public
    ``params``: ``multiple`` options take several values, non-flag options one, and the
    required single arguments are its positionals (named by their metavar)."""
    multi: set[str] = set()
    valued: set[str] = set()
    positionals: list[str] = []
    for param in command.params:
        if param.param_type_name == "option":
            names = [*param.opts, *param.secondary_opts]
            if param.multiple:
                multi.update(names)
            elif not (param.is_flag or param.count):
                valued.update(names)
        elif param.param_type_name == "argument" and param.required and param.nargs == 1:
            positionals.append(param.metavar or param.name.upper())
    return multivalue.CommandSyntax(
        multi=frozenset(multi),
        valued=frozenset(valued),
        positionals=tuple(positionals),
        keep_commas=KEEP_COMMAS,
        usage=usage,
    )


def expand_argv(group: Any, args: Sequence[str]) -> list[str]:
    """``args`` of the root group with the command's multi-value options expanded.

    The command is the first token that is not an option (the root's options are flags);
    ``benchmark show`` counts as ``show`` (:data:`COMMAND_ALIASES`). Unknown commands are left
    to Click.

    Raises:
        InvalidValueError: (exit 2) a value that could be the command's positional argument.
    """
    args = list(args)
    start = next((i for i, t in enumerate(args) if not t.startswith("-")), None)
    if start is None or args[start] not in group.commands:
        return args
    words = args[start : start + 2]
    name = COMMAND_ALIASES.get(tuple(words), words[0])  # type: ignore[arg-type]
    rest = start + (2 if name != words[0] else 1)
    head = args[: args.index("--")] if "--" in args else args
    if "-h" in head[rest:] or "--help" in head[rest:]:
        # Help wins wherever it is, also as a would-be value (``--ood -h``).
        return [*args[:rest], "--help"]
    syntax = command_syntax(group.commands[name], f"dismax {' '.join(args[start:rest])}")
    try:
        expanded = multivalue.expand(args[rest:], syntax)
    except (multivalue.AmbiguousValuesError, multivalue.MissingValuesError) as exc:
        raise InvalidValueError(name, str(exc)) from None
    check_repeats(expanded, option_spellings(group.commands[name]))
    return [*args[:rest], *expanded]


def option_spellings(command: Any) -> dict[str, OptionSpelling]:
    """Each spelling of a Click command's single-value options (from its public ``params``):
    what :func:`~dismax_cli.cli.repeats.check_repeats` needs. Multi-value options are left out
    (repeating them adds values)."""
    spellings: dict[str, OptionSpelling] = {}
    for param in command.params:
        if param.param_type_name != "option" or param.multiple or param.count:
            continue
        if param.is_flag:
            spellings.update({o: OptionSpelling(param.name, True) for o in param.opts})
            spellings.update({o: OptionSpelling(param.name, False) for o in param.secondary_opts})
        else:
            spellings.update({o: OptionSpelling(param.name) for o in param.opts})
    return spellings


def run(invoke: Callable[[list[str]], Any], group: Any, args: Sequence[str]) -> int:
    """Run the CLI on ``args`` through ``invoke`` (Click's ``main``, ``standalone_mode=False``);
    return the exit code.

    Click's usage errors print Click's message (exit 2), ``--help``/``--version`` exit 0; every
    other exception is one line on stderr (:func:`error_exit_code`: 1, 2 for a bad value, 130
    for Ctrl-C, 141 for a closed pipe); ``--debug`` prints the exception's traceback before that
    line and changes nothing else (the exit code stays the same).
    """
    argv, debug = take_debug_flag(args)
    try:
        try:
            result = invoke(expand_argv(group, argv))
        finally:
            # Output still buffered meets a closed pipe here, not in the interpreter's exit
            # flush (which would print "Exception ignored" and exit 120).
            if sys.stdout is not None:
                sys.stdout.flush()
    except (SystemExit, _CLICK_EXCEPTION, typer.Abort) as exc:
        return click_exit_code(exc)
    except (Exception, KeyboardInterrupt) as exc:
        if isinstance(exc, CommandInterrupted) and exc.__cause__ is not None:
            exc = exc.__cause__
        if debug:  # the traceback, then the same line and exit code as without --debug
            with contextlib.suppress(OSError):  # stderr's reader may have gone too
                traceback.print_exception(exc, file=sys.stderr)
        return error_exit_code(exc)
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def click_exit_code(exc: BaseException) -> int:
    """The exit code of Click's own outcomes: a usage error prints Click's message (its code,
    2), an abort ``Aborted!`` (1); Click's exit 1 after a closed pipe becomes 141."""
    if isinstance(exc, SystemExit):
        # Click answers a closed pipe with exit 1 after wrapping the streams in its
        # PacifyFlushWrapper; exit as for any closed pipe.
        if type(sys.stdout).__name__.lstrip("_") == "PacifyFlushWrapper":
            return closed_pipe_exit_code()
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        return EXIT_USER_ERROR
    if isinstance(exc, _CLICK_EXCEPTION):
        exc.show()
        return exc.exit_code
    typer.echo("Aborted!", err=True)
    return EXIT_USER_ERROR


def _plain_variadic_help(command: Any) -> None:
    """Help shows a variadic path argument as ``IMAGES... <path>``, where typer would print its
    Python annotation (``<list[Path]>``): messages and help name no Python type."""
    for param in getattr(command, "params", ()):
        if param.param_type_name == "argument" and param.nargs == -1:
            param.display_type_rich = lambda ctx: "<path>"


#: ``ctx.meta`` key: True when the command line asks for a command's help (``-h``/``--help``).
HELP_ASKED = "dismax.help_asked"


class DismaxGroup(TyperGroup):
    """The root ``dismax`` group: one entry (:func:`run`) and ``benchmark show`` as ``show``."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Click's entry point: parse, run, report every error as one line (:func:`run`).

        ``standalone_mode`` (Click's meaning): exit the process with the code (default), or
        return it (``main(..., standalone_mode=False)``).
        """
        invoke = functools.partial(
            super().main,
            prog_name=prog_name,
            complete_var=complete_var,
            standalone_mode=False,
            **extra,
        )
        code = run(invoke, self, list(sys.argv[1:] if args is None else args))
        if standalone_mode:
            sys.exit(code)
        return code

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        """``benchmark show ARGS`` resolves to ``show ARGS`` (:data:`COMMAND_ALIASES`; the
        usage line still reads ``dismax benchmark show``); everything else as Click does."""
        # The root callback checks the environment's numbers unless help was asked for.
        ctx.meta[HELP_ASKED] = any(arg in ("-h", "--help") for arg in args)
        name = COMMAND_ALIASES.get(tuple(args[:2]))  # type: ignore[arg-type]
        if name is not None and name in self.commands:
            return " ".join(args[:2]), self.commands[name], args[2:]
        resolved = super().resolve_command(ctx, args)
        _plain_variadic_help(resolved[1])
        return resolved
