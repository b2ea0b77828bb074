"""A true positive rate as the exact fraction it was written as (METHOD.md §5).

:func:`~dismax_cli.core.metrics.tpr_threshold` (and so ``Run.threshold`` and ``dismax
detect --tpr``) reads ``tpr`` through :func:`tpr_fraction`, so any real number is taken and
``k = ceil(tpr · n)`` is computed without floating-point rounding.
"""

from __future__ import annotations

import math
import numbers
from decimal import Decimal
from fractions import Fraction

import numpy as np

from dismax_cli.core.tensor_checks import check_usable_tensor
from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q


def tpr_fraction(tpr: object) -> Fraction:
    """``tpr`` as the exact fraction it was written as (0.95 -> 19/20), checked to be in (0, 1].

    Any real number is taken: int, float, :class:`~fractions.Fraction`,
    :class:`~decimal.Decimal`, a numpy scalar of any float or int dtype, or a one-element numpy
    array or torch tensor. A binary float is read as its shortest decimal spelling (float32
    0.95 is 19/20, not 0.949999988...), so ``ceil(tpr · n)`` has no rounding error (METHOD.md §5).

    Raises:
        DismaxError: for true/false, text or another non-number (``tpr ... is not a number``),
            and for a number that is NaN, infinite or outside (0, 1].
    """
    value = _as_scalar(tpr)
    if isinstance(value, np.ndarray):
        raise DismaxError(
            f"tpr holds {value.size} values, not one number: give one fraction in (0, 1], e.g. 0.95"
        )
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real | Decimal):
        shown = q(bool(value)) if isinstance(value, np.bool_) else q(value)
        raise DismaxError(
            f"tpr {shown} is not a number: give a fraction in (0, 1] (a float such as 0.95)"
        )
    if isinstance(value, Decimal | numbers.Rational):
        exact = Fraction(value) if not isinstance(value, Decimal) or value.is_finite() else None
    elif math.isfinite(float(value)):
        exact = Fraction(repr(float(value)) if isinstance(value, float) else str(value))
    else:
        exact = None
    if exact is None or not 0 < exact <= 1:
        raise DismaxError(
            f"tpr {q(value)} is not in (0, 1]: give the fraction of ID images to keep, e.g. 0.95"
        )
    limited = exact.limit_denominator(1_000_000)  # 0.1 + 0.2 is 3/10
    return limited if limited > 0 else exact


def _as_scalar(value: object) -> object:
    """A one-element numpy array or torch tensor as its numpy scalar; anything else as it is."""
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        check_usable_tensor(value, name="tpr", numbers=False)  # meta, sparse: no value to read
        value = value.detach().cpu()  # type: ignore[attr-defined]
        value = (value.float() if str(value.dtype) == "torch.bfloat16" else value).numpy()
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype != object:
        return value.reshape(())[()]
    return value


__all__ = ["tpr_fraction"]
