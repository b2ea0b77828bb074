"""``dismax score``: evaluate a checkpoint on its ID test split and OOD sets.

The library (torch) loads in the command's body, so ``--help`` stays light.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer

from dismax_cli.cli import options as opt
from dismax_cli.cli.app import app
from dismax_cli.cli.checks import (
    check_checkpoint_file,
    check_option_specs,
    check_writable,
    spec_files,
)
from dismax_cli.cli.common import OutputFormat, write_report_outputs

Ood = Annotated[list[str], typer.Option("--ood", metavar="SET", help=opt.OOD_HELP)]
ScoreName = Annotated[str | None, opt.score_option("Score shown in the table")]
Dump = Annotated[
    Path | None, typer.Option("--dump", help="Write per-sample scores to this .npz file.")
]
Out = Annotated[
    Path | None, typer.Option("--out", help="Write the JSON report to this file (atomically).")
]


@app.command()
def score(
    checkpoint: opt.Checkpoint,
    ood: Ood = ...,  # type: ignore[assignment]
    score_name: ScoreName = None,
    dump: Dump = None,
    scores: opt.Scores = None,
    fpr_convention: opt.FprConvention = None,
    out: Out = None,
    device: opt.Device = None,
    data_dir: opt.DataDir = None,
    stream: opt.StreamOverride = None,
    output_format: opt.Format = OutputFormat.table,
    quiet: opt.Quiet = False,
) -> None:
    """Evaluate a checkpoint: ID accuracy, NLL, ECE and OOD detection metrics per set."""
    check_option_specs("--ood", ood, labelled=True)  # before torch loads: a fast usage error
    from dismax_cli.data.registry import canonical_spec
    from dismax_cli.fileio import LOG_NAME, checkpoint_path

    ood = [canonical_spec(entry) for entry in ood]
    check_checkpoint_file(checkpoint)
    ckpt = checkpoint_path(checkpoint)
    run_files = (ckpt, ckpt.parent / LOG_NAME, *spec_files(list(ood)))  # what it reads
    check_writable(dump, "--dump", protected=run_files)
    check_writable(out, "--out", protected=(*run_files, *((dump,) if dump else ())))
    from dismax_cli.benchmark import BenchmarkProgress, score_checkpoint, score_steps
    from dismax_cli.cli.progress import progress_display
    from dismax_cli.data.stream import stream_override

    override = stream_override(stream) if stream is not None else contextlib.nullcontext()
    with override, progress_display(quiet=quiet, total_steps=score_steps(len(ood))) as display:
        report = score_checkpoint(
            checkpoint,
            ood,
            data_dir=data_dir,
            device=device or "auto",
            score=score_name,
            dump=dump,
            progress=BenchmarkProgress(stage=display.log, status=display.status),
            scores=tuple(scores or ()),
            fpr_convention=fpr_convention or "ours",
        )
    write_report_outputs(report, out=out, output_format=output_format)
