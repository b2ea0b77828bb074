"""``dismax benchmark``: train (or reuse), calibrate and score every method, print the tables.

A plain command; ``dismax benchmark show REPORT.json`` is :mod:`dismax_cli.cli.show`'s command
(the root group resolves it, README "Design notes"). The work is in
:func:`dismax_cli.cli.benchmark_run.run_benchmark_command`; torch loads only there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dismax_cli.cli import options as opt
from dismax_cli.cli.app import app
from dismax_cli.cli.common import OutputFormat
from dismax_cli.cli.figures import Html, Plots
from dismax_cli.core.metric_table import keys
from dismax_cli.output_check import parse_output_path

Ood = Annotated[
    list[str] | None,
    typer.Option("--ood", metavar="SET", help=f"{opt.OOD_HELP} Default: digits[6-9] uniform."),
]
Methods = Annotated[
    list[str] | None,
    typer.Option("--methods", parser=opt.BENCHMARK_METHOD, metavar="METHOD", help=(
        f"Any of {' '.join(opt.BENCHMARK_METHOD_NAMES)} "
        f"(default {' '.join(opt.DEFAULT_BENCHMARK_METHOD_NAMES)}).")),
]  # fmt: skip
Seeds = Annotated[
    int | None,
    typer.Option("--seeds", parser=opt.SEEDS_INT, metavar="N",
                 help="Number of seeds (SEED, SEED+1, ...); >1 reports mean ± sample std."),
]  # fmt: skip
EnsembleSize = Annotated[
    int | None,
    typer.Option("--ensemble-size", parser=opt.ENSEMBLE_INT, metavar="N",
                 help="SoftMax members of the deep ensemble (default 3)."),
]  # fmt: skip
ObjectiveName = Annotated[
    str | None,
    typer.Option("--objective", parser=opt.OBJECTIVE, metavar="ece|nll", help=opt.OBJECTIVE_HELP),
]
RunsDir = Annotated[
    str | None,
    typer.Option("--runs-dir", parser=opt.RUNS_DIR_FOLDER, metavar="DIR", help=(
        "Where runs are trained and reused (default $DISMAX_RUNS_DIR or the user cache).")),
]  # fmt: skip
Require = Annotated[
    list[str] | None,
    typer.Option("--require", metavar="REQ", help=(
        "CI gate, repeatable: METHOD:METRIC:SET>=VALUE (SET 'id' for "
        f"{'/'.join(keys('id'))}). Exit 3 if any fails.")),
]  # fmt: skip
OodPreset = Annotated[
    str | None,
    typer.Option("--ood-preset", parser=opt.OOD_PRESET, metavar="PRESET", help=(
        "OpenOOD v1.5's near/far OOD sets: openood-cifar10 or openood-cifar100 (--ood "
        "LABEL=SPEC replaces a set; tables add near and far means).")),
]  # fmt: skip
Out = Annotated[
    Path | None,
    typer.Option("--out", parser=parse_output_path, metavar="FILE", help=(
        "Also write the JSON report to this file (atomically), and its per-sample data "
        "beside it (FILE's stem + .samples.npz).")),
]  # fmt: skip
Shard = Annotated[
    str | None,
    typer.Option("--shard", parser=opt.SHARD, metavar="I/N", help=(
        "Train only share I of N (0-based, like SLURM_ARRAY_TASK_ID) of the runs into "
        "--runs-dir and exit without a report; a final run without --shard writes it.")),
]  # fmt: skip
Bootstrap = Annotated[
    int | None,
    typer.Option("--bootstrap", parser=opt.BOOTSTRAP_INT, metavar="N",
                 help="Bootstrap resamples for the 95% intervals (default 1000; 0 skips them)."),
]  # fmt: skip


@app.command(epilog="dismax benchmark show REPORT.json (or dismax show) re-renders a report.")
def benchmark(
    ctx: typer.Context,
    config: opt.Config = None,
    dataset: opt.Dataset = None,
    test_dataset: opt.TestDataset = None,
    ood: Ood = None,
    methods: Methods = None,
    model: opt.Model = None,
    epochs: opt.Epochs = None,
    seed: opt.Seed = None,
    seeds: Seeds = None,
    ensemble_size: EnsembleSize = None,
    batch_size: opt.BatchSize = None,
    lr: opt.Lr = None,
    momentum: opt.Momentum = None,
    weight_decay: opt.WeightDecay = None,
    lr_decay: opt.LrDecay = None,
    entropic_scale: opt.EntropicScale = None,
    alpha: opt.Alpha = None,
    fpr: opt.Fpr = None,
    augment: opt.Augment = None,
    val_fraction: opt.ValFraction = None,
    split_seed: opt.SplitSeed = None,
    sync_bn: opt.SyncBn = None,
    protocol: opt.Protocol = None,
    select: opt.Select = None,
    calibration_optimizer: opt.CalibrationOptimizer = None,
    objective: ObjectiveName = None,
    runs_dir: RunsDir = None,
    device: opt.Device = None,
    data_dir: opt.DataDir = None,
    image_size: opt.ImageSize = None,
    decay_epochs: opt.DecayEpochs = None,
    stream: opt.Stream = None,
    require: Require = None,
    scores: opt.Scores = None,
    ood_preset: OodPreset = None,
    fpr_convention: opt.FprConvention = None,
    output_format: opt.Format = OutputFormat.table,
    out: Out = None,
    shard: Shard = None,
    bootstrap: Bootstrap = None,
    plots: Plots = None,
    html: Html = None,
    quiet: opt.Quiet = False,
) -> None:
    """Compare DisMax with SoftMax, IsoMax+ and a deep ensemble: train (or reuse), calibrate,
    score every OOD set, print tables and a JSON report. With no options: offline on
    digits[0-5] against digits[6-9] and uniform noise."""
    from dismax_cli.cli.benchmark_run import run_benchmark_command

    run_benchmark_command(dict(ctx.params))
