"""The benchmark: DisMax against SoftMax, IsoMax+ and deep ensembles on the same data and backbone.

For every seed, each method is trained (or its finished run reused from the runs folder),
calibrated on the validation split, and evaluated on the ID test split and every OOD set with
every applicable score; inference throughput is measured on the same images for every method.
Protocol: METHOD.md §3–§8.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dismax_cli import __version__
from dismax_cli.config import InvalidValueError, check_device_name, check_types
from dismax_cli.core.ensemble import predictive_log_probs
from dismax_cli.core.methods import (
    BASELINE_METHOD,
    benchmark_methods,
    default_benchmark_methods,
    get_method,
)
from dismax_cli.core.scores import SCORES
from dismax_cli.data import ImageSet, check_disjoint, load_ood
from dismax_cli.data.stream import streaming
from dismax_cli.engine import (
    LOG_NAME,
    ModelBundle,
    ProgressCallback,
    RunData,
    TrainConfig,
    calibrate_bundle,
    fit,
    fit_temperature_noted,
    load_bundle,
    load_checkpoint,
    load_run_data,
    predict_images,
    read_train_log,
    rebuild_run_data,
)
from dismax_cli.engine.streaming import pixels_of
from dismax_cli.errors import DismaxError
from dismax_cli.evaluation import (
    Outputs,
    dataset_record,
    environment,
    id_metrics,
    measure_throughputs,
    model_outputs,
    ood_metrics,
    probs_at,
)
from dismax_cli.fileio import atomic_write
from dismax_cli.gates import (  # noqa: F401  (re-exported: the benchmark's public names)
    Requirement,
    check_ood_labels,
    check_requirements,
    parse_requirements,
    split_label,
)
from dismax_cli.models import list_backbones
from dismax_cli.models.external import check_model_name
from dismax_cli.reports import (
    MethodResult,
    OODResult,
    Report,
    Stat,
)

#: Every method registered at import that a benchmark can compare (``benchmark_methods()``).
BENCHMARK_METHODS = tuple(benchmark_methods())
#: What a benchmark compares when no methods are given.
DEFAULT_METHODS = tuple(default_benchmark_methods())
DEFAULT_OOD = ("digits[6-9]", "uniform")
#: Images used to time inference for every method.
THROUGHPUT_IMAGES = 1024


@dataclass(frozen=True)
class BenchmarkConfig:
    """A benchmark run (the keys of ``dismax benchmark`` and of ``benchmarks/configs/*.yaml``).

    Training keys mean what they mean in :class:`~dismax_cli.engine.TrainConfig`; ``seeds`` is
    the number of seeds (``seed``, ``seed + 1``, ...), ``ensemble_size`` the number of members
    of each deep ensemble (a method with ``members_of``, e.g. ``ensemble`` of SoftMax runs: member
    m trained with seed ``seed + 1000 m``; member 0 is the member method's own run). What each
    method is comes from the methods registry (:mod:`dismax_cli.core.methods`).
    """

    dataset: str = "digits[0-5]"
    test_dataset: str | None = None
    ood: tuple[str, ...] = DEFAULT_OOD
    methods: tuple[str, ...] = DEFAULT_METHODS
    model: str = "convnet"
    epochs: int = 20
    seeds: int = 1
    seed: int = 0
    ensemble_size: int = 3
    runs_dir: str | None = None
    device: str = "auto"
    data_dir: str | None = None
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_decay: float = 0.1
    entropic_scale: float = 10.0
    alpha: float = 1.0
    fpr: bool | None = None
    augment: bool | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    objective: str = "ece"
    require: tuple[str, ...] = ()
    image_size: int | None = None
    decay_epochs: tuple[int, ...] | None = None
    stream: bool | None = None

    def validate(self) -> BenchmarkConfig:
        """Return self after checking every value (before anything trains)."""
        known = benchmark_methods()
        if not self.methods:
            raise InvalidValueError("methods", f"no methods given: choose from {', '.join(known)}")
        for m in self.methods:
            if m not in known:
                raise InvalidValueError(
                    "methods", f"unknown method {m!r}: choose from {', '.join(known)}"
                )
        if len(set(self.methods)) != len(self.methods):
            raise InvalidValueError(
                "methods", f"methods {list(self.methods)} name one method twice: list each once"
            )
        check_ood_labels(self.ood)
        check_model_name(self.model, list_backbones())
        for name in ("seeds", "ensemble_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidValueError(
                    name, f"{name}={value!r} is invalid: use an integer of at least 1"
                )
        if any(get_method(m).members_of for m in self.methods) and self.ensemble_size < 2:
            raise InvalidValueError(
                "ensemble_size",
                f"ensemble_size={self.ensemble_size} is too small: a deep ensemble needs at "
                "least 2 members",
            )
        if self.objective not in ("ece", "nll"):
            raise InvalidValueError(
                "objective", f"objective {self.objective!r} is invalid: choose ece or nll"
            )
        check_device_name(self.device)
        self.train_config(BASELINE_METHOD, self.seed).validate()
        for method in self.trained_methods():
            self.train_config(method, self.seed).validate()
        self._check_distinct_rows()
        parse_requirements(self.require, methods=self.methods, ood=self.ood_labels())
        return self

    def trained_methods(self) -> list[str]:
        """The single-model methods whose runs this benchmark needs, in order: each method of
        ``methods`` that trains one model, with the member method of an ensemble first when it
        is not listed itself."""
        needed: list[str] = []
        for m in self.methods:
            spec = get_method(m)
            if spec.members_of is None:
                if m not in needed:
                    needed.append(m)
            elif spec.members_of not in needed:
                needed.insert(0, spec.members_of)
        return needed

    def row_label(self, method: str) -> str:
        """The table label of ``method`` in this benchmark (FPR and members resolved)."""
        spec = get_method(method)
        uses_fpr = spec.trains_one_model and self.train_config(method, self.seed).uses_fpr
        return spec.row_label(uses_fpr=uses_fpr, members=self.ensemble_size)

    def _check_distinct_rows(self) -> None:
        labels = [self.row_label(m) for m in self.methods]
        for i, label in enumerate(labels):
            if label in labels[:i]:
                first = self.methods[labels.index(label)]
                raise InvalidValueError(
                    "methods",
                    f"methods {first!r} and {self.methods[i]!r} are the same row here "
                    f"({label}): list one of them",
                )

    def ood_labels(self) -> list[str]:
        """The names OOD sets go by in reports (``NAME=SPEC`` entries use NAME)."""
        return [split_label(entry)[0] for entry in self.ood]

    def train_config(self, method: str, seed: int) -> TrainConfig:
        """The training settings of one run of this benchmark."""
        return TrainConfig(
            dataset=self.dataset,
            test_dataset=self.test_dataset,
            method=method,
            model=self.model,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            lr_decay=self.lr_decay,
            entropic_scale=self.entropic_scale,
            alpha=self.alpha,
            fpr=self.fpr if get_method(method).supports_fpr else None,
            augment=self.augment,
            seed=seed,
            val_fraction=self.val_fraction,
            split_seed=self.split_seed,
            device=self.device,
            data_dir=self.data_dir,
            image_size=self.image_size,
            decay_epochs=self.decay_epochs,
            stream=self.stream,
        )

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        for key in ("ood", "methods", "require"):
            values[key] = list(values[key])
        if values["decay_epochs"] is not None:
            values["decay_epochs"] = list(values["decay_epochs"])
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BenchmarkConfig:
        """Build from a mapping (YAML or merged CLI options); unknown keys and wrong types fail."""
        return cls(**check_types(cls, values, what="benchmark"))


# --------------------------------------------------------------------------- running


def default_runs_dir() -> Path:
    """``DISMAX_RUNS_DIR``, else ``$XDG_CACHE_HOME/dismax/runs`` (``~/.cache/dismax/runs``)."""
    env = os.environ.get("DISMAX_RUNS_DIR")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "dismax" / "runs"


def run_dir_for(runs_dir: Path, config: TrainConfig, data_hash: str) -> Path:
    """The deterministic folder of a run: same settings and same data -> same folder (reuse)."""
    identity = json.dumps({**config.identity(), "data": data_hash}, sort_keys=True)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
    model = config.model.replace(":", "-").replace("/", "-")  # torchvision:NAME, timm:a/b
    return runs_dir / f"{config.method}-{model}-seed{config.seed}-{digest}"


@dataclass
class BenchmarkProgress:
    """Callbacks the CLI uses to show what is happening (all optional).

    ``stage`` gets one line per step (:func:`benchmark_steps` of them for a benchmark,
    :func:`score_steps` for ``dismax score``); ``status`` what is being done now (for a live
    display); ``train`` makes a training progress callback for a run label.
    """

    stage: Callable[[str], None] | None = None
    train: Callable[[str], ProgressCallback | None] | None = None
    status: Callable[[str], None] | None = None

    def say(self, text: str) -> None:
        if self.stage is not None:
            self.stage(text)

    def now(self, text: str) -> None:
        if self.status is not None:
            self.status(text)


def benchmark_steps(config: BenchmarkConfig) -> int:
    """How many ``stage`` lines :func:`run_benchmark` prints for ``config``.

    Loading, then per seed: one per run trained or reused, one per calibration, one for the
    throughput timing and one per method scored.
    """
    needed = config.trained_methods()
    ensembles = [m for m in config.methods if get_method(m).members_of]
    runs = len(needed) + len(ensembles) * (config.ensemble_size - 1)
    calibrations = len(needed) + len(ensembles)
    return 1 + config.seeds * (runs + calibrations + 1 + len(config.methods))


def score_steps(n_ood: int) -> int:
    """How many ``stage`` lines :func:`score_checkpoint` prints for ``n_ood`` OOD sets."""
    return 2 + 2 * n_ood


@dataclass
class _SeedResult:
    temperature: float
    id_before: dict[str, float]
    id_after: dict[str, float]
    ood: dict[tuple[str, str], dict[str, float]]
    n_id: int
    n_ood: dict[str, int]
    throughput: float
    train_s: float
    runs: list[str]
    reused: bool


def _train_or_reuse(
    config: TrainConfig,
    runs_dir: Path,
    data: RunData,
    data_hash: str,
    progress: BenchmarkProgress,
) -> tuple[Path, bool]:
    run_dir = run_dir_for(runs_dir, config, data_hash)
    ckpt = run_dir / "checkpoint.pt"
    try:
        finished = ckpt.exists() and load_checkpoint(ckpt).meta.finished
    except DismaxError as exc:
        raise DismaxError(
            f"{exc}; the benchmark cannot reuse or resume it: delete the folder {str(run_dir)!r} "
            "and run again to retrain it"
        ) from None
    if finished:
        progress.say(f"reusing {config.method} seed {config.seed} from {run_dir}")
        return run_dir, True
    epochs = f"{config.epochs} epoch{'' if config.epochs == 1 else 's'}"
    progress.say(f"training {config.method} seed {config.seed} ({epochs})")
    callback = progress.train(f"{config.method} s{config.seed}") if progress.train else None
    fit(config, run_dir, resume=True, progress=callback, data=data)
    return run_dir, False


def _train_seconds(run_dirs: Sequence[Path]) -> float:
    return float(sum(e.seconds for d in run_dirs for e in read_train_log(d / LOG_NAME)))


def _calibrate_ensemble(
    members: Sequence[ModelBundle], data: RunData, objective: str, *, fallback: float
) -> tuple[float, str | None]:
    """One temperature for the ensemble, fitted on log p̄ of the validation split."""
    member_logits = torch.stack(
        [predict_images(b, data.val.images) for b in members]
    )
    assert data.val.labels is not None
    return fit_temperature_noted(
        predictive_log_probs(member_logits),
        data.val.labels,
        objective=objective,
        fallback=fallback,
    )


def _evaluate(
    temperature: float,
    data: RunData,
    oods: dict[str, ImageSet],
    outputs: Outputs,
) -> tuple[dict[str, float], dict[str, float], dict[tuple[str, str], dict[str, float]]]:
    targets = data.test.labels
    assert targets is not None
    before = id_metrics(probs_at(outputs.id_logits, 1.0), targets)
    after = id_metrics(probs_at(outputs.id_logits, temperature), targets)
    ood: dict[tuple[str, str], dict[str, float]] = {}
    for spec in oods:
        for score, id_scores in outputs.id_scores.items():
            ood[(spec, score)] = ood_metrics(id_scores, outputs.ood_scores[spec][score])
    return before, after, ood


def load_ood_sets(
    entries: Sequence[str],
    *,
    like: ImageSet,
    data_dir: str | None,
    progress: BenchmarkProgress | None = None,
) -> dict[str, ImageSet]:
    """Load every OOD entry (``SPEC`` or ``LABEL=SPEC``) by its label, checked against ``like``.

    Every entry is tried before anything fails, so one message names all the sets that cannot
    be loaded (each with its own fix), not only the first.

    Raises:
        DismaxError: the one error, or ``N OOD sets cannot be used: (1) ...; (2) ...``.
    """
    oods: dict[str, ImageSet] = {}
    problems: list[str] = []
    for entry in entries:
        label, spec = split_label(entry)
        started = time.perf_counter()
        if progress is not None:
            progress.now(f"loading OOD set {label}")
        try:
            ood_set = load_ood(spec, like=like, data_dir=data_dir)
            check_disjoint(like, ood_set)
        except DismaxError as exc:
            problems.append(str(exc))
            continue
        oods[label] = ood_set
        if progress is not None:
            progress.say(
                f"loaded OOD set {label}: {len(ood_set):,} images in "
                f"{time.perf_counter() - started:.1f} s"
            )
    if len(problems) == 1:
        raise DismaxError(problems[0])
    if problems:
        listed = "; ".join(f"({i}) {text}" for i, text in enumerate(problems, 1))
        raise DismaxError(f"{len(problems)} OOD sets cannot be used: {listed}")
    return oods


def run_benchmark(config: BenchmarkConfig, progress: BenchmarkProgress | None = None) -> Report:
    """Train (or reuse), calibrate and evaluate every method; return the report.

    Raises:
        DismaxError: for invalid settings, datasets that cannot be loaded, or failed training.
    """
    progress = progress or BenchmarkProgress()
    config = config.validate()
    runs_dir = Path(config.runs_dir).expanduser() if config.runs_dir else default_runs_dir()
    progress.say(f"loading {config.dataset} and {len(config.ood)} OOD set(s)")
    base = config.train_config(BASELINE_METHOD, config.seed)
    data = load_run_data(base)
    with streaming(base.stream):  # OOD folders stream like the ID data (README "Streaming")
        oods = load_ood_sets(config.ood, like=data.test, data_dir=config.data_dir)
    data_hash = hashlib.sha256(
        (data.train.pixels_sha256() + data.split.val_indices_sha256).encode()
    ).hexdigest()
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DismaxError(f"cannot create runs folder {str(runs_dir)!r}: {exc.strerror}") from None

    seeds = [config.seed + k for k in range(config.seeds)]
    per_method: dict[str, list[_SeedResult]] = {m: [] for m in config.methods}
    notes: list[str] = []
    softmax_ref: list[float] = []  # SoftMax throughput per seed: the efficiency reference
    device_used = torch.device("cpu")
    for seed in seeds:
        # 1. Train or reuse every run this seed needs.
        run_dirs: dict[str, list[Path]] = {}
        reused: dict[str, bool] = {}
        for method in config.trained_methods():
            d, r = _train_or_reuse(
                config.train_config(method, seed), runs_dir, data, data_hash, progress
            )
            run_dirs[method], reused[method] = [d], r
        for method in config.methods:
            member_method = get_method(method).members_of
            if member_method is None:
                continue
            members, all_reused = list(run_dirs[member_method]), reused[member_method]
            for m in range(1, config.ensemble_size):
                d, r = _train_or_reuse(
                    config.train_config(member_method, seed + 1000 * m),
                    runs_dir,
                    data,
                    data_hash,
                    progress,
                )
                members.append(d)
                all_reused = all_reused and r
            run_dirs[method], reused[method] = members, all_reused

        # 2. Calibrate and evaluate.
        bundles: dict[str, list[ModelBundle]] = {}
        temperatures: dict[str, float] = {}
        loaded: dict[Path, ModelBundle] = {}  # one model object per run (SoftMax = member 0)
        for method, dirs in run_dirs.items():
            progress.say(f"calibrating {method} seed {seed}")
            for d in dirs:
                if d not in loaded:
                    loaded[d] = load_bundle(d, device=config.device)
            group = [loaded[d] for d in dirs]
            device_used = group[0].device
            bundles[method] = group
            spec = get_method(method)
            if spec.members_of is not None:
                temperatures[method], warning = _calibrate_ensemble(
                    group,
                    data,
                    config.objective,
                    fallback=spec.training_temperature(config.entropic_scale),
                )
            else:
                calibration = calibrate_bundle(group[0], data.val, objective=config.objective)
                temperatures[method], warning = calibration.temperature, calibration.warning
            if warning:
                notes.append(f"calibration of {method} (seed {seed}): {warning}")

        # 3. Throughput on the same images for every method (SoftMax is the reference).
        timing_images = pixels_of(data.test.images[:THROUGHPUT_IMAGES])
        progress.say(
            f"timing inference of {len(bundles)} model(s) on {len(timing_images):,} test images"
        )
        throughput = measure_throughputs(bundles, timing_images)

        logits_cache: dict[tuple[int, int], torch.Tensor] = {}
        for method in config.methods:
            progress.say(
                f"scoring {method} seed {seed} on {len(data.test):,} test images and "
                f"{len(oods)} OOD set(s)"
            )
            outputs = model_outputs(bundles[method], data.test, oods, cache=logits_cache)
            before, after, ood = _evaluate(temperatures[method], data, oods, outputs)
            per_method[method].append(
                _SeedResult(
                    temperature=temperatures[method],
                    id_before=before,
                    id_after=after,
                    ood=ood,
                    n_id=len(data.test),
                    n_ood={s: len(o) for s, o in oods.items()},
                    throughput=throughput[method],
                    train_s=_train_seconds(run_dirs[method]),
                    runs=[str(d) for d in run_dirs[method]],
                    reused=reused[method],
                )
            )
        softmax_ref.append(throughput.get(BASELINE_METHOD, float("nan")))

    methods = tuple(
        _method_result(m, per_method[m], seeds, softmax_ref, config.ensemble_size)
        for m in config.methods
    )
    datasets = (
        dataset_record("train", data.train),
        dataset_record("val", data.val),
        dataset_record("test", data.test),
        *(dataset_record("ood", o, name=label) for label, o in oods.items()),
    )
    notes[:0] = [
        f"{o.spec} is synthetic ({o.source}), not real images: a sanity check, not a benchmark"
        for o in oods.values()
        if o.synthetic
    ]
    resolved = {**config.to_dict(), "runs_dir": str(runs_dir)}
    return Report(
        kind="benchmark",
        tool_version=__version__,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        config=resolved,
        environment=environment(device_used),
        datasets=datasets,
        methods=methods,
        notes=tuple(notes),
    )


def _method_result(
    method: str,
    results: list[_SeedResult],
    seeds: list[int],
    softmax_throughput: list[float],
    ensemble_size: int,
) -> MethodResult:
    def stats(dicts: list[dict[str, float]]) -> dict[str, Stat]:
        return {k: Stat.of([d[k] for d in dicts]) for k in dicts[0]}

    first = results[0]
    ood = tuple(
        OODResult(
            ood=spec,
            score=score,
            n_id=first.n_id,
            n_ood=first.n_ood[spec],
            metrics=stats([r.ood[(spec, score)] for r in results]),
        )
        for (spec, score) in first.ood
    )
    efficiency = None
    if all(math.isfinite(t) for t in softmax_throughput):
        efficiency = Stat.of(
            [r.throughput / t for r, t in zip(results, softmax_throughput, strict=True)]
        )
    spec = get_method(method)
    is_ensemble = spec.members_of is not None
    uses_fpr = False if is_ensemble else _uses_fpr(results[0].runs[0])
    members = ensemble_size if is_ensemble else 1
    return MethodResult(
        method=method,
        label=spec.row_label(uses_fpr=uses_fpr, members=members),
        default_score=spec.default_score,
        seeds=tuple(seeds),
        runs=tuple(run for r in results for run in r.runs),
        uses_fpr=uses_fpr,
        temperature=Stat.of([r.temperature for r in results]),
        id_before=stats([r.id_before for r in results]),
        id_after=stats([r.id_after for r in results]),
        n_id=first.n_id,
        ood=ood,
        throughput_per_s=Stat.of([r.throughput for r in results]),
        efficiency=efficiency,
        train_s=Stat.of([r.train_s for r in results]),
        reused_runs=all(r.reused for r in results),
        members=members,
    )


def _uses_fpr(run_dir: str) -> bool:
    return load_checkpoint(run_dir).meta.uses_fpr


# --------------------------------------------------------------------------- score one checkpoint


def write_scores_npz(path: str | Path, outputs: Outputs) -> None:
    """Write per-sample scores atomically: ``id/<score>`` and ``ood/<set>/<score>`` arrays (N,).

    Also ``id_logits`` (N, C) at T = 1.

    Raises:
        DismaxError: when the file cannot be written.
    """
    arrays = {"id_logits": outputs.id_logits.numpy()}
    for score, values in outputs.id_scores.items():
        arrays[f"id/{score}"] = values.numpy()
    for spec, scores in outputs.ood_scores.items():
        for score, values in scores.items():
            arrays[f"ood/{spec}/{score}"] = values.numpy()
    path = Path(path)
    try:
        atomic_write(path, lambda handle: np.savez(handle, **arrays))
    except OSError as exc:
        raise DismaxError(f"cannot write scores to {str(path)!r}: {exc.strerror}") from None


def score_checkpoint(
    path: str | Path,
    ood: Sequence[str],
    *,
    data_dir: str | None = None,
    device: str = "cpu",
    score: str | None = None,
    dump: str | Path | None = None,
    progress: BenchmarkProgress | None = None,
) -> Report:
    """Evaluate one checkpoint on its ID test split and each OOD set (``dismax score``).

    ACC/NLL/ECE are reported at T = 1 and at the checkpoint's stored temperature; OOD metrics for
    every score (``score`` or the method's default is the one tables show). ``progress`` gets
    :func:`score_steps` lines (each set loaded and scored, with its size and seconds). A run that
    was never calibrated (``dismax calibrate``) gets a note saying so.

    Raises:
        DismaxError: for an unreadable checkpoint, unknown sets or scores, or overlapping splits.
    """
    progress = progress or BenchmarkProgress()
    if score is not None and score not in SCORES:
        raise DismaxError(f"unknown score {score!r}: choose one of {', '.join(SCORES)}")
    check_ood_labels(ood)
    bundle = load_bundle(path, device=device)
    started = time.perf_counter()
    progress.now(f"loading the ID splits of {bundle.meta.config.dataset}")
    data = rebuild_run_data(bundle.meta, data_dir=data_dir)
    progress.say(
        f"loaded ID test split {bundle.meta.config.test_dataset or bundle.meta.config.dataset}: "
        f"{len(data.test):,} images "
        f"in {time.perf_counter() - started:.1f} s"
    )
    with streaming(bundle.meta.config.stream):
        oods = load_ood_sets(
            ood,
            like=data.test,
            data_dir=data_dir or bundle.meta.config.data_dir,
            progress=progress,
        )
    # One set at a time (the ID logits are cached), so that progress can name each set.
    cache: dict[tuple[int, int], torch.Tensor] = {}
    started = time.perf_counter()
    progress.now(f"scoring the ID test split ({len(data.test):,} images)")
    id_outputs = model_outputs([bundle], data.test, {}, cache=cache)
    progress.say(
        f"scored the ID test split: {len(data.test):,} images in "
        f"{time.perf_counter() - started:.1f} s"
    )
    ood_scores: dict[str, dict[str, torch.Tensor]] = {}
    for label, ood_set in oods.items():
        started = time.perf_counter()
        progress.now(f"scoring OOD set {label} ({len(ood_set):,} images)")
        ood_scores[label] = model_outputs(
            [bundle], data.test, {label: ood_set}, cache=cache
        ).ood_scores[label]
        progress.say(
            f"scored OOD set {label}: {len(ood_set):,} images in "
            f"{time.perf_counter() - started:.1f} s"
        )
    outputs = Outputs(id_outputs.id_logits, id_outputs.id_scores, ood_scores)
    if dump is not None:
        write_scores_npz(dump, outputs)
    temperature = bundle.temperature
    before, after, ood_results = _evaluate(temperature, data, oods, outputs)
    result = _SeedResult(
        temperature=temperature,
        id_before=before,
        id_after=after,
        ood=ood_results,
        n_id=len(data.test),
        n_ood={s: len(o) for s, o in oods.items()},
        throughput=float("nan"),
        train_s=_train_seconds([Path(path) if Path(path).is_dir() else Path(path).parent]),
        runs=[str(path)],
        reused=True,
    )
    meta = bundle.meta
    method_result = _method_result(
        meta.method, [result], [meta.config.seed], [float("nan")], 1
    )
    if score is not None:
        method_result = dataclasses.replace(method_result, default_score=score)
    method_result = dataclasses.replace(
        method_result, throughput_per_s=None, uses_fpr=meta.uses_fpr
    )
    notes = [
        f"{o.spec} is synthetic ({o.source}), not real images: a sanity check, not a benchmark"
        for o in oods.values()
        if o.synthetic
    ]
    if not meta.finished:
        notes.append(
            f"the checkpoint is from an unfinished run (epoch {meta.epoch} of "
            f"{meta.epochs}); finish it with dismax train --resume"
        )
    elif meta.calibration is None:
        run = Path(path).parent if Path(path).name == "checkpoint.pt" else Path(path)
        notes.append(
            f"this {meta.method} run was never calibrated, so ECE and NLL are at "
            f"T = {temperature:g}, not at a fitted temperature: calibrate it with "
            f"`dismax calibrate {shlex.quote(str(run))}` and score again"
        )
    return Report(
        kind="score",
        tool_version=__version__,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        config={
            "checkpoint": str(path),
            "ood": list(ood),
            "score": score or method_result.default_score,
            "calibration": meta.calibration,
            "train_config": meta.config.to_dict(),
        },
        environment=environment(bundle.device),
        datasets=(
            dataset_record("test", data.test),
            *(dataset_record("ood", o, name=label) for label, o in oods.items()),
        ),
        methods=(method_result,),
        notes=tuple(notes),
    )


__all__ = [
    "BENCHMARK_METHODS",
    "DEFAULT_METHODS",
    "BenchmarkConfig",
    "BenchmarkProgress",
    "Requirement",
    "check_requirements",
    "default_runs_dir",
    "parse_requirements",
    "run_benchmark",
    "score_checkpoint",
]
