"""Which OOD scores exist, which apply to which method, and ``--scores`` parsing (no torch).

Three kinds of score (higher = more in-distribution everywhere, METHOD.md §3):

- the logit scores of :data:`dismax_cli.core.scores.SCORES` (``msp`` ... ``mmles``), for one
  model's logits at T = 1;
- the deep ensemble's own scores (``msp`` and ``neg_entropy`` of the averaged probabilities,
  ``neg_mutual_information``);
- the post-hoc detectors of :mod:`dismax_cli.core.detectors` (``odin``, ``mahalanobis``,
  ``knn``, ``vim``, ``react``, ``gen``).

Every detector applies to every single-model method (SoftMax, IsoMax+, DisMax, plug-ins). An
ensemble has M feature spaces and M input gradients, so only ``gen``, a function of the
probabilities, applies to it (on the averaged probabilities p̄); the others are marked n/a with
:data:`ENSEMBLE_NA_REASON`.
"""

from __future__ import annotations

from collections.abc import Sequence

from dismax_cli.config import InvalidValueError
from dismax_cli.errors import quote_value as q

#: The logit scores of ``core/scores.py`` (kept equal to ``SCORES`` by a test).
LOGIT_SCORES = ("msp", "max_logit", "mds", "neg_entropy", "energy", "mmles")
#: The detectors of ``core/detectors`` (kept equal to ``DETECTORS`` by a test).
DETECTOR_SCORES = ("odin", "mahalanobis", "knn", "vim", "react", "gen")
#: Scores of a deep ensemble computed from its members' logits.
ENSEMBLE_SCORES = ("msp", "neg_entropy", "neg_mutual_information")
#: Detectors that apply to an ensemble (on the averaged probabilities).
ENSEMBLE_DETECTORS = ("gen",)
#: Every name ``--scores`` takes (besides ``all``), in table order.
ALL_SCORES = (*LOGIT_SCORES, "neg_mutual_information", *DETECTOR_SCORES)
ENSEMBLE_NA_REASON = (
    "they need one model's features or input gradients and a deep ensemble has one per member "
    "(msp, neg_entropy and gen of its averaged probabilities apply)"
)
ENSEMBLE_LOGIT_NA_REASON = (
    "they are defined on one model's raw logits and a deep ensemble's output is its averaged "
    "probabilities"
)
SINGLE_NA_REASON = "the mutual information needs ensemble members and a single model has none"


def parse_scores(values: Sequence[str] | None) -> tuple[str, ...]:
    """Check ``--scores`` values; ``all`` (alone) means every score.

    Returns:
        The names in the order given (duplicates removed), or ``("all",)``; ``()`` for none.

    Raises:
        InvalidValueError: for an unknown name or ``all`` mixed with names (exit 2).
    """
    names: list[str] = []
    for value in values or ():
        if not isinstance(value, str) or value not in (*ALL_SCORES, "all"):
            raise InvalidValueError(
                "scores",
                f"--scores {q(value)} is not a score: use all or any of {' '.join(ALL_SCORES)}",
            )
        if value not in names:
            names.append(value)
    if "all" in names and len(names) > 1:
        raise InvalidValueError(
            "scores", f"{q(' '.join(names))} mixes all with names: give all alone"
        )
    return tuple(names)


def applicable_scores(*, ensemble: bool) -> tuple[str, ...]:
    """Every score that applies to a single model (``ensemble=False``) or a deep ensemble."""
    if ensemble:
        return (*ENSEMBLE_SCORES, *ENSEMBLE_DETECTORS)
    return (*LOGIT_SCORES, *DETECTOR_SCORES)


def not_applicable(scores: Sequence[str], *, ensemble: bool) -> dict[str, str]:
    """The requested scores that do not apply, each with the reason (for the report)."""
    expanded = ALL_SCORES if tuple(scores) == ("all",) else tuple(scores)
    usable = applicable_scores(ensemble=ensemble)
    def reason(score: str) -> str:
        if not ensemble:
            return SINGLE_NA_REASON
        return ENSEMBLE_LOGIT_NA_REASON if score in LOGIT_SCORES else ENSEMBLE_NA_REASON

    return {s: reason(s) for s in expanded if s not in usable}


def detectors_to_run(scores: Sequence[str], *, ensemble: bool) -> tuple[str, ...]:
    """The detectors a method needs for ``scores`` (``all`` or names), in table order."""
    wanted = ALL_SCORES if tuple(scores) == ("all",) else tuple(scores)
    usable = ENSEMBLE_DETECTORS if ensemble else DETECTOR_SCORES
    return tuple(d for d in usable if d in wanted)


def method_scores(scores: Sequence[str], *, ensemble: bool) -> tuple[str, ...]:
    """Every score a method's report rows hold: its built-in scores plus the requested detectors."""
    built_in = ENSEMBLE_SCORES if ensemble else LOGIT_SCORES
    return (*built_in, *detectors_to_run(scores, ensemble=ensemble))


#: FPR@95TPR conventions (``core.metrics.FPR_CONVENTIONS``, kept equal by a test).
FPR_CONVENTIONS = ("ours", "openood")


def check_fpr_convention(value: str) -> str:
    """Return ``value`` if it is an FPR@95TPR convention.

    Raises:
        InvalidValueError: otherwise (exit 2), naming the value and the choices.
    """
    if value in FPR_CONVENTIONS:
        return value
    raise InvalidValueError(
        "fpr_convention",
        f"--fpr-convention {q(value)} is not a convention: choose ours or openood",
    )


def shown_scores(requested: Sequence[str], available: Sequence[str]) -> list[str]:
    """The scores a table shows for one method: the requested ones it has, in table order."""
    if tuple(requested) == ("all",):
        wanted: Sequence[str] = ALL_SCORES
    else:
        wanted = requested
    order = [s for s in ALL_SCORES if s in wanted] + [s for s in wanted if s not in ALL_SCORES]
    return [s for s in order if s in available]


__all__ = [
    "ALL_SCORES",
    "DETECTOR_SCORES",
    "ENSEMBLE_DETECTORS",
    "ENSEMBLE_LOGIT_NA_REASON",
    "ENSEMBLE_NA_REASON",
    "ENSEMBLE_SCORES",
    "LOGIT_SCORES",
    "FPR_CONVENTIONS",
    "applicable_scores",
    "check_fpr_convention",
    "method_scores",
    "detectors_to_run",
    "not_applicable",
    "parse_scores",
    "shown_scores",
]
