"""``dismax benchmark`` (run the comparison) and ``dismax benchmark show`` (re-render a report)."""

from __future__ import annotations

from pathlib import Path

import typer

from dismax_cli.cli import options as opt
from dismax_cli.cli.app import app
from dismax_cli.cli.common import (
    EXIT_REQUIREMENT_FAILED,
    QUIET_OPTION,
    MultiValueGroup,
    OutputFormat,
    check_writable,
    handle_errors,
    say,
    spec_checks,
    stdout_console,
    write_report_outputs,
    write_stdout,
)
from dismax_cli.cli.figures import HTML, PLOTS, check_figure_paths, report_samples, write_figures
from dismax_cli.config import build_config, read_yaml_config, run_checks
from dismax_cli.core.metric_table import keys
from dismax_cli.errors import DismaxError, quote_path

benchmark_app = typer.Typer(
    cls=MultiValueGroup,
    invoke_without_command=True,
    no_args_is_help=False,
    help=(
        "Compare DisMax with SoftMax, IsoMax+ and a deep ensemble: train (or reuse), calibrate, "
        "score every OOD set, print tables and a JSON report. With no options: offline on "
        "digits[0-5] against digits[6-9] and uniform noise."
    ),
)
app.add_typer(benchmark_app, name="benchmark")


