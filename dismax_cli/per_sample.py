"""Per-sample data of a report in one ``.npz``: what :mod:`dismax_cli.plots` draws from.

The file holds the ID targets and, per method, the ID logits at T = 1, the fitted temperature
and the default score on the ID test split and on each OOD set (METHOD.md §3, §4).
:func:`save_per_sample` writes it atomically and byte-deterministically and returns its sha256,
which a report can store to name it; :func:`load_per_sample` reads it back (and refuses a file
whose hash differs from the one given). No pickle is needed to read it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q
from dismax_cli.fileio import atomic_write_bytes, check_regular_file

#: Version of the per-sample npz layout (stored in its index).
PER_SAMPLE_FORMAT = 1
_INDEX_KEY = "index"
# A fixed timestamp for the npz members, so equal data give byte-identical files.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class MethodSamples:
    """One method's per-sample outputs.

    Attributes:
        logits: ID test logits at T = 1 (§3), float ``(N, C)``.
        temperature: The calibrated temperature T (§4); probabilities after calibration are
            ``softmax(logits / T)``.
        score: The name of the default OOD score (e.g. ``mmles``).
        id_scores: That score on the ID test samples, ``(N,)``.
        ood_scores: OOD set name → that score on its samples, ``(N_ood,)`` each.
    """

    logits: np.ndarray
    temperature: float
    score: str
    id_scores: np.ndarray
    ood_scores: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class PerSample:
    """Per-sample data of a report: ID targets ``(N,)`` and each method's outputs."""

    targets: np.ndarray
    methods: dict[str, MethodSamples]


def validate_per_sample(per_sample: PerSample) -> None:
    targets = np.asarray(per_sample.targets)
    if targets.ndim != 1 or targets.size == 0 or not np.issubdtype(targets.dtype, np.integer):
        raise DismaxError(
            f"targets must be a non-empty integer vector (N,), got dtype {targets.dtype} and "
            f"shape {targets.shape}"
        )
    if not per_sample.methods:
        raise DismaxError("the per-sample data holds no method: add at least one")
    n = targets.size
    for name, m in per_sample.methods.items():
        logits = np.asarray(m.logits)
        if logits.ndim != 2 or logits.shape[0] != n:
            raise DismaxError(
                f"logits of {q(name)} must have shape (N, C) with N = {n} targets, got "
                f"{logits.shape}"
            )
        if np.asarray(m.id_scores).shape != (n,):
            raise DismaxError(
                f"id_scores of {q(name)} must have shape ({n},), got "
                f"{np.asarray(m.id_scores).shape}"
            )
        if not (
            isinstance(m.temperature, int | float)
            and math.isfinite(m.temperature)
            and m.temperature > 0
        ):
            raise DismaxError(
                f"temperature of {q(name)} must be a positive finite number, got {q(m.temperature)}"
            )


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def per_sample_bytes(per_sample: PerSample) -> bytes:
    """Serialise per-sample data to ``.npz`` bytes (deterministic: equal data, equal bytes).

    Layout: ``targets.npy``; per method ``i`` ``m{i}_logits.npy``, ``m{i}_id_scores.npy`` and
    ``m{i}_ood{j}.npy``; ``index.npy`` a JSON string naming the methods, scores, temperatures
    and OOD sets (so any name works; no pickle is needed to read it).

    Raises:
        DismaxError: If the shapes disagree (see :class:`PerSample`).
    """
    validate_per_sample(per_sample)
    members: dict[str, np.ndarray] = {"targets": np.asarray(per_sample.targets, dtype=np.int64)}
    index: dict[str, object] = {"format": PER_SAMPLE_FORMAT, "methods": []}
    for i, (name, m) in enumerate(per_sample.methods.items()):
        members[f"m{i}_logits"] = np.asarray(m.logits)
        members[f"m{i}_id_scores"] = np.asarray(m.id_scores)
        oods = []
        for j, (ood, scores) in enumerate(m.ood_scores.items()):
            members[f"m{i}_ood{j}"] = np.asarray(scores)
            oods.append(ood)
        index["methods"].append(  # type: ignore[attr-defined]
            {"name": name, "score": m.score, "temperature": float(m.temperature), "ood": oods}
        )
    members[_INDEX_KEY] = np.array([json.dumps(index, sort_keys=True)])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, array in members.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, _npy_bytes(array))
    return buffer.getvalue()


def save_per_sample(path: str | Path, per_sample: PerSample) -> str:
    """Write per-sample data to an ``.npz`` atomically and return its sha256 (hex).

    The bytes depend on the data only (fixed member timestamps), so the hash names the content:
    a report stores it and :func:`load_per_sample` refuses a file that changed since.

    Raises:
        DismaxError: If the shapes disagree or the folder does not exist.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise DismaxError(
            f"cannot write {q(path)}: folder {q(path.parent)} does not exist; create it"
        )
    data = per_sample_bytes(per_sample)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


#: The fix for an unusable per-sample file (no option names one: it is found beside the report).
_FIX = "keep the .samples.npz the benchmark wrote with the report next to it"


def load_per_sample(path: str | Path, *, sha256: str | None = None) -> PerSample:
    """Read per-sample data written by :func:`save_per_sample`.

    Args:
        path: The ``.npz`` file.
        sha256: The hash the report names; when given, a file with other bytes is refused.

    Raises:
        DismaxError: If the file is missing, is not a per-sample npz, or its sha256 differs.
    """
    path = Path(path)
    check_regular_file(path, "the per-sample file", _FIX)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DismaxError(
            f"cannot read the per-sample file {q(path)} ({exc.strerror}): {_FIX}"
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256.lower():
        raise DismaxError(
            f"the per-sample file {q(path)} has sha256 {digest}, not the {sha256} the report "
            "names: it changed since the report was written; rerun the benchmark"
        )
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        index = json.loads(str(arrays[_INDEX_KEY].reshape(-1)[0]))
        methods = {}
        for i, m in enumerate(index["methods"]):
            methods[m["name"]] = MethodSamples(
                logits=arrays[f"m{i}_logits"],
                temperature=float(m["temperature"]),
                score=m["score"],
                id_scores=arrays[f"m{i}_id_scores"],
                ood_scores={ood: arrays[f"m{i}_ood{j}"] for j, ood in enumerate(m["ood"])},
            )
        per_sample = PerSample(targets=arrays["targets"], methods=methods)
    except (
        OSError,
        EOFError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        zipfile.BadZipFile,
    ) as exc:
        raise DismaxError(
            f"{q(path)} is not a dismax per-sample file ({type(exc).__name__}: {exc}); {_FIX}"
        ) from None
    validate_per_sample(per_sample)
    return per_sample


__all__ = [
    "PER_SAMPLE_FORMAT",
    "MethodSamples",
    "PerSample",
    "load_per_sample",
    "per_sample_bytes",
    "save_per_sample",
    "validate_per_sample",
]
