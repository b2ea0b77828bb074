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
from dismax_cli.core.metric_table import CALIBRATION_OBJECTIVES
from dismax_cli.core.scores import SCORES
from dismax_cli.data import ImageSet, check_disjoint, load_ood
from dismax_cli.data.stream import streaming
from dismax_cli.detection import DetectorStage
from dismax_cli.engine import (
    LOG_NAME,
    ModelBundle,
    ProgressCallback,
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
    read_train_log,
    rebuild_run_data,
)
from dismax_cli.engine.lock import RunFolderBusy
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
from dismax_cli.evidence import DEFAULT_BOOTSTRAP, Evidence, check_bootstrap
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
from dismax_cli.presets import check_preset, count_notes, group_means, list_problem, resolve_ood
from dismax_cli.presets import groups as preset_groups
from dismax_cli.protocol import DEFAULT_OPTIMIZER, check_optimizer, protocol_record
from dismax_cli.reports import (
    MethodResult,
    OODResult,
    Report,
    Stat,
    conventions_for,
)
from dismax_cli.score_names import (
    check_fpr_convention,
    method_scores,
    not_applicable,
    parse_scores,
    shown_scores,
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
    sync_bn: bool = False
    objective: str = "ece"
    require: tuple[str, ...] = ()
    #: ``--scores``: ``()`` the built-in scores, tables by default score; ``("all",)`` or names.
    scores: tuple[str, ...] = ()
    #: ``--ood-preset``: ``openood-cifar10`` / ``openood-cifar100`` (``presets.PRESETS``).
    ood_preset: str | None = None
    #: ``--fpr-convention``: ``ours`` or ``openood`` (``core.metrics.FPR_CONVENTIONS``).
    fpr_convention: str = "ours"
    protocol: str = "honest"  # or "paper" (dismax_cli.protocol, METHOD.md §4, §6)
    select: str | None = None  # last / best-val; None: the protocol's rule
    calibration_optimizer: str | None = None  # grid / lbfgsb; None: the protocol's

    @property
    def optimizer(self) -> str:
        """The calibration optimizer used: the given one, else the protocol's (METHOD.md §4)."""
        return self.calibration_optimizer or DEFAULT_OPTIMIZER[self.protocol]
    #: Bootstrap resamples per interval (0: no intervals); see :mod:`dismax_cli.evidence`.
    bootstrap: int = DEFAULT_BOOTSTRAP
    image_size: int | None = None
    decay_epochs: tuple[int, ...] | None = None
    stream: bool | None = None

    def validate(self) -> BenchmarkConfig:
        """Return self after checking every value (before anything trains).

        With ``ood_preset`` the result's ``ood`` holds the preset's sets (``presets.resolve_ood``).
        """
        config = self
        if self.ood_preset is not None:
            check_preset(self.ood_preset)
            config = dataclasses.replace(
                self, ood=resolve_ood(self.ood_preset, self.ood, defaults=DEFAULT_OOD)
            )
        config = dataclasses.replace(config, scores=parse_scores(config.scores))
        check_fpr_convention(config.fpr_convention)
        return config._validate()

    def _validate(self) -> BenchmarkConfig:
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
        if self.objective not in CALIBRATION_OBJECTIVES:
            raise InvalidValueError(
                "objective",
                f"objective {self.objective!r} is invalid: choose "
                f"{' or '.join(CALIBRATION_OBJECTIVES)}",
            )
        check_device_name(self.device)
        check_optimizer(self.calibration_optimizer)
        check_bootstrap(self.bootstrap)
        self.train_config(BASELINE_METHOD, self.seed).validate()
        for method in self.trained_methods():
            self.train_config(method, self.seed).validate()
        self._check_distinct_rows()
        parse_requirements(
            self.require,
            methods=self.methods,
            ood=self.ood_labels(),
            scores=self.method_scores(),
            groups=("near", "far") if self.ood_preset else (),
        )
        return self

    def method_scores(self) -> dict[str, tuple[str, ...]]:
        """Every score each method's rows will hold (``--require METHOD/SCORE`` checks it)."""
        return {
            m: method_scores(self.scores, ensemble=bool(get_method(m).members_of))
            for m in self.methods
        }

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
            sync_bn=self.sync_bn,
            protocol=self.protocol,
            select=self.select,
            image_size=self.image_size,
            decay_epochs=self.decay_epochs,
            stream=self.stream,
        )

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        for key in ("ood", "methods", "require", "scores"):
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


