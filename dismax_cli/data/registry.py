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

Each form belongs to one source of :data:`dismax_cli.data.sources.SOURCES` (one module per
family); this module does what is common to all of them. Splits: sets with native splits
(torchvision) return them; ``"all"`` is train followed by test. Every other source is one
array: ``"all"`` is the whole of it, ``"train"``/``"test"`` a deterministic stratified 80/20
carve (seed 0) made before any class subset.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from dismax_cli.config import InvalidValueError
from dismax_cli.data.imageset import ImageSet, check_disjoint, stratified_holdout
from dismax_cli.data.sources import (
    SOURCES,
    DatasetInfo,
    DatasetSpec,
    SpecText,
    alias_table,
    clear_cache,
    known_names,
    spec_forms,
)
from dismax_cli.data.sources.digits import DIGITS_SOURCE
from dismax_cli.data.sources.odin_family import ODIN_ALIASES
from dismax_cli.data.sources.synthetic import (
    SYNTHETIC_DEFAULT_N,
    SYNTHETIC_DEFAULT_SHAPE,
    SYNTHETIC_NAMES,
    SYNTHETIC_SEED,
)
from dismax_cli.data.sources.torchvision_family import TORCHVISION_ALIASES
from dismax_cli.data.spec_text import check_parameter, check_spec_text
from dismax_cli.data.subsets import check_selection, select_classes
from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q

#: The embedded default dataset: ships with scikit-learn, works offline.
DEFAULT_DATASET = "digits"
#: Environment variable naming the data directory.
DATA_DIR_ENV = "DISMAX_DATA_DIR"
#: Fraction of a single-array source that forms its fixed test carve.
TEST_FRACTION = 0.2
#: Seed of the fixed train/test carve of single-array sources.
CARVE_SEED = 0

#: Other names of the built-in sets, matched case-insensitively with ``-`` read as ``_``
#: (each source declares its own; lookups use every registered source's). The paper
#: (METHOD.md §7) and the ODIN release call the resized sets "LSUN" and "TinyImageNet".
ALIASES = {**ODIN_ALIASES, **TORCHVISION_ALIASES}
_SPLITS = ("train", "test", "all")
_SUBSET_RE = re.compile(r"^(?P<base>.+)\[(?P<sel>[^\[\]]*)\]$")

__all__ = [
    "ALIASES",
    "CARVE_SEED",
    "DATA_DIR_ENV",
    "DEFAULT_DATASET",
    "DIGITS_SOURCE",
    "SYNTHETIC_DEFAULT_N",
    "SYNTHETIC_DEFAULT_SHAPE",
    "SYNTHETIC_NAMES",
    "SYNTHETIC_SEED",
    "TEST_FRACTION",
    "DatasetInfo",
    "canonical_name",
    "canonical_requirement",
    "canonical_spec",
    "check_spec",
    "split_entry",
    "clear_cache",
    "is_native_split",
    "list_datasets",
    "load_dataset",
    "load_id_splits",
    "load_ood",
    "parse_spec",
    "resolve_data_dir",
]


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
            f"data directory {q(path)} is a file; pass a folder with --data-dir or {DATA_DIR_ENV}"
        )
    return path


# ----------------------------------------------------------------------------- spec parsing


def canonical_name(name: str) -> str:
    """The registry name of a set name as a person types it (``LSUN`` -> ``lsun_resize``).

    Case-insensitive, ``-`` reads as ``_``; names that are no registry name or alias are
    returned unchanged.
    """
    key = name.strip().lower().replace("-", "_")
    key = alias_table().get(key, key)
    return key if key in known_names() else name


def canonical_spec(entry: str) -> str:
    """Rewrite the set name of a spec or ``LABEL=SPEC`` entry to its registry name.

    ``LSUN`` -> ``lsun_resize``, ``TinyImageNet[0-9]`` -> ``tin_resize[0-9]``, ``Uniform:500``
    -> ``uniform:500``; ``npz:``/``imagefolder:`` specs, labels and unknown names are kept (an
    unknown name fails later with the list of names).
    """
    label, eq, spec = entry.partition("=")
    if not eq or not re.fullmatch(r"[A-Za-z_][\w.\-]*", label):
        label, eq, spec = "", "", entry
    match = re.fullmatch(
        r"(?P<name>[A-Za-z][\w\-]*)(?P<count>:[0-9]+)?(?P<sel>\[[^\[\]]*\])?", spec
    )
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


#: A label of an OOD entry ``LABEL=SPEC``: a letter or ``_``, then letters, digits, ``_ . -``.
LABEL_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


