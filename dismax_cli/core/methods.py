"""The registry of methods: the one place that knows a method.

A :class:`MethodSpec` says everything the engine, the benchmark, the CLI and the tables need
about a method: its display label, how to build its head and its loss (from the training
config's entropic scale and FPR weight), whether it mixes FPR mosaics into its batches, the
temperature it trains at, its default OOD score, and — for a deep ensemble — the method its
members are trained with. Nothing else in the package compares method names.

This module imports neither torch nor the rest of the library when it is imported (the
built-in heads and losses are imported when first built), so the CLI can check method names
while it parses the command line without loading torch.

References:
    METHOD.md §1–§4; Macêdo et al., "Distinction Maximization Loss", arXiv:2205.05874;
    Macêdo & Ludermir, "Enhanced Isotropy Maximization Loss", arXiv:2105.14399;
    Hendrycks & Gimpel, "A Baseline for Detecting Misclassified and Out-of-Distribution
    Examples in Neural Networks", arXiv:1610.02136 (SoftMax + MSP);
    Lakshminarayanan, Pritzel, Blundell, "Simple and Scalable Predictive Uncertainty Estimation
    using Deep Ensembles", arXiv:1612.01474.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q

if TYPE_CHECKING:
    from torch import nn

#: The method whose inference throughput every efficiency is relative to (METHOD.md §1:
#: DisMax claims SoftMax's efficiency), and the method a benchmark's data is loaded for.
BASELINE_METHOD = "softmax"

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def unit_temperature(entropic_scale: float) -> float:
    """Training temperature of a head trained on ``softmax(logits)``: 1 (METHOD.md §2, §4)."""
    return 1.0


def inverse_entropic_scale(entropic_scale: float) -> float:
    """Training temperature of a head trained on ``softmax(E · logits)``: 1/E (METHOD.md §2, §4)."""
    return 1.0 / float(entropic_scale)


@dataclass(frozen=True)
class MethodSpec:
    """How to build, train, label and score one method.

    Attributes:
        name: registry key, lower case (``softmax``, ``isomax_plus``, ``dismax`` ...); the
            ``--method``/``--methods`` value and the METHOD of ``--require``.
        label: display name in tables and reports (``DisMax``).
        description: one line for help texts.
        make_head: ``(num_features, num_classes) -> head`` mapping features (B, D) to logits
            (B, C); None for an ensemble (its members have heads).
        make_loss: ``(entropic_scale, alpha) -> loss`` from the training config; the loss takes
            ``(logits, targets)`` or, with FPR, ``(logits, FractionalMix)``; None for an
            ensemble.
        default_score: name in :data:`dismax_cli.core.scores.SCORES` used for OOD detection.
        uses_fpr: whether fractional probability regularization is on by default (§2).
        supports_fpr: whether ``--fpr/--no-fpr`` applies to it (its label then says which).
        training_temperature: ``entropic_scale -> T`` the model is trained at: 1 for SoftMax,
            1/E for the distance heads (§4); kept when a calibration has no finite optimum.
        members_of: for a deep ensemble, the method its members are trained with; None for a
            method that trains one model.
        in_default_benchmark: whether ``dismax benchmark`` runs it when ``--methods`` is not
            given.
    """

    name: str
    label: str
    description: str
    make_head: Callable[[int, int], nn.Module] | None
    make_loss: Callable[[float, float], nn.Module] | None
    default_score: str
    uses_fpr: bool = False
    supports_fpr: bool = False
    training_temperature: Callable[[float], float] = unit_temperature
    members_of: str | None = None
    in_default_benchmark: bool = False

    @property
    def trains_one_model(self) -> bool:
        """True for a method with a head and a loss; False for an ensemble of another's runs."""
        return self.members_of is None

    def row_label(self, *, uses_fpr: bool, members: int = 1) -> str:
        """The label of a table row: ``DisMax (FPR)``, ``DisMax (no FPR)``, ``Ensemble x3``."""
        text = self.label
        if self.supports_fpr:
            text += " (FPR)" if uses_fpr else " (no FPR)"
        if self.members_of is not None:
            text += f" x{members}"
        return text


