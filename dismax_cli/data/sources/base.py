"""The source protocol: what one dataset family must do for the registry.

A *source* turns one form of spec string into images. The registry
(:mod:`dismax_cli.data.registry`) strips the ``[SEL]`` class subset, normalises the name once
(:class:`SpecText`) and asks each source of :data:`dismax_cli.data.sources.SOURCES` in turn
whether the spec is its own (:meth:`Source.parse`); the first that answers with a
:class:`DatasetSpec` loads it. Everything that is the same for all sources (splits, the 80/20
carve, class subsets, disjointness checks, the in-memory cache) stays in the registry.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from dismax_cli.data.imageset import ImageSet

if TYPE_CHECKING:  # torch and the decoders (PIL) load when a set is loaded, not to parse a spec
    from dismax_cli.data.files import RawArrays


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
class SpecText:
    """A spec string as the registry hands it to :meth:`Source.parse`.

    Attributes:
        text: The whole spec, stripped (``"Digits[0-5]"``, ``"npz:Data/x.npz"``).
        body: ``text`` without its ``[SEL]`` class subset, stripped, case kept (for paths).
        selection: The text inside ``[...]``, or ``None`` without a subset.
        name: The part of ``body`` before the first ``:``, lower-cased, ``-`` read as ``_``
            and any alias replaced by its registry name (``"LSUN"`` -> ``"lsun_resize"``).
        arg: The lower-cased part after the first ``:`` (``""`` without one).
    """

    text: str
    body: str
    selection: str | None
    name: str
    arg: str


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed spec: which source loads it and with which arguments.

    Attributes:
        text: The spec as given (stripped); it becomes :attr:`ImageSet.spec`.
        kind: The key of the source in :data:`~dismax_cli.data.sources.SOURCES`.
        name: Canonical set name, or the path as given.
        native: True if the set has its own train/test splits (the source then loads
            ``"train"`` and ``"test"``); False for one array (the source loads ``"all"``
            and the registry carves train/test 80/20).
        path: Absolute path for file sources.
        count: Number of images asked for (``gaussian:500``), if any.
        selection: Class subset text (``"0-5"``), if any.
    """

    text: str
    kind: str
    name: str
    native: bool = False
    path: Path | None = None
    count: int | None = None
    selection: str | None = None


@runtime_checkable
class Source(Protocol):
    """One dataset family, registered under :attr:`key` in ``SOURCES``.

    Attributes:
        key: The family's key in the table, also :attr:`DatasetSpec.kind`.
        forms: Spec forms that are not fixed names, for messages (``("npz:PATH",)``).
        aliases: Other names of this family's sets, alias -> registry name, keys lower-case
            with ``_`` (``{"lsun": "lsun_resize"}``).
    """

    key: str
    forms: tuple[str, ...]
    aliases: Mapping[str, str]

    def names(self) -> tuple[str, ...]:
        """The fixed registry names this source answers to (may be empty)."""
        ...

    def parse(self, spec: SpecText) -> DatasetSpec | None:
        """Return the parsed spec if ``spec`` is this source's, else ``None``.

        Raises:
            DismaxError: If the spec is this source's but malformed (``gaussian:x``).
        """
        ...

    def hint(self, body: str) -> str:
        """A suggestion for an unknown ``body`` that looks like this source's (or ``""``)."""
        ...

    def load(
        self,
        spec: DatasetSpec,
        part: str,
        data_dir: Path,
        *,
        download: bool,
        like: ImageSet | None,
    ) -> ImageSet:
        """Load ``part`` (``"train"``/``"test"`` if native, else ``"all"``) of ``spec``.

        Raises:
            DismaxError: For missing files, sets absent and not downloadable, bad contents.
        """
        ...

    def ood_split(self, spec: DatasetSpec) -> str:
        """The split that :func:`~dismax_cli.data.load_ood` scores (``"test"`` or ``"all"``)."""
        ...

    def describe(self, data_dir: Path) -> list[DatasetInfo]:
        """The rows of ``dismax datasets`` for this source, in display order."""
        ...