@benchmark_app.callback()
@handle_errors
def benchmark(
    ctx: typer.Context,
    config: Path = opt.CONFIG,
    dataset: str = opt.DATASET,
    test_dataset: str = opt.TEST_DATASET,
    ood: list[str] = typer.Option(
        None,
        "--ood",
        metavar="SET",
        help=f"{opt.OOD_HELP} Default: digits[6-9] uniform.",
    ),
    methods: list[str] = typer.Option(
        None,
        "--methods",
        parser=opt.BENCHMARK_METHOD,
        metavar="METHOD",
        help=(
            f"Any of {' '.join(opt.BENCHMARK_METHOD_NAMES)} "
            f"(default {' '.join(opt.DEFAULT_BENCHMARK_METHOD_NAMES)})."
        ),
    ),
    model: str = opt.MODEL,
    epochs: int = opt.EPOCHS,
    seed: int = opt.SEED,
    seeds: int = typer.Option(
        None,
        "--seeds",
        parser=opt.SEEDS_INT,
        metavar="N",
        help="Number of seeds (SEED, SEED+1, ...); >1 reports mean ± sample std.",
    ),
    ensemble_size: int = typer.Option(
        None,
        "--ensemble-size",
        parser=opt.ENSEMBLE_INT,
        metavar="N",
        help="SoftMax members of the deep ensemble (default 3).",
    ),
    batch_size: int = opt.BATCH_SIZE,
    lr: float = opt.LR,
    momentum: float = opt.MOMENTUM,
    weight_decay: float = opt.WEIGHT_DECAY,
    lr_decay: float = opt.LR_DECAY,
    entropic_scale: float = opt.ENTROPIC_SCALE,
    alpha: float = opt.ALPHA,
    fpr: bool = opt.FPR,
    augment: bool = opt.AUGMENT,
    val_fraction: float = opt.VAL_FRACTION,
    split_seed: int = opt.SPLIT_SEED,
    sync_bn: bool = opt.SYNC_BN,
    protocol: str = opt.PROTOCOL,
    select: str = opt.SELECT,
    calibration_optimizer: str = opt.CALIBRATION_OPTIMIZER,
    objective: str = typer.Option(
        None,
        "--objective",
        parser=opt.OBJECTIVE,
        metavar="ece|nll",
        help=opt.OBJECTIVE_HELP,
    ),
    runs_dir: str = typer.Option(
        None,
        "--runs-dir",
        metavar="DIR",
        help="Where runs are trained and reused (default $DISMAX_RUNS_DIR or the user cache).",
    ),
    device: str = opt.DEVICE,
    data_dir: str = opt.DATA_DIR,
    image_size: int = opt.IMAGE_SIZE,
    decay_epochs: str = opt.DECAY_EPOCHS,
    stream: bool = opt.STREAM,
    require: list[str] = typer.Option(
        None,
        "--require",
        metavar="REQ",
        help=(
            "CI gate, repeatable: METHOD:METRIC:SET>=VALUE (SET 'id' for "
            f"{'/'.join(keys('id'))}). Exit 3 if any fails."
        ),
    ),
    scores: list[str] = opt.SCORES,
    ood_preset: str = typer.Option(
        None,
        "--ood-preset",
        parser=opt.OOD_PRESET,
        metavar="PRESET",
        help=(
            "OpenOOD v1.5's near/far OOD sets: openood-cifar10 or openood-cifar100 (--ood "
            "LABEL=SPEC replaces a set; tables add near and far means)."
        ),
    ),
    fpr_convention: str = opt.FPR_CONVENTION_OPTION,
    output_format: OutputFormat = typer.Option(
        OutputFormat.table, "--format", help=opt.FORMAT_HELP
    ),
    out: Path = typer.Option(
        None,
        "--out",
        metavar="FILE",
        help=(
            "Also write the JSON report to this file (atomically), and its per-sample data "
            "beside it (FILE's stem + .samples.npz)."
        ),
    ),
    shard: str = typer.Option(
        None,
        "--shard",
        parser=opt.SHARD,
        metavar="I/N",
        help=(
            "Train only share I of N (0-based, like SLURM_ARRAY_TASK_ID) of the runs into "
            "--runs-dir and exit without a report; a final run without --shard writes it."
        ),
    ),
    bootstrap: int = typer.Option(
        None,
        "--bootstrap",
        parser=opt.BOOTSTRAP_INT,
        metavar="N",
        help="Bootstrap resamples for the 95% intervals (default 1000; 0 skips them).",
    ),
    plots: Path = PLOTS,
    html: Path = HTML,
    quiet: bool = QUIET_OPTION,
) -> None:
    """Run the benchmark (see ``dismax benchmark --help``)."""
    if ctx.invoked_subcommand is not None:
        return
    opt.check_shard_alone(shard, out=out, require=require, plots=plots, html=html)
    check_writable(out, "--out")
    check_figure_paths(plots, html, protected=(out,) if out is not None else ())
    file_values = read_yaml_config(config) if config is not None else {}
    # Malformed file values, gates and labels answer before torch loads, like bad options do.
    parsers = {
        **opt.TRAINING_KNOBS,
        "methods": opt.BENCHMARK_METHOD,
        "seeds": opt.SEEDS_INT,
        "ensemble_size": opt.ENSEMBLE_INT,
        "objective": opt.OBJECTIVE,
        "scores": opt.SCORES_CHOICE,
        "ood_preset": opt.OOD_PRESET,
        "fpr_convention": opt.FPR_CONVENTION,
        "calibration_optimizer": opt.CALIBRATION_OPTIMIZER_CHOICE,
        "bootstrap": opt.BOOTSTRAP_INT,
    }
    opt.precheck_file_values(file_values, config, parsers)
    opt.precheck_gates(require or None, ood or None)
    as_list = [file_values.get(k) for k in ("require", "ood")]
    opt.precheck_gates(
        *(v if isinstance(v, list) else None for v in as_list),
        source=f"config file '{config}'",
    )
    specs = {"dataset": dataset, "test_dataset": test_dataset, "ood": ood or None}
    run_checks(spec_checks(), specs, file_values, config=config)
    from dismax_cli.benchmark import (
        BenchmarkConfig,
        BenchmarkProgress,
        benchmark_steps,
        check_requirements,
        default_runs_dir,
        run_benchmark,
        split_label,
    )
    from dismax_cli.cli.progress import ProgressDisplay, interrupted_benchmark_message
    from dismax_cli.data.registry import canonical_requirement, canonical_spec
    from dismax_cli.evidence import Evidence, write_per_sample
    from dismax_cli.presets import PRESETS
    from dismax_cli.sharding import shard_steps, train_shard

    cli_values = {
        "dataset": dataset,
        "test_dataset": test_dataset,
        "ood": ood or None,
        "methods": methods or None,
        "model": model,
        "epochs": epochs,
        "seed": seed,
        "seeds": seeds,
        "ensemble_size": ensemble_size,
        "batch_size": batch_size,
        "lr": lr,
        "momentum": momentum,
        "weight_decay": weight_decay,
        "lr_decay": lr_decay,
        "entropic_scale": entropic_scale,
        "alpha": alpha,
        "fpr": fpr,
        "augment": augment,
        "val_fraction": val_fraction,
        "split_seed": split_seed,
        "sync_bn": sync_bn,
        "objective": objective,
        "protocol": protocol,
        "select": select,
        "calibration_optimizer": calibration_optimizer,
        "runs_dir": runs_dir,
        "device": device,
        "data_dir": data_dir,
        "image_size": image_size,
        "decay_epochs": decay_epochs,
        "stream": stream,
        "require": require or None,
        "scores": scores or None,
        "ood_preset": ood_preset,
        "fpr_convention": fpr_convention,
        "bootstrap": bootstrap,
    }
    # The paper's names (LSUN, TinyImageNet) become the registry's (lsun_resize, tin_resize),
    # in --ood and in the SET of --require alike, from the command line and from a config.
    for values in (cli_values, file_values):
        if isinstance(values.get("ood"), str):
            values["ood"] = [values["ood"]]
        if isinstance(values.get("ood"), list | tuple):
            values["ood"] = [canonical_spec(v) if isinstance(v, str) else v for v in values["ood"]]
    entries = cli_values["ood"] or file_values.get("ood") or BenchmarkConfig.ood
    labels = [split_label(e)[0] for e in entries if isinstance(e, str)]
    preset = cli_values["ood_preset"] or file_values.get("ood_preset")
    if isinstance(preset, str) and preset in PRESETS:
        labels += [s.label for s in PRESETS[preset]]
    for values in (cli_values, file_values):
        if isinstance(values.get("require"), list | tuple):
            values["require"] = [
                canonical_requirement(v, labels) if isinstance(v, str) else v
                for v in values["require"]
            ]
    cfg = build_config(
        BenchmarkConfig, cli_values, file_values, config=config, checks=spec_checks()
    )
    steps = benchmark_steps(cfg) if shard is None else shard_steps(cfg, shard)
    display = ProgressDisplay(quiet=quiet, total_steps=steps)
    try:
        with display:
            progress = BenchmarkProgress(
                stage=display.step, train=display.train_callback, status=display.status
            )
            evidence = Evidence()
            if shard is not None:
                summary = train_shard(cfg, shard, progress)
            else:
                report = run_benchmark(cfg, progress, evidence=evidence)
    except KeyboardInterrupt:
        runs = Path(cfg.runs_dir).expanduser() if cfg.runs_dir else default_runs_dir()
        say(
            interrupted_benchmark_message(runs, display.training),
            prefix="interrupted:",
            prefix_style="bold red",
        )
        raise typer.Exit(130) from None
    if shard is not None:
        say(summary.line())
        return
    report = check_requirements(report, cfg.require)
    from dismax_cli.engine import distributed

    if not distributed.is_main():  # under torchrun rank 0 writes the report and its files
        return
    if out is not None:
        report = write_per_sample(report, evidence, out)
    write_report_outputs(report, out=out, output_format=output_format)
    per_sample = evidence.per_sample() if plots is not None or html is not None else None
    write_figures(report, per_sample, plots=plots, html=html)
    failed = [f"{r.text} (measured {r.value:.4f})" for r in report.requirements if not r.passed]
    if failed:
        say(
            "; ".join(failed),
            prefix=f"{len(failed)} requirement(s) failed:",
            prefix_style="bold red",
        )
        raise typer.Exit(EXIT_REQUIREMENT_FAILED)
    if cfg.require:
        say(f"all {len(cfg.require)} requirement(s) hold")


