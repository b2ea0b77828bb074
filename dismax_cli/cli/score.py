"""``dismax score``: evaluate a checkpoint on its ID test split and OOD sets.

The library (torch) loads in the command's body, so ``--help`` stays light.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer

from dismax_cli.cli import options as opt
from dismax_cli.cli.app import app
from dismax_cli.cli.checks import check_checkpoint_file, check_option_specs, spec_files
from dismax_cli.cli.common import OutputFormat, write_report_outputs
from dismax_cli.output_check import parse_output_path

Ood = Annotated[list[str], typer.Option("--ood", metavar="SET", help=opt.OOD_HELP)]
ScoreName = Annotated[str | None, opt.score_option("Score shown in the table")]
Dump = Annotated[
    Path | None,
    typer.Option(
        "--dump", parser=parse_output_path, metavar="FILE.npz",
        help="Write per-sample scores to this .npz file."
    ),
]
Out = Annotated[
    Path | None,
    typer.Option(
        "--out", parser=parse_output_path, metavar="FILE.json",
        help="Write the JSON report to this file (atomically)."
    ),
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

    ood = [canonical_spec(entry) for entry in ood]
    check_checkpoint_file(checkpoint)
    json_out = output_format is OutputFormat.json
    check_score_outputs(checkpoint, ood, out=out, dump=dump, data_dir=data_dir, json_out=json_out)
    from dismax_cli.benchmark import BenchmarkProgress, score_checkpoint, score_steps
    from dismax_cli.cli.progress import progress_display
    from dismax_cli.data.stream import stream_override
    from dismax_cli.engine.distributed import is_main
    from dismax_cli.output_check import terminate_cleanly
    from dismax_cli.output_set import OutputSet
    from dismax_cli.reports import to_json

    outputs = OutputSet()  # --dump and --out: all or nothing, after the scoring
    override = stream_override(stream) if stream is not None else contextlib.nullcontext()
    with terminate_cleanly(), override, progress_display(
        quiet=quiet, total_steps=score_steps(len(ood))
    ) as display:
        report = score_checkpoint(
            checkpoint,
            ood,
            data_dir=data_dir,
            device=device or "auto",
            score=score_name,
            dump_to=(lambda data: outputs.add(dump, data, "--dump")) if dump else None,
            progress=BenchmarkProgress(stage=display.log, status=display.status),
            scores=tuple(scores or ()),
            fpr_convention=fpr_convention or "ours",
        )
    with terminate_cleanly():
        if out is not None:
            outputs.add(out, (to_json(report) + "\n").encode(), "--out")
        if is_main():  # under torchrun only rank 0 writes files
            outputs.commit()
        write_report_outputs(report, out=None, output_format=output_format)


def check_score_outputs(
    checkpoint: Path,
    ood: list[str],
    *,
    out: Path | None,
    dump: Path | None,
    data_dir: Any,
    json_out: bool = False,
) -> None:
    """``--out`` and ``--dump`` against each other and what ``score`` reads (the run folder's
    files, ``npz:``/``imagefolder:`` sets, the data dir's files), and not stdout when it
    carries the JSON report (``json_out``), before torch loads."""
    from dismax_cli.data.registry import resolve_data_dir
    from dismax_cli.fileio import CHECKPOINT_NAME, LOG_NAME, checkpoint_path
    from dismax_cli.output_check import Target, check_output_plan, data_files, folder_files

    ckpt = checkpoint_path(checkpoint)
    reads = [ckpt, ckpt.parent / LOG_NAME, *spec_files(list(ood))]
    if ckpt.name == CHECKPOINT_NAME and (ckpt.parent / LOG_NAME).exists():  # a run folder
        reads.extend(folder_files([ckpt.parent]))  # its detector caches too
    with contextlib.suppress(Exception):  # a bad data dir answers later, with its own message
        reads.extend(data_files(resolve_data_dir(data_dir)))
    targets = [Target(p, what) for p, what in ((dump, "--dump"), (out, "--out")) if p]
    json_text = "the JSON report (--format json)" if json_out else None
    check_output_plan(targets, reads, stdout_report=json_text)
