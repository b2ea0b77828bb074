"""The ``dismax`` Typer application; each command lives in its own module and is registered here.

Start-up stays light: this module and the command modules import only typer, click, rich and
yaml; torch, torchvision and scikit-learn load inside a command's body when it runs, so every
``--help`` and every usage error answers at once (``benchmarks/speed/cli_startup.py``).
"""

from __future__ import annotations

import os
import sys

import typer
import typer.main

from dismax_cli import __version__
from dismax_cli.cli.entry import HELP_ASKED, DismaxGroup, interrupts_reported

app = typer.Typer(
    name="dismax",
    cls=DismaxGroup,
    help=(
        "DisMax: classifiers that know what they do not know. Train with the DisMax loss, "
        "calibrate, score out-of-distribution sets and benchmark against SoftMax, IsoMax+ and "
        "deep ensembles."
    ),
    epilog=(
        "Exit codes: 0 success, 1 an error (one line on stderr), 2 a usage error or an invalid "
        "option value, 3 a failed --require, 130 Ctrl-C, 141 the output's reader went away, "
        "143 SIGTERM."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"dismax {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    debug: bool = typer.Option(
        False,
        "--debug",
        help="Show the full traceback of an error (accepted anywhere on the command line).",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    # The root group's main (cli/entry.py) takes --debug off the command line wherever it is,
    # before parsing, and reports a Ctrl-C in the command through this resource.
    del debug, version
    if not ctx.meta.get(HELP_ASKED):
        from dismax_cli.env_settings import check_environment  # torch-free

        check_environment()  # a bad DISMAX_WORKERS etc. answers at once, exit 2
    ctx.with_resource(interrupts_reported())


def _register() -> None:
    # Imported here so that each module can attach its command to ``app``.
    from dismax_cli.cli import commands  # noqa: F401


_register()


def _silence_other_ranks(argv: list[str]) -> None:
    """Under torchrun only rank 0 prints: the other ranks' stdout and stderr go to /dev/null
    (with ``--debug`` they keep them). Reads torchrun's ``RANK`` and ``WORLD_SIZE`` only."""
    try:
        other = int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ["RANK"]) != 0
    except (KeyError, ValueError):
        return
    if other and "--debug" not in argv:
        sink = os.open(os.devnull, os.O_WRONLY)
        os.dup2(sink, 1)
        os.dup2(sink, 2)
        os.close(sink)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run ``dismax`` on ``argv`` (default ``sys.argv[1:]``) and exit
    with its code.

    The root group runs Click with ``standalone_mode=False`` and turns every exception into one
    line and an exit code (:func:`dismax_cli.cli.entry.run`); ``CliRunner`` tests that invoke
    ``app`` go through the same handler.
    """
    args = argv if argv is not None else sys.argv[1:]
    _silence_other_ranks(args)
    command = typer.main.get_command(app)
    sys.exit(command.main(args, prog_name="dismax", standalone_mode=False))
