"""``dismax train``, ``dismax calibrate`` and ``dismax score``.

Option declarations only import the light modules (:mod:`dismax_cli.cli.options`); the library
(torch) loads in each command's body.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import typer

from dismax_cli.cli import options as opt
from dismax_cli.cli.app import app
from dismax_cli.cli.common import (
    QUIET_OPTION,
    MultiValueCommand,
    Objective,
    OutputFormat,
    check_checkpoint_file,
    check_option_specs,
    check_writable,
    handle_errors,
    say,
    spec_checks,
    stdout_console,
    warn,
    write_report_outputs,
    write_stdout,
)
from dismax_cli.config import build_config, read_yaml_config, run_checks

DATA_DIR_HELP = opt.DATA_DIR_HELP


@app.command(cls=MultiValueCommand)
@handle_errors
def train(
    dataset: str = opt.DATASET,
    test_dataset: str = opt.TEST_DATASET,
    method: str = typer.Option(
        None,
        "--method",
        parser=opt.METHOD,
        metavar="METHOD",
        help=f"{', '.join(opt.METHOD_NAMES)} (default dismax).",
    ),
    model: str = opt.MODEL,
    epochs: int = opt.EPOCHS,
    out: Path = typer.Option(
        ..., "--out", metavar="DIR", help="Run folder for checkpoint.pt and train_log.jsonl."
    ),
    seed: int = opt.SEED,
    fpr: bool = opt.FPR,
    config: Path = opt.CONFIG,
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in --out (a finished run: nothing to do)."
    ),
    device: str = opt.DEVICE,
    batch_size: int = opt.BATCH_SIZE,
    lr: float = opt.LR,
    momentum: float = opt.MOMENTUM,
    weight_decay: float = opt.WEIGHT_DECAY,
    lr_decay: float = opt.LR_DECAY,
    entropic_scale: float = opt.ENTROPIC_SCALE,
    alpha: float = opt.ALPHA,
    augment: bool = opt.AUGMENT,
    val_fraction: float = opt.VAL_FRACTION,
    split_seed: int = opt.SPLIT_SEED,
    data_dir: str = opt.DATA_DIR,
    sync_bn: bool = opt.SYNC_BN,
    protocol: str = opt.PROTOCOL,
    select: str = opt.SELECT,
    image_size: int = opt.IMAGE_SIZE,
    decay_epochs: str = opt.DECAY_EPOCHS,
    stream: bool = opt.STREAM,
    output_format: OutputFormat = typer.Option(
        OutputFormat.table, "--format", help=opt.FORMAT_HELP
    ),
    quiet: bool = QUIET_OPTION,
) -> None:
    """Train one model (paper recipe by default) and write its checkpoint every epoch."""
    file_values = read_yaml_config(config) if config is not None else {}
    # Bad values in the file answer before torch loads, like bad options do.
    opt.precheck_file_values(file_values, config, {**opt.TRAINING_KNOBS, "method": opt.METHOD})
    specs = {"dataset": dataset, "test_dataset": test_dataset}
    run_checks(spec_checks(), specs, file_values, config=config)  # malformed specs: exit 2 now

    from dismax_cli.cli.progress import interrupted_train_message, progress_display
    from dismax_cli.engine import TrainConfig, checkpoint_path, fit, load_checkpoint

    run_values = {}
    if resume and checkpoint_path(out).is_file():
        # Resuming needs no options: the run's own settings come first, then the file, the CLI.
        run_values = load_checkpoint(out).meta.config.to_dict()
    cli_values = {
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
        "momentum": momentum,
        "weight_decay": weight_decay,
        "lr_decay": lr_decay,
        "entropic_scale": entropic_scale,
        "alpha": alpha,
        "augment": augment,
        "val_fraction": val_fraction,
        "split_seed": split_seed,
        "data_dir": data_dir,
        "sync_bn": sync_bn,
        "protocol": protocol,
        "select": select,
        "image_size": image_size,
        "decay_epochs": decay_epochs,
        "stream": stream,
    }
    cfg = build_config(
        TrainConfig,
        cli_values,
        file_values,
        config=config,
        base_values=run_values,
        checks=spec_checks(),
    )
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
    selection = load_checkpoint(result.checkpoint).meta.selection
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
        "protocol": cfg.protocol,
        "selection": selection,
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
    if selection is not None:
        split = "ID test" if selection["split"] == "test" else "validation"
        say(
            f"kept epoch {selection['epoch']}: best {split} accuracy "
            f"{selection['accuracy'] * 100:.1f}%"
            + ("; model selection saw the test set (protocol paper)" if split == "ID test" else "")
        )
    typer.echo(str(result.checkpoint))


@app.command()
@handle_errors
def calibrate(
    checkpoint: Path = opt.checkpoint_argument(),
    objective: Objective = typer.Option(Objective.ece, "--objective", help=opt.OBJECTIVE_HELP),
    protocol: str = typer.Option(
        None,
        "--protocol",
        parser=opt.PROTOCOL_CHOICE,
        metavar="honest|paper",
        help=(
            "Where T is fitted: honest = the run's validation split; paper = the ID test split "
            "(the reference's; the checkpoint then says the test set was seen). Default: the "
            "run's own protocol."
        ),
    ),
    calibration_optimizer: str = opt.CALIBRATION_OPTIMIZER,
    data_dir: str = opt.DATA_DIR,
    stream: bool = opt.STREAM_OVERRIDE,
    output_format: OutputFormat = typer.Option(
        OutputFormat.table, "--format", help=opt.FORMAT_HELP
    ),
    quiet: bool = QUIET_OPTION,
) -> None:
    """Fit the temperature on the run's validation split and store it in the checkpoint."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from dismax_cli.cli.progress import progress_display
    from dismax_cli.data.stream import stream_override
    from dismax_cli.engine import calibrate_checkpoint

    check_checkpoint_file(checkpoint)
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
        display.log(
            f"calibrated {checkpoint}: T = {result.temperature:.4f} fitted on "
            f"{result.n_val:,} {split_name(result.split)} images in {display.elapsed():.1f} s"
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
    where = split_name(result.split)
    caption = (
        f"fitted on {result.n_val:,} {where} images, objective {result.objective}, "
        f"optimizer {result.optimizer}"
        if not result.warning
        else f"no finite optimum on {result.n_val:,} {where} images: training T kept"
    )
    if result.split == "test":
        caption += "\nWARNING protocol paper: T was fitted on the ID test split (test set seen)"
    stdout_console().print(
        Group(Text("Temperature calibration", style="bold"), table, Text(caption, style="dim"))
    )


def split_name(split: str) -> str:
    """How a calibration split is named in messages: ``validation`` or ``ID test``."""
    return "ID test" if split == "test" else "validation"


@app.command(cls=MultiValueCommand)
@handle_errors
def score(
    checkpoint: Path = opt.checkpoint_argument(),
    ood: list[str] = typer.Option(..., "--ood", metavar="SET", help=opt.OOD_HELP),
    score_name: str = typer.Option(
        None,
        "--score",
        parser=opt.SCORE,
        metavar="SCORE",
        help=f"Score shown in the table: {', '.join(opt.SCORE_NAMES)} (default: the method's).",
    ),
    dump: Path = typer.Option(None, "--dump", help="Write per-sample scores to this .npz file."),
    scores: list[str] = opt.SCORES,
    fpr_convention: str = opt.FPR_CONVENTION_OPTION,
    out: Path = typer.Option(
        None, "--out", help="Write the JSON report to this file (atomically)."
    ),
    device: str = opt.DEVICE,
    data_dir: str = opt.DATA_DIR,
    stream: bool = opt.STREAM_OVERRIDE,
    output_format: OutputFormat = typer.Option(
        OutputFormat.table, "--format", help=opt.FORMAT_HELP
    ),
    quiet: bool = QUIET_OPTION,
) -> None:
    """Evaluate a checkpoint: ID accuracy, NLL, ECE and OOD detection metrics per set."""
    check_option_specs("--ood", ood, labelled=True)  # before torch loads: a fast usage error
    from dismax_cli.benchmark import BenchmarkProgress, score_checkpoint, score_steps
    from dismax_cli.cli.progress import progress_display
    from dismax_cli.data.registry import canonical_spec
    from dismax_cli.data.stream import stream_override
    from dismax_cli.engine import LOG_NAME, checkpoint_path

    ood = [canonical_spec(entry) for entry in ood]
    check_checkpoint_file(checkpoint)
    ckpt = checkpoint_path(checkpoint)
    run_files = (ckpt, ckpt.parent / LOG_NAME)
    check_writable(dump, "--dump", protected=run_files)
    check_writable(out, "--out", protected=(*run_files, *((dump,) if dump else ())))
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
