"""The work of ``dismax benchmark`` (:mod:`dismax_cli.cli.benchmark`): check, configure, run,
write the report, its figures and the ``--require`` verdict.

Every check that needs no torch runs first (bad paths, config values, gates and specs answer at
once, exit 2 or 1); then the library runs the benchmark (:func:`dismax_cli.benchmark.
run_benchmark`) or one ``--shard``, with the progress display.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import typer

from dismax_cli.cli import options as opt
from dismax_cli.cli.checks import (
    check_shard_alone,
    precheck_file_values,
    precheck_gates,
    spec_checks,
    spec_files,
)
from dismax_cli.cli.common import EXIT_REQUIREMENT_FAILED, say, write_report_outputs
from dismax_cli.cli.figures import write_figures
from dismax_cli.config import InvalidValueError, build_config, read_yaml_config, run_checks
from dismax_cli.errors import quote_value as q
from dismax_cli.gates import measured_text
from dismax_cli.timing import timing_seconds

#: Parameters of ``benchmark`` that are no BenchmarkConfig field (command-line only).
COMMAND_ONLY = ("config", "output_format", "out", "shard", "plots", "html", "quiet")
#: Multi-value options: not given is ``None`` in the config, not an empty list.
LIST_KEYS = ("ood", "methods", "require", "scores")
#: Parsers of the config file's non-training keys (checked before torch loads).
FILE_PARSERS = {
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


def check_outputs(
    out: Path | None, command: dict[str, Any], cli_values: dict, file_values: dict
) -> list[Path]:
    """Refuse, before anything trains, outputs that cannot be written or would overwrite what
    the benchmark reads (its config file, dataset files and folders, the data dir's files, the
    run folders' checkpoints and logs) or another of its outputs (the report, its per-sample
    file, the plots folder and its plot names, the page) or be stdout under ``--format json``:
    :func:`~dismax_cli.output_check.check_output_plan`. Returns the reads (checked again when
    the files are written)."""
    from dismax_cli.data.registry import resolve_data_dir
    from dismax_cli.fileio import is_special_file
    from dismax_cli.output_check import (
        Target,
        check_output_plan,
        data_files,
        folder_files,
        run_folders,
        samples_target,
    )  # fmt: skip

    reads: list[Path] = [command["config"]] if command["config"] is not None else []
    for values in (cli_values, file_values):
        for key in ("dataset", "test_dataset", "ood"):
            reads.extend(spec_files(values.get(key) or []))
    runs_dir = cli_values.get("runs_dir") or file_values.get("runs_dir")
    data_dir = cli_values.get("data_dir") or file_values.get("data_dir")
    with contextlib.suppress(Exception):  # a bad data_dir answers later, with its own message
        reads.extend(data_files(resolve_data_dir(data_dir)))
    runs_dir = runs_dir if isinstance(runs_dir, str | Path) else None
    reads.extend(folder_files(run_folders(runs_dir)))
    targets: list[Target] = []
    if out is not None:
        targets.append(Target(out, "--out"))
        if not is_special_file(out):  # /dev/null, a FIFO: no per-sample file beside it
            targets.append(Target(samples_target(out), "--out's per-sample file", special=False))
    if command["plots"] is not None:
        targets.append(Target(command["plots"], "--plots", folder=True))
    if command["html"] is not None:
        targets.append(Target(command["html"], "--html"))
    json_out = "the JSON report (--format json)" if command["output_format"] == "json" else None
    check_output_plan(targets, reads, stdout_report=json_out)
    return reads


def run_benchmark_command(params: dict[str, Any]) -> None:
    """Run ``dismax benchmark`` with the command's parameters (Click's ``ctx.params``).

    Raises:
        typer.Exit: 3 when a ``--require`` fails, 130 on Ctrl-C, 143 on SIGTERM (after saying
            what is saved; files being written are rolled back).
        InvalidValueError, DismaxError, typer.BadParameter: a bad value or path (one line).
    """
    command = {key: params.pop(key) for key in COMMAND_ONLY}
    cli_values = {k: (v or None) if k in LIST_KEYS else v for k, v in params.items()}
    shard, out = command["shard"], command["out"]
    check_shard_alone(
        shard, out=out, require=cli_values["require"], plots=command["plots"], html=command["html"]
    )
    file_values = read_yaml_config(command["config"]) if command["config"] is not None else {}
    command["reads"] = check_outputs(out, command, cli_values, file_values)
    precheck(cli_values, file_values, command["config"])
    cfg = benchmark_config(cli_values, file_values, command["config"])
    from dismax_cli.output_check import terminate_cleanly

    with terminate_cleanly():  # SIGTERM unwinds as Ctrl-C does (no temp files left), exit 143
        outcome = execute(cfg, shard, quiet=command["quiet"])
        if shard is not None:
            say(outcome.line())
            return
        report, evidence = outcome
        finish(report, evidence, cfg, command)


def precheck(cli_values: dict[str, Any], file_values: dict[str, Any], config: Path | None) -> None:
    """Malformed file values, gates, labels and specs answer before torch loads (exit 2)."""
    timing_seconds(1.0)  # a bad DISMAX_TIMING_SECONDS, at once
    for key in (*LIST_KEYS, "dataset", "test_dataset"):
        value = file_values.get(key)
        items = value if isinstance(value, list) else [value]
        if value is not None and not all(isinstance(item, str) for item in items):
            what = "a name or a list of names" if key in LIST_KEYS else "one dataset spec"
            raise InvalidValueError(
                key, f"invalid value for key {q(key)} in config file {q(config)}: {q(value)} is "
                f"not {what} (text)"
            )  # fmt: skip
    precheck_file_values(file_values, config, {**opt.TRAINING_KNOBS, **FILE_PARSERS})
    precheck_gates(cli_values["require"], cli_values["ood"])
    as_list = [file_values.get(k) for k in ("require", "ood")]
    precheck_gates(
        *(v if isinstance(v, list) else None for v in as_list),
        source=f"config file {q(config)}",
    )
    keys = ("dataset", "test_dataset", "ood")
    run_checks(spec_checks(), {k: cli_values[k] for k in keys}, file_values, config=config)


def benchmark_config(
    cli_values: dict[str, Any], file_values: dict[str, Any], config: Path | None
) -> Any:
    """The :class:`~dismax_cli.benchmark.BenchmarkConfig`: file values, then the command line.

    The paper's names (LSUN, TinyImageNet) become the registry's (lsun_resize, tin_resize), in
    ``--ood`` and in the SET of ``--require`` alike, from the command line and from a config.
    """
    from dismax_cli.benchmark_config import BenchmarkConfig  # torch-free

    for values in (cli_values, file_values):
        _canonical_ood(values)
    labels = _ood_labels(cli_values, file_values, BenchmarkConfig.ood)
    for values in (cli_values, file_values):
        _canonical_requirements(values, labels)
    return build_config(
        BenchmarkConfig, cli_values, file_values, config=config, checks=spec_checks()
    )


def _canonical_ood(values: dict[str, Any]) -> None:
    from dismax_cli.data.registry import canonical_spec

    if isinstance(values.get("ood"), str):
        values["ood"] = [values["ood"]]
    if isinstance(values.get("ood"), list | tuple):
        values["ood"] = [canonical_spec(v) if isinstance(v, str) else v for v in values["ood"]]


def _ood_labels(cli_values: dict[str, Any], file_values: dict[str, Any], default: Any) -> list:
    """The OOD sets' labels (``--ood`` or the file's, else the default; the preset's)."""
    from dismax_cli.gates import split_label
    from dismax_cli.presets import PRESETS

    entries = cli_values["ood"] or file_values.get("ood") or default
    labels = [split_label(e)[0] for e in entries if isinstance(e, str)]
    preset = cli_values["ood_preset"] or file_values.get("ood_preset")
    if isinstance(preset, str) and preset in PRESETS:
        labels += [s.label for s in PRESETS[preset]]
    return labels


