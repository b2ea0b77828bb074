"""Checkpoints: typed, versioned metadata (:class:`CheckpointMeta`), atomic save, checked load.

The metadata and its checks live in :mod:`dismax_cli.engine.checkpoint_meta` (re-exported here).

A checkpoint is one ``torch.save`` dict: the metadata's :meth:`CheckpointMeta.to_dict` keys, the
model's ``state_dict`` and the optimiser's. Format 2 keeps the fitted temperature in the
metadata (``temperature``); heads hold no temperature (they return raw logits, METHOD.md §3–§4).
Format-1 files (the temperature as the ``head.temperature`` buffer) are migrated on load.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dismax_cli.data import ImageTransform
from dismax_cli.engine._messages import (
    exception_reason,
    first_sentence,
    keys_shown,
    printable,
    refused_global,
)
from dismax_cli.engine.build import build_model
from dismax_cli.engine.checkpoint_meta import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_FORMAT_VERSION,
    CheckpointMeta,
    metadata_problem,
)
from dismax_cli.engine.config import EpochLog
from dismax_cli.engine.devices import resolve_device
from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q
from dismax_cli.fileio import (
    CHECKPOINT_NAME,
    LOG_NAME,
    atomic_write_bytes,
    checkpoint_path,
)

#: Versions :func:`load_checkpoint` reads (older ones are migrated to the current one).
READABLE_VERSIONS = (1, 2)
_TEMPERATURE_KEY = "head.temperature"  # format 1 kept T as a head buffer


def migrate_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """A format-1 payload as format 2: ``head.temperature`` moves from the weights to the metadata.

    Returns a new dict (``payload`` is not changed); a format-2 payload comes back as it is.

    Raises:
        DismaxError: when a format-1 file has no usable ``head.temperature``.
    """
    if payload.get("format_version") != 1:
        return payload
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise DismaxError("the checkpoint metadata is damaged (no 'state_dict')")
    state = dict(state)
    temperature = state.pop(_TEMPERATURE_KEY, None)
    if not isinstance(temperature, torch.Tensor) or temperature.numel() != 1:
        raise DismaxError("the checkpoint metadata is damaged (no head.temperature)")
    return {
        **payload,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "temperature": float(temperature),
        "state_dict": state,
    }


@dataclass
class Checkpoint:
    """A loaded checkpoint: typed metadata, the weights and the optimiser state (or None)."""

    meta: CheckpointMeta
    state_dict: dict[str, Any]
    optimizer: Any = None  # as stored; load_optimizer_state checks it

    def to_payload(self) -> dict[str, Any]:
        """The dict :func:`save_checkpoint` writes."""
        payload = {**self.meta.to_dict(), "state_dict": self.state_dict}
        if self.optimizer is not None:
            payload["optimizer"] = self.optimizer
        return payload


def save_checkpoint(path: Path, checkpoint: Checkpoint | dict[str, Any]) -> None:
    """Serialise ``checkpoint`` (or a raw payload) with ``torch.save`` and write it atomically.

    Raises:
        DismaxError: when the file cannot be written (a full disk, a read-only folder), naming
            the file and the system's reason; the file that was there is kept.
    """
    payload = checkpoint.to_payload() if isinstance(checkpoint, Checkpoint) else checkpoint
    save_torch_file(path, _canonical(payload))


def save_torch_file(path: Path, payload: Any) -> None:
    """``torch.save(payload)`` to ``path`` atomically, with the system's reason on failure.

    The bytes are made in memory first: ``torch.save`` into a file that fails mid-write (a full
    disk) reports its own internal error (``unexpected pos ...``) instead of the ``OSError``,
    while a plain write of the bytes keeps it. The bytes are the same as writing to the file.

    Raises:
        DismaxError: ``cannot write 'PATH': No space left on device; ...``; nothing is left
            under the name but what was there before.
    """
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    try:
        atomic_write_bytes(path, buffer.getbuffer())
    except OSError as exc:
        raise DismaxError(
            f"cannot write {q(path)}: {exc.strerror or exc}; free space there (or choose "
            "another folder) and run the command again"
        ) from None


def _canonical(value: Any) -> Any:
    """Rebuild containers with interned strings so pickling does not depend on object identity.

    Pickle memoises by object: a key loaded from a checkpoint is a different string object than
    the same key created in code, which changes the bytes. Interning makes a resumed run's
    checkpoint byte-identical to an uninterrupted one's.
    """
    if isinstance(value, str):
        return sys.intern(value)
    if isinstance(value, dict):
        return type(value)((_canonical(k), _canonical(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_canonical(v) for v in value)
    return value


def _unpickle(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle means an unreadable file
        refused = refused_global(str(exc))
        if refused is not None:
            raise DismaxError(
                f"{q(path)} is not a dismax checkpoint: it holds {refused}, which the "
                "weights-only loader refuses (a dismax checkpoint holds only tensors and plain "
                f"Python values); use the {CHECKPOINT_NAME} that `dismax train` writes"
            ) from None
        raise DismaxError(
            f"{q(path)} is not a readable dismax checkpoint (another kind of file, truncated or "
            f"corrupted: {exception_reason(exc)}); retrain or restore it from a copy, or pass "
            f"the {CHECKPOINT_NAME} that `dismax train` writes"
        ) from None


def load_payload(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, checked and migrated to the current format (for tools and tests).

    Raises:
        DismaxError: when the file is missing, truncated, corrupted, or not a dismax checkpoint.
    """
    path = checkpoint_path(path)
    if not path.is_file():
        raise DismaxError(
            f"checkpoint {q(path)} does not exist: pass a run folder or its {CHECKPOINT_NAME}"
        )
    payload = _unpickle(path)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise DismaxError(
            f"{q(path)} is not a dismax checkpoint: use the {CHECKPOINT_NAME} that "
            "`dismax train` writes into its run folder"
        )
    if payload.get("format_version") not in READABLE_VERSIONS:
        raise DismaxError(
            f"{q(path)} has checkpoint format version {q(payload.get('format_version'))}; "
            f"this dismax reads versions {', '.join(map(str, READABLE_VERSIONS))}: retrain "
            "with this version"
        )
    try:
        payload = migrate_payload(payload)
        problem = metadata_problem(payload)
    except DismaxError as exc:
        problem = str(exc).split("(", 1)[-1].rstrip(")")
    if problem is None and not isinstance(payload.get("state_dict"), dict):
        problem = "no 'state_dict'"
    if problem:
        raise DismaxError(
            f"{q(path)} has damaged metadata ({problem}); it was edited or corrupted: "
            "retrain or restore it from a copy"
        )
    return payload


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a dismax checkpoint (file or run folder) with ``weights_only=True``, typed.

    Raises:
        DismaxError: when the file is missing, truncated, corrupted, or not a dismax checkpoint.
    """
    payload = load_payload(path)
    return Checkpoint(
        meta=CheckpointMeta.from_dict(payload),
        state_dict=payload["state_dict"],
        optimizer=payload.get("optimizer"),
    )


def state_dict_problem(model: nn.Module, state_dict: dict[str, Any]) -> str | None:
    """What keeps ``state_dict`` from loading into ``model``, naming the keys, or None.

    Compares names and shapes itself (torch's ``load_state_dict`` error names the keys only on
    later lines of a multi-line message): missing keys, unexpected keys, values that are not
    tensors, and tensors whose shape differs from the model's.
    """
    expected = model.state_dict()
    given = {str(k): v for k, v in state_dict.items()}
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    not_tensors = [k for k in expected if k in given and not isinstance(given[k], torch.Tensor)]
    misshaped = [
        f"{printable(k, 60)} {tuple(given[k].shape)} (the model needs {tuple(v.shape)})"
        for k, v in expected.items()
        if isinstance(given.get(k), torch.Tensor) and given[k].shape != v.shape
    ]
    parts = []
    if missing:
        parts.append(f"missing {keys_shown(missing)}")
    if unexpected:
        parts.append(f"unexpected {keys_shown(unexpected)}")
    if not_tensors:
        parts.append(f"not a tensor: {keys_shown(not_tensors)}")
    if misshaped:
        parts.append("wrong shape " + "; ".join(misshaped[:4]))
        if len(misshaped) > 4:
            parts[-1] += f" and {len(misshaped) - 4} more"
    return "; ".join(parts) or None


def load_model_state(
    model: nn.Module, checkpoint: Checkpoint, *, path: str | Path | None = None
) -> None:
    """Load ``checkpoint.state_dict`` into ``model``, or raise one line naming the bad keys.

    Every command that loads a checkpoint (score, calibrate, train --resume, benchmark reuse)
    goes through here.

    Raises:
        DismaxError: naming the missing, unexpected, non-tensor or mis-shaped keys.
    """
    problem = state_dict_problem(model, checkpoint.state_dict)
    if problem is None:
        try:
            model.load_state_dict(checkpoint.state_dict)
        except (RuntimeError, KeyError, TypeError) as exc:
            problem = first_sentence(str(exc))
    if problem is not None:
        meta = checkpoint.meta
        where = f"{q(path)}: the" if path is not None else "the checkpoint's"
        raise DismaxError(
            f"{where} weights do not fit a {meta.method} {meta.model} with "
            f"{meta.num_classes} classes ({problem}); the file is damaged or was edited: "
            "retrain or restore it from a copy"
        )


def _optimizer_problem(optimizer: torch.optim.Optimizer, state: Any) -> str | None:
    if not isinstance(state, dict):
        return "it holds no optimizer state"
    try:
        optimizer.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as exc:
        return f"its optimizer state does not fit ({first_sentence(str(exc))})"
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, param in enumerate(params):
        for name, value in optimizer.state.get(param, {}).items():
            if isinstance(value, torch.Tensor) and value.ndim and value.shape != param.shape:
                return (
                    f"its optimizer {name} of parameter {index} has shape "
                    f"{tuple(value.shape)}, not {tuple(param.shape)}"
                )
    return None


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, checkpoint: Checkpoint, *, path: str | Path
) -> None:
    """Load ``checkpoint.optimizer`` into ``optimizer`` for ``train --resume``, or raise one line.

    Checks what torch's ``load_state_dict`` does not: every per-parameter buffer (SGD's
    ``momentum_buffer``) has its parameter's shape, so a damaged file fails here rather than at
    the first training step.

    Raises:
        DismaxError: naming the problem when the optimizer state is missing, of another layout,
            or holds a buffer whose shape differs from its parameter's.
    """
    problem = _optimizer_problem(optimizer, checkpoint.optimizer)
    if problem is not None:
        raise DismaxError(
            f"{q(path)} cannot be resumed: {problem}; the file is damaged or was edited: "
            "start a new run with another --out"
        )


@dataclass
class ModelBundle:
    """A classifier with everything needed to feed it and to describe it.

    Attributes:
        model: backbone + head, on ``device``; returns raw logits (T = 1).
        transform: the ID test transform (resize, channels, normalisation).
        meta: the checkpoint's metadata (method, model, classes, config, temperature ...).
        device: where the model lives.
    """

    model: nn.Module  # a Classifier, or an ExternalClassifier (torchvision:/timm: models)
    transform: ImageTransform
    meta: CheckpointMeta
    device: torch.device

    @property
    def temperature(self) -> float:
        """The run's temperature: probabilities are ``softmax(logits / T)`` (METHOD.md §4)."""
        return float(self.meta.temperature)


