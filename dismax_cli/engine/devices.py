"""Where a run computes: device names, and the mixed precision used there.

CUDA runs under bfloat16 autocast; CPU and MPS run in float32.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch

from dismax_cli.config import InvalidValueError, check_device_name
from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q
from dismax_cli.numbers import parse_integer

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str) -> torch.device:
    """Map ``auto|cpu|cuda|cuda:N|mps`` to a torch device (``cuda:LOCAL_RANK`` under torchrun).

    Raises:
        InvalidValueError: for a name that is no device (``gpu``, ``cuda:x``).
        DismaxError: for a device this machine does not have, or one torchrun cannot use
            (:func:`torchrun_device`).
    """
    return torchrun_device(_resolve(name))


def _resolve(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    name = check_device_name(name)
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DismaxError(
                f"--device {name} was asked for but no CUDA GPU is available: use --device cpu"
            )
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise DismaxError(
                f"--device {name} was asked for but this machine has "
                f"{torch.cuda.device_count()} CUDA GPU(s): use cuda:0 .. "
                f"cuda:{torch.cuda.device_count() - 1}"
            )
        return torch.device(name)
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DismaxError(
                "--device mps was asked for but MPS is not available: use --device cpu"
            )
        return torch.device("mps")
    raise InvalidValueError(  # pragma: no cover - check_device_name admits only the above
        "device", f"device {q(name)} is invalid: choose one of {', '.join(DEVICES)}"
    )


def torchrun_env_int(name: str, default: int) -> int:
    """An integer variable torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK), or ``default``."""
    if name not in os.environ:
        return default
    value = parse_integer(os.environ[name])  # ASCII digits only (dismax_cli.numbers)
    if value is None:
        raise DismaxError(
            f"{name}={q(os.environ[name])} is not an integer: start the command with torchrun, "
            "which sets it"
        )
    return value


def torchrun_device(device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for CUDA under torchrun (``WORLD_SIZE`` > 1),
    else ``device`` (:mod:`~dismax_cli.engine.distributed`).

    Raises:
        DismaxError: for ``cuda:N`` under torchrun (each rank takes GPU ``LOCAL_RANK``), MPS
            under torchrun, or fewer GPUs than local ranks.
    """
    if torchrun_env_int("WORLD_SIZE", 1) <= 1 or device.type == "cpu":
        return device
    if device.type != "cuda":
        raise DismaxError(
            f"torchrun with --device {device.type} is not supported: use --device cuda or cpu"
        )
    if device.index is not None:
        raise DismaxError(
            f"--device {device} under torchrun: each rank uses GPU LOCAL_RANK; pass --device cuda"
        )
    local = torchrun_env_int("LOCAL_RANK", 0)
    if local >= torch.cuda.device_count():
        raise DismaxError(
            f"local rank {local} has no GPU (this node has {torch.cuda.device_count()}): use "
            "--nproc_per_node at most the number of GPUs"
        )
    return torch.device("cuda", local)


def autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of ``device``: bfloat16 on CUDA, none (float32) elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device_layout(inputs: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``inputs`` (B, C, H, W) in the layout ``device`` runs fastest (channels-last on CUDA)."""
    if device.type == "cuda":
        return inputs.contiguous(memory_format=torch.channels_last)
    return inputs


__all__ = ["DEVICES", "autocast", "resolve_device", "to_device_layout", "torchrun_device"]