def _canonical_requirements(values: dict[str, Any], labels: list) -> None:
    from dismax_cli.data.registry import canonical_requirement

    if isinstance(values.get("require"), list | tuple):
        values["require"] = [
            canonical_requirement(v, labels) if isinstance(v, str) else v
            for v in values["require"]
        ]


def execute(cfg: Any, shard: Any, *, quiet: bool) -> Any:
    """Run the benchmark (``(report, evidence)``) or one shard (its summary) with progress;
    Ctrl-C says where the finished runs are saved and exits 130."""
    from dismax_cli.benchmark import BenchmarkProgress, benchmark_steps, default_runs_dir
    from dismax_cli.cli.progress import ProgressDisplay, interrupted_benchmark_message
    from dismax_cli.sharding import shard_steps

    steps = benchmark_steps(cfg) if shard is None else shard_steps(cfg, shard)
    display = ProgressDisplay(quiet=quiet, total_steps=steps)
    try:
        with display:
            progress = BenchmarkProgress(
                stage=display.step, train=display.train_callback, status=display.status
            )
            return _run(cfg, shard, progress)
    except KeyboardInterrupt as exc:
        from dismax_cli.output_check import Terminated

        runs = Path(cfg.runs_dir).expanduser() if cfg.runs_dir else default_runs_dir()
        say(
            interrupted_benchmark_message(runs, display.training),
            prefix="terminated:" if isinstance(exc, Terminated) else "interrupted:",
            prefix_style="bold red",
        )
        raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from None