@dataclass(frozen=True)
class PlannedRun:
    """One training of a benchmark: ``method`` at ``seed``; ``member`` m > 0 for the extra
    members of a deep ensemble (trained with seed ``seed + 1000 m``), else 0."""

    method: str
    seed: int
    member: int
    config: TrainConfig

    @property
    def label(self) -> str:
        """How progress lines and summaries name the run (``softmax seed 1000``)."""
        return f"{self.config.method} seed {self.config.seed}"


def planned_runs(config: BenchmarkConfig) -> list[PlannedRun]:
    """Every training ``run_benchmark(config)`` needs, in the order it trains them.

    Per seed: each single-model method of :meth:`BenchmarkConfig.trained_methods` (member 0),
    then members 1 .. ensemble_size − 1 of each ensemble; a run two ensembles share is listed
    once. ``dismax benchmark --shard`` splits this list (:mod:`dismax_cli.sharding`).
    """
    plan: list[PlannedRun] = []
    seen: set[str] = set()

    def add(method: str, seed: int, member: int) -> None:
        train = config.train_config(method, seed + 1000 * member)
        key = json.dumps(train.identity(), sort_keys=True)
        if key not in seen:
            seen.add(key)
            plan.append(PlannedRun(method, seed, member, train))

    for seed in (config.seed + k for k in range(config.seeds)):
        for method in config.trained_methods():
            add(method, seed, 0)
        for method in config.methods:
            member_method = get_method(method).members_of
            for m in range(1, config.ensemble_size if member_method else 1):
                add(member_method, seed, m)  # type: ignore[arg-type]
    return plan


def run_data_hash(data: RunData) -> str:
    """The data part of every run folder's key: the training pixels and the validation carve."""
    return hashlib.sha256(
        (data.train.pixels_sha256() + data.split.val_indices_sha256).encode()
    ).hexdigest()


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
    score_efficiency: dict[str, float] = dataclasses.field(default_factory=dict)


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
    try:
        fit(config, run_dir, resume=True, progress=callback, data=data)
    except RunFolderBusy:
        raise RunFolderBusy(
            f"another job is training {config.method} seed {config.seed} into {str(run_dir)!r}: "
            "wait for it (e.g. the --shard jobs) to finish, then run the benchmark again",
            run_dir,
        ) from None
    return run_dir, False


def _train_seconds(run_dirs: Sequence[Path]) -> float:
    return float(sum(e.seconds for d in run_dirs for e in read_train_log(d / LOG_NAME)))


def _calibrate_ensemble(
    members: Sequence[ModelBundle],
    data: RunData,
    objective: str,
    *,
    fallback: float,
    optimizer: str = "grid",
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
        optimizer=optimizer,
        split=data.calibration_split,
    )


