"""The ``dismax`` Typer application; each command lives in its own module and is registered here."""

from __future__ import annotations

import sys

import typer

from dismax_cli import __version__
from dismax_cli.cli.common import set_debug

app = typer.Typer(
    name="dismax",
    help=(
        "DisMax: classifiers that know what they do not know. Train with the DisMax loss, "
        "calibrate, score out-of-distribution sets and benchmark against SoftMax, IsoMax+ and "
        "deep ensembles."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"dismax {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    set_debug(debug)


def _register() -> None:
    # Imported here so that each module can attach its command to ``app``.
    from dismax_cli.cli import commands  # noqa: F401


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="dismax")
