"""``dismax train``, ``dismax calibrate`` and ``dismax score``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from dismax_cli.benchmark import BenchmarkProgress, score_checkpoint, score_steps
from dismax_cli.cli.app import app
from dismax_cli.cli.common import (
    QUIET_OPTION,
    MultiValueCommand,
    Objective,
    OutputFormat,
    check_writable,
    handle_errors,
    say,
    stdout_console,
    warn,
    write_report_outputs,
    write_stdout,
)
from dismax_cli.cli.progress import interrupted_train_message, progress_display
from dismax_cli.config import merge_options, read_yaml_config
from dismax_cli.training import (
    LOG_NAME,
    TrainConfig,
    calibrate_checkpoint,
    checkpoint_path,
    fit,
    load_checkpoint,
)

DATA_DIR_HELP = "Dataset folder (default: $DISMAX_DATA_DIR or the per-user cache)."


@app.command(cls=MultiValueCommand)
@handle_errors
def train(
    dataset: str = typer.Option(
        None, "--dataset", help="ID dataset spec, e.g. digits[0-5], cifar10, npz:PATH."
    ),
    test_dataset: str = typer.Option(
        None, "--test-dataset", help="Separate test set (for npz:/imagefolder: sources)."
    ),
    method: str = typer.Option(
        None, "--method", help="softmax, isomax_plus or dismax (default dismax)."
    ),
    model: str = typer.Option(
        None, "--model", help="Backbone: convnet, resnet18, resnet34, densenet_bc_100, wrn_28_10."
    ),
    epochs: int = typer.Option(None, "--epochs", help="Number of epochs (default 10)."),
    out: Path = typer.Option(
        ..., "--out", help="Run folder for checkpoint.pt and train_log.jsonl."
    ),
    seed: int = typer.Option(
        None, "--seed", help="Seed of weights, batches, augmentation and FPR."
    ),
    fpr: bool = typer.Option(
        None,
        "--fpr/--no-fpr",
        help="Fractional probability regularization (DisMax; on by default).",
    ),
    config: Path = typer.Option(
        None, "--config", help="YAML file of training options (CLI options override it)."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in --out (a finished run: nothing to do)."
    ),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda or mps."),
    batch_size: int = typer.Option(None, "--batch-size", help="Training batch size (default 64)."),
    lr: float = typer.Option(None, "--lr", help="Initial learning rate (default 0.1)."),
    data_dir: str = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    output_format: OutputFormat = typer.Option(
        OutputFormat.table, "--format", help="table or json (stdout)."
    ),
    quiet: bool = QUIET_OPTION,
) -> None:
    """Train one model (paper recipe by default) and write its checkpoint every epoch."""
    file_values = read_yaml_config(config) if config is not None else {}
    if resume and checkpoint_path(out).is_file():
        # Resuming needs no options: the run's own settings come first, then the file, the CLI.
        file_values = {**load_checkpoint(out)["config"], **file_values}
    values = merge_options(
        file_values,
        {
            "dataset": dataset,
            "test_dataset": test_dataset,
            "method": method,
            "model": model,
            "epochs": epochs,
            "seed": seed,
            "fpr": fpr,
            "device": device,
            "batch_size": batch_size,
            "lr": lr,
            "data_dir": data_dir,
        },
    )
    cfg = TrainConfig.from_dict(values).validate()
    existed = out.exists()
    try:
        with progress_display(quiet=quiet) as display:
            epochs_text = f"{cfg.epochs} epoch{'' if cfg.epochs == 1 else 's'}"
            announce = (
                f"training {cfg.method} {cfg.model} on {cfg.dataset} ({epochs_text}) into {out}"
            )
            result = fit(
                cfg,
                out,
                resume=resume,
                progress=display.train_callback(f"{cfg.method} {cfg.model}", announce=announce),
            )
    except KeyboardInterrupt:
        say(
            interrupted_train_message(out, created=not existed),
            prefix="interrupted:",
            prefix_style="bold red",
        )
        raise typer.Exit(130) from None
    summary = {
        "run_dir": str(result.run_dir),
        "checkpoint": str(result.checkpoint),
        "method": cfg.method,
        "model": cfg.model,
        "dataset": cfg.dataset,
        "epochs_run": result.epochs_run,
        "already_finished": result.already_finished,
        "train_s": result.train_seconds,
        "final_epoch": None if not result.history else vars(result.history[-1]),
    }
    if output_format is OutputFormat.json:
        write_stdout(json.dumps(summary, indent=2))
        return
    if result.already_finished:
        say(f"{result.run_dir} is already finished: nothing to do")
    last = result.history[-1] if result.history else None
    if last is not None:
        say(
            f"trained {cfg.method} on {cfg.dataset}: epoch {last.epoch}, loss {last.loss:.4f}, "
            f"train accuracy {last.accuracy * 100:.1f}%"
        )
    typer.echo(str(result.checkpoint))


@app.command()
@handle_errors
def calibrate(
    checkpoint: Path = typer.Argument(..., help="A run folder or its checkpoint.pt."),
    objective: Objective = typer.Option(
        Objective.ece, "--objective", help="ece (the paper's) or nll (Guo et al.)."
    ),
    data_dir: str = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    output_format: OutputFormat = typer.Option(
        OutputFormat.table, "--format", help="table or json (stdout)."
    ),
    quiet: bool = QUIET_OPTION,
) -> None:
    """Fit the temperature on the run's validation split and store it in the checkpoint."""
    with progress_display(quiet=quiet) as display:
        # A status only: a run refused (unfinished, changed data) prints just its error line.
        display.status(f"calibrating {checkpoint} (objective {objective.value})")
        result = calibrate_checkpoint(checkpoint, objective=objective.value, data_dir=data_dir)
        display.log(
            f"calibrated {checkpoint}: T = {result.temperature:.4f} fitted on "
            f"{result.n_val:,} validation images in {display.elapsed():.1f} s"
        )
    if output_format is OutputFormat.json:
        write_stdout(json.dumps(result.to_dict(), indent=2))
        return
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
    if result.warning:
        warn(result.warning)
    caption = f"fitted on {result.n_val:,} validation images, objective {result.objective}"
    stdout_console().print(
        Group(Text("Temperature calibration", style="bold"), table, Text(caption, style="dim"))
    )


