"""``dismax calibrate``: fit the temperature of a finished run (METHOD.md §4) and store it.

The library (torch) loads in the command's body, so ``--help`` stays light.
"""

from __future__ import annotations

import contextlib
import json
from typing import Annotated, Any

import typer

from dismax_cli.cli import options as opt
from dismax_cli.cli.app import app
from dismax_cli.cli.checks import check_checkpoint_file
from dismax_cli.cli.common import Objective, OutputFormat, stdout_console, warn, write_stdout

OBJECTIVE_CHOICE = opt.EnumChoice(Objective)
ObjectiveChoice = Annotated[
    Objective,
    typer.Option(
        "--objective", parser=OBJECTIVE_CHOICE, metavar=OBJECTIVE_CHOICE.metavar,
        help=opt.OBJECTIVE_HELP,
    ),
]
CalibrationProtocol = Annotated[
    str | None,
    typer.Option("--protocol", parser=opt.PROTOCOL_CHOICE, metavar="honest|paper", help=(
        "Where T is fitted: honest = the run's validation split; paper = the ID test split "
        "(the reference's; the checkpoint then says the test set was seen). Default: the "
        "run's own protocol.")),
]  # fmt: skip


@app.command()
def calibrate(
    checkpoint: opt.Checkpoint,
    objective: ObjectiveChoice = Objective.ece,
    protocol: CalibrationProtocol = None,
    calibration_optimizer: opt.CalibrationOptimizer = None,
    data_dir: opt.DataDir = None,
    stream: opt.StreamOverride = None,
    output_format: opt.Format = OutputFormat.table,
    quiet: opt.Quiet = False,
) -> None:
    """Fit the temperature on the run's validation split and store it in the checkpoint."""
    check_checkpoint_file(checkpoint)  # before torch loads
    from dismax_cli.fileio import checkpoint_path
    from dismax_cli.output_check import check_rewritable

    check_rewritable(checkpoint_path(checkpoint), "checkpoint")  # it is rewritten: exit 2
    from dismax_cli.cli.progress import progress_display
    from dismax_cli.data.stream import stream_override
    from dismax_cli.engine import calibrate_checkpoint

    override = stream_override(stream) if stream is not None else contextlib.nullcontext()
    with override, progress_display(quiet=quiet) as display:
        # A status only: a run refused (unfinished, changed data) prints just its error line.
        display.status(f"calibrating {checkpoint} (objective {objective.value})")
        result = calibrate_checkpoint(
            checkpoint,
            objective=objective.value,
            data_dir=data_dir,
            protocol=protocol,
            optimizer=calibration_optimizer,
        )
        how = "kept (no finite optimum) on" if result.warning else "fitted on"
        display.log(
            f"calibrated {checkpoint}: T = {result.temperature:.4f} {how} "
            f"{result.n_val:,} {split_name(result.split)} images in {display.elapsed():.1f} s"
        )
    if output_format is OutputFormat.json:
        write_stdout(json.dumps(result.to_dict(), indent=2))
        return
    if result.warning:
        warn(result.warning)
    stdout_console().print(calibration_table(result))


def split_name(split: str) -> str:
    """How a calibration split is named in messages: ``validation`` or ``ID test``."""
    return "ID test" if split == "test" else "validation"


def calibration_table(result: Any) -> Any:
    """T, ECE % and NLL before and after, with a caption naming the split and the optimiser
    (a rich renderable)."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    table.add_column("")
    table.add_column("T", justify="right")
    table.add_column("ECE %", justify="right")
    table.add_column("NLL", justify="right")
    table.add_row("before", "1.0000", f"{result.ece_before * 100:.2f}", f"{result.nll_before:.4f}")
    table.add_row(
        "after",
        f"{result.temperature:.4f}",
        f"{result.ece_after * 100:.2f}",
        f"{result.nll_after:.4f}",
    )
    where = split_name(result.split)
    caption = (
        f"fitted on {result.n_val:,} {where} images, objective {result.objective}, "
        f"optimizer {result.optimizer}"
        if not result.warning
        else f"no finite optimum on {result.n_val:,} {where} images: T = "
        f"{result.temperature:g} kept (the warning on stderr says why)"
    )
    if result.split == "test":
        caption += "\nWARNING protocol paper: T was fitted on the ID test split (test set seen)"
    return Group(Text("Temperature calibration", style="bold"), table, Text(caption, style="dim"))
