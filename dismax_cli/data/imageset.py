"""The in-memory image set, its deterministic splits and the overlap check.

An :class:`ImageSet` holds a whole split as one uint8 tensor ``(N, H, W, C)`` plus int64 labels,
so training and scoring loops index tensors instead of decoding images one by one. Every set
remembers which underlying array it came from (``origin``) and the positions it covers
(``indices``), which is what :func:`check_disjoint` compares.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from dismax_cli.errors import DismaxError

if TYPE_CHECKING:  # torch loads when a set is built, not when the data layer is imported
    import torch

#: Names a split may carry.
SPLITS = ("train", "val", "test", "all")


@dataclass(frozen=True, eq=False, repr=False)
class ImageSetBase:
    """The fields an in-memory :class:`ImageSet` and a streamed ``StreamSet`` share.

    A subclass re-declares ``images`` with its own type (a uint8 tensor, or the files of a
    streamed set); every other field is the same in both, in this order, so positional and
    keyword construction stay as they were.

    Attributes:
        images: The pixels (``ImageSet``) or the files (``StreamSet``).
        labels: int64 ``(N,)``; ``None`` for unlabelled sets.
        classes: Class names, ``len(classes) == num_classes``; ``()`` when unlabelled.
        spec: The dataset spec as the user gave it, e.g. ``"digits[0-5]"``.
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        source: Provenance: a URL, a path, ``"scikit-learn bundled digits"`` or a synthetic note.
        synthetic: True for generated noise sets (reports must say so).
        mean: Known per-channel normalisation mean on the 0..1 scale, else ``None``.
        std: Known per-channel normalisation std on the 0..1 scale, else ``None``.
        augment: Whether random crop and horizontal flip suit the set (False for digit sets).
        origin: Identifies the underlying array that ``indices`` point into.
        indices: int64 positions in ``origin``, one per image (used by :func:`check_disjoint`).
    """

    images: Any
    labels: torch.Tensor | None
    classes: tuple[str, ...]
    spec: str
    split: str
    source: str
    synthetic: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    augment: bool = True
    origin: str = ""
    indices: np.ndarray | None = field(default=None)

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        """Number of classes (0 when unlabelled)."""
        return len(self.classes)

    def _positions(self, idx: Any) -> tuple[np.ndarray, np.ndarray]:
        """``idx`` (int array, bool mask or tensor) as int64 positions, and their ``indices``.

        Shape:
            idx ``(K,)`` or a mask ``(N,)`` -> positions ``(K,)`` and origin positions ``(K,)``.
        """
        import torch

        pos = np.asarray(idx.cpu() if isinstance(idx, torch.Tensor) else idx)
        if pos.dtype == np.bool_:
            pos = np.flatnonzero(pos)
        pos = pos.astype(np.int64, copy=False).reshape(-1)
        base = self.indices if self.indices is not None else np.arange(len(self), dtype=np.int64)
        return pos, base[pos]


@dataclass(frozen=True, eq=False, repr=False)
class ImageSet(ImageSetBase):
    """A split of images held as one uint8 tensor, with labels and provenance.

    Treat the tensors as read-only: loaders may share them between sets through an in-memory
    cache.

    Attributes:
        images: uint8 ``(N, H, W, C)`` with ``C`` in {1, 3}, on the CPU, contiguous.
        labels, classes, spec, split, source, synthetic, mean, std, augment, origin, indices:
            as :class:`ImageSetBase` (labels int64 ``(N,)``, ``indices`` int64 ``(N,)``).

    Shape:
        - images: ``(N, H, W, C)``, uint8.
        - labels: ``(N,)``, int64.
    """

    images: torch.Tensor

    def __post_init__(self) -> None:
        import torch

        images = self.images
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"ImageSet.images must be a uint8 tensor (N, H, W, C); got "
                f"{getattr(images, 'dtype', type(images))} {tuple(getattr(images, 'shape', ()))}"
            )
        if images.shape[-1] not in (1, 3):
            raise ValueError(f"ImageSet.images must have 1 or 3 channels; got {images.shape[-1]}")
        if images.device.type != "cpu":
            raise ValueError("ImageSet.images must live on the CPU")
        if not images.is_contiguous():
            object.__setattr__(self, "images", images.contiguous())
        n = images.shape[0]
        if self.labels is not None:
            labels = self.labels
            if labels.dtype != torch.int64 or labels.shape != (n,):
                raise ValueError(
                    f"ImageSet.labels must be int64 of shape ({n},); got {labels.dtype} "
                    f"{tuple(labels.shape)}"
                )
            if n and (int(labels.min()) < 0 or int(labels.max()) >= len(self.classes)):
                raise ValueError(
                    f"ImageSet.labels must lie in [0, {len(self.classes)}); got "
                    f"[{int(labels.min())}, {int(labels.max())}]"
                )
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if self.split not in SPLITS:
            raise ValueError(f"ImageSet.split must be one of {SPLITS}; got '{self.split}'")
        if self.indices is not None:
            idx = np.ascontiguousarray(self.indices, dtype=np.int64)
            if idx.shape != (n,):
                raise ValueError(f"ImageSet.indices must have shape ({n},); got {idx.shape}")
            idx.setflags(write=False)
            object.__setattr__(self, "indices", idx)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        kind = "synthetic " if self.synthetic else ""
        return (
            f"ImageSet('{self.spec}', split='{self.split}', {kind}n={len(self)}, "
            f"shape={self.image_shape}, classes={self.num_classes})"
        )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of every image."""
        _, h, w, c = self.images.shape
        return (int(h), int(w), int(c))

    def pixels_sha256(self) -> str:
        """Return the sha256 of the pixel bytes, prefixed by the shape (identifies the content)."""
        h = hashlib.sha256()
        h.update(repr(tuple(self.images.shape)).encode())
        h.update(self.images.numpy().tobytes())
        return h.hexdigest()

    def subset(self, idx: Sequence[int] | np.ndarray | torch.Tensor, *, split: str) -> ImageSet:
        """Return the images at positions ``idx`` as a new set named ``split``.

        Args:
            idx: Positions into this set (int array or bool mask of length N).
            split: Split name of the result (``"train"``, ``"val"``, ``"test"`` or ``"all"``).

        Returns:
            A set with copied tensors, the same classes and provenance, and ``indices`` mapped
            to positions in ``origin``.
        """
        import torch

        pos, origin_positions = self._positions(idx)
        t = torch.from_numpy(pos)
        return replace(
            self,
            images=self.images.index_select(0, t),
            labels=None if self.labels is None else self.labels.index_select(0, t),
            split=split,
            indices=origin_positions,
        )