# Built-in heads and losses are imported when first built, so importing this module stays light.


def _softmax_head(num_features: int, num_classes: int) -> nn.Module:
    from dismax_cli.core.heads import SoftMaxHead

    return SoftMaxHead(num_features, num_classes)


def _isomax_plus_head(num_features: int, num_classes: int) -> nn.Module:
    from dismax_cli.core.heads import IsoMaxPlusHead

    return IsoMaxPlusHead(num_features, num_classes)


def _dismax_head(num_features: int, num_classes: int) -> nn.Module:
    from dismax_cli.core.heads import DisMaxHead

    return DisMaxHead(num_features, num_classes)


def _softmax_loss(entropic_scale: float, alpha: float) -> nn.Module:
    from dismax_cli.core.losses import SoftMaxLoss

    return SoftMaxLoss()


def _isomax_plus_loss(entropic_scale: float, alpha: float) -> nn.Module:
    from dismax_cli.core.losses import IsoMaxPlusLoss

    return IsoMaxPlusLoss(entropic_scale)


def _dismax_loss(entropic_scale: float, alpha: float) -> nn.Module:
    from dismax_cli.core.losses import DisMaxLoss

    return DisMaxLoss(entropic_scale, alpha)


_DISMAX = MethodSpec(
    name="dismax",
    label="DisMax",
    description="DisMax: distances to all prototypes + FPR mosaics; score: MMLES",
    make_head=_dismax_head,
    make_loss=_dismax_loss,
    default_score="mmles",
    uses_fpr=True,
    supports_fpr=True,
    training_temperature=inverse_entropic_scale,
    in_default_benchmark=True,
)

_BUILT_IN = (
    MethodSpec(
        name="softmax",
        label="SoftMax",
        description="linear head + cross-entropy; OOD score: maximum softmax probability",
        make_head=_softmax_head,
        make_loss=_softmax_loss,
        default_score="msp",
        in_default_benchmark=True,
    ),
    MethodSpec(
        name="isomax_plus",
        label="IsoMax+",
        description="IsoMax+: distances to prototypes, entropic scale 10; score: MDS",
        make_head=_isomax_plus_head,
        make_loss=_isomax_plus_loss,
        default_score="mds",
        training_temperature=inverse_entropic_scale,
        in_default_benchmark=True,
    ),
    _DISMAX,
    dataclasses.replace(
        _DISMAX,
        name="dismax_nofpr",
        label="DisMax (no FPR)",
        description="DisMax with FPR off (the paper's DenseNet CIFAR-10 row); score: MMLES",
        uses_fpr=False,
        supports_fpr=False,
        in_default_benchmark=False,
    ),
    MethodSpec(
        name="ensemble",
        label="Ensemble",
        description="deep ensemble of SoftMax runs (mean of their softmax); score: MSP of the mean",
        make_head=None,
        make_loss=None,
        default_score="msp",
        members_of="softmax",
        in_default_benchmark=True,
    ),
)

_METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in _BUILT_IN}


def list_methods() -> list[str]:
    """The registered methods that train one model (``dismax train --method``), in order."""
    return [name for name, spec in _METHODS.items() if spec.trains_one_model]


def benchmark_methods() -> list[str]:
    """Every registered method a benchmark can compare (ensembles included), in order."""
    return list(_METHODS)


def default_benchmark_methods() -> list[str]:
    """The methods ``dismax benchmark`` compares when ``--methods`` is not given."""
    return [name for name, spec in _METHODS.items() if spec.in_default_benchmark]


