"""``dismax train``: train one model and write its checkpoint every epoch.

Option declarations only import the light modules (:mod:`dismax_cli.cli.options`); the library
(torch) loads in the command's body.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from dismax_cli.cli import options as opt
from dismax_cli.cli.app import app
from dismax_cli.cli.checks import check_checkpoint_file, precheck_file_values, spec_checks
from dismax_cli.cli.common import OutputFormat, say, write_stdout
from dismax_cli.config import build_config, read_yaml_config, run_checks
from dismax_cli.errors import quote_value as q
from dismax_cli.fileio import CHECKPOINT_NAME, checkpoint_path

Method = Annotated[
    str | None,
    typer.Option("--method", parser=opt.METHOD, metavar="METHOD",
                 help=f"{', '.join(opt.METHOD_NAMES)} (default dismax)."),
]  # fmt: skip


def run_folder(value: Any) -> Path:
    """``--out`` of ``train``: an empty value (``Path('')`` is ``.``) is a usage error (exit 2)."""
    if isinstance(value, Path):
        return value
    if not str(value).strip():
        raise typer.BadParameter(
            f"{q(str(value))} is empty: name the run folder, e.g. --out runs/dismax"
        )
    return Path(value)


Out = Annotated[
    Path,
    typer.Option(
        "--out", metavar="DIR", parser=run_folder,
        help="Run folder for checkpoint.pt and train_log.jsonl.",
    ),
]  # fmt: skip
Resume = Annotated[
    bool,
    typer.Option("--resume", help="Continue the run in --out (a finished run: nothing to do)."),
]
#: Parameters of ``train`` that are no TrainConfig field.
COMMAND_ONLY = ("out", "config", "resume", "output_format", "quiet")


@app.command()
def train(
    ctx: typer.Context,
    dataset: opt.Dataset = None,
    test_dataset: opt.TestDataset = None,
    method: Method = None,
    model: opt.Model = None,
    epochs: opt.Epochs = None,
    out: Out = ...,  # type: ignore[assignment]
    seed: opt.Seed = None,
    fpr: opt.Fpr = None,
    config: opt.Config = None,
    resume: Resume = False,
    device: opt.Device = None,
    batch_size: opt.BatchSize = None,
    lr: opt.Lr = None,
    momentum: opt.Momentum = None,
    weight_decay: opt.WeightDecay = None,
    lr_decay: opt.LrDecay = None,
    entropic_scale: opt.EntropicScale = None,
    alpha: opt.Alpha = None,
    augment: opt.Augment = None,
    val_fraction: opt.ValFraction = None,
    split_seed: opt.SplitSeed = None,
    data_dir: opt.DataDir = None,
    sync_bn: opt.SyncBn = None,
    protocol: opt.Protocol = None,
    select: opt.Select = None,
    image_size: opt.ImageSize = None,
    decay_epochs: opt.DecayEpochs = None,
    stream: opt.Stream = None,
    output_format: opt.Format = OutputFormat.table,
    quiet: opt.Quiet = False,
) -> None:
    """Train one model (paper recipe by default) and write its checkpoint every epoch."""
    cli_values = {k: v for k, v in ctx.params.items() if k not in COMMAND_ONLY}
    from dismax_cli.output_check import check_run_folder

    check_run_folder(out, resume=resume)  # an unusable --out: exit 2 before anything loads
    cfg = train_config(cli_values, out=out, config=config, resume=resume)
    result = fit_with_progress(cfg, out, resume=resume, quiet=quiet)
    report_training(cfg, result, output_format)


def train_config(cli_values: dict[str, Any], *, out: Path, config: Path | None, resume: bool):
    """The run's :class:`~dismax_cli.engine.TrainConfig`: the resumed run's own settings, then
    the ``--config`` file, then the command line (``cli_values``, keyed by field).

    Raises:
        InvalidValueError: (exit 2, before torch loads) a bad value in the file or a spec.
    """
    file_values = read_yaml_config(config) if config is not None else {}
    # Bad values in the file answer before torch loads, like bad options do.
    precheck_file_values(file_values, config, {**opt.TRAINING_KNOBS, "method": opt.METHOD})
    specs = {"dataset": cli_values["dataset"], "test_dataset": cli_values["test_dataset"]}
    run_checks(spec_checks(), specs, file_values, config=config)  # malformed specs: exit 2 now

    from dismax_cli.engine import TrainConfig  # torch-free: a bad value answers at once

    run_values = {}
    if resume and (out / CHECKPOINT_NAME).exists():
        check_checkpoint_file(out)  # a folder or FIFO named checkpoint.pt: answer before torch
    if resume and checkpoint_path(out).is_file():
        from dismax_cli.engine import load_checkpoint

        # Resuming needs no options: the run's own settings come first, then the file, the CLI.
        run_values = load_checkpoint(out).meta.config.to_dict()
    return build_config(
        TrainConfig,
        cli_values,
        file_values,
        config=config,
        base_values=run_values,
        checks=spec_checks(),
    )


def fit_with_progress(cfg: Any, out: Path, *, resume: bool, quiet: bool) -> Any:
    """``engine.fit`` with the progress display; Ctrl-C says what was saved (exit 130)."""
    from dismax_cli.cli.progress import interrupted_train_message, progress_display
    from dismax_cli.engine import fit

    existed = out.exists()
    try:
        with progress_display(quiet=quiet) as display:
            epochs_text = f"{cfg.epochs} epoch{'' if cfg.epochs == 1 else 's'}"
            announce = (
                f"training {cfg.method} {cfg.model} on {cfg.dataset} ({epochs_text}) into {out}"
            )
            return fit(
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


def report_training(cfg: Any, result: Any, output_format: OutputFormat) -> None:
    """The JSON summary on stdout, or the summary lines on stderr and the checkpoint path."""
    from dismax_cli.engine import load_checkpoint

    selection = load_checkpoint(result.checkpoint).meta.selection
    if output_format is OutputFormat.json:
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
