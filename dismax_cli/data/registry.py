"""The dataset registry: spec strings -> :class:`ImageSet` splits.

Spec grammar (see the README's "Datasets" section)::

    NAME                 cifar10 cifar100 svhn mnist fashion_mnist textures      (torchvision)
                         tin_resize (= imagenet_resize) lsun_resize isun tin_crop lsun_crop (ODIN)
                         digits                                                  (scikit-learn)
                         gaussian[:N] uniform[:N]                                (synthetic)
    npz:PATH             an .npz in the layout of ../shared/data (arrays or encoded bytes)
    imagefolder:PATH     folder/<class>/<image> (labelled) or a flat folder (unlabelled)
    SPEC[SEL]            class subset of a labelled SPEC; SEL like 0-5, 0,2,7 or cat,dog;
                         labels re-indexed 0..k-1 in ascending order of the original index

Splits: sets with native splits (torchvision) return them; ``"all"`` is train followed by
test. Every other source is one array: ``"all"`` is the whole of it, ``"train"``/``"test"``
a deterministic stratified 80/20 carve (seed 0) made before any class subset.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dismax_cli.data.files import RawArrays, read_image_folder, read_npz
from dismax_cli.data.imageset import ImageSet, check_disjoint, stratified_holdout
from dismax_cli.data.odin import ODIN_ARCHIVES, load_odin, odin_dir, odin_paths, odin_present
from dismax_cli.data.torchvision_sets import (
    TORCHVISION_SOURCES,
    cache_path,
    load_torchvision,
    part_present,
)
from dismax_cli.errors import DismaxError

#: The embedded default dataset: ships with scikit-learn, works offline.
DEFAULT_DATASET = "digits"
#: Environment variable naming the data directory.
DATA_DIR_ENV = "DISMAX_DATA_DIR"
#: Fraction of a single-array source that forms its fixed test carve.
TEST_FRACTION = 0.2
#: Seed of the fixed train/test carve of single-array sources.
CARVE_SEED = 0
#: Seed of the synthetic noise sets.
SYNTHETIC_SEED = 0
#: Number of synthetic images when neither ``:N`` nor ``like`` gives one.
SYNTHETIC_DEFAULT_N = 1000
#: Image shape of synthetic sets when no ``like`` set is given.
SYNTHETIC_DEFAULT_SHAPE = (32, 32, 3)
#: Provenance of the digits set (sklearn's 0..16 values scaled by 255/16, rounded; 8x8x1).
DIGITS_SOURCE = "scikit-learn bundled digits (UCI Optical Recognition of Handwritten Digits)"

#: Other names of registry sets, matched case-insensitively with ``-`` read as ``_``. The paper
#: (METHOD.md §7) and the ODIN release call the resized sets "LSUN" and "TinyImageNet".
ALIASES = {
    "imagenet_resize": "tin_resize",
    "imagenet_crop": "tin_crop",
    "tinyimagenet": "tin_resize",
    "tiny_imagenet": "tin_resize",
    "tinyimagenet_resize": "tin_resize",
    "tin": "tin_resize",
    "imagenet": "tin_resize",
    "tinyimagenet_crop": "tin_crop",
    "lsun": "lsun_resize",
    "lsun_r": "lsun_resize",
    "lsun_c": "lsun_crop",
    "dtd": "textures",
    "fashionmnist": "fashion_mnist",
    "cifar_10": "cifar10",
    "cifar_100": "cifar100",
}
SYNTHETIC_NAMES = ("gaussian", "uniform")
_SPLITS = ("train", "test", "all")
_SUBSET_RE = re.compile(r"^(?P<base>.+)\[(?P<sel>[^\[\]]*)\]$")


@dataclass(frozen=True)
class DatasetInfo:
    """One row of ``dismax datasets``.

    Attributes:
        name: Registry name (or spec form such as ``npz:PATH``).
        aliases: Other accepted names.
        kind: ``"torchvision"``, ``"odin"``, ``"bundled"``, ``"synthetic"`` or ``"file"``.
        source: Where the images come from.
        size: Number and shape of images, in words.
        licence: Licence note.
        present: Whether it can be loaded without a download (``None`` for spec forms).
        location: Where it is (or would be) in the data dir.
        synthetic: True for generated noise.
    """

    name: str
    aliases: tuple[str, ...]
    kind: str
    source: str
    size: str
    licence: str
    present: bool | None
    location: str
    synthetic: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "kind": self.kind,
            "source": self.source,
            "size": self.size,
            "licence": self.licence,
            "present": self.present,
            "location": self.location,
            "synthetic": self.synthetic,
        }


@dataclass(frozen=True)
class _Spec:
    text: str
    kind: str  # torchvision | odin | digits | synthetic | npz | imagefolder
    name: str  # canonical name, or the path as given
    path: Path | None = None
    count: int | None = None
    selection: str | None = None

    @property
    def native(self) -> bool:
        return self.kind == "torchvision"


# ----------------------------------------------------------------------------- data dir


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the data directory: the argument, else ``DISMAX_DATA_DIR``, else a user cache.

    The user cache is ``$XDG_CACHE_HOME/dismax`` when ``XDG_CACHE_HOME`` is set, else
    ``~/.cache/dismax``. The folder is not created here.

    Raises:
        DismaxError: If the path exists and is not a folder.
    """
    if data_dir is not None and str(data_dir) != "":
        path = Path(data_dir)
    elif os.environ.get(DATA_DIR_ENV, "").strip():
        path = Path(os.environ[DATA_DIR_ENV].strip())
    elif os.environ.get("XDG_CACHE_HOME", "").strip():
        path = Path(os.environ["XDG_CACHE_HOME"].strip()) / "dismax"
    else:
        path = Path.home() / ".cache" / "dismax"
    path = path.expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise DismaxError(
            f"data directory {path} is a file; pass a folder with --data-dir or {DATA_DIR_ENV}"
        )
    return path