def get_method(name: str) -> MethodSpec:
    """Return the :class:`MethodSpec` registered as ``name``.

    Raises:
        DismaxError: for an unknown name; the message lists the registered ones.
    """
    try:
        return _METHODS[name]
    except (KeyError, TypeError):
        raise DismaxError(
            f"unknown method {q(name)}: choose one of {', '.join(_METHODS)}"
        ) from None


def method_label(name: str, *, uses_fpr: bool = False, members: int = 1) -> str:
    """The display label of method ``name`` (:meth:`MethodSpec.row_label`); the name itself
    for a method that is not registered (e.g. in a report written with a plug-in method)."""
    spec = _METHODS.get(name)
    return name if spec is None else spec.row_label(uses_fpr=uses_fpr, members=members)


def register_method(spec: MethodSpec, *, replace: bool = False) -> MethodSpec:
    """Add ``spec`` to the registry, so that every command and the benchmark know it.

    After ``register_method(MethodSpec(name="toy", ...))``, ``dismax train --method toy`` and
    ``dismax benchmark --methods softmax toy`` build its head and loss, calibrate it, score it
    with its default score and show its label; nothing else needs to change. Undo it with
    :func:`unregister_method`.

    Args:
        spec: the method; ``name`` lower-case letters, digits and ``_`` (it appears in
            ``--require METHOD:METRIC:SET``).
        replace: allow replacing a registered method of the same name.

    Returns:
        ``spec``.

    Raises:
        DismaxError: for a malformed or taken name, an unknown default score, a method with
            neither a head and loss nor ``members_of``, or ``members_of`` naming a method that
            is not a registered single-model method.
    """
    if not isinstance(spec, MethodSpec):
        raise DismaxError(f"register_method needs a MethodSpec, not a {type(spec).__name__}")
    if not isinstance(spec.name, str) or not _NAME.match(spec.name):
        raise DismaxError(
            f"method name {q(spec.name)} is invalid: use lower-case letters, digits and _, "
            "starting with a letter"
        )
    if spec.name in _METHODS and not replace:
        raise DismaxError(
            f"method {q(spec.name)} is already registered: pick another name or pass replace=True"
        )
    from dismax_cli.core.scores import SCORES

    if spec.default_score not in SCORES:
        raise DismaxError(
            f"default_score {q(spec.default_score)} of method {q(spec.name)} is not a score: "
            f"choose one of {', '.join(SCORES)}"
        )
    if spec.members_of is None:
        if not (callable(spec.make_head) and callable(spec.make_loss)):
            raise DismaxError(
                f"method {q(spec.name)} needs make_head and make_loss (or members_of for an "
                "ensemble of another method's runs)"
            )
    elif spec.members_of not in list_methods() or spec.members_of == spec.name:
        raise DismaxError(
            f"members_of={q(spec.members_of)} of method {q(spec.name)} is not a registered "
            f"single-model method: choose one of {', '.join(list_methods())}"
        )
    if spec.uses_fpr and not spec.supports_fpr:
        raise DismaxError(
            f"method {q(spec.name)} has uses_fpr=True but supports_fpr=False: set both"
        )
    _METHODS[spec.name] = spec
    return spec


def unregister_method(name: str) -> MethodSpec:
    """Remove a method added with :func:`register_method` and return its spec.

    Raises:
        DismaxError: for an unknown name, a built-in method, or a method that a registered
            ensemble is made of.
    """
    spec = get_method(name)
    if any(s is spec for s in _BUILT_IN):
        raise DismaxError(f"method {q(name)} is built in and cannot be unregistered")
    users = [s.name for s in _METHODS.values() if s.members_of == name]
    if users:
        raise DismaxError(
            f"method {q(name)} is the member method of {', '.join(users)}: unregister those first"
        )
    del _METHODS[name]
    return spec


__all__ = [
    "BASELINE_METHOD",
    "MethodSpec",
    "benchmark_methods",
    "default_benchmark_methods",
    "get_method",
    "inverse_entropic_scale",
    "list_methods",
    "method_label",
    "register_method",
    "unit_temperature",
    "unregister_method",
]
