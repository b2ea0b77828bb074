"""``dismax benchmark`` (run the comparison) and ``dismax benchmark show`` (re-render a report)."""

from __future__ import annotations

from pathlib import Path

import typer

from dismax_cli.benchmark import (
    BenchmarkConfig,
    BenchmarkProgress,
    benchmark_steps,
    check_requirements,
    default_runs_dir,
    run_benchmark,
)
from dismax_cli.cli.app import app
from dismax_cli.cli.common import (
    EXIT_REQUIREMENT_FAILED,
    QUIET_OPTION,
    MultiValueGroup,
    OutputFormat,
    check_writable,
    handle_errors,
    say,
    stdout_console,
    write_report_outputs,
    write_stdout,
)
from dismax_cli.cli.progress import ProgressDisplay, interrupted_benchmark_message
from dismax_cli.config import merge_options, read_yaml_config
from dismax_cli.errors import DismaxError
from dismax_cli.render import report_renderable
from dismax_cli.reports import from_json, to_json

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
    config: Path = typer.Option(
        None, "--config", help="YAML file of benchmark options (CLI options override it)."
    ),
    dataset: str = typer.Option(None, "--dataset", help="ID dataset spec (default digits[0-5])."),
    test_dataset: str = typer.Option(
        None, "--test-dataset", help="Separate ID test set (npz:/imagefolder:)."
    ),
    ood: list[str] = typer.Option(
        None, "--ood", help="OOD sets: --ood SET [SET ...] (default digits[6-9] uniform)."
    ),
    methods: list[str] = typer.Option(
        None, "--methods", help="Any of softmax isomax_plus dismax ensemble (default all)."
    ),
    model: str = typer.Option(None, "--model", help="Backbone for every method (default convnet)."),
    epochs: int = typer.Option(None, "--epochs", help="Epochs per run (default 20)."),
    seeds: int = typer.Option(
        None, "--seeds", help="Number of seeds; >1 reports mean ± sample std."
    ),
    ensemble_size: int = typer.Option(
        None, "--ensemble-size", help="SoftMax members of the deep ensemble (default 3)."
    ),
    runs_dir: str = typer.Option(
        None,
        "--runs-dir",
        help="Where runs are trained and reused (default $DISMAX_RUNS_DIR or the user cache).",
    ),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda or mps."),
    data_dir: str = typer.Option(
        None, "--data-dir", help="Dataset folder (default $DISMAX_DATA_DIR or the user cache)."
    ),
    require: list[str] = typer.Option(
        None,
        "--require",
        help=(
            "CI gate, repeatable: METHOD:METRIC:SET>=VALUE (SET 'id' for ACC/NLL/ECE). "
            "Exit 3 if any fails."
        ),
    ),
    output_format: OutputFormat = typer.Option(
        OutputFormat.table, "--format", help="table or json (JSON only on stdout)."
    ),
    out: Path = typer.Option(
        None, "--out", help="Also write the JSON report to this file (atomically)."
    ),
    quiet: bool = QUIET_OPTION,
) -> None:
    """Run the benchmark (see ``dismax benchmark --help``)."""
    if ctx.invoked_subcommand is not None:
        return
    check_writable(out, "--out")
    file_values = read_yaml_config(config) if config is not None else {}
    cli_values = {
        "dataset": dataset,
        "test_dataset": test_dataset,
        "ood": ood or None,
        "methods": methods or None,
        "model": model,
        "epochs": epochs,
        "seeds": seeds,
        "ensemble_size": ensemble_size,
        "runs_dir": runs_dir,
        "device": device,
        "data_dir": data_dir,
        "require": require or None,
    }
    cfg = BenchmarkConfig.from_dict(merge_options(file_values, cli_values)).validate()
    display = ProgressDisplay(quiet=quiet, total_steps=benchmark_steps(cfg))
    try:
        with display:
            progress = BenchmarkProgress(
                stage=display.step, train=display.train_callback, status=display.status
            )
            report = run_benchmark(cfg, progress)
    except KeyboardInterrupt:
        runs = Path(cfg.runs_dir).expanduser() if cfg.runs_dir else default_runs_dir()
        say(
            interrupted_benchmark_message(runs, display.training),
            prefix="interrupted:",
            prefix_style="bold red",
        )
        raise typer.Exit(130) from None
    report = check_requirements(report, cfg.require)
    write_report_outputs(report, out=out, output_format=output_format)
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
    report_path: Path = typer.Argument(..., help="A JSON report written by --out."),
    output_format: OutputFormat = typer.Option(
        OutputFormat.table, "--format", help="table or json."
    ),
) -> None:
    """Re-render a saved benchmark or score report."""
    if not report_path.is_file():
        raise DismaxError(
            f"report {str(report_path)!r} does not exist: pass a file written by --out"
        )
    try:
        text = report_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DismaxError(f"cannot read report {str(report_path)!r}: {exc}") from None
    report = from_json(text)
    if output_format is OutputFormat.json:
        write_stdout(to_json(report))
    else:
        stdout_console().print(report_renderable(report))
