"""``dismax datasets``: list the dataset registry and what is present locally."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from dismax_cli.cli import options as opt
from dismax_cli.cli.app import app
from dismax_cli.cli.common import OutputFormat, stdout_console, write_stdout
from dismax_cli.cli.options import DATA_DIR_ENV

if TYPE_CHECKING:  # the data layer (torch) loads only when the command runs
    from dismax_cli.data import DatasetInfo


def _present_text(info: DatasetInfo) -> Text:
    if info.present is None:
        return Text("-")
    return Text("yes", style="green") if info.present else Text("no", style="dim")


#: Widest size text of the compact listing: 16 (name) + 11 (kind) + 7 (present) + 3 gaps of 2
#: + 36 = 76 columns, so it fits 80.
SIZE_WIDTH = 36


def _short(size: str) -> str:
    """``size`` cut to :data:`SIZE_WIDTH` characters, ending in ``…`` when cut."""
    return size if len(size) <= SIZE_WIDTH else size[: SIZE_WIDTH - 1].rstrip(" ,;") + "…"


def _title(data_dir: Path) -> Text:
    return Text(f"Datasets (data dir: {data_dir})", style="bold")


def render_datasets_table(rows: list[DatasetInfo], data_dir: Path) -> Group:
    """The compact listing (``dismax datasets``): one line per dataset, fits 80 columns.

    Name, kind (``SYNTHETIC`` for generated noise), whether present locally, and the size
    (cut with ``…`` where it does not fit); source, licence, aliases and location are in
    :func:`render_datasets_long` and in ``--format json``. All text is shown verbatim.
    """
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    kinds = ["SYNTHETIC" if info.synthetic else info.kind for info in rows]
    # Only the size may be cut: the other columns keep their full width.
    name_width = max([len("name"), *(len(info.name) for info in rows)])
    kind_width = max([len("kind"), *(len(k) for k in kinds)])
    table.add_column("name", style="bold", no_wrap=True, min_width=name_width)
    table.add_column("kind", no_wrap=True, min_width=kind_width)
    table.add_column("present", no_wrap=True, min_width=len("present"))
    table.add_column("size", no_wrap=True)
    for info, kind_text in zip(rows, kinds, strict=True):
        kind = Text(kind_text, style="yellow" if info.synthetic else "")
        table.add_row(Text(info.name), kind, _present_text(info), Text(_short(info.size)))
    footer = Text(
        "source, licence, aliases and location: dismax datasets --long (or --format json)",
        style="dim",
    )
    return Group(_title(data_dir), table, footer)


def render_datasets_long(rows: list[DatasetInfo], data_dir: Path) -> Group:
    """The full listing (``dismax datasets --long``): one block per dataset.

    Name, aliases, kind, presence, then size, source, licence and location each on a line of
    their own (wrapped at the console's width, never cut). All text is shown verbatim.
    """
    parts: list[Text] = [_title(data_dir)]
    for info in rows:
        head = Text(info.name, style="bold")
        if info.aliases:
            head.append(f" (also {', '.join(info.aliases)})")
        head.append(f"  {info.kind}")
        if info.synthetic:
            head.append("  SYNTHETIC", style="yellow")
        head.append("  present: ")
        head.append_text(_present_text(info))
        parts.append(head)
        for key in ("size", "source", "licence", "location"):
            parts.append(Text(f"  {key + ':':<9} {getattr(info, key)}"))
    return Group(*parts)


@app.command("datasets")
def datasets(
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        parser=opt.DATA_DIR_FOLDER,
        metavar="DIR",
        help=f"Folder holding downloaded datasets and caches (default: ${DATA_DIR_ENV}, else "
        "$XDG_CACHE_HOME/dismax or ~/.cache/dismax; a blank variable counts as unset).",
        show_default=False,
    ),
    output_format: Annotated[
        OutputFormat, opt.format_option("table (rich) or json, both to stdout.")
    ] = OutputFormat.table,
    long: bool = typer.Option(
        False, "--long", "-l", help="Also show source, licence, aliases and location."
    ),
) -> None:
    """List the datasets: name, kind, whether present locally and size (--long: source, licence).

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
    render = render_datasets_long if long else render_datasets_table
    stdout_console().print(render(rows, root))
