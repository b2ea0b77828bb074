"""Convert and validate the array inputs of the scores, metrics, calibration and ensemble code.

Every public function of those modules accepts a torch tensor, a numpy array or a (nested) Python
list. These helpers turn such an input into a float64 array (numpy or torch), check its number of
dimensions and reject NaN or infinite values with a :class:`~dismax_cli.errors.DismaxError` that
names the argument.

float64 maths always runs on the CPU: a tensor on another device (CUDA, MPS, …) is first copied
to the CPU in its own dtype and only then cast (:func:`host_float64`), so no float64 tensor is
ever created on an accelerator (Apple's MPS has no float64 at all).
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import numpy.typing as npt
import torch

from dismax_cli.core.tensor_checks import check_usable_tensor
from dismax_cli.errors import DismaxError

ArrayLike: TypeAlias = torch.Tensor | npt.ArrayLike
"""A torch tensor, a numpy array, or anything ``numpy.asarray`` understands (lists, scalars)."""


def _shape_text(shape: tuple[int, ...]) -> str:
    return str(tuple(int(n) for n in shape))


def _check_ndim(
    ndim_got: int, shape: tuple[int, ...], *, name: str, ndim: int, layout: str
) -> None:
    if ndim_got != ndim:
        raise DismaxError(
            f"{name} must have {ndim} dimension{'s' if ndim != 1 else ''} {layout}, "
            f"got shape {_shape_text(shape)}; reshape it before the call"
        )


def host_float64(tensor: torch.Tensor) -> torch.Tensor:
    """Return ``tensor`` as float64 on the CPU, moved in its own dtype first, then cast.

    float64 maths runs on the CPU for every device: exact enough for every score and metric,
    cheap there, slow on most GPUs and missing on Apple's MPS. ``tensor.to("cpu",
    torch.float64)`` in one call may cast on the source device (creating a float64 tensor on
    CUDA/MPS); this never does. Autograd follows both steps.

    Args:
        tensor: A real tensor on any device.

    Returns:
        A float64 CPU tensor (``tensor`` itself when it already is one).
    """
    if tensor.device.type != "cpu":
        tensor = tensor.to(device="cpu")
    return tensor.to(dtype=torch.float64)


def to_numpy_float64(
    values: ArrayLike, *, name: str, ndim: int, layout: str, check_finite: bool = True
) -> np.ndarray:
    """Convert ``values`` to a float64 numpy array with ``ndim`` dimensions.

    Args:
        values: A torch tensor (any device; detached and copied to the CPU before the cast to
            float64), a numpy array or a nested list of numbers.
        name: The argument's name, used in error messages.
        ndim: The required number of dimensions.
        layout: The expected layout for error messages, e.g. ``"(N,)"`` or ``"(B, C)"``.
        check_finite: Reject NaN and infinite values.

    Returns:
        A float64 numpy array (a copy when a conversion was needed).

    Raises:
        DismaxError: If the values are not numeric, have the wrong number of dimensions, or hold
            NaN or infinite values while ``check_finite`` is true; for a tensor without usable
            values (``meta``, sparse, complex, bool: :func:`~dismax_cli.core.tensor_checks.
            check_usable_tensor`).
    """
    if isinstance(values, torch.Tensor):
        check_usable_tensor(values, name=name)
        array = host_float64(values.detach()).numpy()
    else:
        try:
            array = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise DismaxError(
                f"{name} must be numeric (a tensor, array or list of numbers): {error}"
            ) from error
    _check_ndim(array.ndim, array.shape, name=name, ndim=ndim, layout=layout)
    if check_finite and not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise DismaxError(
            f"{name} holds {bad} NaN or infinite value{'s' if bad != 1 else ''}; "
            "remove them or fix the model/data that produced them"
        )
    return array


def to_torch_float64(
    values: ArrayLike, *, name: str, ndim: int, layout: str
) -> tuple[torch.Tensor, bool]:
    """Convert ``values`` to a finite float64 CPU torch tensor with ``ndim`` dimensions.

    A tensor keeps its autograd graph; one on another device is copied to the CPU in its own
    dtype before the cast (:func:`host_float64`), so no float64 tensor is created on it. Anything
    else becomes a CPU tensor.

    Args:
        values: A torch tensor, a numpy array or a nested list of numbers.
        name: The argument's name, used in error messages.
        ndim: The required number of dimensions.
        layout: The expected layout for error messages, e.g. ``"(B, C)"``.

    Returns:
        The float64 tensor and whether the input was a torch tensor (so that callers can return
        the same kind of array they were given).

    Raises:
        DismaxError: If the values are not numeric, have the wrong number of dimensions, or hold
            NaN or infinite values; for a tensor without usable values (``meta``, sparse,
            complex, bool: :func:`~dismax_cli.core.tensor_checks.check_usable_tensor`).
    """
    if isinstance(values, torch.Tensor):
        check_usable_tensor(values, name=name)
        _check_ndim(values.dim(), tuple(values.shape), name=name, ndim=ndim, layout=layout)
        tensor = host_float64(values)
        finite = torch.isfinite(tensor)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            raise DismaxError(
                f"{name} holds {bad} NaN or infinite value{'s' if bad != 1 else ''}; "
                "remove them or fix the model/data that produced them"
            )
        return tensor, True
    array = to_numpy_float64(values, name=name, ndim=ndim, layout=layout)
    return torch.from_numpy(array), False


def to_numpy_targets(targets: ArrayLike, *, num_classes: int, num_samples: int) -> np.ndarray:
    """Convert class ``targets`` to an int64 numpy array and check them against the predictions.

    Args:
        targets: Integer class indices, shape ``(N,)``.
        num_classes: C, the number of classes of the matching probabilities or logits.
        num_samples: N, the number of rows of the matching probabilities or logits.

    Returns:
        The targets as an int64 numpy array.

    Raises:
        DismaxError: If the targets are not integers, not one-dimensional, not ``num_samples``
            long, or outside ``[0, num_classes)``.
    """
    if isinstance(targets, torch.Tensor):
        check_usable_tensor(targets, name="targets", numbers=False)  # bool: refused below
        array = targets.detach().cpu().numpy()
    else:
        array = np.asarray(targets)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        if array.size == 0 and array.dtype == np.float64:  # np.asarray([]) is float64
            array = array.astype(np.int64)
        else:
            raise DismaxError(
                f"targets must be integer class indices, got dtype {array.dtype}; "
                "convert them with .long() / .astype(int)"
            )
    _check_ndim(array.ndim, array.shape, name="targets", ndim=1, layout="(N,)")
    if array.shape[0] != num_samples:
        raise DismaxError(
            f"targets has {array.shape[0]} entries but there are {num_samples} rows of "
            "predictions; pass one target per row"
        )
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        raise DismaxError(
            f"targets must lie in [0, {num_classes - 1}] for {num_classes} classes, got values in "
            f"[{int(array.min())}, {int(array.max())}]; check the label mapping"
        )
    return array.astype(np.int64, copy=False)


__all__ = [
    "ArrayLike",
    "host_float64",
    "to_numpy_float64",
    "to_numpy_targets",
    "to_torch_float64",
]