@dataclass(frozen=True)
class SplitRecord:
    """How a validation split was carved out of a training set (enough to re-create it).

    Attributes:
        seed: Seed of the carve.
        val_fraction: Requested fraction of the training set that went to validation.
        n_train: Images left for training.
        n_val: Images in the validation split.
        val_indices_sha256: sha256 of the validation positions in the origin array, as sorted
            little-endian int64 bytes.
    """

    seed: int
    val_fraction: float
    n_train: int
    n_val: int
    val_indices_sha256: str

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "n_train": self.n_train,
            "n_val": self.n_val,
            "val_indices_sha256": self.val_indices_sha256,
        }


def _round_half_up(x: float) -> int:
    return int(np.floor(x + 0.5))


def stratified_holdout(
    labels: np.ndarray | None, n: int, *, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split positions ``0..n-1`` into a kept part and a held-out part of the given fraction.

    The held-out size is ``round(n * fraction)`` (halves rounded up). With labels, it is shared
    among classes in proportion to their sizes (largest remainder: each class first gets
    ``floor(n_c * fraction)``, the rest go to the classes with the largest fractional parts,
    ties to the larger class, then to the lower class index), and each class's members are
    drawn by a seeded permutation. Without labels, the held-out positions are a seeded random
    sample.

    Args:
        labels: int labels ``(n,)`` or ``None``.
        n: Number of positions.
        fraction: Held-out fraction in (0, 1).
        seed: Seed of :func:`numpy.random.default_rng`.

    Returns:
        ``(kept, held_out)``: sorted int64 position arrays, disjoint, covering ``0..n-1``.
    """
    rng = np.random.default_rng(seed)
    k_total = _round_half_up(n * fraction)
    if labels is None:
        held = np.sort(rng.permutation(n)[:k_total])
    else:
        labels = np.asarray(labels)
        uniq, counts = np.unique(labels, return_counts=True)
        quotas = counts * fraction
        base = np.floor(quotas).astype(np.int64)
        rest = k_total - int(base.sum())
        if rest > 0:
            frac = quotas - base
            order = np.lexsort((np.arange(len(uniq)), -counts, -frac))
            base[order[:rest]] += 1
        parts = []
        for cls, k in zip(uniq, base, strict=True):
            members = np.flatnonzero(labels == cls)
            parts.append(members[rng.permutation(len(members))[:k]])
        held = np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
    mask = np.zeros(n, dtype=bool)
    mask[held] = True
    return np.flatnonzero(~mask).astype(np.int64), held.astype(np.int64)


def indices_sha256(indices: np.ndarray) -> str:
    """Return the sha256 of sorted little-endian int64 positions."""
    arr = np.sort(np.asarray(indices, dtype="<i8"))
    return hashlib.sha256(arr.tobytes()).hexdigest()


def train_val_split(
    train: ImageSet, *, val_fraction: float = 0.1, seed: int = 0
) -> tuple[ImageSet, ImageSet, SplitRecord]:
    """Carve a seeded, stratified validation split out of a training set.

    Do this before anything trains; calibrate on the validation split, never on a split that
    is later scored. The same seed always gives the same split.

    Args:
        train: The training set (labelled sets are split per class).
        val_fraction: Fraction in (0, 1) that goes to validation (``round(N * val_fraction)``).
        seed: Seed of the carve.

    Returns:
        ``(train_part, val_part, record)``; both parts keep ``origin`` and ``indices``.

    Raises:
        DismaxError: If ``val_fraction`` is not in (0, 1) or either part would be empty.
    """
    if not (isinstance(val_fraction, int | float) and 0.0 < float(val_fraction) < 1.0):
        raise DismaxError(
            f"val_fraction '{val_fraction}' is not in (0, 1); pass a fraction such as 0.1"
        )
    labels = None if train.labels is None else train.labels.numpy()
    kept, held = stratified_holdout(labels, len(train), fraction=float(val_fraction), seed=seed)
    if len(held) == 0 or len(kept) == 0:
        raise DismaxError(
            f"val_fraction {val_fraction} of {len(train)} training images of '{train.spec}' "
            f"leaves an empty split; use a fraction between {1 / max(len(train), 1):.3g} and "
            f"{1 - 1 / max(len(train), 1):.3g} or a larger training set"
        )
    train_part = train.subset(kept, split="train")
    val_part = train.subset(held, split="val")
    val_indices = val_part.indices if val_part.indices is not None else held
    record = SplitRecord(
        seed=int(seed),
        val_fraction=float(val_fraction),
        n_train=len(train_part),
        n_val=len(val_part),
        val_indices_sha256=indices_sha256(val_indices),
    )
    return train_part, val_part, record


#: How :func:`check_disjoint` names a set by its split when no role is given.
_SPLIT_ROLES = {"train": "training set", "val": "validation set", "test": "test set", "all": "set"}


def _overlap_fix(role_a: str, role_b: str) -> str:
    roles = f"{role_a} {role_b}".lower()
    if "ood" in roles:
        return (
            "choose an OOD set disjoint from the in-distribution data, e.g. other classes "
            "(digits[0-5] vs digits[6-9]) or another file"
        )
    if "training" in roles and "test" in roles:
        return (
            "give a separate test set that shares no images with the training data, or none "
            "to carve an 80/20 train/test split"
        )
    if "validation" in roles:
        return (
            "the validation split is carved from the training data, so give a test set that "
            "shares no images with the training data"
        )
    return "use sets that share no images"


def check_disjoint(a: ImageSet, b: ImageSet, *, roles: tuple[str, str] | None = None) -> None:
    """Refuse two sets that share samples (for example calibrating on the scored test split).

    Sets of the same ``origin`` overlap when their ``indices`` intersect; two sets with
    identical pixels overlap whatever their origin.

    Args:
        a: One set.
        b: The other set.
        roles: What the two sets are, for the message (e.g. ``("test set", "OOD set")``);
            default from their splits (``"training set"``, ``"test set"``, ...).

    Raises:
        DismaxError: If the sets share samples, naming both, the number shared and the fix.
    """
    if len(a) == 0 or len(b) == 0:
        return
    role_a, role_b = roles or (_SPLIT_ROLES.get(a.split, "set"), _SPLIT_ROLES.get(b.split, "set"))
    both = f"the {role_a} '{a.spec}' and the {role_b} '{b.spec}'"
    if a.origin and a.origin == b.origin:
        if a.indices is None or b.indices is None:
            raise DismaxError(
                f"cannot tell whether {both} share images: both come from {a.origin} but "
                "carry no sample positions; load both from dataset specs so that their "
                "positions are recorded"
            )
        shared = np.intersect1d(a.indices, b.indices)
        if len(shared):
            raise DismaxError(
                f"{both} share {len(shared)} images (same source {a.origin}); "
                f"{_overlap_fix(role_a, role_b)}"
            )
        return
    if a.images.shape == b.images.shape and a.pixels_sha256() == b.pixels_sha256():
        raise DismaxError(
            f"{both} hold identical images (the same {len(a)} pictures from different "
            f"sources); {_overlap_fix(role_a, role_b)}"
        )