def bundle_from_checkpoint(
    checkpoint: Checkpoint,
    *,
    device: torch.device | str = "cpu",
    path: str | Path | None = None,
) -> ModelBundle:
    """Rebuild the classifier and its transform from a loaded checkpoint (eval mode).

    Raises:
        DismaxError: when the weights do not fit the model the metadata describes (the missing,
            unexpected or mis-shaped keys are named).
    """
    device = torch.device(device) if isinstance(device, str) else device
    meta = checkpoint.meta
    model = build_model(
        method=meta.method,
        model=meta.model,
        num_classes=meta.num_classes,
        channels=meta.channels,
        image_size=meta.image_size,
        seed=0,
    )
    load_model_state(model, checkpoint, path=path)
    model.to(device)
    model.eval()
    transform = ImageTransform.from_dict(meta.transform)
    return ModelBundle(model=model, transform=transform, meta=meta, device=device)


def load_bundle(path: str | Path, *, device: str = "cpu") -> ModelBundle:
    """Load a checkpoint file or run folder into a :class:`ModelBundle` on ``device``.

    Raises:
        DismaxError: for an unreadable checkpoint or weights that do not fit its model.
    """
    checkpoint = load_checkpoint(path)
    return bundle_from_checkpoint(
        checkpoint, device=resolve_device(device), path=checkpoint_path(path)
    )


