"""Dataset sources: one module per family, registered in one table, :data:`SOURCES`.

A source (the :class:`Source` protocol) parses its spec form, loads a split, names the split
an OOD use scores and describes itself for ``dismax datasets``. The registry
(:mod:`dismax_cli.data.registry`) asks the sources in table order; the first whose
:meth:`Source.parse` answers owns the spec. Adding a family is one module and one
:func:`register_source` call (README "Design notes").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from dismax_cli.data.sources.base import (
    DatasetInfo,
    DatasetSpec,
    Source,
    SourceBase,
    SpecText,
    cached,
    clear_cache,
    file_key,
    to_image_set,
)
from dismax_cli.data.sources.digits import DigitsSource
from dismax_cli.data.sources.imagenet import ImageNetFamily
from dismax_cli.data.sources.local_files import ImageFolderSource, NpzSource
from dismax_cli.data.sources.odin_family import OdinFamily
from dismax_cli.data.sources.synthetic import SyntheticSource
from dismax_cli.data.sources.torchvision_family import TorchvisionFamily

#: The registered sources by key, in the order they are asked and listed.
SOURCES: dict[str, Source] = {
    s.key: s
    for s in (
        TorchvisionFamily(),
        OdinFamily(),
        DigitsSource(),
        SyntheticSource(),
        NpzSource(),
        ImageFolderSource(),
        ImageNetFamily(),
    )
}


#: What :func:`register_source` requires of a source (the :class:`Source` protocol).
_MEMBERS = ("key", "forms", "aliases", "names", "parse", "hint", "load", "ood_split", "describe")


def known_names() -> list[str]:
    """Every fixed registry name, source by source in table order."""
    return [name for source in SOURCES.values() for name in source.names()]


def spec_forms() -> list[str]:
    """Every spec form that is not a fixed name (``npz:PATH`` ...), in table order."""
    return [form for source in SOURCES.values() for form in source.forms]


def alias_table() -> dict[str, str]:
    """Every alias of every source, alias -> registry name."""
    return {alias: name for source in SOURCES.values() for alias, name in source.aliases.items()}


def register_source(source: Source) -> Source:
    """Add ``source`` at the end of :data:`SOURCES` (asked last, listed last).

    Args:
        source: An object with the :class:`Source` attributes and methods (subclassing
            :class:`SourceBase` gives the defaults).

    Returns:
        ``source``, so the call can decorate an instance.

    Raises:
        ValueError: If it lacks part of the protocol, its key is taken, or one of its
            names or aliases is already a name or alias of another source.
    """
    missing = [m for m in _MEMBERS if not hasattr(source, m)]
    if missing:
        raise ValueError(
            f"'{source}' is not a dataset source: it lacks {', '.join(missing)} "
            "(subclass SourceBase for the defaults)"
        )
    if not isinstance(source.key, str) or not source.key:
        raise ValueError(f"dataset source '{source}' needs a non-empty string key")
    if source.key in SOURCES:
        raise ValueError(f"a dataset source with key '{source.key}' is already registered")
    taken = set(known_names()) | set(alias_table())
    clash = sorted(taken & ({*source.names(), *source.aliases}))
    if clash:
        raise ValueError(f"dataset source '{source.key}' reuses names {', '.join(clash)}")
    SOURCES[source.key] = source
    return source


def unregister_source(key: str) -> Source:
    """Remove and return the source registered under ``key``.

    Raises:
        KeyError: If no source has that key.
    """
    return SOURCES.pop(key)


@contextmanager
def registered_source(source: Source) -> Iterator[Source]:
    """Register ``source`` for the ``with`` block, then remove it (also on errors)."""
    register_source(source)
    try:
        yield source
    finally:
        SOURCES.pop(source.key, None)


__all__ = [
    "SOURCES",
    "DatasetInfo",
    "DatasetSpec",
    "Source",
    "SourceBase",
    "SpecText",
    "alias_table",
    "cached",
    "clear_cache",
    "file_key",
    "known_names",
    "register_source",
    "registered_source",
    "spec_forms",
    "to_image_set",
    "unregister_source",
]