# ----------------------------------------------------------------------------- spec parsing


def canonical_name(name: str) -> str:
    """The registry name of a set name as a person types it (``LSUN`` -> ``lsun_resize``).

    Case-insensitive, ``-`` reads as ``_``; names that are no registry name or alias are
    returned unchanged.
    """
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    return key if key in _known_names() else name


def canonical_spec(entry: str) -> str:
    """Rewrite the set name of a spec or ``LABEL=SPEC`` entry to its registry name.

    ``LSUN`` -> ``lsun_resize``, ``TinyImageNet[0-9]`` -> ``tin_resize[0-9]``, ``Uniform:500``
    -> ``uniform:500``; ``npz:``/``imagefolder:`` specs, labels and unknown names are kept (an
    unknown name fails later with the list of names).
    """
    label, eq, spec = entry.partition("=")
    if not eq or not re.fullmatch(r"[A-Za-z_][\w.\-]*", label):
        label, eq, spec = "", "", entry
    match = re.fullmatch(r"(?P<name>[A-Za-z][\w\-]*)(?P<count>:\d+)?(?P<sel>\[[^\[\]]*\])?", spec)
    if match is None:
        return entry
    name = canonical_name(match.group("name"))
    return f"{label}{eq}{name}{match.group('count') or ''}{match.group('sel') or ''}"


_REQUIREMENT_SET = re.compile(r"(?P<head>\s*[^:]+:[^:]+:\s*)(?P<set>[^<>=\s]+)(?P<tail>\s*[<>=].*)")


def canonical_requirement(text: str, labels: tuple[str, ...] | list[str] = ()) -> str:
    """Rewrite the SET of ``METHOD:METRIC:SET>=VALUE`` with :func:`canonical_name`.

    A SET that is ``id`` or one of the OOD ``labels`` in use is kept as written.
    """
    match = _REQUIREMENT_SET.fullmatch(text)
    if match is None or match.group("set") == "id" or match.group("set") in labels:
        return text
    return f"{match.group('head')}{canonical_name(match.group('set'))}{match.group('tail')}"


def _known_names() -> list[str]:
    return [*TORCHVISION_SOURCES, *ODIN_ARCHIVES, "digits", *SYNTHETIC_NAMES]


