"""Checks of a dataset spec's text before any source parses it (README "Design notes").

A spec is typed text; two spellings must not name two different sets (``uniform`` and
``uniform:`` or `` uniform``), and a message quoting a spec must stay one line. So a spec with
a byte that is not UTF-8 (a raw byte from the shell), a control character, a space at either
end, or an empty parameter after ``:`` is a usage error (exit 2) naming it, its control
characters and raw bytes escaped (:func:`dismax_cli.errors.quote_value`).
"""

from __future__ import annotations

import re

from dismax_cli.config_types import InvalidValueError
from dismax_cli.errors import quote_value as q
from dismax_cli.errors import undecodable_bytes

#: Spec forms whose parameter is a path; their own parser names an empty one.
PATH_FORMS = ("npz", "imagefolder")
#: Spaces that would make a second spelling of one set (a path's own spaces are not checked).
_INNER_SPACE = re.compile(r"\s+(?=[:\[])|(?<=:)\s+")


def check_spec_text(spec: str) -> str:
    """Return ``spec``; refuse one with a byte that is not UTF-8, a control character, a space
    at either end, or (but in a path) a space around ``:`` or before ``[``.

    ``' uniform'`` or ``'uniform\\n'`` would otherwise name a second, different set.

    Raises:
        InvalidValueError: (exit 2) quoting the spec with its control characters escaped.
    """
    undecodable = undecodable_bytes(spec)
    if undecodable is not None:  # not a control character: a byte the shell passed raw
        what = "bytes that are" if " " in undecodable else "a byte that is"
        raise InvalidValueError(
            "dataset",
            f"dataset spec {q(spec)} holds {what} "
            f"not UTF-8 ({undecodable}, shown escaped): retype it in UTF-8, or rename a file "
            "whose name is not UTF-8",
        )
    if any(not ch.isprintable() and ch != " " for ch in spec):
        raise InvalidValueError(
            "dataset",
            f"dataset spec {q(spec)} holds a control character (shown escaped): retype it "
            "without one",
        )
    if spec != spec.strip():
        raise InvalidValueError(
            "dataset",
            f"dataset spec {q(spec)} has a space at its start or end: write {q(spec.strip())}",
        )
    head = spec.split(":", 1)[0].split("=", 1)[-1].strip().lower()
    if head not in PATH_FORMS and _INNER_SPACE.search(spec):  # 'digits [0-2]', 'uniform: 5'
        raise InvalidValueError(
            "dataset",
            f"dataset spec {q(spec)} has a space around ':' or before '[': write "
            f"{q(_INNER_SPACE.sub('', spec))}",
        )
    return spec


def check_parameter(spec: str, body: str, selection: str | None) -> tuple[str, str, str]:
    """``body.partition(":")``; refuse an empty parameter (``uniform:``, ``digits:``).

    ``body`` is the spec without its class subset, ``selection`` that subset without brackets
    (None for none).

    Raises:
        InvalidValueError: (exit 2) naming the spec and the spelling without the colon.
    """
    name, colon, arg = body.partition(":")
    # npz: and imagefolder: name their missing path themselves ("'npz:' names no path").
    if colon and not arg.strip() and name.strip().lower() not in PATH_FORMS:
        bare = name + (f"[{selection}]" if selection else "")
        raise InvalidValueError(
            "dataset",
            f"dataset spec {q(spec)} has an empty parameter after ':': write {q(bare)} or give "
            "the parameter (uniform:500, npz:PATH)",
        )
    return name, colon, arg


__all__ = ["PATH_FORMS", "check_parameter", "check_spec_text"]