@benchmark_app.command("show")
@handle_errors
def show(
    report_path: Path = typer.Argument(
        ..., metavar="REPORT.json", help="A JSON report written by --out."
    ),
    output_format: OutputFormat = typer.Option(
        OutputFormat.table, "--format", help="table or json."
    ),
    compare: Path = typer.Option(
        None,
        "--compare",
        metavar="TABLE.yaml",
        help=(
            "Print paper vs measured vs difference for the rows of the paper's table "
            "(benchmarks/paper/table2.yaml) with the report's ID set, backbone and method, and "
            "whether the run used the paper's protocol, budget and data."
        ),
    ),
    plots: Path = PLOTS,
    html: Path = HTML,
) -> None:
    """Re-render a saved benchmark or score report (compare it with the paper's table, redraw
    its plots / HTML page)."""
    from dismax_cli.fileio import file_problem
    from dismax_cli.render import report_renderable
    from dismax_cli.reports import from_json, to_json

    problem = file_problem(report_path)
    if problem is not None:
        raise DismaxError(
            f"report {quote_path(report_path)} {problem}: pass a file written by --out"
        )
    try:
        text = report_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DismaxError(f"cannot read report {quote_path(report_path)}: {exc}") from None
    check_figure_paths(plots, html, protected=(report_path,))
    report = from_json(text)
    if compare is not None:
        import json

        from dismax_cli.paper import compare as compare_report
        from dismax_cli.paper import comparison_text, load_table

        comparison = compare_report(report, load_table(compare), table_name=str(compare))
        if output_format is OutputFormat.json:
            write_stdout(json.dumps(comparison.to_dict(), indent=2, allow_nan=False))
        else:
            write_stdout(comparison_text(comparison))
        return
    per_sample = None
    if plots is not None or html is not None:  # read (and check) before anything is written
        per_sample = report_samples(report, report_path, required=plots is not None)
    if output_format is OutputFormat.json:
        write_stdout(to_json(report))
    else:
        stdout_console().print(report_renderable(report), crop=False)
    write_figures(report, per_sample, plots=plots, html=html)