def split_entry(entry: str) -> tuple[str | None, str]:
    """Split ``LABEL=SPEC`` into its label and spec; ``(None, entry)`` without a label.

    An entry has a label when it holds ``=`` and the text before the first ``=`` holds neither
    ``:`` nor ``/`` (so ``npz:runs/a=b.npz`` is a spec whose path holds ``=``).
    """
    head, eq, rest = entry.partition("=")
    if not eq or any(ch in head for ch in ":/"):
        return None, entry
    return head.strip(), rest


def check_spec(entry: object, *, key: str = "dataset", labelled: bool = False) -> None:
    """Check a dataset spec (or, with ``labelled``, a ``LABEL=SPEC`` OOD entry) without loading.

    The label grammar (README "Design notes"): a letter or ``_``, then letters, digits, ``_``,
    ``.`` or ``-``; it may not be empty. The spec must parse (a known name or form, a positive
    ``:N``, a path after ``npz:``/``imagefolder:``, a non-empty ``[SEL]`` with ranges low-high).
    A ``[SEL]`` is checked against the classes a source knows without loading (``digits``;
    none for noise, :func:`~dismax_cli.data.subsets.check_selection`); whether a file exists,
    or a class of a file or torchvision set exists, is checked when it is loaded.

    Raises:
        InvalidValueError: with ``key``, quoting the entry as typed.
    """
    if not isinstance(entry, str):
        return  # the type check of the config names it
    spec = entry
    if labelled:
        label, spec = split_entry(entry)
        if label is not None and not label:
            raise InvalidValueError(
                key, f"{q(entry)} has an empty label before '=': write LABEL=SPEC, e.g. far={spec}"
            )
        if label is not None and not LABEL_PATTERN.fullmatch(label):
            raise InvalidValueError(
                key,
                f"label {q(label)} in {q(entry)} is invalid: a label starts with a letter or _ and "
                "holds only letters, digits, _, . and - (e.g. far_ood=SPEC)",
            )
    try:
        parsed = parse_spec(spec)
        known = getattr(SOURCES[parsed.kind], "known_classes", None)  # optional in the protocol
        check_selection(parsed.selection, known(parsed) if known else None, spec)
    except InvalidValueError as exc:
        raise InvalidValueError(key, str(exc)) from None


def _forms_text() -> str:
    return " / ".join(spec_forms())


def _split_spec(spec: str) -> SpecText:
    """Strip the class subset and normalise the name (aliases resolved) once, for the sources."""
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidValueError(
            "dataset",
            f"dataset spec {q(spec)} is empty; give a name such as digits or cifar10, or "
            f"{_forms_text()} (run `dismax datasets` for the list)",
        )
    text = check_spec_text(spec)
    body, selection = text, None
    m = _SUBSET_RE.match(text)
    if m:
        body, selection = m.group("base").strip(), m.group("sel").strip()
        if not selection:
            raise InvalidValueError(
                "dataset",
                f"class subset in {q(text)} is empty; write e.g. {body}[0-5] or {body}[0,2,7]",
            )
    # Only the name is normalised; the argument (``:N``) stays as typed, for messages too.
    name, _, arg = check_parameter(spec, body, selection)
    name = name.strip().lower().replace("-", "_")
    return SpecText(text, body, selection, alias_table().get(name, name), arg)


def parse_spec(spec: str) -> DatasetSpec:
    """Parse ``spec`` with the first source of :data:`SOURCES` that claims it.

    Raises:
        DismaxError: If the spec is empty, malformed, or no source claims it (the message
            lists the names and forms, with a hint where one fits).
    """
    split = _split_spec(spec)
    for source in SOURCES.values():
        parsed = source.parse(split)
        if parsed is not None:
            return parsed
    body = split.body
    hint = next((h for h in (s.hint(body) for s in SOURCES.values()) if h), "")
    raise InvalidValueError(
        "dataset",
        f"unknown dataset {q(body)}{hint}; choose one of {', '.join(known_names())}, or "
        f"{_forms_text()} (run `dismax datasets` for the list)",
    )


def _check_split(split: str, allowed: tuple[str, ...] = _SPLITS) -> None:
    if split not in allowed:
        extra = "; carve a validation split with train_val_split" if split == "val" else ""
        raise DismaxError(f"split '{split}' is not one of {', '.join(allowed)}{extra}")


# ----------------------------------------------------------------------------- loading


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
    import torch

    assert a.indices is not None and b.indices is not None  # set by the source
    return replace(
        a,
        images=torch.cat([a.images, b.images]),
        labels=torch.cat([a.labels, b.labels]),
        split="all",
        indices=np.concatenate([a.indices, b.indices]),
    )