def _run(cfg: Any, shard: Any, progress: Any) -> Any:
    # Looked up when called, so that a test can stand in for the library's functions.
    from dismax_cli import benchmark, sharding
    from dismax_cli.evidence import Evidence

    if shard is not None:
        return sharding.train_shard(cfg, shard, progress)
    evidence = Evidence()
    return benchmark.run_benchmark(cfg, progress, evidence=evidence), evidence


def finish(report: Any, evidence: Any, cfg: Any, command: dict[str, Any]) -> None:
    """Check ``--require``, write the report (``--out`` and stdout), its figures, the verdict.

    Raises:
        typer.Exit: 3 when a requirement fails (after everything is written).
    """
    from dismax_cli.benchmark import check_requirements
    from dismax_cli.engine import distributed
    from dismax_cli.evidence import per_sample_file
    from dismax_cli.fileio import is_special_file
    from dismax_cli.output_check import folder_files, real_path, run_folders, samples_target
    from dismax_cli.output_set import OutputSet
    from dismax_cli.reports import to_json

    report = check_requirements(report, cfg.require)
    if not distributed.is_main():  # under torchrun rank 0 writes the report and its files
        return
    out, plots, html = command["out"], command["plots"], command["html"]
    runs = folder_files(run_folders(cfg.runs_dir))  # the runs trained by this command too
    reads = [*command.get("reads", ()), *runs]
    outputs = OutputSet(reads=reads)  # the report, its samples, the figures: all or nothing
    if out is not None and not is_special_file(out):  # none beside /dev/null or a FIFO
        written = real_path(out) if out.is_symlink() else out  # a link: write to its target
        report, data = per_sample_file(report, evidence, written)
        outputs.add(samples_target(out), data, "--out's per-sample file", special=False)
    if out is not None:
        outputs.add(out, (to_json(report) + "\n").encode(), "--out")
    per_sample = evidence.per_sample() if plots is not None or html is not None else None
    write_figures(
        report, per_sample, plots=plots, html=html, outputs=outputs,
        then=lambda: write_report_outputs(report, out=None, output_format=command["output_format"]),
    )  # fmt: skip
    failed = [f"{r.text} (measured {measured_text(r.value, False)})"
              for r in report.requirements if not r.passed]
    if failed:
        say(
            "; ".join(failed),
            prefix=f"{len(failed)} requirement(s) failed:",
            prefix_style="bold red",
        )
        raise typer.Exit(EXIT_REQUIREMENT_FAILED)
    if cfg.require:
        say(f"all {len(cfg.require)} requirement(s) hold")
