"""What a benchmark run is: :class:`BenchmarkConfig`, a :class:`~dismax_cli.engine.TrainConfig`
(the training settings every run shares) plus the comparison's own keys.

The YAML files and the command line stay flat (``epochs: 20`` beside ``seeds: 3``): the keys
are routed to the training part or the benchmark part by the two dataclasses' fields, in one
place (:meth:`BenchmarkConfig.__init__`), so a field added to ``TrainConfig`` is a benchmark key
with no edit here. Protocol: METHOD.md §3–§8.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from dismax_cli.bootstrap_settings import DEFAULT_BOOTSTRAP, check_bootstrap
from dismax_cli.config import InvalidValueError, check_device_name
from dismax_cli.config_types import check_hinted, field_hints
from dismax_cli.core.methods import (
    BASELINE_METHOD,
    benchmark_methods,
    default_benchmark_methods,
    get_method,
)
from dismax_cli.core.metric_table import CALIBRATION_OBJECTIVES
from dismax_cli.engine.config import TrainConfig, check_model_and_device
from dismax_cli.errors import quote_value as q
from dismax_cli.gates import check_ood_labels, parse_requirements, split_label
from dismax_cli.presets import check_preset, resolve_ood
from dismax_cli.protocol import DEFAULT_OPTIMIZER, check_optimizer
from dismax_cli.score_names import check_fpr_convention, method_scores, parse_scores
from dismax_cli.timing import timing_seconds

#: Every method registered at import that a benchmark can compare (``benchmark_methods()``).
BENCHMARK_METHODS = tuple(benchmark_methods())
#: What a benchmark compares when no methods are given.
DEFAULT_METHODS = tuple(default_benchmark_methods())
DEFAULT_OOD = ("digits[6-9]", "uniform")
#: Training defaults of a benchmark that differ from ``TrainConfig``'s (longer runs).
TRAIN_DEFAULTS: dict[str, Any] = {"epochs": 20}
#: ``TrainConfig`` fields that each run sets itself (:meth:`BenchmarkConfig.train_config`), so
#: not benchmark keys (``seed`` is: the first seed).
PER_RUN_FIELDS = ("method",)


def _default_train() -> TrainConfig:
    return TrainConfig(**TRAIN_DEFAULTS)


@dataclass(frozen=True, init=False)
class BenchmarkConfig:
    """A benchmark run (the keys of ``dismax benchmark`` and of ``benchmarks/configs/*.yaml``).

    ``train`` holds the training settings every run shares (:class:`~dismax_cli.engine.
    TrainConfig`; its ``method`` is unused, ``seed`` is the first seed); each run's method and
    seed are set by :meth:`train_config`. The constructor, :meth:`from_dict` and :meth:`to_dict`
    take and give the flat keys (``BenchmarkConfig(epochs=1, seeds=2)``), and every training key
    reads as an attribute too (``config.epochs`` is ``config.train.epochs``). ``seeds`` is the
    number of seeds (``seed``, ``seed + 1``, ...), ``ensemble_size`` the number of members of
    each deep ensemble (a method with ``members_of``, e.g. ``ensemble`` of SoftMax runs: member
    m trained with seed ``seed + 1000 m``; member 0 is the member method's own run). What each
    method is comes from the methods registry (:mod:`dismax_cli.core.methods`).
    """

    #: The class of ``train`` (a subclass adds training keys; tests use that).
    train_class: ClassVar[type[TrainConfig]] = TrainConfig

    train: TrainConfig = field(default_factory=_default_train)
    ood: tuple[str, ...] = DEFAULT_OOD
    methods: tuple[str, ...] = DEFAULT_METHODS
    seeds: int = 1
    ensemble_size: int = 3
    runs_dir: str | None = None
    objective: str = "ece"
    require: tuple[str, ...] = ()
    #: ``--scores``: ``()`` the built-in scores, tables by default score; ``("all",)`` or names.
    scores: tuple[str, ...] = ()
    #: ``--ood-preset``: ``openood-cifar10`` / ``openood-cifar100`` (``presets.PRESETS``).
    ood_preset: str | None = None
    #: ``--fpr-convention``: ``ours`` or ``openood`` (``core.metrics.FPR_CONVENTIONS``).
    fpr_convention: str = "ours"
    calibration_optimizer: str | None = None  # grid / lbfgsb; None: the protocol's
    #: Bootstrap resamples per interval (0: no intervals); see :mod:`dismax_cli.evidence`.
    bootstrap: int = DEFAULT_BOOTSTRAP

    def __init__(self, train: TrainConfig | None = None, **values: Any) -> None:
        """Route flat keys: training keys onto ``train`` (default: the benchmark's training
        defaults, :data:`TRAIN_DEFAULTS`), the rest onto this config's own fields.

        Raises:
            TypeError: for a key that is neither (as a dataclass constructor does).
        """
        own, shared = self.own_keys(), self.train_keys()
        unknown = [k for k in values if k not in own and k not in shared]
        if unknown:
            raise TypeError(f"BenchmarkConfig got an unexpected keyword argument {unknown[0]!r}")
        base = train if train is not None else self.train_class(**TRAIN_DEFAULTS)
        changes = {k: v for k, v in values.items() if k in shared}
        object.__setattr__(self, "train", dataclasses.replace(base, **changes))
        for f in dataclasses.fields(self):
            if f.name in values:
                object.__setattr__(self, f.name, values[f.name])
            elif f.name != "train":
                default = f.default_factory if f.default is dataclasses.MISSING else None
                object.__setattr__(self, f.name, default() if default else f.default)

    def __getattr__(self, name: str) -> Any:
        """A training key read on the benchmark config: ``config.lr`` is ``config.train.lr``."""
        train = self.__dict__.get("train")
        if train is not None and name in self.train_keys():
            return getattr(train, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @classmethod
    def own_keys(cls) -> tuple[str, ...]:
        """The benchmark's own keys (``ood``, ``methods``, ``seeds`` ...), in field order."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "train")

    @classmethod
    def train_keys(cls) -> tuple[str, ...]:
        """The training keys a benchmark takes: every ``train_class`` field but
        :data:`PER_RUN_FIELDS`, in field order."""
        return tuple(
            f.name for f in dataclasses.fields(cls.train_class) if f.name not in PER_RUN_FIELDS
        )

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """Every flat key of a benchmark YAML file / :meth:`to_dict` (training keys first)."""
        return cls.train_keys() + cls.own_keys()

    @classmethod
    def key_hints(cls) -> dict[str, Any]:
        """Each flat key's type hint (from the field it sets), for :meth:`from_dict`.

        Raises:
            TypeError: when a training field and a benchmark field share a name.
        """
        train = field_hints(cls.train_class)
        own = field_hints(cls)
        clash = sorted(set(cls.train_keys()) & set(cls.own_keys()))
        if clash:
            raise TypeError(f"{clash[0]!r} is both a training and a benchmark field: rename one")
        return {**{k: train[k] for k in cls.train_keys()}, **{k: own[k] for k in cls.own_keys()}}

    @property
    def optimizer(self) -> str:
        """The calibration optimizer used: the given one, else the protocol's (METHOD.md §4)."""
        return self.calibration_optimizer or DEFAULT_OPTIMIZER[self.train.protocol]

    def validate(self, *, machine: bool = True) -> BenchmarkConfig:
        """Return self after checking every value (before anything trains).

        With ``ood_preset`` the result's ``ood`` holds the preset's sets (``presets.resolve_ood``).
        Every check that needs no library runs first and loads no torch (a bad value is a fast
        usage error); then, with ``machine=True``, the model's existence and the device
        (:func:`~dismax_cli.engine.config.check_model_and_device`).

        Raises:
            InvalidValueError: naming the first bad key.
            DismaxError: for a valid device or model this machine cannot use.
        """
        config = self
        timing_seconds(1.0)  # a bad DISMAX_TIMING_SECONDS fails here, not after training
        if self.ood_preset is not None:
            check_preset(self.ood_preset)
            config = dataclasses.replace(
                self, ood=resolve_ood(self.ood_preset, self.ood, defaults=DEFAULT_OOD)
            )
        config = dataclasses.replace(config, scores=parse_scores(config.scores))
        check_fpr_convention(config.fpr_convention)
        config._check_methods()
        config._validate()
        if machine:
            check_model_and_device(config.train.model, config.train.device)
        return config

    def _check_methods(self) -> None:
        known = benchmark_methods()
        if not self.methods:
            raise InvalidValueError("methods", f"no methods given: choose from {', '.join(known)}")
        for m in self.methods:
            if m not in known:
                raise InvalidValueError(
                    "methods", f"unknown method {q(m)}: choose from {', '.join(known)}"
                )
        if len(set(self.methods)) != len(self.methods):
            raise InvalidValueError(
                "methods", f"methods {q(list(self.methods))} name one method twice: list each once"
            )

    def _validate(self) -> BenchmarkConfig:
        check_ood_labels(self.ood)
        for name in ("seeds", "ensemble_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidValueError(
                    name, f"{name}={q(value)} is invalid: use an integer of at least 1"
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
                f"objective {q(self.objective)} is invalid: choose "
                f"{' or '.join(CALIBRATION_OBJECTIVES)}",
            )
        check_device_name(self.train.device)
        check_optimizer(self.calibration_optimizer)
        check_bootstrap(self.bootstrap)
        for method in (BASELINE_METHOD, *self.trained_methods()):
            self.train_config(method, self.train.seed).validate(machine=False)
        self._check_distinct_rows()
        parse_requirements(
            self.require,
            methods=self.methods,
            ood=self.ood_labels(),
            scores=self.method_scores(),
            groups=("near", "far") if self.ood_preset else (),
            rows={m: self.row_label(m) for m in self.methods},
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
        uses_fpr = spec.trains_one_model and self.train_config(method, self.train.seed).uses_fpr
        return spec.row_label(uses_fpr=uses_fpr, members=self.ensemble_size)

    def _check_distinct_rows(self) -> None:
        labels = [self.row_label(m) for m in self.methods]
        for i, label in enumerate(labels):
            if label in labels[:i]:
                first = self.methods[labels.index(label)]
                raise InvalidValueError(
                    "methods",
                    f"methods {q(first)} and {q(self.methods[i])} are the same row here "
                    f"({label}): list one of them",
                )

    def ood_labels(self) -> list[str]:
        """The names OOD sets go by in reports (``NAME=SPEC`` entries use NAME)."""
        return [split_label(entry)[0] for entry in self.ood]

    def train_config(self, method: str, seed: int) -> TrainConfig:
        """The training settings of one run of this benchmark: ``train`` with this ``method``
        and ``seed`` (``fpr`` only for a method that supports FPR, else the method's default)."""
        fpr = self.train.fpr if get_method(method).supports_fpr else None
        return dataclasses.replace(self.train, method=method, seed=seed, fpr=fpr)

    def to_dict(self) -> dict[str, Any]:
        """The flat keys (:meth:`keys`) and their values, tuples as lists (reports store it)."""
        train = dataclasses.asdict(self.train)
        values = {k: train[k] for k in self.train_keys()}
        values.update({k: getattr(self, k) for k in self.own_keys()})
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BenchmarkConfig:
        """Build from a flat mapping (YAML or merged CLI options), each value checked against the
        type hint of the field it sets (:func:`~dismax_cli.config.check_types`).

        Raises:
            InvalidValueError: for an unknown key (listing the valid ones) or a wrong type.
        """
        return cls(**check_hinted(cls.key_hints(), values, what="benchmark"))


__all__ = [
    "BENCHMARK_METHODS",
    "DEFAULT_METHODS",
    "DEFAULT_OOD",
    "PER_RUN_FIELDS",
    "TRAIN_DEFAULTS",
    "BenchmarkConfig",
]