def _parse(spec: str) -> _Spec:
    if not isinstance(spec, str) or not spec.strip():
        raise DismaxError(
            f"dataset spec {spec!r} is empty; give a name such as digits or cifar10, or "
            "npz:PATH / imagefolder:PATH (run `dismax datasets` for the list)"
        )
    text = spec.strip()
    body, selection = text, None
    m = _SUBSET_RE.match(text)
    if m:
        body, selection = m.group("base").strip(), m.group("sel").strip()
        if not selection:
            raise DismaxError(
                f"class subset in {text!r} is empty; write e.g. {body}[0-5] or {body}[0,2,7]"
            )
    for prefix, kind in (("npz:", "npz"), ("imagefolder:", "imagefolder")):
        if body.lower().startswith(prefix):
            raw = body[len(prefix) :].strip()
            if not raw:
                raise DismaxError(f"{text!r} names no path; write {prefix}PATH")
            path = Path(raw).expanduser().absolute()
            return _Spec(text, kind, raw, path=path, selection=selection)
    key = body.lower().replace("-", "_")
    name, _, arg = key.partition(":")
    name = ALIASES.get(name, name)
    if name in SYNTHETIC_NAMES:
        count = None
        if arg:
            if not arg.isdigit() or int(arg) < 1:
                raise DismaxError(
                    f"{text!r}: the number of synthetic images {arg!r} must be a positive "
                    f"integer, e.g. {name}:1000"
                )
            count = int(arg)
        return _Spec(text, "synthetic", name, count=count, selection=selection)
    if not arg:
        if name in TORCHVISION_SOURCES:
            return _Spec(text, "torchvision", name, selection=selection)
        if name in ODIN_ARCHIVES:
            return _Spec(text, "odin", name, selection=selection)
        if name == "digits":
            return _Spec(text, "digits", name, selection=selection)
    hint = ""
    if body.lower().endswith(".npz"):
        hint = f" (for a file write npz:{body})"
    elif Path(body).expanduser().is_dir():
        hint = f" (for a folder write imagefolder:{body})"
    raise DismaxError(
        f"unknown dataset {body!r}{hint}; choose one of {', '.join(_known_names())}, or "
        "npz:PATH / imagefolder:PATH (run `dismax datasets` for the list)"
    )


def _check_split(split: str, allowed: tuple[str, ...] = _SPLITS) -> None:
    if split not in allowed:
        extra = "; carve a validation split with train_val_split" if split == "val" else ""
        raise DismaxError(f"split {split!r} is not one of {', '.join(allowed)}{extra}")


# ----------------------------------------------------------------------------- raw loading

_CACHE: OrderedDict[tuple[Any, ...], RawArrays] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 4


