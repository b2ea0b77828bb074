"""The experimental protocol of a run: honest (dismax's default) or the paper's (issue 14).

METHOD.md §4 and §6 name two protocols:

- ``honest`` (default): the run trains on the training split minus a seeded, stratified
  validation split (``val_fraction``, 10 %); the temperature is fitted on that validation split
  with the grid + bounded Brent search; the last epoch is kept (``select="last"``) or the epoch
  with the best validation accuracy (``select="best-val"``). Nothing is fitted or selected on
  the test split.
- ``paper`` (the reference code's): the run trains on every training image; the temperature is
  fitted on the ID test split with bounded L-BFGS-B from T = 1 (bounds [0.001, 100], 15-bin ECE);
  the epoch with the best *test* accuracy is kept. Calibration and model selection therefore saw
  the test split, and every report made this way says so.

This module holds the names, the rules that combine them, and the record every report carries
(``Report.protocol``). It imports neither torch nor rich, so the CLI's option parsers and the
renderer can use it.
"""

from __future__ import annotations

from typing import Any

from dismax_cli.config import InvalidValueError
from dismax_cli.errors import quote_value as q

PROTOCOLS: tuple[str, ...] = ("honest", "paper")
#: ``--select`` values: ``last`` (today's rule) or the best validation accuracy (METHOD.md §6).
SELECTIONS: tuple[str, ...] = ("last", "best-val")
#: ``--calibration-optimizer`` values (:data:`dismax_cli.core.calibration.OPTIMIZERS`).
CALIBRATION_OPTIMIZERS: tuple[str, ...] = ("grid", "lbfgsb")
#: What each protocol calibrates with when no optimizer is given (METHOD.md §4).
DEFAULT_OPTIMIZER = {"honest": "grid", "paper": "lbfgsb"}
#: The epoch each protocol keeps when no ``select`` is given (METHOD.md §6).
DEFAULT_SELECTION = {"honest": "last", "paper": "best-test"}
#: The split each selection rule measures accuracy on (None: no selection).
SELECTION_SPLIT = {"last": None, "best-val": "val", "best-test": "test"}

_OPTIMIZER_TEXT = {
    "grid": "log-grid search refined by bounded Brent",
    "lbfgsb": "bounded L-BFGS-B from T = 1, bounds [0.001, 100]",
}
_SELECTION_TEXT = {
    "last": "the last epoch kept",
    "best-val": "the epoch with the best validation accuracy kept",
    "best-test": "the epoch with the best ID test accuracy kept",
}


def check_protocol(protocol: object) -> str:
    """Return ``protocol`` if it is ``honest`` or ``paper``.

    Raises:
        InvalidValueError: naming the value and the choices (key ``protocol``, exit 2).
    """
    if protocol not in PROTOCOLS:
        raise InvalidValueError(
            "protocol",
            f"protocol={q(protocol)} is invalid: choose honest (the default: nothing fitted or "
            "selected on the test split) or paper (the reference code's, METHOD.md §4, §6)",
        )
    return str(protocol)


def check_optimizer(optimizer: object) -> str | None:
    """Return a calibration optimizer name (or None: the protocol's default).

    Raises:
        InvalidValueError: for anything but ``grid``, ``lbfgsb`` or None (key
            ``calibration_optimizer``).
    """
    if optimizer is not None and optimizer not in CALIBRATION_OPTIMIZERS:
        raise InvalidValueError(
            "calibration_optimizer",
            f"calibration_optimizer={q(optimizer)} is invalid: choose grid (the default: "
            "log-grid + bounded Brent) or lbfgsb (the reference's bounded L-BFGS-B)",
        )
    return None if optimizer is None else str(optimizer)


def resolve_selection(protocol: str, select: str | None) -> str:
    """The epoch rule a run uses: ``last``, ``best-val`` or ``best-test`` (METHOD.md §6).

    ``select=None`` takes the protocol's rule (honest: ``last``; paper: ``best-test``, as the
    reference does). Under ``paper`` there is no validation split, so ``best-val`` is refused;
    ``last`` keeps the paper's data and calibration but not its test-set selection.

    Raises:
        InvalidValueError: for an unknown value, or ``best-val`` under the paper protocol (key
            ``select``).
    """
    check_protocol(protocol)
    if select is None:
        return DEFAULT_SELECTION[protocol]
    if select not in SELECTIONS:
        raise InvalidValueError(
            "select",
            f"select={q(select)} is invalid: choose last (keep the last epoch) or best-val (keep "
            "the epoch with the best validation accuracy)",
        )
    if protocol == "paper" and select == "best-val":
        raise InvalidValueError(
            "select",
            "select='best-val' needs a validation split, and --protocol paper trains on every "
            "training image (it keeps the best test-accuracy epoch): drop --select, or use "
            "--protocol honest --select best-val",
        )
    return str(select)