def _check_image_size(images: ImageSet, spec: str) -> None:
    """Refuse images of height or width 0 from any source (nothing to score; 0-size pools)."""
    height, width, _ = images.image_shape
    if min(height, width) < 1:
        raise DismaxError(
            f"'{spec}' ({images.source}) holds images of height {height} and width {width}; "
            "every image needs height and width of at least 1 pixel"
        )


def _carve(result: ImageSet, spec: str, split: str) -> ImageSet:
    """The fixed stratified train or test carve of a whole single-array set."""
    n_whole = len(result)
    labels = None if result.labels is None else result.labels.numpy()
    kept, held = stratified_holdout(labels, n_whole, fraction=TEST_FRACTION, seed=CARVE_SEED)
    result = result.subset(kept if split == "train" else held, split=split)
    if len(result) == 0:
        raise DismaxError(
            f"'{spec}' has only {n_whole} image(s), too few to carve a {split} part "
            f"({1 - TEST_FRACTION:.0%} train / {TEST_FRACTION:.0%} test); use a larger "
            "set, or give a separate test set"
        )
    return result


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
        spec: Dataset spec (name, ``npz:PATH``, ``imagefolder:PATH``, synthetic, ``X[SEL]``,
            or the form of any registered source).
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
    parsed = parse_spec(spec)
    _check_split(split)
    root = resolve_data_dir(data_dir)
    source = SOURCES[parsed.kind]
    if parsed.native:
        parts = ("train", "test") if split == "all" else (split,)
        loaded = [source.load(parsed, p, root, download=download, like=like) for p in parts]
        for part in loaded:
            _check_image_size(part, spec)
        result = _concat(*loaded) if len(loaded) == 2 else loaded[0]
    else:
        result = source.load(parsed, "all", root, download=download, like=like)
        _check_image_size(result, spec)
        if len(result) == 0:
            raise DismaxError(
                f"'{spec}' holds no images; give a file or folder with at least one image"
            )
        if split != "all":
            result = _carve(result, spec, split)
    if parsed.selection is not None:
        result = select_classes(result, parsed.selection)
    if len(result) == 0:
        raise DismaxError(f"'{spec}' selects no images; pick a non-empty set")
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
        train_split = "train" if parse_spec(spec).native else "all"
        test_split = "test" if parse_spec(test_spec).native else "all"
        train = load_dataset(spec, split=train_split, data_dir=data_dir, download=download)
        test = load_dataset(test_spec, split=test_split, data_dir=data_dir, download=download)
    for s in (train, test):
        if s.labels is None:
            raise DismaxError(
                f"in-distribution set '{s.spec}' has no labels; give an npz with 'y' or an "
                "image folder with one sub-folder per class"
            )
    if train.classes != test.classes:
        raise DismaxError(
            f"classes of '{train.spec}' ({len(train.classes)}: {', '.join(train.classes[:5])}"
            f"{' ...' if len(train.classes) > 5 else ''}) and '{test.spec}' "
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

    The split is the source's choice (:meth:`Source.ood_split`): the native test split for
    torchvision sets (except ``textures``, see below); the fixed test carve for ``digits``
    and its subsets (so ``digits[6-9]`` never shares images with the carve's training part);
    the whole set otherwise (``npz:``, ``imagefolder:``, ODIN, synthetic). ``textures``
    returns all 5,640 DTD images, the field's convention for the Textures OOD set. Synthetic
    sets copy ``like``'s image shape and size.

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
    parsed = parse_spec(spec)
    split = SOURCES[parsed.kind].ood_split(parsed)
    ood = load_dataset(spec, split=split, data_dir=data_dir, download=download, like=like)
    check_disjoint(like, ood, roles=("in-distribution test set", "OOD set"))
    return ood


def is_native_split(spec: str) -> bool:
    """Return True if ``spec`` names a set with its own train/test splits."""
    return parse_spec(spec).native


def list_datasets(data_dir: str | os.PathLike[str] | None = None) -> list[DatasetInfo]:
    """Describe every registered dataset and whether it is available locally.

    Args:
        data_dir: Data directory (default :func:`resolve_data_dir`).

    Returns:
        The rows of each source in table order: the named sets, then the ``npz:PATH`` and
        ``imagefolder:PATH`` forms, then any source registered later.
    """
    root = resolve_data_dir(data_dir)
    return [row for source in SOURCES.values() for row in source.describe(root)]
