"""The detectors' common API: inputs, fitted statistics, the :class:`Detector` base, validation.

Kept apart from ``__init__`` so that every detector module can import it without a cycle.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Self

import numpy as np
import torch
from torch import nn

from dismax_cli.core._arrays import ArrayLike, to_torch_float64
from dismax_cli.errors import DismaxError, kind_of
from dismax_cli.errors import quote_value as q

Head = Callable[[torch.Tensor], torch.Tensor]
"""Any callable features ``(B, D)`` -> logits ``(B, C)``, e.g. the heads of ``core/heads.py``."""

STATISTICS_FORMAT_VERSION = 1
"""Version of the dictionary written by :meth:`DetectorStatistics.to_dict`."""


@dataclass(frozen=True)
class DetectorInputs:
    """What a detector needs to score a sample.

    Attributes:
        features: The penultimate features ``(N, D)``.
        logits: The head's logits ``(N, C)`` at T = 1 (METHOD.md §3).
        head: The head itself (a callable features -> logits), at fit or score time.
        gradients: The model (images -> logits) and the images, for a backward pass (ODIN).
        training_statistics: Statistics fitted on the training split by :meth:`Detector.fit`.
    """

    features: bool
    logits: bool
    head: bool
    gradients: bool
    training_statistics: bool


@dataclass(frozen=True)
class DetectorStatistics:
    """Frozen statistics fitted by :meth:`Detector.fit` on training features only.

    ``tensors`` holds CPU tensors (float64, or int64 for class indices), ``values`` plain floats
    and ints (the fitted scalars and the hyper-parameters they were fitted with). Both are
    read-only mappings; the tensors are private copies. :meth:`to_dict` gives a plain dictionary
    that ``torch.save`` writes and ``torch.load(..., weights_only=True)`` reads back;
    :meth:`from_dict` validates it.

    Attributes:
        detector: The detector's name (a key of ``DETECTORS``).
        tensors: Name -> tensor.
        values: Name -> float or int.
    """

    detector: str
    tensors: Mapping[str, torch.Tensor] = field(default_factory=dict)
    values: Mapping[str, float | int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        tensors: dict[str, torch.Tensor] = {}
        for key, tensor in self.tensors.items():
            if not isinstance(key, str) or not isinstance(tensor, torch.Tensor):
                raise DismaxError(
                    f"statistics tensor {q(key)} of detector {q(self.detector)} is not a tensor; "
                    "refit the detector"
                )
            tensors[key] = tensor.detach().to("cpu").clone()
        values: dict[str, float | int] = {}
        for key, value in self.values.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise DismaxError(
                    f"statistics value {q(key)} of detector {q(self.detector)} is {q(value)}, "
                    "not a number; refit the detector"
                )
            values[key] = value
        object.__setattr__(self, "tensors", MappingProxyType(tensors))
        object.__setattr__(self, "values", MappingProxyType(values))

    def to_dict(self) -> dict[str, Any]:
        """Return a plain dictionary for ``torch.save`` (loadable with ``weights_only=True``)."""
        return {
            "format_version": STATISTICS_FORMAT_VERSION,
            "detector": self.detector,
            "tensors": {key: tensor.clone() for key, tensor in self.tensors.items()},
            "values": dict(self.values),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DetectorStatistics:
        """Rebuild statistics from :meth:`to_dict`'s dictionary.

        Raises:
            DismaxError: If the dictionary is not one written by :meth:`to_dict` of this format.
        """
        if not isinstance(data, Mapping) or data.get("format_version") != (
            STATISTICS_FORMAT_VERSION
        ):
            got = q(data.get("format_version")) if isinstance(data, Mapping) else kind_of(data)
            raise DismaxError(
                f"detector statistics have format {got}, expected "
                f"{STATISTICS_FORMAT_VERSION}; refit the detector on the training split"
            )
        tensors, values = data.get("tensors"), data.get("values")
        if (
            not isinstance(data.get("detector"), str)
            or not isinstance(tensors, Mapping)
            or not (isinstance(values, Mapping))
        ):
            raise DismaxError(
                "detector statistics lack 'detector', 'tensors' or 'values'; refit the detector"
            )
        return cls(detector=data["detector"], tensors=dict(tensors), values=dict(values))


def as_features(values: ArrayLike, *, name: str = "features") -> torch.Tensor:
    """Return ``values`` as a finite, detached float64 CPU tensor of shape ``(N, D)``, D ≥ 1.

    Raises:
        DismaxError: If it is not two-dimensional, has no column, or holds NaN/inf values.
    """
    tensor, _ = to_torch_float64(values, name=name, ndim=2, layout="(N, D)")
    tensor = tensor.detach().to("cpu")
    if tensor.shape[1] == 0:
        raise DismaxError(f"{name} has 0 columns (shape {tuple(tensor.shape)}); pass (N, D), D ≥ 1")
    return tensor


def as_logits(values: ArrayLike, *, num_samples: int | None, name: str = "logits") -> torch.Tensor:
    """Return ``values`` as a finite float64 CPU tensor ``(N, C)``, C ≥ 1, N = ``num_samples``.

    Raises:
        DismaxError: If the shape is wrong, the row count differs from ``num_samples`` or a value
            is NaN/inf.
    """
    tensor, _ = to_torch_float64(values, name=name, ndim=2, layout="(N, C)")
    tensor = tensor.detach().to("cpu")
    if tensor.shape[1] == 0:
        raise DismaxError(f"{name} has 0 classes (shape {tuple(tensor.shape)}); pass (N, C), C ≥ 1")
    if num_samples is not None and tensor.shape[0] != num_samples:
        raise DismaxError(
            f"{name} has {tensor.shape[0]} rows but features have {num_samples}; pass one row of "
            "logits per row of features"
        )
    return tensor


def as_targets(values: ArrayLike, *, num_samples: int) -> torch.Tensor:
    """Return class ``targets`` as an int64 CPU tensor ``(N,)`` with N = ``num_samples``.

    Raises:
        DismaxError: If they are not integers, not one-dimensional, negative or of another length.
    """
    if isinstance(values, torch.Tensor):
        array = values.detach().cpu().numpy()
    else:
        array = np.asarray(values)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise DismaxError(
            f"train_targets must be integer class indices, got dtype {array.dtype}; convert them "
            "with .long() / .astype(int)"
        )
    if array.ndim != 1 or array.shape[0] != num_samples:
        raise DismaxError(
            f"train_targets has shape {tuple(array.shape)} but there are {num_samples} training "
            "features; pass one target per row, shape (N,)"
        )
    if array.size and array.min() < 0:
        raise DismaxError(
            f"train_targets holds the negative class {int(array.min())}; pass indices ≥ 0"
        )
    return torch.from_numpy(array.astype(np.int64))


def head_logits(head: Head, features: torch.Tensor, *, name: str = "head") -> torch.Tensor:
    """Run ``head`` on float64 ``features`` (cast to its parameters' dtype/device), no autograd.

    Returns:
        The logits as a finite float64 CPU tensor ``(N, C)``.

    Raises:
        DismaxError: If the head fails on features of this shape or returns a wrong shape or
            NaN/inf values.
    """
    dtype, device = torch.float64, torch.device("cpu")
    if isinstance(head, nn.Module):
        for tensor in (*head.parameters(), *head.buffers()):
            if tensor.is_floating_point():
                dtype, device = tensor.dtype, tensor.device
                break
    with torch.no_grad():
        try:
            logits = head(features.to(device=device, dtype=dtype))
        except DismaxError:
            raise
        except (RuntimeError, ValueError, TypeError) as error:
            raise DismaxError(
                f"the head failed on features of shape {tuple(features.shape)}: {error}; pass "
                "the head the features were extracted for"
            ) from error
    if not isinstance(logits, torch.Tensor):
        raise DismaxError(f"the head returned {type(logits).__name__}, not a logits tensor")
    return as_logits(logits, num_samples=features.shape[0], name=f"{name} logits")


def output_like(scores: torch.Tensor, reference: ArrayLike | None) -> torch.Tensor | np.ndarray:
    """Return float64 ``scores`` as a CPU tensor if ``reference`` is a tensor, else numpy."""
    if reference is None or isinstance(reference, torch.Tensor):
        return scores
    return scores.numpy()


def check_positive_int(value: int, *, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an int ≥ ``minimum`` or raise a :class:`DismaxError`."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise DismaxError(f"{name}={q(value)} is invalid; pass an integer ≥ {minimum}")
    return int(value)


def check_positive_float(value: float, *, name: str, allow_zero: bool = False) -> float:
    """Return ``value`` as a finite float > 0 (≥ 0 with ``allow_zero``) or raise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if (
        isinstance(value, bool)
        or not math.isfinite(number)
        or number < 0
        or (number == 0 and not allow_zero)
    ):
        bound = "≥ 0" if allow_zero else "> 0"
        raise DismaxError(f"{name}={q(value)} is invalid; pass a finite number {bound}")
    return number


class Detector(ABC):
    """A post-hoc OOD detector: fit statistics on training features, then score new samples.

    Scores follow :mod:`dismax_cli.core.scores`: shape ``(N,)``, float64, computed on the CPU,
    **higher = more in-distribution**; the output is a torch tensor when the main input
    (features, or logits for logit-only detectors) is a tensor, a numpy array otherwise.
    NaN/inf inputs raise :class:`~dismax_cli.errors.DismaxError`.

    Subclasses set :attr:`name` and :attr:`inputs`, implement :meth:`_config` (the
    hyper-parameters), :meth:`_fit` and :meth:`_score`.
    """

    name: ClassVar[str]
    inputs: ClassVar[DetectorInputs]
    required_tensors: ClassVar[tuple[str, ...]] = ()
    required_values: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self._statistics: DetectorStatistics | None = None

    @property
    def statistics(self) -> DetectorStatistics | None:
        """The fitted (or loaded) statistics, ``None`` before :meth:`fit`/:meth:`load`."""
        return self._statistics

    def _config(self) -> dict[str, float | int]:
        """The hyper-parameters that the statistics depend on (stored in ``values``)."""
        return {}

    def fit(
        self, train_features: ArrayLike, train_targets: ArrayLike, *, head: Head | None = None
    ) -> DetectorStatistics:
        """Fit the detector's statistics on training features (the training split only).

        The inputs are copied; nothing but them enters the statistics, and the same inputs give
        the same statistics.

        Args:
            train_features: Penultimate features of the training split.
            train_targets: Their class indices (int).
            head: The model's head (features -> logits), for detectors that need it.

        Returns:
            The frozen statistics; the detector also keeps them for :meth:`score`.

        Shape:
            train_features ``(N, D)``, train_targets ``(N,)``.

        Raises:
            DismaxError: For wrong shapes, NaN/inf features, non-integer targets, or the
                detector's own requirements (see each class).
        """
        features = as_features(train_features, name="train_features")
        targets = as_targets(train_targets, num_samples=features.shape[0])
        if features.shape[0] == 0:
            raise DismaxError("train_features is empty (0 rows); pass the training split")
        tensors, values = self._fit(features, targets, head)
        statistics = DetectorStatistics(
            detector=self.name, tensors=tensors, values={**self._config(), **values}
        )
        self._statistics = statistics
        return statistics

    def load(self, statistics: DetectorStatistics | Mapping[str, Any]) -> Self:
        """Use statistics fitted earlier (e.g. read with ``torch.load(..., weights_only=True)``).

        Args:
            statistics: A :class:`DetectorStatistics` or its :meth:`~DetectorStatistics.to_dict`.

        Returns:
            The detector itself.

        Raises:
            DismaxError: If they belong to another detector, were fitted with other
                hyper-parameters or lack an entry.
        """
        if not isinstance(statistics, DetectorStatistics):
            statistics = DetectorStatistics.from_dict(statistics)
        if statistics.detector != self.name:
            raise DismaxError(
                f"statistics were fitted by detector {q(statistics.detector)}, not {q(self.name)}; "
                "load the matching statistics"
            )
        for key, value in self._config().items():
            if statistics.values.get(key) != value:
                raise DismaxError(
                    f"{self.name} statistics were fitted with {key}="
                    f"{q(statistics.values.get(key))}, this detector uses {key}={q(value)}; refit "
                    "or construct the detector with the same setting"
                )
        missing = [k for k in self.required_tensors if k not in statistics.tensors] + [
            k for k in self.required_values if k not in statistics.values
        ]
        if missing:
            raise DismaxError(
                f"{self.name} statistics lack {', '.join(missing)}; refit the detector"
            )
        self._statistics = statistics
        return self

    def _fitted(self) -> DetectorStatistics:
        if self._statistics is None:
            raise DismaxError(
                f"detector {q(self.name)} has no statistics; call fit(train_features, "
                "train_targets) on the training split (or load saved statistics) first"
            )
        return self._statistics

    def score(
        self,
        features: ArrayLike | None,
        logits: ArrayLike | None,
        *,
        head: Head | None = None,
    ) -> torch.Tensor | np.ndarray:
        """Score samples; higher = more in-distribution.

        Args:
            features: Penultimate features (``None`` allowed when :attr:`inputs` says the
                detector does not use them).
            logits: The head's logits at T = 1 (``None`` allowed when unused).
            head: The head, for detectors that recompute logits.

        Returns:
            float64 scores on the CPU: a tensor if the main input is a tensor, else numpy.

        Shape:
            features ``(N, D)``, logits ``(N, C)``; returns ``(N,)``.

        Raises:
            DismaxError: For a missing required input, wrong shapes (D differing from the
                fitted one, row counts differing), NaN/inf values, or no statistics yet.
        """
        needs = self.inputs
        main = features if needs.features else logits
        feats = None
        if needs.features:
            if features is None:
                raise DismaxError(f"detector {q(self.name)} needs features; pass features (N, D)")
            feats = as_features(features)
        lgts = None
        if needs.logits:
            if logits is None:
                raise DismaxError(f"detector {q(self.name)} needs logits; pass logits (N, C)")
            lgts = as_logits(logits, num_samples=None if feats is None else feats.shape[0])
        statistics = self._fitted() if needs.training_statistics else self._statistics
        return output_like(self._score(feats, lgts, head, statistics), main)

    @abstractmethod
    def _fit(
        self, features: torch.Tensor, targets: torch.Tensor, head: Head | None
    ) -> tuple[dict[str, torch.Tensor], dict[str, float | int]]:
        """Return the fitted tensors and values from validated float64 features."""

    @abstractmethod
    def _score(
        self,
        features: torch.Tensor | None,
        logits: torch.Tensor | None,
        head: Head | None,
        statistics: DetectorStatistics | None,
    ) -> torch.Tensor:
        """Return float64 CPU scores ``(N,)`` from validated inputs."""


def check_feature_size(features: torch.Tensor, expected: int, *, detector: str) -> None:
    """Raise a :class:`DismaxError` unless ``features`` has ``expected`` columns."""
    if features.shape[1] != expected:
        raise DismaxError(
            f"features have {features.shape[1]} columns but {detector} was fitted on {expected}; "
            "score the features of the model the statistics were fitted on"
        )


def l2_normalise(features: torch.Tensor) -> torch.Tensor:
    """Divide each row by its L2 norm + 1e-10 (as the KNN reference code does)."""
    return features / (torch.linalg.vector_norm(features, dim=1, keepdim=True) + 1e-10)


def require_head(head: Head | None, *, detector: str, when: str) -> Head:
    """Return ``head`` or raise a :class:`DismaxError` saying ``detector`` needs it ``when``."""
    if head is None:
        raise DismaxError(
            f"detector {q(detector)} needs the model's head at {when}; pass head=model's head "
            "(features -> logits)"
        )
    return head


__all__ = [
    "Detector",
    "DetectorInputs",
    "DetectorStatistics",
    "Head",
    "STATISTICS_FORMAT_VERSION",
]