def check_val_fraction(protocol: str, val_fraction: object) -> None:
    """Check ``val_fraction`` for ``protocol``: (0, 1) when honest, [0, 1) (ignored) for paper.

    Raises:
        InvalidValueError: naming the value (key ``val_fraction``); 0 under the honest protocol
            is refused with the reason (no split would be left to calibrate on) and the fix.
    """
    ok_type = isinstance(val_fraction, int | float) and not isinstance(val_fraction, bool)
    value = float(val_fraction) if ok_type else float("nan")  # type: ignore[arg-type]
    if protocol == "honest" and value == 0:
        raise InvalidValueError(
            "val_fraction",
            "val_fraction=0 is refused under --protocol honest (the default): it would leave no "
            "validation split, so the temperature could only be fitted on the test split that is "
            "later scored; use a fraction in (0, 1), e.g. 0.1, or --protocol paper to train on "
            "every image and calibrate on the test split as the paper's code does (the reports "
            "then say so)",
        )
    if not 0 <= value < 1:
        raise InvalidValueError(
            "val_fraction",
            f"val_fraction={q(val_fraction)} is invalid: use a fraction in (0, 1), e.g. 0.1",
        )


def protocol_record(
    *,
    training: str,
    selection: str,
    calibration_split: str | None,
    optimizer: str | None,
    val_fraction: float | None = None,
) -> dict[str, Any]:
    """The ``protocol`` field of a report: what saw the test split, in words and as flags.

    Args:
        training: the run's training protocol (``honest`` or ``paper``).
        selection: ``last``, ``best-val`` or ``best-test``.
        calibration_split: ``val``, ``test`` or None (never calibrated).
        optimizer: ``grid`` or ``lbfgsb`` (None when never calibrated).
        val_fraction: the held-out share under the honest protocol.

    Returns:
        ``{"name", "training_split", "calibration_split", "calibration_optimizer",
        "model_selection", "test_set_seen", "statement"}``; ``name`` is ``paper`` when the run
        trained so or was calibrated on the test split, ``test_set_seen`` true when calibration
        or model selection used the test split.
    """
    seen = calibration_split == "test" or SELECTION_SPLIT.get(selection) == "test"
    name = "paper" if training == "paper" or calibration_split == "test" else "honest"
    if training == "paper":
        split_text = "trained on the full training split"
    else:
        share = f"{val_fraction:.0%} " if val_fraction is not None else ""
        split_text = f"trained on the training split minus a {share}validation split"
    if calibration_split is None:
        calibration_text = "never calibrated (T = 1)"
    else:
        where = "the ID test split" if calibration_split == "test" else "the validation split"
        calibration_text = f"T fitted on {where} ({_OPTIMIZER_TEXT.get(optimizer or 'grid')})"
    verdict = (
        "CALIBRATION AND MODEL SELECTION SAW THE TEST SET: these are not held-out estimates"
        if seen
        else "nothing was fitted or selected on the test split"
    )
    statement = (
        f"protocol {name}: {split_text}; {calibration_text}; {_SELECTION_TEXT[selection]}; "
        f"{verdict}"
    )
    return {
        "name": name,
        "training_split": "full" if training == "paper" else "train-minus-val",
        "calibration_split": calibration_split,
        "calibration_optimizer": optimizer,
        "model_selection": selection,
        "test_set_seen": seen,
        "statement": statement,
    }


def protocol_line(record: dict[str, Any] | None) -> str | None:
    """The line a table prints for a report's protocol (None for reports that have none)."""
    if not isinstance(record, dict) or not isinstance(record.get("statement"), str):
        return None
    return str(record["statement"])


__all__ = [
    "CALIBRATION_OPTIMIZERS",
    "DEFAULT_OPTIMIZER",
    "DEFAULT_SELECTION",
    "PROTOCOLS",
    "SELECTIONS",
    "SELECTION_SPLIT",
    "check_optimizer",
    "check_protocol",
    "check_val_fraction",
    "protocol_line",
    "protocol_record",
    "resolve_selection",
]