def read_train_log(path: Path) -> list[EpochLog]:
    """The epochs of ``train_log.jsonl`` (unreadable lines, also bytes that are not UTF-8,
    skipped; [] when it is missing)."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(ValueError, TypeError):
            entries.append(EpochLog(**json.loads(line)))
    return entries


def write_train_log(path: Path, entries: list[EpochLog]) -> None:
    """Rewrite ``train_log.jsonl`` atomically with ``entries``."""
    text = "".join(json.dumps(dataclasses.asdict(e)) + "\n" for e in entries)
    atomic_write_bytes(path, text.encode())


def append_train_log(path: Path, entry: EpochLog) -> None:
    """Add one epoch's line to ``train_log.jsonl``."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(dataclasses.asdict(entry)) + "\n")


__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_FORMAT_VERSION",
    "CHECKPOINT_NAME",
    "LOG_NAME",
    "Checkpoint",
    "CheckpointMeta",
    "ModelBundle",
    "append_train_log",
    "bundle_from_checkpoint",
    "checkpoint_path",
    "load_bundle",
    "load_checkpoint",
    "load_model_state",
    "load_optimizer_state",
    "load_payload",
    "metadata_problem",
    "migrate_payload",
    "read_train_log",
    "save_checkpoint",
    "state_dict_problem",
    "write_train_log",
]