def _evaluate(
    temperature: float,
    data: RunData,
    oods: dict[str, ImageSet],
    outputs: Outputs,
    fpr_convention: str = "ours",
) -> tuple[dict[str, float], dict[str, float], dict[tuple[str, str], dict[str, float]]]:
    targets = data.test.labels
    assert targets is not None
    before = id_metrics(probs_at(outputs.id_logits, 1.0), targets)
    after = id_metrics(probs_at(outputs.id_logits, temperature), targets)
    ood: dict[tuple[str, str], dict[str, float]] = {}
    for spec in oods:
        for score, id_scores in outputs.id_scores.items():
            ood[(spec, score)] = ood_metrics(
                id_scores, outputs.ood_scores[spec][score], fpr_convention=fpr_convention
            )
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
        if (missing := list_problem(spec)) is not None:
            problems.append(missing)
            continue
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
    evidence = Evidence() if evidence is None else evidence
    runs_dir = Path(config.runs_dir).expanduser() if config.runs_dir else default_runs_dir()
    progress.say(f"loading {config.dataset} and {len(config.ood)} OOD set(s)")
    base = config.train_config(BASELINE_METHOD, config.seed)
    data = load_run_data(base)
    with streaming(base.stream):  # OOD folders stream like the ID data (README "Streaming")
        oods = load_ood_sets(config.ood, like=data.test, data_dir=config.data_dir)
    data_hash = run_data_hash(data)
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
                    optimizer=config.optimizer,
                )
            else:
                calibration = calibrate_bundle(
                    group[0],
                    data.val,
                    objective=config.objective,
                    optimizer=config.optimizer,
                    split=data.calibration_split,
                )
                temperatures[method], warning = calibration.temperature, calibration.warning
            if warning:
                notes.append(f"calibration of {method} (seed {seed}): {warning}")

        # 3. Throughput on the same images for every method (SoftMax is the reference).
        timing_images = pixels_of(data.test.images[:THROUGHPUT_IMAGES])
        progress.say(
            f"timing inference of {len(bundles)} model(s) on {len(timing_images):,} test images"
        )
        stage = DetectorStage(config.scores)
        with distributed.local_only():  # timed per rank: no collectives (rank 0 reports)
            throughput = measure_throughputs(bundles, timing_images)
            costs = _prepare_detectors(
                stage, config, bundles, run_dirs, data, timing_images, progress
            )

        logits_cache: dict[tuple[int, int], torch.Tensor] = {}
        for method in config.methods:
            progress.say(
                f"scoring {method} seed {seed} on {len(data.test):,} test images and "
                f"{len(oods)} OOD set(s)"
            )
            outputs = _scored_outputs(stage, method, bundles[method], data, oods, logits_cache)
            before, after, ood = _evaluate(
                temperatures[method], data, oods, outputs, config.fpr_convention
            )
            evidence.add(
                method, seed, outputs, temperatures[method], data.test.labels,
                get_method(method).default_score,
            )  # fmt: skip
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
                    score_efficiency=costs.get(method, {}),
                )
            )
        softmax_ref.append(throughput.get(BASELINE_METHOD, float("nan")))

    ood_groups = preset_groups(config.ood_preset, list(oods))
    methods = tuple(
        _with_scores(
            _method_result(m, per_method[m], seeds, softmax_ref, config.ensemble_size),
            per_method[m],
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
    notes[:0] = [
        f"{o.spec} is synthetic ({o.source}), not real images: a sanity check, not a benchmark"
        for o in oods.values()
        if o.synthetic
    ] + count_notes(config.ood_preset, {label: len(o) for label, o in oods.items()})
    resolved = {**config.to_dict(), "runs_dir": str(runs_dir)}
    report = Report(
        kind="benchmark",
        tool_version=__version__,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        config=resolved,
        environment=environment(device_used),
        datasets=datasets,
        methods=methods,
        notes=tuple(notes),
        conventions=conventions_for(config.fpr_convention),
        ood_groups=ood_groups,
        protocol=protocol_record(
            training=config.protocol, selection=base.selection, optimizer=config.optimizer,
            calibration_split=data.calibration_split, val_fraction=config.val_fraction,
        ),  # fmt: skip
    )
    return evidence.finish(
        report, bootstrap=config.bootstrap, baseline=BASELINE_METHOD, status=progress.now
    )


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


def _scored_outputs(
    stage: DetectorStage,
    method: str,
    group: Sequence[ModelBundle],
    data: RunData,
    oods: dict[str, ImageSet],
    cache: dict[tuple[int, int], torch.Tensor],
) -> Outputs:
    """The logit scores of ``method`` plus its ``--scores`` detectors (one pass per set)."""
    sets = {"id": data.test.images, **{label: o.images for label, o in oods.items()}}
    extra = stage.add_scores(method, group, sets, cache) if stage.scores else {}
    outputs = model_outputs(group, data.test, oods, cache=cache)
    if extra:
        outputs.id_scores.update(extra["id"])
        for label in oods:
            outputs.ood_scores[label].update(extra[label])
    return outputs


def _with_scores(
    result: MethodResult,
    seeds: list[_SeedResult],
    scores: Sequence[str],
    ood_groups: dict[str, list[str]],
) -> MethodResult:
    """Add the ``--scores`` fields: n/a reasons, per-score efficiency, near/far means."""
    ensemble = bool(get_method(result.method).members_of)
    efficiency = {}
    if seeds[0].score_efficiency:
        efficiency = {
            s: Stat.of([r.score_efficiency[s] for r in seeds]) for s in seeds[0].score_efficiency
        }
    means = group_means(
        [r.ood for r in seeds], ood_groups, n_id=seeds[0].n_id, n_ood=seeds[0].n_ood
    )
    return dataclasses.replace(
        result,
        not_applicable=not_applicable(scores, ensemble=ensemble) if scores else {},
        score_efficiency=efficiency,
        ood_means=means,
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


def run_protocol(meta: Any) -> dict[str, Any]:
    """The protocol record of a trained (and maybe calibrated) run, from its checkpoint metadata.

    Calibration records written before the optimizer and split were stored were fitted on the
    validation split with the grid search.
    """
    calibration = meta.calibration or {}
    split = calibration.get("split", "val") if meta.calibration is not None else None
    return protocol_record(
        training=meta.config.protocol,
        selection=meta.config.selection,
        calibration_split=split,
        optimizer=calibration.get("optimizer", "grid") if split else None,
        val_fraction=meta.config.val_fraction,
    )


def write_scores_npz(
    path: str | Path, outputs: Outputs, labels: torch.Tensor | None = None
) -> None:
    """Write per-sample scores atomically: ``id/<score>`` and ``ood/<set>/<score>`` arrays (N,).

    Also ``id_logits`` (N, C) at T = 1 and, when given, ``id_labels`` (N,) int64 (the ID test
    labels, so that a reliability diagram can be drawn from the dump).

    Raises:
        DismaxError: when the file cannot be written.
    """
    arrays = {"id_logits": outputs.id_logits.numpy()}
    if labels is not None:
        arrays["id_labels"] = labels.cpu().numpy().astype(np.int64)
    for score, values in outputs.id_scores.items():
        arrays[f"id/{score}"] = values.numpy()
    for spec, scores in outputs.ood_scores.items():
        for score, values in scores.items():
            arrays[f"ood/{spec}/{score}"] = values.numpy()
    path = Path(path)
    if not distributed.is_main():  # under torchrun only rank 0 writes files
        return
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
    scores: Sequence[str] = (),
    fpr_convention: str = "ours",
) -> Report:
    """Evaluate one checkpoint on its ID test split and each OOD set (``dismax score``).

    ACC/NLL/ECE are reported at T = 1 and at the checkpoint's stored temperature; OOD metrics for
    every score (``score`` or the method's default is the one tables show). ``progress`` gets
    :func:`score_steps` lines (each set loaded and scored, with its size and seconds). A run that
    was never calibrated (``dismax calibrate``) gets a note saying so. ``scores`` (``--scores``)
    adds the post-hoc detectors, fitted on the run's training split (cached in the run folder);
    ``fpr_convention`` is FPR@95TPR's (``ours`` or ``openood``).

    Raises:
        DismaxError: for an unreadable checkpoint, unknown sets or scores, or overlapping splits.
    """
    progress = progress or BenchmarkProgress()
    if score is not None and score not in SCORES:
        raise DismaxError(f"unknown score {score!r}: choose one of {', '.join(SCORES)}")
    check_ood_labels(ood)
    scores = parse_scores(scores)
    check_fpr_convention(fpr_convention)
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
    stage = DetectorStage(scores)
    if scores:
        progress.now("fitting the detectors on the training split")
        run_dir = Path(path) if Path(path).is_dir() else Path(path).parent
        stage.prepare(bundle.meta.method, [bundle], data.train, run_dir)
    started = time.perf_counter()
    progress.now(f"scoring the ID test split ({len(data.test):,} images)")
    id_outputs = _scored_outputs(stage, bundle.meta.method, [bundle], data, {}, cache)
    progress.say(
        f"scored the ID test split: {len(data.test):,} images in "
        f"{time.perf_counter() - started:.1f} s"
    )
    ood_scores: dict[str, dict[str, torch.Tensor]] = {}
    for label, ood_set in oods.items():
        started = time.perf_counter()
        progress.now(f"scoring OOD set {label} ({len(ood_set):,} images)")
        ood_scores[label] = _scored_outputs(
            stage, bundle.meta.method, [bundle], data, {label: ood_set}, cache
        ).ood_scores[label]
        progress.say(
            f"scored OOD set {label}: {len(ood_set):,} images in "
            f"{time.perf_counter() - started:.1f} s"
        )
    outputs = Outputs(id_outputs.id_logits, id_outputs.id_scores, ood_scores)
    if dump is not None:
        write_scores_npz(dump, outputs, data.test.labels)
    temperature = bundle.temperature
    before, after, ood_results = _evaluate(temperature, data, oods, outputs, fpr_convention)
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
        _with_scores(method_result, [result], scores, {}),
        throughput_per_s=None,
        uses_fpr=meta.uses_fpr,
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
            "scores": list(scores),
            "fpr_convention": fpr_convention,
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
        conventions=conventions_for(fpr_convention),
        protocol=run_protocol(meta),
    )


__all__ = [
    "BENCHMARK_METHODS",
    "DEFAULT_METHODS",
    "BenchmarkConfig",
    "BenchmarkProgress",
    "PlannedRun",
    "Requirement",
    "check_requirements",
    "default_runs_dir",
    "parse_requirements",
    "planned_runs",
    "run_benchmark",
    "run_data_hash",
    "score_checkpoint",
]
