"""A CLI-trained run as a Python object: ``load_run("runs/x")``, ``predict``, ``threshold``.

The rule for temperatures (METHOD.md §3–§4): OOD scores come from the raw logits at T = 1,
probabilities are ``softmax(logits / T)`` at the run's fitted T. Thresholds follow FPR@95TPR's
rule on the run's validation split (METHOD.md §5), recorded by ``dismax calibrate``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dismax_cli.core.calibration import calibrated_probs
from dismax_cli.core.methods import get_method
from dismax_cli.core.metrics import tpr_threshold
from dismax_cli.core.scores import SCORES
from dismax_cli.core.tensor_checks import check_usable_tensor
from dismax_cli.data import ImageTransform
from dismax_cli.engine.checkpoint import CheckpointMeta, ModelBundle, checkpoint_path, load_bundle
from dismax_cli.engine.predict import predict_images, predict_logits
from dismax_cli.errors import DismaxError, kind_of, shell_command
from dismax_cli.errors import quote_value as q

ImagesLike = torch.Tensor | np.ndarray | Sequence[np.ndarray | torch.Tensor]


@dataclass(frozen=True)
class Prediction:
    """What a run says about N images.

    Attributes:
        labels: int64 ``(N,)`` predicted class indices (argmax of the logits).
        probs: float32 ``(N, C)`` calibrated probabilities, ``softmax(logits / T)`` (§4).
        logits: float32 ``(N, C)`` raw logits (T = 1).
        scores: every OOD score by name (:data:`~dismax_cli.core.scores.SCORES`), float64
            ``(N,)`` computed at T = 1, higher = more in-distribution (§3).
        classes: the run's class names (C of them).
    """

    labels: torch.Tensor
    probs: torch.Tensor
    logits: torch.Tensor
    scores: dict[str, torch.Tensor]
    classes: tuple[str, ...]

    @property
    def class_names(self) -> list[str]:
        """The predicted class name of each image (N of them)."""
        return [self.classes[i] for i in self.labels.tolist()]

    @property
    def confidence(self) -> torch.Tensor:
        """float32 ``(N,)``: the calibrated probability of the predicted class."""
        return self.probs.max(dim=1).values if len(self.probs) else torch.zeros(0)


class Run:
    """A trained run: its model, transform, classes, temperature and validation thresholds.

    Build one with :func:`load_run`. ``run.model`` returns raw logits for normalised
    ``(B, channels, image_size, image_size)`` input; ``run.transform`` makes that input from
    uint8 ``(N, H, W, C)`` images of any size and 1 or 3 channels.
    """

    def __init__(self, bundle: ModelBundle, *, path: Path) -> None:
        self.bundle = bundle
        self.path = path

    @property
    def model(self) -> torch.nn.Module:
        """Backbone + head in eval mode: normalised ``(B, C, H, W)`` -> raw logits ``(B, C)``."""
        return self.bundle.model

    @property
    def transform(self) -> ImageTransform:
        """The ID test transform: uint8 ``(N, H, W, C)`` -> the model's float input (§7)."""
        return self.bundle.transform

    @property
    def meta(self) -> CheckpointMeta:
        """The checkpoint's typed metadata (method, backbone, config, thresholds ...)."""
        return self.bundle.meta

    @property
    def classes(self) -> tuple[str, ...]:
        """The class names, index = label (C of them)."""
        return self.bundle.meta.classes

    @property
    def temperature(self) -> float:
        """The fitted temperature (1 until ``dismax calibrate``; METHOD.md §4)."""
        return self.bundle.temperature

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return self.bundle.device

    @property
    def method(self) -> str:
        """``softmax``, ``isomax_plus`` or ``dismax``."""
        return self.bundle.meta.method

    @property
    def default_score(self) -> str:
        """The method's OOD score (``mmles`` for DisMax, ``mds`` IsoMax+, ``msp`` SoftMax)."""
        return get_method(self.method).default_score

    @property
    def calibrated(self) -> bool:
        """Whether the run holds validation thresholds (``dismax calibrate`` was run)."""
        return self.bundle.meta.thresholds is not None

    def __repr__(self) -> str:
        m = self.meta
        return (
            f"Run({str(self.path)!r}, method={m.method!r}, model={m.model!r}, "
            f"classes={len(m.classes)}, temperature={self.temperature:.4g})"
        )

    def predict(self, images: ImagesLike, *, batch_size: int = 256) -> Prediction:
        """Labels, calibrated probabilities and every OOD score of ``images``.

        Args:
            images: uint8 ``(N, H, W, C)`` (any size, C = 1 or 3; the run's transform converts
                grey/RGB, resizes and normalises), float ``(N, C, H, W)`` pixels on the 0..1
                scale (as ``torchvision.transforms.ToTensor`` makes them; normalised here), a
                numpy array of either, or a sequence of uint8 ``(H, W, C)``/``(H, W)`` images of
                different sizes.
            batch_size: images per forward pass.

        Returns:
            A :class:`Prediction`: scores at T = 1, probabilities at the fitted T (§3–§4).

        Raises:
            DismaxError: for another dtype or layout (the message says which to pass), float
                pixels outside 0..1 (already normalised), non-finite values, or a tensor
                without usable values (``meta``, sparse: :mod:`dismax_cli.core.tensor_checks`).
        """
        logits = self._logits(images, batch_size=batch_size)
        if not torch.isfinite(logits).all():
            raise DismaxError(
                "the model returned non-finite logits for these images; check that they hold "
                "finite pixel values"
            )
        scores = {name: fn(logits) for name, fn in SCORES.items()}
        return Prediction(
            labels=logits.argmax(dim=1) if len(logits) else torch.zeros(0, dtype=torch.int64),
            probs=calibrated_probs(logits, self.temperature),
            logits=logits,
            scores=scores,
            classes=self.classes,
        )

    def threshold(self, score: str | None = None, *, tpr: float = 0.95) -> float:
        """The score threshold that keeps ``tpr`` of the validation split's ID images.

        Same rule as FPR@95TPR (METHOD.md §5): the k-th largest validation score with
        ``k = ceil(tpr · n_val)``; an image is in-distribution when its score is ``>=`` it.

        Args:
            score: a name in :data:`~dismax_cli.core.scores.SCORES` (default: the method's).
            tpr: the validation true positive rate to keep, in (0, 1].

        Raises:
            DismaxError: for an unknown score, a ``tpr`` outside (0, 1], or a run without
                thresholds (not calibrated, or calibrated by an older dismax): run
                ``dismax calibrate``.
        """
        name = self.default_score if score is None else score
        if not isinstance(name, str) or name not in SCORES:
            raise DismaxError(f"unknown score {q(name)}: choose one of {', '.join(SCORES)}")
        thresholds = self.meta.thresholds
        if thresholds is None or name not in thresholds:
            fix = shell_command("calibrate", self.path)
            raise DismaxError(
                f"run {q(self.path)} has no validation thresholds (it was not calibrated, "
                f"or calibrated by an older dismax): run `{fix}` first"
            )
        return tpr_threshold(thresholds[name], tpr=tpr)

    def _logits(self, images: ImagesLike, *, batch_size: int) -> torch.Tensor:
        if isinstance(images, list | tuple):
            return self._logits_of_list(images, batch_size=batch_size)
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(np.ascontiguousarray(images))
        if not isinstance(images, torch.Tensor):
            raise DismaxError(
                f"images given as {_what(images)} cannot be predicted: pass a uint8 "
                "(N, H, W, C) or float (N, C, H, W) tensor or numpy array"
            )
        check_usable_tensor(images, name="images", numbers=False)  # dtypes: named below
        if images.dtype == torch.uint8:
            if images.ndim == 4 and images.shape[-1] not in (1, 3) and images.shape[1] in (1, 3):
                raise DismaxError(
                    f"uint8 images of shape {tuple(images.shape)} look channels-first: pass "
                    "(N, H, W, C), e.g. images.permute(0, 2, 3, 1)"
                )
            return predict_images(self.bundle, images, batch_size=batch_size)
        if images.is_floating_point():
            return self._logits_of_floats(images, batch_size=batch_size)
        raise DismaxError(
            f"images of dtype {_dtype_name(images.dtype)} cannot be predicted: pass uint8 "
            "(N, H, W, C) or float (N, C, H, W) on the 0..1 scale"
        )

    def _logits_of_floats(self, images: torch.Tensor, *, batch_size: int) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise DismaxError(
                f"float images of shape {tuple(images.shape)} cannot be predicted: pass "
                "(N, C, H, W) with C = 1 or 3 (channels-last floats: images.permute(0, 3, 1, 2))"
            )
        if len(images) == 0:
            return torch.zeros(0, len(self.classes))
        if not torch.isfinite(images).all():
            raise DismaxError("float images hold NaN or infinite values; pass finite pixels")
        low, high = float(images.min()), float(images.max())
        if low < 0.0 or high > 1.0:
            raise DismaxError(
                f"float images range over [{low:.3g}, {high:.3g}], not the 0..1 pixel scale: "
                "pass unnormalised pixels (ToTensor output) or uint8; for already-normalised "
                "input call predict_logits(run.model, batches) directly"
            )
        transform, device = self.transform, self.device
        batches = (
            transform.from_float(images[i : i + batch_size].to(device, torch.float32))
            for i in range(0, len(images), batch_size)
        )
        return predict_logits(self.model, batches, device=device)

    def _logits_of_list(self, images: Sequence[Any], *, batch_size: int) -> torch.Tensor:
        """Logits of uint8 images of different sizes: one batch per shape, original order."""
        arrays = [_hwc_uint8(image, index) for index, image in enumerate(images)]
        logits = torch.zeros(len(arrays), len(self.classes))
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, array in enumerate(arrays):
            groups.setdefault(tuple(array.shape), []).append(index)
        for indices in groups.values():
            stack = torch.from_numpy(np.stack([arrays[i] for i in indices]))
            logits[indices] = predict_images(self.bundle, stack, batch_size=batch_size)
        return logits


