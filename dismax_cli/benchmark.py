"""The benchmark: DisMax against SoftMax, IsoMax+ and deep ensembles on the same data and backbone.

For every seed, each method is trained (or its finished run reused from the runs folder),
calibrated on the validation split, and evaluated on the ID test split and every OOD set with
every applicable score; inference throughput is measured on the same images for every method.
Protocol: METHOD.md §3–§8.

This module runs it (:func:`run_benchmark`); the config, the plan and the scoring live in
:mod:`dismax_cli.benchmark_config`, :mod:`dismax_cli.benchmark_plan` and
:mod:`dismax_cli.benchmark_scoring`, whose public names it re-exports.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dismax_cli import __version__
from dismax_cli.benchmark_config import (
    BENCHMARK_METHODS,
    DEFAULT_METHODS,
    DEFAULT_OOD,
    BenchmarkConfig,
)
from dismax_cli.benchmark_plan import (
    BenchmarkProgress,
    PlannedRun,
    benchmark_steps,
    default_runs_dir,
    planned_runs,
    run_data_hash,
    run_dir_for,
    score_steps,
)
from dismax_cli.benchmark_scoring import (
    SeedResult,
    evaluate,
    load_ood_sets,
    method_result,
    run_protocol,
    score_checkpoint,
    scored_outputs,
    synthetic_notes,
    train_seconds,
    with_scores,
    write_scores_npz,
)
from dismax_cli.core.ensemble import predictive_log_probs
from dismax_cli.core.methods import BASELINE_METHOD, get_method
from dismax_cli.data import ImageSet
from dismax_cli.data.presence import check_sets_present
from dismax_cli.data.stream import streaming
from dismax_cli.detection import DetectorStage
from dismax_cli.engine import (
    ModelBundle,
    RunData,
    TrainConfig,
    calibrate_bundle,
    distributed,
    fit,
    fit_temperature_noted,
    load_bundle,
    load_checkpoint,
    load_run_data,
    predict_images,
)
from dismax_cli.engine.lock import RunFolderBusy
from dismax_cli.engine.streaming import pixels_of
from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q
from dismax_cli.evaluation import dataset_record, environment, measure_throughputs
from dismax_cli.evidence import Evidence
from dismax_cli.gates import (  # noqa: F401  (re-exported: the benchmark's public names)
    Requirement,
    check_ood_labels,
    check_requirements,
    parse_requirements,
    split_label,
)
from dismax_cli.presets import count_notes
from dismax_cli.presets import groups as preset_groups
from dismax_cli.protocol import protocol_record
from dismax_cli.reports import Report, conventions_for
from dismax_cli.score_names import shown_scores

#: Images used to time inference for every method.
THROUGHPUT_IMAGES = 1024


def _train_or_reuse(
    config: TrainConfig,
    runs_dir: Path,
    data: RunData,
    data_hash: str,
    progress: BenchmarkProgress,
) -> tuple[Path, bool]:
    """Train the run of ``config`` in its folder (resuming), or reuse it when finished.

    Returns:
        ``(run folder, reused)``.

    Raises:
        DismaxError: for a damaged run folder (naming it and the fix) or a failed training.
        RunFolderBusy: when another job holds the folder's lock.
    """
    run_dir = run_dir_for(runs_dir, config, data_hash)
    ckpt = run_dir / "checkpoint.pt"
    try:
        finished = ckpt.exists() and load_checkpoint(ckpt).meta.finished
    except DismaxError as exc:
        raise DismaxError(
            f"{exc}; the benchmark cannot reuse or resume it: delete the folder {q(run_dir)} "
            "and run again to retrain it"
        ) from None
    if finished:
        progress.say(f"reusing {config.method} seed {config.seed} from {run_dir}")
        return run_dir, True
    epochs = f"{config.epochs} epoch{'' if config.epochs == 1 else 's'}"
    progress.say(f"training {config.method} seed {config.seed} ({epochs})")
    callback = progress.train(f"{config.method} s{config.seed}") if progress.train else None
    try:
        fit(config, run_dir, resume=True, progress=callback, data=data)
    except RunFolderBusy:
        raise RunFolderBusy(
            f"another job is training {config.method} seed {config.seed} into {q(run_dir)}: "
            "wait for it (e.g. the --shard jobs) to finish, then run the benchmark again",
            run_dir,
        ) from None
    return run_dir, False


def _calibrate_ensemble(
    members: Sequence[ModelBundle],
    data: RunData,
    objective: str,
    *,
    fallback: float,
    optimizer: str = "grid",
) -> tuple[float, str | None]:
    """One temperature for the ensemble, fitted on log p̄ of the validation split (METHOD.md §4)."""
    member_logits = torch.stack([predict_images(b, data.val.images) for b in members])
    assert data.val.labels is not None
    return fit_temperature_noted(
        predictive_log_probs(member_logits),
        data.val.labels,
        objective=objective,
        fallback=fallback,
        optimizer=optimizer,
        split=data.calibration_split,
    )


@dataclass
class _Bench:
    """What every seed of one :func:`run_benchmark` call shares, and what it collects."""

    config: BenchmarkConfig
    runs_dir: Path
    data: RunData
    data_hash: str
    oods: dict[str, ImageSet]
    progress: BenchmarkProgress
    evidence: Evidence
    per_method: dict[str, list[SeedResult]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    softmax_ref: list[float] = field(default_factory=list)  # the efficiency reference per seed
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def train(self, config: TrainConfig) -> tuple[Path, bool]:
        return _train_or_reuse(config, self.runs_dir, self.data, self.data_hash, self.progress)


def _train_seed(bench: _Bench, seed: int) -> tuple[dict[str, list[Path]], dict[str, bool]]:
    """Step 1 of a seed: train or reuse every run it needs (ensembles: member 0 is the member
    method's own run, member m trains with seed ``seed + 1000 m``)."""
    config = bench.config
    run_dirs: dict[str, list[Path]] = {}
    reused: dict[str, bool] = {}
    for method in config.trained_methods():
        d, r = bench.train(config.train_config(method, seed))
        run_dirs[method], reused[method] = [d], r
    for method in config.methods:
        member_method = get_method(method).members_of
        if member_method is None:
            continue
        members, all_reused = list(run_dirs[member_method]), reused[member_method]
        for m in range(1, config.ensemble_size):
            d, r = bench.train(config.train_config(member_method, seed + 1000 * m))
            members.append(d)
            all_reused = all_reused and r
        run_dirs[method], reused[method] = members, all_reused
    return run_dirs, reused


def _calibrate_seed(
    bench: _Bench, seed: int, run_dirs: dict[str, list[Path]]
) -> tuple[dict[str, list[ModelBundle]], dict[str, float]]:
    """Step 2 of a seed: load every run once and fit each method's temperature (METHOD.md §4)."""
    config, data = bench.config, bench.data
    bundles: dict[str, list[ModelBundle]] = {}
    temperatures: dict[str, float] = {}
    loaded: dict[Path, ModelBundle] = {}  # one model object per run (SoftMax = member 0)
    for method, dirs in run_dirs.items():
        bench.progress.say(f"calibrating {method} seed {seed}")
        for d in dirs:
            if d not in loaded:
                loaded[d] = load_bundle(d, device=config.train.device)
        group = bundles[method] = [loaded[d] for d in dirs]
        bench.device = group[0].device
        spec = get_method(method)
        if spec.members_of is not None:
            temperatures[method], warning = _calibrate_ensemble(
                group, data, config.objective, optimizer=config.optimizer,
                fallback=spec.training_temperature(config.train.entropic_scale),
            )  # fmt: skip
        else:
            calibration = calibrate_bundle(
                group[0], data.val, objective=config.objective, optimizer=config.optimizer,
                split=data.calibration_split,
            )  # fmt: skip
            temperatures[method], warning = calibration.temperature, calibration.warning
        if warning:
            bench.notes.append(f"calibration of {method} (seed {seed}): {warning}")
    return bundles, temperatures


def _prepare_detectors(
    stage: DetectorStage,
    config: BenchmarkConfig,
    bundles: dict[str, list[ModelBundle]],
    run_dirs: dict[str, list[Path]],
    data: RunData,
    timing_images: torch.Tensor,
    progress: BenchmarkProgress,
) -> dict[str, dict[str, float]]:
    """Fit every method's ``--scores`` detectors on the training split; time every score."""
    if not config.scores:
        return {}
    for method in config.methods:
        progress.now(f"fitting the detectors of {method} on the training split")
        stage.prepare(method, bundles[method], data.train, run_dirs[method][0])
    progress.now(f"timing {len(config.methods)} method(s) with every score")
    shown = {m: config.method_scores()[m] for m in config.methods}
    shown = {m: shown_scores(config.scores, s) for m, s in shown.items()}
    groups = {m: bundles[m] for m in config.methods}
    return stage.costs(groups, shown, timing_images, baseline=(BASELINE_METHOD, "msp"))


def _score_seed(
    bench: _Bench,
    seed: int,
    run_dirs: dict[str, list[Path]],
    reused: dict[str, bool],
    bundles: dict[str, list[ModelBundle]],
    temperatures: dict[str, float],
) -> None:
    """Steps 3 and 4 of a seed: time every method on the same images (SoftMax is the
    reference), then score each on the ID test split and every OOD set."""
    config, data, oods = bench.config, bench.data, bench.oods
    timing_images = pixels_of(data.test.images[:THROUGHPUT_IMAGES])
    bench.progress.say(
        f"timing inference of {len(bundles)} model(s) on {len(timing_images):,} test images"
    )
    stage = DetectorStage(config.scores)
    with distributed.local_only():  # timed per rank: no collectives (rank 0 reports)
        throughput = measure_throughputs(bundles, timing_images)
        costs = _prepare_detectors(
            stage, config, bundles, run_dirs, data, timing_images, bench.progress
        )
    logits_cache: dict[tuple[int, int], torch.Tensor] = {}
    for method in config.methods:
        bench.progress.say(
            f"scoring {method} seed {seed} on {len(data.test):,} test images and "
            f"{len(oods)} OOD set(s)"
        )
        outputs = scored_outputs(stage, method, bundles[method], data, oods, logits_cache)
        before, after, ood = evaluate(
            temperatures[method], data, oods, outputs, config.fpr_convention
        )
        bench.evidence.add(
            method, seed, outputs, temperatures[method], data.test.labels,
            get_method(method).default_score,
        )  # fmt: skip
        bench.per_method[method].append(SeedResult(
            temperature=temperatures[method], id_before=before, id_after=after, ood=ood,
            n_id=len(data.test), n_ood={s: len(o) for s, o in oods.items()},
            throughput=throughput[method], train_s=train_seconds(run_dirs[method]),
            runs=[str(d) for d in run_dirs[method]], reused=reused[method],
            score_efficiency=costs.get(method, {}),
        ))  # fmt: skip
    bench.softmax_ref.append(throughput.get(BASELINE_METHOD, float("nan")))


def _report(bench: _Bench, seeds: list[int], base: TrainConfig) -> Report:
    """The benchmark's report: one row per method over ``seeds``, datasets, notes, protocol."""
    config, data, oods = bench.config, bench.data, bench.oods
    ood_groups = preset_groups(config.ood_preset, list(oods))
    methods = tuple(
        with_scores(
            method_result(m, bench.per_method[m], seeds, bench.softmax_ref, config.ensemble_size),
            bench.per_method[m],
            config.scores,
            ood_groups,
        )
        for m in config.methods
    )
    datasets = (
        dataset_record("train", data.train),
        # Under the paper protocol the calibration split is the test split itself.
        *((dataset_record("val", data.val),) if data.calibration_split == "val" else ()),
        dataset_record("test", data.test),
        *(dataset_record("ood", o, name=label) for label, o in oods.items()),
    )
    counts = count_notes(config.ood_preset, {label: len(o) for label, o in oods.items()})
    return Report(
        kind="benchmark",
        tool_version=__version__,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        config={**config.to_dict(), "runs_dir": str(bench.runs_dir)},
        environment=environment(bench.device),
        datasets=datasets,
        methods=methods,
        notes=tuple(synthetic_notes(oods) + counts + bench.notes),
        conventions=conventions_for(config.fpr_convention),
        ood_groups=ood_groups,
        protocol=protocol_record(
            training=base.protocol, selection=base.selection, optimizer=config.optimizer,
            calibration_split=data.calibration_split, val_fraction=base.val_fraction,
        ),  # fmt: skip
    )


def run_benchmark(
    config: BenchmarkConfig,
    progress: BenchmarkProgress | None = None,
    *,
    evidence: Evidence | None = None,
) -> Report:
    """Train (or reuse), calibrate and evaluate every method; return the report.

    The report holds reliability bins and (``config.bootstrap`` > 0) bootstrap intervals
    (:mod:`dismax_cli.evidence`); pass ``evidence`` to keep the per-sample outputs as well.

    Raises:
        DismaxError: for invalid settings, datasets that cannot be loaded, or failed training.
    """
    progress = progress or BenchmarkProgress()
    config = config.validate()
    runs_dir = Path(config.runs_dir).expanduser() if config.runs_dir else default_runs_dir()
    base = config.train_config(BASELINE_METHOD, config.train.seed)
    check_sets_present(  # offline: every missing set named at once, the ID set's too
        base.dataset, config.ood, test_dataset=base.test_dataset, data_dir=base.data_dir
    )
    progress.say(f"loading {config.train.dataset} and {len(config.ood)} OOD set(s)")
    data = load_run_data(base)
    with streaming(base.stream):  # OOD folders stream like the ID data (README "Streaming")
        oods = load_ood_sets(config.ood, like=data.test, data_dir=config.train.data_dir)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DismaxError(f"cannot create runs folder {q(runs_dir)}: {exc.strerror}") from None
    bench = _Bench(
        config, runs_dir, data, run_data_hash(data), oods, progress,
        Evidence() if evidence is None else evidence,
        per_method={m: [] for m in config.methods},
    )  # fmt: skip
    seeds = [config.train.seed + k for k in range(config.seeds)]
    for seed in seeds:
        run_dirs, reused = _train_seed(bench, seed)
        bundles, temperatures = _calibrate_seed(bench, seed, run_dirs)
        _score_seed(bench, seed, run_dirs, reused, bundles, temperatures)
    report = _report(bench, seeds, base)
    return bench.evidence.finish(
        report, bootstrap=config.bootstrap, baseline=BASELINE_METHOD, status=progress.now,
        fpr_convention=config.fpr_convention,
    )


__all__ = [
    "BENCHMARK_METHODS",
    "DEFAULT_METHODS",
    "DEFAULT_OOD",
    "THROUGHPUT_IMAGES",
    "BenchmarkConfig",
    "BenchmarkProgress",
    "PlannedRun",
    "Requirement",
    "benchmark_steps",
    "check_requirements",
    "default_runs_dir",
    "load_ood_sets",
    "parse_requirements",
    "planned_runs",
    "run_benchmark",
    "run_data_hash",
    "run_dir_for",
    "run_protocol",
    "score_checkpoint",
    "score_steps",
    "write_scores_npz",
]
