"""Lazy package attributes (PEP 562): a package's public names load their module on first use.

``dismax_cli.data`` and ``dismax_cli.engine`` export names defined in their submodules without
importing those submodules (and torch) when the package itself is imported: a usage error of
the CLI answers before torch loads (README "Design notes"). Stdlib only.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_exports(
    package: str,
    namespace: dict[str, Any],
    sources: Mapping[str, str],
    *,
    submodules: Iterable[str] = (),
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return the ``__getattr__`` and ``__dir__`` of ``package`` (its module ``namespace``).

    ``sources`` maps each public name to the submodule (relative to ``package``) that defines
    it; ``submodules`` are names that are the submodules themselves (``pkg.registry`` reached as
    an attribute). A loaded name is kept in ``namespace``, so each loads once.

    Raises (from the returned ``__getattr__``):
        AttributeError: for a name the package does not export.
    """
    modules = frozenset(submodules)

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module hook's required name
        if name in modules:
            return importlib.import_module(f"{package}.{name}")
        module = sources.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted({*namespace, *sources})

    return __getattr__, __dir__


__all__ = ["lazy_exports"]