def _dtype_name(dtype: Any) -> str:
    """A dtype as numpy spells it (``int64``, ``bool``), never ``torch.int64``."""
    return str(dtype).removeprefix("torch.")


def _what(value: object) -> str:
    """What a value is, in the words of a config message (``null``, ``text``, ``a PIL image``)."""
    if type(value).__module__.startswith("PIL."):
        return "a PIL image (use np.asarray(image)[None] for one image)"
    if isinstance(value, torch.Tensor | np.ndarray):
        return "a tensor" if isinstance(value, torch.Tensor) else "an array"
    return kind_of(value)


def _hwc_uint8(image: Any, index: int) -> np.ndarray:
    check_usable_tensor(image, name=f"image {index} of the list", numbers=False)
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] not in (1, 3):
        raise DismaxError(
            f"image {index} of the list has dtype {array.dtype} and shape {array.shape}: each "
            "must be uint8 (H, W, C) with C = 1 or 3, or (H, W)"
        )
    return np.ascontiguousarray(array)


@dataclass(frozen=True)
class ImageInputs:
    """Images read from disk for :meth:`Run.predict`, each with the name it is reported by.

    Attributes:
        names: ``"FILE.npz[i]"`` for the i-th image of an npz, else the image file's path.
        images: uint8 ``(H, W, C)`` arrays (C = 1 or 3), sizes as on disk.
    """

    names: list[str]
    images: list[np.ndarray]