class SourceBase:
    """Defaults for :class:`Source`: no fixed names, forms or aliases; OOD split ``"all"``."""

    key: str = ""
    forms: tuple[str, ...] = ()
    aliases: Mapping[str, str] = {}

    def names(self) -> tuple[str, ...]:
        """No fixed names."""
        return ()

    def hint(self, body: str) -> str:
        """No suggestion."""
        return ""

    def ood_split(self, spec: DatasetSpec) -> str:
        """Score the whole set."""
        return "all"

    def known_classes(self, spec: DatasetSpec) -> tuple[str, ...] | int | None:
        """The set's class names if known without loading it (``()``: unlabelled), or only
        their number (an int), else None (the default: read from the data). Optional:
        :func:`~dismax_cli.data.subsets.check_selection` uses it to refuse a bad ``[SEL]``
        before torch loads."""
        return None

    def missing(self, spec: DatasetSpec, parts: tuple[str, ...], data_dir: Path) -> str | None:
        """Why ``parts`` of ``spec`` cannot be loaded as things stand (its loader's own message,
        with the fix), looked for on disk without reading the data; None when they can (the
        default: a source that needs no files). Optional: :mod:`dismax_cli.data.presence`
        names every missing set of a benchmark at once with it. Online, a set a source can
        download is not missing (the caller asks only offline, or of :attr:`local` sources)."""
        return None

    #: True when the source reads the user's own files (never downloads): it is looked for
    #: online too.
    local: bool = False

    def aliases_of(self, name: str) -> tuple[str, ...]:
        """The aliases of registry name ``name``, in table order."""
        return tuple(alias for alias, target in self.aliases.items() if target == name)


# ----------------------------------------------------------------------------- shared helpers


def to_image_set(
    raw: RawArrays,
    spec: DatasetSpec,
    *,
    split: str,
    origin: str,
    indices: np.ndarray | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    augment: bool | None = None,
    synthetic: bool = False,
) -> ImageSet:
    """Wrap decoded arrays as an :class:`ImageSet` with provenance.

    Args:
        raw: Images ``(N, H, W, C)`` uint8, labels ``(N,)`` or ``None``, classes, source text.
        spec: The parsed spec (its ``text`` becomes the set's ``spec``).
        split: ``"train"``, ``"test"`` or ``"all"``.
        origin: Stable identity of the underlying array (``"npz:/abs/path"``), used by the
            disjointness checks together with ``indices``.
        indices: Sample indices ``(N,)`` into that array (default ``0..N-1``).
        mean: Known per-channel mean (fractions of 255), if any.
        std: Known per-channel standard deviation, if any.
        augment: Default crop-and-flip policy (default: True for 3-channel images).
        synthetic: True for generated noise.
    """
    import torch

    n = raw.images.shape[0]
    labels = None if raw.labels is None else torch.from_numpy(np.asarray(raw.labels, np.int64))
    return ImageSet(
        images=torch.from_numpy(raw.images),
        labels=labels,
        classes=raw.classes if raw.labels is not None else (),
        spec=spec.text,
        split=split,
        source=raw.source,
        synthetic=synthetic,
        mean=mean,
        std=std,
        augment=raw.images.shape[-1] == 3 if augment is None else augment,
        origin=origin,
        indices=np.arange(n, dtype=np.int64) if indices is None else indices,
    )


_CACHE: OrderedDict[tuple[Any, ...], RawArrays] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 4


def clear_cache() -> None:
    """Forget the decoded arrays kept in memory between loads (at most four sources)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def cached(key: tuple[Any, ...], build: Callable[[], RawArrays]) -> RawArrays:
    """Return the arrays kept under ``key``, else ``build()`` them and keep them (LRU of 4)."""
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


def file_key(path: Path) -> tuple[Any, ...]:
    """A cache key of a file or folder that changes when it is rewritten."""
    st = path.stat()
    return (str(path), st.st_mtime_ns, st.st_size)