@app.command(cls=MultiValueCommand)
@handle_errors
def score(
    checkpoint: Path = typer.Argument(..., help="A run folder or its checkpoint.pt."),
    ood: list[str] = typer.Option(..., "--ood", help="OOD sets: --ood SET [SET ...]."),
    score_name: str = typer.Option(
        None, "--score", help="Score shown in the table (default: the method's)."
    ),
    dump: Path = typer.Option(None, "--dump", help="Write per-sample scores to this .npz file."),
    out: Path = typer.Option(
        None, "--out", help="Write the JSON report to this file (atomically)."
    ),
    device: str = typer.Option("cpu", "--device", help="auto, cpu, cuda or mps."),
    data_dir: str = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    output_format: OutputFormat = typer.Option(
        OutputFormat.table, "--format", help="table or json (stdout)."
    ),
    quiet: bool = QUIET_OPTION,
) -> None:
    """Evaluate a checkpoint: ID accuracy, NLL, ECE and OOD detection metrics per set."""
    ckpt = checkpoint_path(checkpoint)
    run_files = (ckpt, ckpt.parent / LOG_NAME)
    check_writable(dump, "--dump", protected=run_files)
    check_writable(out, "--out", protected=(*run_files, *((dump,) if dump else ())))
    with progress_display(quiet=quiet, total_steps=score_steps(len(ood))) as display:
        report = score_checkpoint(
            checkpoint,
            ood,
            data_dir=data_dir,
            device=device,
            score=score_name,
            dump=dump,
            progress=BenchmarkProgress(stage=display.log, status=display.status),
        )
    write_report_outputs(report, out=out, output_format=output_format)