def read_images(paths: Sequence[str | Path]) -> ImageInputs:
    """Read npz files, image folders (recursively, sorted) and image files, in the given order.

    Raises:
        DismaxError: naming the first path that is missing, empty or cannot be decoded; nothing
            is returned then.
    """
    from dismax_cli.data.files import IMAGE_EXTENSIONS, decode_files, read_npz, scan_image_files

    names: list[str] = []
    images: list[np.ndarray] = []

    def add_files(files: list[Path]) -> None:
        for file in files:
            names.append(str(file))
            images.append(decode_files([file], size=None, where="dismax detect")[0])

    for entry in map(Path, paths):
        if entry.is_dir():
            files, _ = scan_image_files(entry, recursive=True)
            if not files:
                raise DismaxError(
                    f"image folder {q(entry)} holds no image files "
                    f"({', '.join(IMAGE_EXTENSIONS)}); name a folder of images"
                )
            add_files(files)
        elif entry.suffix.lower() == ".npz":
            raw = read_npz(entry)
            if len(raw.images) == 0:
                raise DismaxError(f"npz file {q(entry)} holds no images; name another file")
            names.extend(f"{entry}[{i}]" for i in range(len(raw.images)))
            images.extend(raw.images)
        elif not entry.exists():
            raise DismaxError(
                f"{q(entry)} does not exist: name an npz file, an image folder or image files"
            )
        elif entry.suffix.lower() in IMAGE_EXTENSIONS:
            add_files([entry])
        else:
            raise DismaxError(
                f"{q(entry)} is not an npz file, an image folder or an image file "
                f"({', '.join(IMAGE_EXTENSIONS)}): convert it or leave it out"
            )
    return ImageInputs(names=names, images=images)


def load_run(path: str | Path, *, device: str = "auto") -> Run:
    """Load a run folder (or its ``checkpoint.pt``) written by ``dismax train``.

    Args:
        path: the run folder or checkpoint file.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Returns:
        A :class:`Run` in eval mode on ``device``.

    Raises:
        DismaxError: for a missing or damaged checkpoint, weights that do not fit, an
            unavailable device, or a ``path`` that is no path (a tensor, a number).
    """
    if not isinstance(path, str | os.PathLike):
        raise DismaxError(
            f"load_run takes the path of a run folder or its checkpoint.pt, not {_what(path)}: "
            "e.g. load_run('runs/digits-dismax')"
        )
    return Run(load_bundle(path, device=device), path=checkpoint_path(path).parent)


__all__ = ["ImageInputs", "Prediction", "Run", "load_run", "read_images"]