def clear_cache() -> None:
    """Forget the decoded arrays kept in memory between loads (at most four sources)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _cached(key: tuple[Any, ...], build: Callable[[], RawArrays]) -> RawArrays:
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    raw = build()
    with _CACHE_LOCK:
        _CACHE[key] = raw
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return raw


def _file_key(path: Path) -> tuple[Any, ...]:
    st = path.stat()
    return (str(path), st.st_mtime_ns, st.st_size)


def _digits() -> RawArrays:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.rint(np.asarray(d.images, np.float64) * 255.0 / 16.0).astype(np.uint8)[..., None]
    classes = tuple(str(int(c)) for c in d.target_names)
    return RawArrays(images, np.asarray(d.target, np.int64), classes, DIGITS_SOURCE)


def _synthetic(name: str, n: int, shape: tuple[int, int, int]) -> RawArrays:
    rng = np.random.default_rng([SYNTHETIC_SEED, SYNTHETIC_NAMES.index(name)])
    size = (n, *shape)
    if name == "gaussian":
        values = rng.normal(127.5, 64.0, size=size)
        images = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        what = "Gaussian noise N(127.5, 64^2) clipped to 0..255"
    else:
        images = rng.integers(0, 256, size=size, dtype=np.uint8)
        what = "uniform noise on 0..255"
    source = f"SYNTHETIC {what}, {n} images {shape[0]}x{shape[1]}x{shape[2]}, seed {SYNTHETIC_SEED}"
    return RawArrays(images, None, (), source)


def _to_set(
    raw: RawArrays, spec: _Spec, *, split: str, origin: str, indices: np.ndarray
) -> ImageSet:
    mean = std = None
    augment = raw.images.shape[-1] == 3
    if spec.kind == "torchvision":
        src = TORCHVISION_SOURCES[spec.name]
        mean, std, augment = src.mean, src.std, src.augment
    elif spec.kind in ("digits", "synthetic"):
        augment = False
    labels = None if raw.labels is None else torch.from_numpy(np.asarray(raw.labels, np.int64))
    return ImageSet(
        images=torch.from_numpy(raw.images),
        labels=labels,
        classes=raw.classes if raw.labels is not None else (),
        spec=spec.text,
        split=split,
        source=raw.source,
        synthetic=spec.kind == "synthetic",
        mean=mean,
        std=std,
        augment=augment,
        origin=origin,
        indices=indices,
    )


def _whole(spec: _Spec, data_dir: Path, download: bool, like: ImageSet | None) -> ImageSet:
    """Load a single-array source in full (split ``"all"``)."""
    if spec.kind == "npz":
        assert spec.path is not None
        path = spec.path
        if not path.is_file():
            raise DismaxError(
                f"npz file {path} (from {spec.text!r}) does not exist; check the path, e.g. "
                "npz:../shared/data/cifar10_test.npz"
            )
        raw = _cached(("npz", *_file_key(path)), lambda: read_npz(path))
        origin = f"npz:{path.resolve()}"
    elif spec.kind == "imagefolder":
        assert spec.path is not None
        folder = spec.path
        size = None
        if like is not None and like.image_shape[0] == like.image_shape[1]:
            size = like.image_shape[0]
        if not folder.is_dir():
            raise DismaxError(
                f"image folder {folder} (from {spec.text!r}) does not exist; check the path"
            )
        raw = _cached(
            ("imagefolder", *_file_key(folder), size),
            lambda: read_image_folder(folder, size=size),
        )
        origin = f"imagefolder:{folder.resolve()}"
    elif spec.kind == "odin":
        raw = _cached(
            ("odin", spec.name, str(data_dir)),
            lambda: load_odin(spec.name, data_dir, download=download),
        )
        origin = f"odin:{spec.name}"
    elif spec.kind == "digits":
        raw = _cached(("digits",), _digits)
        origin = "sklearn:digits"
    else:  # synthetic
        shape = like.image_shape if like is not None else SYNTHETIC_DEFAULT_SHAPE
        n = spec.count or (len(like) if like is not None else SYNTHETIC_DEFAULT_N)
        raw = _synthetic(spec.name, n, shape)
        origin = f"synthetic:{spec.name}:{n}:{shape[0]}x{shape[1]}x{shape[2]}:{SYNTHETIC_SEED}"
    n = raw.images.shape[0]
    return _to_set(raw, spec, split="all", origin=origin, indices=np.arange(n, dtype=np.int64))


def _native_part(spec: _Spec, part: str, data_dir: Path, download: bool) -> ImageSet:
    raw = _cached(
        ("torchvision", spec.name, part, str(data_dir)),
        lambda: load_torchvision(spec.name, part, data_dir, download=download),
    )
    n = raw.images.shape[0]
    offset = 0 if part == "train" else TORCHVISION_SOURCES[spec.name].sizes["train"]
    return _to_set(
        raw,
        spec,
        split=part,
        origin=f"torchvision:{spec.name}",
        indices=offset + np.arange(n, dtype=np.int64),
    )


def _concat(a: ImageSet, b: ImageSet) -> ImageSet:
    if a.image_shape != b.image_shape:
        raise DismaxError(
            f"train and test images of '{a.spec}' differ in shape ({a.image_shape} vs "
            f"{b.image_shape}); load the splits separately"
        )
    if a.classes != b.classes or a.labels is None or b.labels is None:
        raise DismaxError(
            f"train and test splits of '{a.spec}' have different classes; load them separately"
        )
    assert a.indices is not None and b.indices is not None  # set by _native_part
    return replace(
        a,
        images=torch.cat([a.images, b.images]),
        labels=torch.cat([a.labels, b.labels]),
        split="all",
        indices=np.concatenate([a.indices, b.indices]),
    )


# ----------------------------------------------------------------------------- class subsets


def _parse_selection(selection: str, classes: tuple[str, ...], spec: str) -> list[int]:
    chosen: set[int] = set()
    lookup = {c: i for i, c in enumerate(classes)}
    for token in (t.strip() for t in selection.split(",")):
        if not token:
            continue
        if token in lookup and not token.isdigit():
            chosen.add(lookup[token])
            continue
        m = re.fullmatch(r"(\d+)\s*(?:-\s*(\d+))?", token)
        if not m:
            raise DismaxError(
                f"class selection {token!r} in {spec!r} is neither a class index, a range "
                f"such as 0-5 nor a class name; classes are {', '.join(classes[:12])}"
                + (" ..." if len(classes) > 12 else "")
            )
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise DismaxError(
                f"class range {token!r} in {spec!r} is reversed; write the lower index first, "
                f"[{hi}-{lo}]"
            )
        if hi >= len(classes):
            raise DismaxError(
                f"class range {token!r} in {spec!r} is outside 0-{len(classes) - 1}; "
                f"the set has {len(classes)} classes"
            )
        chosen.update(range(lo, hi + 1))
    if not chosen:
        raise DismaxError(f"class selection in {spec!r} names no class; write e.g. [0-5]")
    return sorted(chosen)


def _shorten(text: str, limit: int = 120) -> str:
    if len(text) <= limit:
        return text
    cut = text.rfind(", ", 0, limit)
    return (text[:cut] if cut > 0 else text[: limit - 4]) + ", ..."


def _select_classes(s: ImageSet, selection: str) -> ImageSet:
    if s.labels is None:
        raise DismaxError(
            f"{s.spec!r} selects classes of an unlabelled set; drop the [..] part or use a "
            "labelled set (npz with 'y', imagefolder with class sub-folders)"
        )
    keep = _parse_selection(selection, s.classes, s.spec)
    mapping = torch.full((len(s.classes),), -1, dtype=torch.int64)
    mapping[torch.tensor(keep)] = torch.arange(len(keep))
    mask = mapping[s.labels] >= 0
    if len(s) and not bool(mask.any()):
        have = torch.unique(s.labels).tolist()
        names = ", ".join(s.classes[i] if not s.classes[i].isdigit() else str(i) for i in have)
        part = "it has" if s.split == "all" else f"its {s.split} part has"
        raise DismaxError(
            f"class selection {selection!r} in {s.spec!r} keeps no images: {part} none of "
            f"those classes; pick classes that have images: {_shorten(names)}"
        )
    sub = s.subset(mask.numpy(), split=s.split)
    assert sub.labels is not None
    return replace(
        sub,
        labels=mapping[sub.labels].contiguous(),
        classes=tuple(s.classes[i] for i in keep),
    )


# ----------------------------------------------------------------------------- public API


def load_dataset(
    spec: str,
    *,
    split: str = "test",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    like: ImageSet | None = None,
) -> ImageSet:
    """Load one split of a dataset named by a spec string.

    Sizes: torchvision sets return their native splits (``"all"`` = train followed by test).
    Every other source is one array: ``"all"`` is the whole of it and ``"train"``/``"test"``
    a fixed stratified 80/20 carve (seed 0; test = ``round(0.2 N)`` images shared among
    classes by largest remainder), made on the whole array before any class subset, so
    ``X[0-5]`` and ``X[6-9]`` carve consistently. ``digits``: all 1,797 = train 1,438 + test
    359; ``digits[0-5]``: 867 + 216; ``digits[6-9]``: 571 + 143.

    Args:
        spec: Dataset spec (name, ``npz:PATH``, ``imagefolder:PATH``, synthetic, ``X[SEL]``).
        split: ``"train"``, ``"test"`` or ``"all"``.
        data_dir: Data directory (default :func:`resolve_data_dir`).
        download: Whether a missing named set may be downloaded (``DISMAX_OFFLINE=1`` forbids
            it too).
        like: A reference set: synthetic sets copy its image shape and size, mixed-size
            image folders are brought to its (square) size.

    Returns:
        The split, with provenance, known normalisation constants and sample indices.

    Raises:
        DismaxError: For unknown specs or splits, missing files, sets absent and not
            downloadable, bad class selections or empty results.
    """
    parsed = _parse(spec)
    _check_split(split)
    root = resolve_data_dir(data_dir)
    if parsed.native:
        if split == "all":
            result = _concat(
                _native_part(parsed, "train", root, download),
                _native_part(parsed, "test", root, download),
            )
        else:
            result = _native_part(parsed, split, root, download)
    else:
        result = _whole(parsed, root, download, like)
        if len(result) == 0:
            raise DismaxError(
                f"{spec!r} holds no images; give a file or folder with at least one image"
            )
        if split != "all":
            n_whole = len(result)
            labels = None if result.labels is None else result.labels.numpy()
            kept, held = stratified_holdout(
                labels, n_whole, fraction=TEST_FRACTION, seed=CARVE_SEED
            )
            result = result.subset(kept if split == "train" else held, split=split)
            if len(result) == 0:
                raise DismaxError(
                    f"{spec!r} has only {n_whole} image(s), too few to carve a {split} part "
                    f"({1 - TEST_FRACTION:.0%} train / {TEST_FRACTION:.0%} test); use a larger "
                    "set, or give a separate test set"
                )
    if parsed.selection is not None:
        result = _select_classes(result, parsed.selection)
    if len(result) == 0:
        raise DismaxError(f"{spec!r} selects no images; pick a non-empty set")
    return result


def load_id_splits(
    spec: str,
    *,
    test_spec: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> tuple[ImageSet, ImageSet]:
    """Load the in-distribution training and test sets.

    Without ``test_spec``: ``load_dataset(spec, split="train")`` and ``split="test"``. With
    it: the training set is the native train split of ``spec`` (whole file for single-array
    sources) and the test set the native test split of ``test_spec`` (whole file otherwise),
    e.g. ``npz:cifar10_train_jpeg.npz`` with ``npz:cifar10_test.npz``.

    Args:
        spec: Spec of the training data.
        test_spec: Optional spec of separate test data.
        data_dir: Data directory.
        download: Whether missing named sets may be downloaded.

    Returns:
        ``(train, test)``.

    Raises:
        DismaxError: If either set is unlabelled, their classes differ, or they overlap.
    """
    if test_spec is None:
        train = load_dataset(spec, split="train", data_dir=data_dir, download=download)
        test = load_dataset(spec, split="test", data_dir=data_dir, download=download)
    else:
        train_split = "train" if _parse(spec).native else "all"
        test_split = "test" if _parse(test_spec).native else "all"
        train = load_dataset(spec, split=train_split, data_dir=data_dir, download=download)
        test = load_dataset(test_spec, split=test_split, data_dir=data_dir, download=download)
    for s in (train, test):
        if s.labels is None:
            raise DismaxError(
                f"in-distribution set {s.spec!r} has no labels; give an npz with 'y' or an "
                "image folder with one sub-folder per class"
            )
    if train.classes != test.classes:
        raise DismaxError(
            f"classes of {train.spec!r} ({len(train.classes)}: {', '.join(train.classes[:5])}"
            f"{' ...' if len(train.classes) > 5 else ''}) and {test.spec!r} "
            f"({len(test.classes)}: {', '.join(test.classes[:5])}"
            f"{' ...' if len(test.classes) > 5 else ''}) differ; pass a test set with the same "
            "classes in the same order"
        )
    check_disjoint(train, test, roles=("training set", "test set"))
    return train, test


def load_ood(
    spec: str,
    *,
    like: ImageSet,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> ImageSet:
    """Load an out-of-distribution set for scoring against ``like`` (the ID test set).

    Native test split for torchvision sets (except ``textures``, see below); the fixed test
    carve for ``digits`` and its subsets (so ``digits[6-9]`` never shares images with the
    carve's training part); the whole set otherwise (``npz:``, ``imagefolder:``, ODIN,
    synthetic). ``textures`` returns all 5,640 DTD images, the field's convention for the
    Textures OOD set. Synthetic sets copy ``like``'s image shape and size.

    Args:
        spec: Dataset spec.
        like: The in-distribution test set.
        data_dir: Data directory.
        download: Whether missing named sets may be downloaded.

    Returns:
        The OOD set (its labels, if any, are not used for scoring).

    Raises:
        DismaxError: As :func:`load_dataset`, or if the set shares images with ``like``.
    """
    parsed = _parse(spec)
    if parsed.kind == "torchvision":
        split = "all" if parsed.name == "textures" else "test"
    elif parsed.kind == "digits":
        split = "test"
    else:
        split = "all"
    ood = load_dataset(spec, split=split, data_dir=data_dir, download=download, like=like)
    check_disjoint(like, ood, roles=("in-distribution test set", "OOD set"))
    return ood


def is_native_split(spec: str) -> bool:
    """Return True if ``spec`` names a set with its own train/test splits."""
    return _parse(spec).native


def list_datasets(data_dir: str | os.PathLike[str] | None = None) -> list[DatasetInfo]:
    """Describe every registered dataset and whether it is available locally.

    Args:
        data_dir: Data directory (default :func:`resolve_data_dir`).

    Returns:
        One entry per name, then the ``npz:PATH`` and ``imagefolder:PATH`` forms.
    """
    root = resolve_data_dir(data_dir)
    aliases: dict[str, list[str]] = {}
    for alias, target in ALIASES.items():
        aliases.setdefault(target, []).append(alias)
    rows: list[DatasetInfo] = []
    for name, src in TORCHVISION_SOURCES.items():
        sizes = src.sizes
        present = part_present(name, "train", root) and part_present(name, "test", root)
        where = cache_path(name, "test", root).parent if present else root
        rows.append(
            DatasetInfo(
                name=name,
                aliases=tuple(aliases.get(name, ())),
                kind="torchvision",
                source=f"{src.description}; {src.url}",
                size=f"{sizes['train']:,} train / {sizes['test']:,} test, {src.shape}",
                licence=src.licence,
                present=present,
                location=str(where),
            )
        )
    for name, entry in ODIN_ARCHIVES.items():
        cache, _, _ = odin_paths(name, root)
        rows.append(
            DatasetInfo(
                name=name,
                aliases=tuple(aliases.get(name, ())),
                kind="odin",
                source=f"{entry.description}; {entry.url} (md5 {entry.md5})",
                size=f"{entry.n_images:,} (no split), 32x32x3",
                licence=entry.licence,
                present=odin_present(name, root),
                location=str(cache if cache.is_file() else odin_dir(root)),
            )
        )
    rows.append(
        DatasetInfo(
            name="digits",
            aliases=(),
            kind="bundled",
            source=DIGITS_SOURCE + ", ships with scikit-learn (works offline); the default",
            size="1,797 = 1,438 train / 359 test (80/20 carve), 8x8x1, 10 classes",
            licence="CC BY 4.0 (UCI Machine Learning Repository)",
            present=True,
            location="scikit-learn package",
        )
    )
    for name in SYNTHETIC_NAMES:
        kind = "Gaussian N(127.5, 64^2) clipped" if name == "gaussian" else "uniform 0..255"
        rows.append(
            DatasetInfo(
                name=name,
                aliases=(f"{name}:N",),
                kind="synthetic",
                source=f"SYNTHETIC {kind} noise, seed {SYNTHETIC_SEED}",
                size=f"N = len(reference set) or {SYNTHETIC_DEFAULT_N:,}; reference shape or "
                "32x32x3",
                licence="generated (no licence needed)",
                present=True,
                location="generated in memory",
                synthetic=True,
            )
        )
    rows.append(
        DatasetInfo(
            name="npz:PATH",
            aliases=(),
            kind="file",
            source="an .npz file: x uint8 NxHxWxC (+ y int64, classes) or encoded bytes "
            "(data, offsets); e.g. npz:../shared/data/cifar10_test.npz",
            size="as stored; train/test = 80/20 carve",
            licence="that of the data",
            present=None,
            location="PATH",
        )
    )
    rows.append(
        DatasetInfo(
            name="imagefolder:PATH",
            aliases=(),
            kind="file",
            source="a folder: PATH/<class>/<image> (labelled) or PATH/<image> (unlabelled)",
            size="as stored; train/test = 80/20 carve",
            licence="that of the data",
            present=None,
            location="PATH",
        )
    )
    return rows
