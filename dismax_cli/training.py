"""The training engine: configs, the training loop, checkpoints, resume, prediction, calibration.

The paper's recipe (METHOD.md §6) is the default: SGD with Nesterov momentum 0.9, learning rate
0.1, weight decay 1e-4 on all parameters, batch 64, learning rate ×0.1 after 1/2, 2/3 and 5/6 of
the epochs. Batches are drawn from the uint8 image tensor already on the device, augmented there
(random crop with 4-pixel padding and horizontal flip, off for digit sets), normalised, and for
DisMax mixed with fractional probability regularization (METHOD.md §2).

Every random draw of epoch ``e`` comes from a generator seeded by ``(seed, e)``, and a checkpoint
is written atomically after every epoch, so a run interrupted anywhere and resumed ends with
bit-identical weights on CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dismax_cli import __version__
from dismax_cli.config import InvalidValueError, check_device_name, check_types
from dismax_cli.core.calibration import (
    TemperatureAtBoundWarning,
    fit_temperature,
    nll_from_logits,
)
from dismax_cli.core.methods import get_method, list_methods
from dismax_cli.core.metrics import accuracy, ece
from dismax_cli.core.mixing import fractional_probability_mix
from dismax_cli.data import (
    ImageSet,
    ImageTransform,
    SplitRecord,
    augment_batch,
    check_disjoint,
    load_id_splits,
    train_val_split,
)
from dismax_cli.data import (
    make_transform as make_data_transform,
)
from dismax_cli.errors import DismaxError
from dismax_cli.fileio import atomic_write, atomic_write_bytes
from dismax_cli.models import Classifier, build_backbone, list_backbones

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "train_log.jsonl"
CHECKPOINT_FORMAT = "dismax-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
#: Learning-rate milestones as fractions of the epochs (150/200/250 of 300 in the paper), exact.
MILESTONE_FRACTIONS = (Fraction(1, 2), Fraction(2, 3), Fraction(5, 6))
#: The smallest training batch: BatchNorm cannot estimate batch statistics from one image.
MIN_BATCH = 2
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (the keys of ``dismax train`` and YAML configs).

    Attributes:
        dataset: ID dataset spec (``digits[0-5]``, ``cifar10``, ``npz:PATH`` ...).
        test_dataset: a separate test-set spec (for single-file sources), or None.
        method: ``softmax``, ``isomax_plus`` or ``dismax``.
        model: backbone name (``convnet``, ``resnet18`` ...).
        epochs: number of epochs (300 in the paper).
        batch_size: training batch size (64).
        lr: initial learning rate (0.1).
        momentum: SGD momentum (0.9, Nesterov).
        weight_decay: L2 weight decay on all parameters (1e-4).
        lr_decay: learning-rate factor at each milestone (0.1).
        entropic_scale: E for IsoMax+/DisMax (10).
        alpha: weight of the FPR term (1.0).
        fpr: fractional probability regularization on/off; None = the method's default.
        augment: random crop + flip on/off; None = the dataset's default.
        seed: seed of weights, batch order, augmentation and FPR.
        val_fraction: stratified share of the training split held out for calibration.
        split_seed: seed of that split.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        data_dir: dataset folder (None: ``DISMAX_DATA_DIR`` or the user cache).
    """

    dataset: str = "digits[0-5]"
    test_dataset: str | None = None
    method: str = "dismax"
    model: str = "convnet"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_decay: float = 0.1
    entropic_scale: float = 10.0
    alpha: float = 1.0
    fpr: bool | None = None
    augment: bool | None = None
    seed: int = 0
    val_fraction: float = 0.1
    split_seed: int = 0
    device: str = "auto"
    data_dir: str | None = None

    def validate(self) -> TrainConfig:
        """Return self after checking every value; raise DismaxError naming the bad one."""
        if self.method not in list_methods():
            raise InvalidValueError(
                "method",
                f"unknown method {self.method!r}: choose one of {', '.join(list_methods())}",
            )
        if self.model not in list_backbones():
            raise InvalidValueError(
                "model",
                f"unknown model {self.model!r}: choose one of {', '.join(list_backbones())}",
            )
        positive_ints = {"epochs": 1, "batch_size": MIN_BATCH}
        for name, least in positive_ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                why = " (BatchNorm cannot train on one image)" if name == "batch_size" else ""
                raise InvalidValueError(
                    name, f"{name}={value!r} is invalid: use an integer of at least {least}{why}"
                )
        for name in ("lr", "entropic_scale"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise InvalidValueError(name, f"{name}={value!r} is invalid: use a positive number")
        for name in ("momentum", "weight_decay", "alpha", "lr_decay"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise InvalidValueError(name, f"{name}={value!r} is invalid: use a number >= 0")
        for name in ("seed", "split_seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**62:
                raise InvalidValueError(
                    name, f"{name}={value!r} is invalid: use an integer in [0, 2^62)"
                )
        if not 0 < self.val_fraction < 1:
            raise InvalidValueError(
                "val_fraction",
                f"val_fraction={self.val_fraction!r} is invalid: use a fraction in (0, 1), "
                "e.g. 0.1",
            )
        resolve_device(self.device)  # unknown or unavailable devices fail before any work
        spec = get_method(self.method)
        if self.fpr and not spec.supports_fpr:
            raise InvalidValueError(
                "fpr",
                f"FPR (fractional probability regularization) applies to dismax only, not "
                f"{self.method!r}: drop --fpr",
            )
        return self

    @property
    def uses_fpr(self) -> bool:
        """Whether this run mixes FPR mosaics into its batches."""
        return get_method(self.method).uses_fpr if self.fpr is None else bool(self.fpr)

    def milestones(self) -> list[int]:
        """Epoch counts after which the learning rate is multiplied by ``lr_decay`` (METHOD.md §6).

        See :func:`lr_milestones`: ``[150, 200, 250]`` for 300 epochs, ``[30, 40, 50]`` for 60,
        ``[]`` for 1 (its only epoch runs at ``lr``).
        """
        return lr_milestones(self.epochs)

    def lr_at(self, epoch: int) -> float:
        """Learning rate of (0-based) ``epoch``: ``lr × lr_decay^(milestones <= epoch)``.

        Epoch 0 always runs at ``lr``.
        """
        drops = sum(1 for m in self.milestones() if epoch >= m)
        return self.lr * self.lr_decay**drops

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a mapping (YAML, CLI, checkpoint); unknown keys and wrong types are errors."""
        return cls(**check_types(cls, values, what="training"))

    # Keys whose change makes an existing run a different run (everything but where it runs).
    def identity(self) -> dict[str, Any]:
        values = self.to_dict()
        for key in ("device", "data_dir"):
            values.pop(key)
        return values


@dataclass(frozen=True)
class EpochLog:
    """One line of ``train_log.jsonl``."""

    epoch: int
    loss: float
    accuracy: float
    lr: float
    seconds: float
    images_per_s: float


@dataclass(frozen=True)
class TrainProgress:
    """What the progress callback receives after every few batches and at the end of an epoch."""

    epoch: int
    epochs: int
    batch: int
    batches: int
    loss: float
    accuracy: float
    images_per_s: float
    epoch_done: bool = False


ProgressCallback = Callable[[TrainProgress], None]


@dataclass
class ModelBundle:
    """A classifier with everything needed to feed it and to describe it.

    Attributes:
        model: backbone + head, on ``device``.
        transform: the ID test transform (resize, channels, normalisation).
        meta: the checkpoint's metadata (method, model, classes, config, ...).
        device: where the model lives.
    """

    model: Classifier
    transform: ImageTransform
    meta: dict[str, Any]
    device: torch.device

    @property
    def temperature(self) -> float:
        return float(self.model.head.temperature)


@dataclass
class RunData:
    """The splits of a run: train (after the validation carve), validation and test."""

    train: ImageSet
    val: ImageSet
    test: ImageSet
    split: SplitRecord


@dataclass
class TrainResult:
    """What :func:`fit` returns."""

    run_dir: Path
    checkpoint: Path
    epochs_run: int
    train_seconds: float
    history: list[EpochLog] = field(default_factory=list)
    already_finished: bool = False


# --------------------------------------------------------------------------- devices


def resolve_device(name: str) -> torch.device:
    """Map ``auto|cpu|cuda|cuda:N|mps`` to a torch device.

    Raises:
        InvalidValueError: for a name that is no device (``gpu``, ``cuda:x``).
        DismaxError: for a device this machine does not have.
    """
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
        "device", f"device {name!r} is invalid: choose one of {', '.join(DEVICES)}"
    )


def _autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# --------------------------------------------------------------------------- data


def load_run_data(config: TrainConfig) -> RunData:
    """Load the ID splits of a run and carve the validation split (METHOD.md §4, §6).

    Raises:
        DismaxError: for datasets that cannot be loaded, unlabelled ID sets, or overlapping splits.
    """
    train_full, test = load_id_splits(
        config.dataset, test_spec=config.test_dataset, data_dir=config.data_dir
    )
    if train_full.labels is None or train_full.num_classes < 2:
        raise DismaxError(
            f"dataset {config.dataset!r} has no labels or fewer than 2 classes: the "
            "in-distribution set must be labelled"
        )
    train, val, split = train_val_split(
        train_full, val_fraction=config.val_fraction, seed=config.split_seed
    )
    check_disjoint(train, test)
    check_disjoint(val, test)
    return RunData(train=train, val=val, test=test, split=split)


def make_transform(train: ImageSet) -> ImageTransform:
    """The ID transform: the training images' size and channels, known or computed statistics."""
    return make_data_transform(train, channels=train.image_shape[2])


# --------------------------------------------------------------------------- models


def build_model(
    *, method: str, model: str, num_classes: int, channels: int, image_size: int, seed: int
) -> Classifier:
    """Build backbone + the method's head, weights drawn from ``seed`` (global RNG untouched)."""
    spec = get_method(method)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = build_backbone(model, in_channels=channels, image_size=image_size)
        head = spec.make_head(backbone.num_features, num_classes)
    return Classifier(backbone, head)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    return torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.momentum > 0,
        weight_decay=config.weight_decay,
    )


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Serialise ``payload`` with ``torch.save`` and write it atomically."""
    atomic_write(path, lambda handle: torch.save(_canonical(payload), handle))


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


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a dismax checkpoint with ``weights_only=True`` and check its format.

    Raises:
        DismaxError: when the file is missing, truncated, corrupted, or not a dismax checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise DismaxError(
            f"checkpoint {str(path)!r} does not exist: pass a run folder or its {CHECKPOINT_NAME}"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle means an unreadable file
        refused = _refused_global(str(exc))
        if refused is not None:
            raise DismaxError(
                f"{str(path)!r} is not a dismax checkpoint: it holds {refused}, which the "
                "weights-only loader refuses (a dismax checkpoint holds only tensors and plain "
                f"Python values); use the {CHECKPOINT_NAME} that `dismax train` writes"
            ) from None
        raise DismaxError(
            f"{str(path)!r} is not a readable dismax checkpoint (truncated or corrupted: "
            f"{_exception_reason(exc)}); retrain or restore it from a copy"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise DismaxError(
            f"{str(path)!r} is not a dismax checkpoint: use the {CHECKPOINT_NAME} that "
            "`dismax train` writes into its run folder"
        )
    if payload.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise DismaxError(
            f"{str(path)!r} has checkpoint format version {payload.get('format_version')!r}; "
            f"this dismax reads version {CHECKPOINT_FORMAT_VERSION}: retrain with this version"
        )
    problem = _metadata_problem(payload)
    if problem:
        raise DismaxError(
            f"{str(path)!r} has damaged metadata ({problem}); it was edited or corrupted: "
            "retrain or restore it from a copy"
        )
    return payload


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")
#: How torch's weights-only unpickler words a refusal, with the refused name as group 1.
_REFUSED_PATTERNS = (
    re.compile(r"GLOBAL (\S+) was not an allowed global"),
    re.compile(r"unsupported GLOBAL (\S+) whose module"),
    re.compile(r"Unsupported (?:global|class):? (?:GLOBAL )?(\S+)"),
    re.compile(r"(?:allowlisted|add_safe_globals)[^<]*but got <class '([^']+)'>"),
    re.compile(r"unrecognized function <(?:built-in )?(?:function|method) (\S+?)[ >]"),
    re.compile(r"unrecognized function (\S+)"),
)


def _printable(text: str, limit: int = 100) -> str:
    """``text`` without ANSI escapes or control characters, at most ``limit`` characters."""
    text = _ANSI.sub("", text)
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _refused_global(message: str) -> str | None:
    """The global a weights-only load refused, named from torch's message, or None.

    torch words the refusal differently across releases (and wraps it in advice with ANSI
    bold codes); every wording names the global, so the name is searched for, not the layout.
    """
    if "Weights only load failed" not in message and "WeightsUnpickler" not in message:
        return None
    clean = _ANSI.sub("", message)
    for pattern in _REFUSED_PATTERNS:
        match = pattern.search(clean)
        if match:
            name = match.group(1).rstrip(".,;:'\"`")
            return f"the Python global '{_printable(name)}'"
    return None


def _first_sentence(message: str) -> str:
    """The first sentence of an exception message on one line, without ANSI escapes.

    Cut at a sentence end, never mid-sentence; torch's advice before ``WeightsUnpickler
    error:`` is dropped, so the sentence is the reason itself.
    """
    message = _ANSI.sub("", message)
    if "WeightsUnpickler error:" in message:  # torch's advice comes first, the reason after it
        message = message.split("WeightsUnpickler error:", 1)[1]
    text = " ".join(message.split())
    text = _printable(text, limit=len(text) + 1)
    match = re.search(r"(?<=[.!?])\s", text)
    sentence = text[: match.start()] if match else text
    return sentence.rstrip(".")


def _exception_reason(exc: BaseException) -> str:
    """``exc`` as one sentence, with its type where the message alone says nothing."""
    sentence = _first_sentence(str(exc))
    if not any(c.isalpha() for c in sentence):
        sentence = f"{type(exc).__name__} {sentence}".strip()
    return sentence


def _metadata_problem(payload: dict[str, Any]) -> str | None:
    """What is wrong with a checkpoint's metadata, or None."""
    expected: dict[str, type | tuple[type, ...]] = {
        "method": str,
        "model": str,
        "num_classes": int,
        "classes": list,
        "image_size": int,
        "channels": int,
        "transform": dict,
        "config": dict,
        "split": dict,
        "state_dict": dict,
        "epoch": int,
        "epochs": int,
        "finished": bool,
        "dataset": str,
    }
    for key, kind in expected.items():
        if key not in payload:
            return f"no {key!r}"
        if not isinstance(payload[key], kind) or (kind is int and isinstance(payload[key], bool)):
            return f"{key}={payload[key]!r}"
    if payload["method"] not in list_methods():
        return f"method={payload['method']!r}"
    if payload["model"] not in list_backbones():
        return f"model={payload['model']!r}"
    if payload["num_classes"] < 2 or len(payload["classes"]) != payload["num_classes"]:
        return f"num_classes={payload['num_classes']!r} with {len(payload['classes'])} class names"
    if payload["channels"] not in (1, 3):
        return f"channels={payload['channels']!r}"
    transform = payload["transform"]
    if (
        transform.get("image_size") != payload["image_size"]
        or transform.get("channels") != payload["channels"]
    ):
        return "transform does not match image_size/channels"
    if "val_indices_sha256" not in payload["split"]:
        return "split has no val_indices_sha256"
    temperature = payload["state_dict"].get("head.temperature")
    if not isinstance(temperature, torch.Tensor) or temperature.numel() != 1:
        return "no head.temperature"
    if not (math.isfinite(float(temperature)) and float(temperature) > 0):
        return f"temperature={float(temperature)!r}, it must be a positive number"
    try:
        TrainConfig.from_dict(payload["config"])
    except DismaxError as exc:
        return f"config: {exc}"
    return None


def checkpoint_path(run_dir_or_file: str | Path) -> Path:
    """The checkpoint file of a run folder or of the checkpoint file itself (idempotent)."""
    path = Path(run_dir_or_file)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def _keys_shown(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(_printable(k, 60) for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


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
        f"{_printable(k, 60)} {tuple(given[k].shape)} (the model needs {tuple(v.shape)})"
        for k, v in expected.items()
        if isinstance(given.get(k), torch.Tensor) and given[k].shape != v.shape
    ]
    parts = []
    if missing:
        parts.append(f"missing {_keys_shown(missing)}")
    if unexpected:
        parts.append(f"unexpected {_keys_shown(unexpected)}")
    if not_tensors:
        parts.append(f"not a tensor: {_keys_shown(not_tensors)}")
    if misshaped:
        parts.append("wrong shape " + "; ".join(misshaped[:4]))
        if len(misshaped) > 4:
            parts[-1] += f" and {len(misshaped) - 4} more"
    return "; ".join(parts) or None


def load_model_state(
    model: nn.Module, payload: dict[str, Any], *, path: str | Path | None = None
) -> None:
    """Load ``payload["state_dict"]`` into ``model``, or raise one line naming the bad keys.

    Every command that loads a checkpoint (score, calibrate, train --resume, benchmark reuse)
    goes through here.

    Raises:
        DismaxError: naming the missing, unexpected, non-tensor or mis-shaped keys.
    """
    problem = state_dict_problem(model, payload["state_dict"])
    if problem is None:
        try:
            model.load_state_dict(payload["state_dict"])
        except (RuntimeError, KeyError, TypeError) as exc:
            problem = _first_sentence(str(exc))
    if problem is not None:
        where = f"{str(path)!r}: the" if path is not None else "the checkpoint's"
        raise DismaxError(
            f"{where} weights do not fit a {payload['method']} {payload['model']} with "
            f"{payload['num_classes']} classes ({problem}); the file is damaged or was edited: "
            "retrain or restore it from a copy"
        )


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, payload: dict[str, Any], *, path: str | Path
) -> None:
    """Load ``payload["optimizer"]`` into ``optimizer`` for ``train --resume``, or raise one line.

    Checks what torch's ``load_state_dict`` does not: every per-parameter buffer (SGD's
    ``momentum_buffer``) has its parameter's shape, so a damaged file fails here rather than at
    the first training step.

    Raises:
        DismaxError: naming the problem when the optimizer state is missing, of another layout,
            or holds a buffer whose shape differs from its parameter's.
    """
    state = payload.get("optimizer")
    problem: str | None = None
    if not isinstance(state, dict):
        problem = "it holds no optimizer state"
    else:
        try:
            optimizer.load_state_dict(state)
        except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as exc:
            problem = f"its optimizer state does not fit ({_first_sentence(str(exc))})"
    if problem is None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        for index, param in enumerate(params):
            for name, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.ndim and value.shape != param.shape:
                    problem = (
                        f"its optimizer {name} of parameter {index} has shape "
                        f"{tuple(value.shape)}, not {tuple(param.shape)}"
                    )
                    break
            if problem:
                break
    if problem is not None:
        raise DismaxError(
            f"{str(path)!r} cannot be resumed: {problem}; the file is damaged or was edited: "
            "start a new run with another --out"
        )


def bundle_from_checkpoint(
    payload: dict[str, Any],
    *,
    device: torch.device | str = "cpu",
    path: str | Path | None = None,
) -> ModelBundle:
    """Rebuild the classifier and its transform from a loaded checkpoint.

    Args:
        payload: what :func:`load_checkpoint` returned.
        device: where the model goes.
        path: the checkpoint's file, named in errors.

    Raises:
        DismaxError: when the weights do not fit the model the metadata describes (the missing,
            unexpected or mis-shaped keys are named).
    """
    device = torch.device(device) if isinstance(device, str) else device
    model = build_model(
        method=payload["method"],
        model=payload["model"],
        num_classes=int(payload["num_classes"]),
        channels=int(payload["channels"]),
        image_size=int(payload["image_size"]),
        seed=0,
    )
    load_model_state(model, payload, path=path)
    model.to(device)
    model.eval()
    transform = ImageTransform.from_dict(payload["transform"])
    meta = {k: v for k, v in payload.items() if k not in ("state_dict", "optimizer")}
    return ModelBundle(model=model, transform=transform, meta=meta, device=device)


def load_bundle(path: str | Path, *, device: str = "cpu") -> ModelBundle:
    """Load a checkpoint file or run folder into a :class:`ModelBundle` on ``device``.

    Raises:
        DismaxError: for an unreadable checkpoint or weights that do not fit its model.
    """
    payload = load_checkpoint(path)
    return bundle_from_checkpoint(
        payload, device=resolve_device(device), path=checkpoint_path(path)
    )


# --------------------------------------------------------------------------- the loop


def lr_milestones(epochs: int) -> list[int]:
    """The learning-rate milestones of a run of ``epochs`` epochs (METHOD.md §6).

    The paper decays after 1/2, 2/3 and 5/6 of the epochs (150, 200, 250 of 300). Each milestone
    is that fraction of ``epochs``, rounded exactly (half to even), then kept inside
    [1, epochs − 1] and pushed apart by one epoch where rounding makes two coincide, so every
    milestone is a distinct epoch and epoch 0 runs at the initial learning rate. A run too short
    for three decays (epochs <= 3) decays after each epoch but the last: ``[]`` for 1 epoch,
    ``[1]`` for 2, ``[1, 2]`` for 3.

    Returns:
        ``min(3, epochs − 1)`` strictly increasing ints in [1, epochs − 1].
    """
    slots = epochs - 1
    if slots <= len(MILESTONE_FRACTIONS):
        return list(range(1, max(epochs, 1)))
    wanted = [min(max(round(f * epochs), 1), slots) for f in MILESTONE_FRACTIONS]
    for i in range(1, len(wanted)):
        wanted[i] = max(wanted[i], wanted[i - 1] + 1)
    wanted[-1] = min(wanted[-1], slots)
    for i in range(len(wanted) - 2, -1, -1):
        wanted[i] = min(wanted[i], wanted[i + 1] - 1)
    return wanted


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    digest = hashlib.sha256(f"dismax-epoch:{seed}:{epoch}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def batch_sizes(n: int, batch_size: int) -> list[int]:
    """The sizes of one epoch's training batches over ``n`` images; none is below 2.

    Batches hold ``batch_size`` images and the last one the remainder, except that a remainder
    of one image joins the batch before it (``batch_size + 1`` images): BatchNorm cannot train on
    one image, and every image is still seen once per epoch. No random draw is involved, so the
    batches of a resumed run are those of an uninterrupted one.

    Raises:
        DismaxError: when ``n`` or ``batch_size`` is below 2.
    """
    if batch_size < MIN_BATCH:
        raise DismaxError(
            f"batch_size={batch_size!r} is invalid: use an integer of at least {MIN_BATCH} "
            "(BatchNorm cannot train on one image)"
        )
    if n < MIN_BATCH:
        raise DismaxError(
            f"the training split holds {n} image(s): training needs at least {MIN_BATCH} "
            "(BatchNorm cannot train on one image); use a larger dataset"
        )
    sizes = [batch_size] * (n // batch_size)
    rest = n % batch_size
    if rest == 1 and sizes:
        sizes[-1] += 1
    elif rest:
        sizes.append(rest)
    return sizes


def iterate_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled index batches covering ``range(n)`` once, sized by :func:`batch_sizes`.

    Yields:
        int64 index tensors (b,) on the CPU, 2 <= b <= batch_size + 1.

    Raises:
        DismaxError: when ``n`` or ``batch_size`` is below 2.
    """
    sizes = batch_sizes(n, batch_size)
    order = torch.randperm(n, generator=generator)
    start = 0
    for size in sizes:
        yield order[start : start + size]
        start += size


class LossMeter:
    """Sums an epoch's per-batch losses without a float64 tensor on the training device.

    MPS has no float64, so the device holds only a float32 buffer of the batch losses (B,),
    written without a host synchronisation; :meth:`total` copies the new entries to the host and
    adds ``loss × images`` in Python floats (float64), so the sum is as exact as before.

    Args:
        batches: the number of batches of the epoch (the buffer's length).
        device: the training device.
    """

    def __init__(self, batches: int, device: torch.device) -> None:
        self.losses = torch.zeros(batches, dtype=torch.float32, device=device)
        self._sizes: list[int] = []
        self._summed = 0
        self._total = 0.0

    def add(self, loss: torch.Tensor, images: int) -> None:
        """Record the mean loss (a 0-dim tensor on the device) of a batch of ``images``."""
        self.losses[len(self._sizes)] = loss.detach().to(torch.float32)
        self._sizes.append(int(images))

    def total(self) -> float:
        """Sum of ``loss × images`` over the batches added so far (NaN or inf if one was)."""
        new = self._sizes[self._summed :]
        if new:
            values = self.losses[self._summed : len(self._sizes)].tolist()
            self._total += sum(v * n for v, n in zip(values, new, strict=True))
            self._summed = len(self._sizes)
        return self._total


def _metadata(
    config: TrainConfig, data: RunData, transform: ImageTransform, epochs_done: int
) -> dict[str, Any]:
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "tool_version": __version__,
        "method": config.method,
        "model": config.model,
        "num_classes": data.train.num_classes,
        "classes": list(data.train.classes),
        "image_size": transform.image_size,
        "channels": transform.channels,
        "mean": list(transform.mean),
        "std": list(transform.std),
        "transform": transform.to_dict(),
        "dataset": config.dataset,
        "test_dataset": config.test_dataset,
        "split": data.split.to_dict(),
        "data_sha256": data_hashes(data),
        "split_seed": config.split_seed,
        "uses_fpr": config.uses_fpr,
        "config": config.to_dict(),
        "epoch": epochs_done,
        "epochs": config.epochs,
        "finished": epochs_done >= config.epochs,
        "calibration": None,
    }


def fit(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: ProgressCallback | None = None,
    data: RunData | None = None,
    stop_after_epoch: int | None = None,
) -> TrainResult:
    """Train one model and write its checkpoint and log into ``run_dir``.

    Args:
        config: the run's settings (validated here).
        run_dir: folder for ``checkpoint.pt`` and ``train_log.jsonl``.
        resume: continue the run in ``run_dir`` (a finished run returns at once).
        progress: called with a :class:`TrainProgress` every few batches.
        data: pre-loaded splits (the benchmark shares them between methods).
        stop_after_epoch: stop (as if interrupted) once this many epochs are done.

    Raises:
        DismaxError: for invalid settings (``batch_size`` < 2 included), a training split of
            fewer than 2 images, an existing run without ``resume``, a run folder whose
            checkpoint belongs to other settings, or a non-finite loss (the last good checkpoint
            is kept).

    Batches follow :func:`batch_sizes` (a one-image remainder joins the previous batch) and the
    learning rate :meth:`TrainConfig.lr_at` (METHOD.md §6).
    """
    config = config.validate()
    run_dir = Path(run_dir)
    ckpt_file = run_dir / CHECKPOINT_NAME
    log_file = run_dir / LOG_NAME
    state: dict[str, Any] | None = None
    if ckpt_file.exists() or (run_dir.is_dir() and any(run_dir.iterdir())):
        if not resume:
            raise DismaxError(
                f"run folder {str(run_dir)!r} already holds a run: pass --resume to continue it "
                "or choose another --out"
            )
        if ckpt_file.exists():
            state = load_checkpoint(ckpt_file)
            _check_same_run(state, config, ckpt_file)
            if state["finished"]:
                return TrainResult(run_dir, ckpt_file, 0, 0.0, read_train_log(log_file), True)
    data = data if data is not None else load_run_data(config)
    if len(data.train) < MIN_BATCH:
        raise DismaxError(
            f"the training split of {config.dataset!r} holds {len(data.train)} image(s) after "
            f"the validation carve: training needs at least {MIN_BATCH} (BatchNorm cannot train "
            "on one image); use a larger dataset"
        )
    device = resolve_device(config.device)
    transform = make_transform(data.train)
    model = build_model(
        method=config.method,
        model=config.model,
        num_classes=data.train.num_classes,
        channels=transform.channels,
        image_size=transform.image_size,
        seed=config.seed,
    ).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    loss_fn = get_method(config.method).make_loss(config.entropic_scale, config.alpha)
    # Only now, with data and model ready, does the run folder appear.
    created_dir = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DismaxError(f"cannot create run folder {str(run_dir)!r}: {exc.strerror}") from None
    start_epoch = 0
    history: list[EpochLog] = []
    if state is not None:
        _check_same_data(state, data, repr(str(ckpt_file)))
        load_model_state(model, state, path=ckpt_file)
        # Training always runs at T = 1: a temperature stored by calibrating an unfinished
        # run must not leak into the remaining epochs.
        model.head.temperature.fill_(1.0)
        load_optimizer_state(optimizer, state, path=ckpt_file)
        start_epoch = int(state["epoch"])
        history = [h for h in read_train_log(log_file) if h.epoch <= start_epoch]
        _write_log(log_file, history)
    elif log_file.exists():
        log_file.unlink()

    images = data.train.images.to(device)
    labels = data.train.labels.to(device)  # type: ignore[union-attr]
    augment = data.train.augment if config.augment is None else config.augment
    num_classes = data.train.num_classes
    uses_fpr = config.uses_fpr
    meta = _metadata(config, data, transform, start_epoch)
    total_seconds = sum(h.seconds for h in history)
    epochs_run = 0
    last_epoch = config.epochs if stop_after_epoch is None else min(config.epochs, stop_after_epoch)

    for epoch in range(start_epoch, last_epoch):
        lr = config.lr_at(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        generator = _epoch_generator(config.seed, epoch)
        batches = len(batch_sizes(len(images), config.batch_size))
        meter = LossMeter(batches, device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = clean_seen = 0
        started = time.perf_counter()
        for b, index in enumerate(iterate_batches(len(images), config.batch_size, generator)):
            index = index.to(device)
            batch = images[index]
            if augment:
                batch = augment_batch(batch, generator=generator)
            inputs = transform(batch)
            if device.type == "cuda":
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            targets = labels[index]
            with _autocast(device):
                if uses_fpr:
                    mix = fractional_probability_mix(
                        inputs, targets, num_classes, generator=generator
                    )
                    logits = model(mix.images).float()
                    loss = loss_fn(logits, mix)
                    clean = slice(0, mix.num_clean)
                    correct += (logits[clean].argmax(1) == mix.targets[clean]).sum()
                    clean_seen += mix.num_clean
                else:
                    logits = model(inputs).float()
                    loss = loss_fn(logits, targets)
                    correct += (logits.argmax(1) == targets).sum()
                    clean_seen += len(index)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            meter.add(loss, len(index))
            seen += len(index)
            report = progress is not None and (b % 10 == 9 or b == batches - 1)
            if (report or device.type == "cpu") and not math.isfinite(meter.total()):
                raise _non_finite_error(epoch, ckpt_file, run_dir, created_dir)
            if report:
                elapsed = max(time.perf_counter() - started, 1e-9)
                progress(  # type: ignore[misc]
                    TrainProgress(
                        epoch=epoch + 1,
                        epochs=config.epochs,
                        batch=b + 1,
                        batches=batches,
                        loss=meter.total() / seen,
                        accuracy=int(correct) / max(clean_seen, 1),
                        images_per_s=seen / elapsed,
                    )
                )
        loss_total = meter.total()
        if not math.isfinite(loss_total):
            raise _non_finite_error(epoch, ckpt_file, run_dir, created_dir)
        seconds = time.perf_counter() - started
        total_seconds += seconds
        entry = EpochLog(
            epoch=epoch + 1,
            loss=loss_total / seen,
            accuracy=int(correct) / max(clean_seen, 1),
            lr=lr,
            seconds=seconds,
            images_per_s=seen / max(seconds, 1e-9),
        )
        history.append(entry)
        # Log first, checkpoint second: a resume drops log lines past the checkpoint's epoch.
        # The checkpoint holds no timings, so identical training gives identical files.
        with log_file.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(dataclasses.asdict(entry)) + "\n")
        meta.update(epoch=epoch + 1, finished=epoch + 1 >= config.epochs)
        save_checkpoint(
            ckpt_file,
            {**meta, "state_dict": _cpu_state(model), "optimizer": optimizer.state_dict()},
        )
        epochs_run += 1
        if progress is not None:
            progress(
                TrainProgress(
                    epoch=epoch + 1,
                    epochs=config.epochs,
                    batch=batches,
                    batches=batches,
                    loss=entry.loss,
                    accuracy=entry.accuracy,
                    images_per_s=entry.images_per_s,
                    epoch_done=True,
                )
            )
    return TrainResult(run_dir, ckpt_file, epochs_run, total_seconds, history)


def _non_finite_error(epoch: int, ckpt_file: Path, run_dir: Path, created_dir: bool) -> DismaxError:
    if ckpt_file.exists():
        kept = f"{str(ckpt_file)!r} keeps the last good epoch ({epoch})"
    else:
        kept = "no epoch finished, so no checkpoint was written"
        if created_dir:
            for leftover in (run_dir / LOG_NAME,):
                leftover.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                run_dir.rmdir()
    return DismaxError(
        f"the training loss became non-finite in epoch {epoch + 1}: the run stopped and "
        f"{kept}; lower --lr and train again"
    )


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def _check_same_run(state: dict[str, Any], config: TrainConfig, path: Path) -> None:
    saved = TrainConfig.from_dict(state["config"]).identity()
    wanted = config.identity()
    diff = [k for k in wanted if saved.get(k) != wanted[k]]
    if diff:
        shown = ", ".join(f"{k}={saved.get(k)!r} (asked {wanted[k]!r})" for k in diff)
        raise DismaxError(
            f"{str(path)!r} belongs to another run: {shown}; resume with the same settings or "
            "choose another --out"
        )


def data_hashes(data: RunData) -> dict[str, str]:
    """sha256 of the pixels of each split (stored in checkpoints to detect changed data)."""
    return {
        "train": data.train.pixels_sha256(),
        "val": data.val.pixels_sha256(),
        "test": data.test.pixels_sha256(),
    }


def _check_same_data(state: dict[str, Any], data: RunData, what: str) -> None:
    saved = state.get("data_sha256")
    if not saved:
        return
    changed = [k for k, v in data_hashes(data).items() if saved.get(k) != v]
    if changed:
        raise DismaxError(
            f"the {', '.join(changed)} images differ from those {what} was trained on "
            "(the dataset files changed): point --data-dir or the dataset spec at the original "
            "data, or start a new run with another --out"
        )


def read_train_log(path: Path) -> list[EpochLog]:
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError, TypeError):
            entries.append(EpochLog(**json.loads(line)))
    return entries


def _write_log(path: Path, entries: list[EpochLog]) -> None:
    text = "".join(json.dumps(dataclasses.asdict(e)) + "\n" for e in entries)
    atomic_write_bytes(path, text.encode())


# --------------------------------------------------------------------------- inference


@torch.no_grad()
def predict_logits(
    bundle: ModelBundle,
    images: torch.Tensor,
    *,
    batch_size: int = 256,
    temperature: float | None = None,
) -> torch.Tensor:
    """Logits of ``images`` in eval mode, without changing the model.

    Args:
        bundle: the model, its transform and device.
        images: uint8 (N, H, W, C), any size and 1 or 3 channels (the transform adapts them).
        batch_size: images per forward pass (results do not depend on it beyond float rounding).
        temperature: divide by this instead of the model's stored temperature (1.0 for raw
            logits); None keeps the stored one.

    Returns:
        float32 (N, C) logits on the CPU.

    Raises:
        DismaxError: for an empty or wrongly shaped image tensor.
    """
    if images.ndim != 4 or images.dtype != torch.uint8:
        raise DismaxError(
            f"images of shape {tuple(images.shape)} and dtype {images.dtype} cannot be scored: "
            "expected uint8 (N, H, W, C)"
        )
    model = bundle.model
    was_training = model.training
    model.eval()
    head = model.head
    stored = head.temperature.detach().clone()
    try:
        if temperature is not None:
            head.temperature.fill_(float(temperature))
        out = []
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].to(bundle.device)
            inputs = bundle.transform(batch)
            if bundle.device.type == "cuda":
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            with _autocast(bundle.device):
                out.append(model(inputs).float().cpu())
    finally:
        head.temperature.copy_(stored)
        model.train(was_training)
    if not out:
        return torch.zeros(0, int(bundle.meta["num_classes"]))
    return torch.cat(out)


# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class CalibrationResult:
    """Temperature and validation metrics before/after (METHOD.md §4)."""

    temperature: float
    objective: str
    n_val: int
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    accuracy: float
    warning: str | None = None  # set when the optimum sits at a bound (METHOD.md §4)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def training_temperature(method: str, entropic_scale: float) -> float:
    """The temperature a model was trained at: 1 for SoftMax, 1/E for IsoMax+ and DisMax.

    IsoMax+ and DisMax are trained on softmax(E · z) (METHOD.md §2), so T = 1/E reproduces the
    training-time probabilities; METHOD.md §4 expects fitted temperatures of that order.
    """
    return 1.0 if method == "softmax" else 1.0 / float(entropic_scale)


def calibrate_bundle(
    bundle: ModelBundle, val: ImageSet, *, objective: str = "ece"
) -> CalibrationResult:
    """Fit the temperature on ``val`` and set it in the model's head (predictions unchanged).

    When the objective has no finite optimum on ``val`` (every prediction correct, or every one
    wrong), the fitted value would be a bound of the search (T = 0.001 makes every later error
    cost ~1,000 nats); the model then keeps its training temperature
    (:func:`training_temperature`) and ``warning`` says so.

    Raises:
        DismaxError: for an unlabelled validation set or an unknown objective.
    """
    if val.labels is None or len(val) == 0:
        raise DismaxError("calibration needs a labelled, non-empty validation split")
    logits = predict_logits(bundle, val.images, temperature=1.0)
    config = bundle.meta["config"]
    temperature, warning = fit_temperature_noted(
        logits,
        val.labels,
        objective=objective,
        fallback=training_temperature(config["method"], config["entropic_scale"]),
    )
    targets = val.labels
    before = F.softmax(logits.double(), dim=1)
    after = F.softmax(logits.double() / temperature, dim=1)
    bundle.model.head.temperature.fill_(temperature)
    return CalibrationResult(
        temperature=float(temperature),
        objective=objective,
        n_val=len(val),
        ece_before=ece(before, targets),
        ece_after=ece(after, targets),
        # From logits (log domain): probabilities clamp an underflowed target at ~708 nats.
        nll_before=nll_from_logits(logits, targets),
        nll_after=nll_from_logits(logits, targets, temperature=temperature),
        accuracy=accuracy(after, targets),
        warning=warning,
    )


def fit_temperature_noted(
    logits: torch.Tensor, targets: torch.Tensor, *, objective: str = "ece", fallback: float
) -> tuple[float, str | None]:
    """:func:`fit_temperature`, or ``fallback`` with a note when the optimum is a search bound.

    Returns:
        ``(temperature, note)``; ``note`` is None when the fit found a finite optimum.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TemperatureAtBoundWarning)
        temperature = fit_temperature(logits, targets, objective=objective)
    if not any(issubclass(w.category, TemperatureAtBoundWarning) for w in caught):
        return float(temperature), None
    predictions_right = int((logits.argmax(1) == targets).sum())
    reason = (
        "every validation prediction is correct"
        if predictions_right == len(targets)
        else "every validation prediction is wrong"
        if predictions_right == 0
        else "the objective keeps improving towards the search bound"
    )
    note = (
        f"the {objective.upper()} fit has no finite optimum on the {len(targets):,}-image "
        f"validation split ({reason}; it ran to T = {temperature:g}), so the training "
        f"temperature T = {fallback:g} is kept"
    )
    return float(fallback), note


def rebuild_run_data(meta: dict[str, Any], *, data_dir: str | None = None) -> RunData:
    """Reload a checkpoint's splits and check they are the ones it was trained on.

    Raises:
        DismaxError: when the dataset changed (the validation indices' hash differs) or the
            classes differ from the checkpoint's.
    """
    saved = dict(meta["config"])
    if data_dir is not None:
        saved["data_dir"] = data_dir
    config = TrainConfig.from_dict(saved)
    data = load_run_data(config)
    if list(data.train.classes) != list(meta["classes"]):
        raise DismaxError(
            f"dataset {config.dataset!r} now has classes {list(data.train.classes)[:5]}..., but "
            f"the checkpoint was trained on {list(meta['classes'])[:5]}...: point --data-dir at "
            "the data it was trained on"
        )
    _check_same_data(meta, data, "the checkpoint")
    if data.split.val_indices_sha256 != meta["split"]["val_indices_sha256"]:
        raise DismaxError(
            f"the validation split of {config.dataset!r} differs from the one the checkpoint "
            "recorded (the dataset changed): calibrate with the data it was trained on"
        )
    return data


def calibrate_checkpoint(
    path: str | Path, *, objective: str = "ece", data_dir: str | None = None
) -> CalibrationResult:
    """Fit the temperature on the run's validation split and store it in the checkpoint atomically.

    Raises:
        DismaxError: for unreadable checkpoints, changed data or a bad objective.
    """
    if objective not in ("ece", "nll"):
        raise DismaxError(f"objective {objective!r} is invalid: choose ece or nll")
    file = checkpoint_path(path)
    payload = load_checkpoint(file)
    if not payload["finished"]:
        raise DismaxError(
            f"{str(file)!r} is an unfinished run (epoch {payload['epoch']} of "
            f"{payload['epochs']}): finish it with `dismax train --out {file.parent} --resume` "
            "before calibrating"
        )
    bundle = bundle_from_checkpoint(payload, path=file)
    data = rebuild_run_data(payload, data_dir=data_dir)
    check_disjoint(data.val, data.test)
    result = calibrate_bundle(bundle, data.val, objective=objective)
    payload["state_dict"]["head.temperature"] = bundle.model.head.temperature.detach().clone()
    payload["calibration"] = result.to_dict()
    save_checkpoint(file, payload)
    return result


__all__ = [
    "CalibrationResult",
    "EpochLog",
    "ModelBundle",
    "RunData",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "LossMeter",
    "batch_sizes",
    "build_model",
    "bundle_from_checkpoint",
    "calibrate_bundle",
    "calibrate_checkpoint",
    "fit",
    "load_bundle",
    "load_checkpoint",
    "load_model_state",
    "load_run_data",
    "lr_milestones",
    "make_transform",
    "predict_logits",
    "training_temperature",
    "rebuild_run_data",
    "resolve_device",
]
