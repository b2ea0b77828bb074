"""Tensors the library cannot compute with, refused with one clear error each.

The public API (the scores and metrics of :mod:`dismax_cli.core`, :func:`~dismax_cli.core.
metrics.tpr_threshold`, :meth:`Run.predict <dismax_cli.engine.deploy.Run.predict>` and
:meth:`Run.threshold <dismax_cli.engine.deploy.Run.threshold>`) takes real, dense tensors with
values on a real device. Four kinds are none of that, and would otherwise fail deep inside torch
or numpy with its own words (``NotImplementedError: Cannot copy out of meta tensor``,
``Could not run 'aten::ne.Scalar' with arguments from the 'SparseCPU' backend``):

* a tensor on the ``meta`` device (a shape without values);
* a sparse (or other non-strided) or nested tensor;
* a quantized tensor;
* complex numbers, and true/false values (``bool``) where numbers are meant.

A non-contiguous tensor (a transpose, a slice) is fine. This module imports no torch: it reads
the tensor's own attributes, so :mod:`dismax_cli.core.tpr` stays torch-free.
"""

from __future__ import annotations

from dismax_cli.errors import DismaxError


def _is_tensor(value: object) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "is_complex")


#: Devices whose tensors hold no values. tests/test_devices.py empties it: there ``meta`` stands
#: in for an accelerator, its copies to the CPU given real values by a dispatch mode.
VALUELESS_DEVICES: tuple[str, ...] = ("meta",)


def check_usable_tensor(value: object, *, name: str, numbers: bool = True) -> None:
    """Refuse a tensor that holds no usable values; anything that is no tensor passes.

    Args:
        value: Any value (only torch tensors are checked).
        name: What the value is, for the message (``logits``, ``images``, ``tpr``).
        numbers: Refuse complex and ``bool`` dtypes too (False: the caller names the dtypes it
            takes itself).

    Raises:
        DismaxError: naming ``name``, what the tensor is and the fix: for a ``meta`` tensor, a
            sparse, nested or quantized one, or (``numbers``) complex or true/false values.
    """
    if not _is_tensor(value):
        return
    tensor = value
    device = tensor.device  # type: ignore[attr-defined]
    if device.type in VALUELESS_DEVICES:
        raise DismaxError(
            f"{name} is a tensor on the 'meta' device, which holds a shape but no values: "
            "create it on a real device (device='cpu' or 'cuda') with its values"
        )
    if getattr(tensor, "is_nested", False):
        raise DismaxError(
            f"{name} is a nested tensor: pass one dense tensor, e.g. "
            "torch.nested.to_padded_tensor(x, 0.0), or a list of tensors"
        )
    layout = str(tensor.layout).removeprefix("torch.")  # type: ignore[attr-defined]
    if layout != "strided":
        raise DismaxError(f"{name} is a {layout} tensor: pass a dense one, e.g. x.to_dense()")
    if getattr(tensor, "is_quantized", False):
        raise DismaxError(f"{name} is a quantized tensor: pass x.dequantize()")
    if not numbers:
        return
    dtype = str(tensor.dtype).removeprefix("torch.")  # type: ignore[attr-defined]
    if tensor.is_complex():  # type: ignore[attr-defined]
        raise DismaxError(
            f"{name} holds complex numbers (dtype {dtype}): pass real ones, e.g. x.real"
        )
    if dtype == "bool":
        raise DismaxError(
            f"{name} holds true/false values (dtype bool), not numbers: pass numbers, "
            "e.g. x.float()"
        )


__all__ = ["check_usable_tensor"]
