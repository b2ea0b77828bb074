"""``dismax datasets``: list the dataset registry and what is present locally."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from dismax_cli.cli.app import app
from dismax_cli.cli.common import OutputFormat, handle_errors, write_stdout
from dismax_cli.cli.options import DATA_DIR_ENV

if TYPE_CHECKING:  # the data layer (torch) loads only when the command runs
    from dismax_cli.data import DatasetInfo


def _present_text(info: DatasetInfo) -> str:
    if info.present is None:
        return "-"
    return "[green]yes[/]" if info.present else "[dim]no[/]"


def render_datasets_table(rows: list[DatasetInfo], data_dir: Path) -> Table:
    """Build the rich table of the registry."""
    table = Table(title=f"Datasets (data dir: {data_dir})", title_justify="left")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("kind")
    table.add_column("size")
    table.add_column("present", no_wrap=True)
    table.add_column("source", overflow="fold")
    table.add_column("licence", overflow="fold")
    for info in rows:
        name = info.name + (f" ({', '.join(info.aliases)})" if info.aliases else "")
        if info.synthetic:
            name += " [yellow]SYNTHETIC[/]"
        table.add_row(name, info.kind, info.size, _present_text(info), info.source, info.licence)
    return table


@app.command("datasets")
@handle_errors
def datasets(
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        envvar=DATA_DIR_ENV,
        help="Folder holding downloaded datasets and caches (default: $XDG_CACHE_HOME/dismax "
        "or ~/.cache/dismax).",
        show_default=False,
    ),
    output_format: OutputFormat = typer.Option(
        OutputFormat.table, "--format", help="table (rich) or json, both to stdout."
    ),
) -> None:
    """List the datasets: name, source, size, licence note and whether present locally.

    Named sets download into the data dir on first use (never with DISMAX_OFFLINE=1);
    npz:PATH and imagefolder:PATH load local files; synthetic sets are generated.
    """
    from dismax_cli.data import list_datasets, resolve_data_dir

    root = resolve_data_dir(data_dir)
    rows = list_datasets(root)
    if output_format == OutputFormat.json:
        payload = {"data_dir": str(root), "datasets": [r.to_dict() for r in rows]}
        write_stdout(json.dumps(payload, indent=2))
        return
    Console(soft_wrap=False).print(render_datasets_table(rows, root))
