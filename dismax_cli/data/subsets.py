"""Class subsets ``SPEC[SEL]``: keep some classes of a labelled set and re-index them 0..k-1.

``SEL`` is a comma list of class indices, ranges (``0-5``) or class names; the kept classes
are re-indexed in ascending order of their original index (README "Class subsets").
"""

from __future__ import annotations

import re
from dataclasses import replace

from dismax_cli.config import InvalidValueError
from dismax_cli.data.imageset import ImageSet
from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q

#: An index or a range of a class subset, in ASCII digits only (``int`` would also take
#: ``'٣'`` or ``'３'``: README "Design notes", one grammar of numbers).
_INDEX_TOKEN = re.compile(r"([0-9]+)\s*(?:-\s*([0-9]+))?")
#: The same in any script's decimal digits, to name the ASCII spelling in the message.
_UNICODE_INDEX = re.compile(r"\d+\s*(?:-\s*\d+)?")
_UNICODE_DIGIT = re.compile(r"\d")


def split_items(selection: str, spec: str) -> list[str]:
    """The comma-separated items of a class subset, stripped; refuses an empty or repeated one.

    ``digits[0,,1]`` or ``digits[1,]`` hold an empty item, ``digits[0,0]`` one twice: typos
    that would otherwise be read as ``digits[0,1]`` / ``digits[1]`` / ``digits[0]`` in silence.

    Raises:
        InvalidValueError: (exit 2) naming the spec and the spelling without the empty or
            repeated item.
    """
    items = [t.strip() for t in selection.split(",")]
    if any(not t for t in items) and any(items):
        kept = ",".join(t for t in items if t)
        base = spec[: spec.rfind("[")] if "[" in spec else spec
        raise InvalidValueError(
            "dataset",
            f"class selection in {q(spec)} has an empty item (a comma with nothing on one "
            f"side): write "
            f"{q(f'{base}[{kept}]')}",
        )
    items = [t for t in items if t]  # all empty (``[ , ]``): names no class, said later
    seen: set[str] = set()
    for t in items:
        if t in seen:
            base = spec[: spec.rfind("[")] if "[" in spec else spec
            kept = ",".join(dict.fromkeys(items))
            raise InvalidValueError(
                "dataset",
                f"class selection in {q(spec)} names {q(t)} twice: write {q(f'{base}[{kept}]')}",
            )
        seen.add(t)
    return items


def parse_selection(selection: str, classes: tuple[str, ...], spec: str) -> list[int]:
    """Return the sorted class indices that ``selection`` (``"0-5"``, ``"cat,dog"``) names.

    Raises:
        DismaxError: For a token that is no index, range or class name, a reversed or
            out-of-range range, or a selection that names no class.
    """
    chosen: set[int] = set()
    lookup = {c: i for i, c in enumerate(classes)}
    for token in split_items(selection, spec):
        if token in lookup and not _INDEX_TOKEN.fullmatch(token):
            chosen.add(lookup[token])
            continue
        indices = _index_token(token, len(classes), spec)
        if indices is None:
            raise InvalidValueError(
                "dataset",
                f"class selection '{token}' in '{spec}' is neither a class index, a range "
                f"such as 0-5 nor a class name; classes are {', '.join(classes[:12])}"
                + (" ..." if len(classes) > 12 else ""),
            )
        chosen.update(indices)
    if not chosen:
        raise InvalidValueError(
            "dataset", f"class selection in '{spec}' names no class; write e.g. [0-5]"
        )
    return sorted(chosen)


def _index_token(token: str, count: int | None, spec: str) -> range | None:
    """The indices of an index or range token (``3``, ``0-5``); None for any other token.

    ``count`` is the set's number of classes (None: not known yet, range not checked).

    Raises:
        InvalidValueError: for a reversed or out-of-range range, or digits other than ASCII.
    """
    m = _INDEX_TOKEN.fullmatch(token)
    if not m and _UNICODE_INDEX.fullmatch(token):
        ascii_token = _UNICODE_DIGIT.sub(lambda d: str(int(d.group())), token)
        raise InvalidValueError(
            "dataset",
            f"class index or range {q(token)} in {q(spec)} is not written in ASCII digits: "
            "write "
            f"{q(ascii_token)}",
        )
    if not m:
        return None
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) is not None else lo
    if hi < lo:
        raise InvalidValueError(
            "dataset",
            f"class range '{token}' in '{spec}' is reversed; write the lower index first, "
            f"[{hi}-{lo}]",
        )
    if count is not None and hi >= count:
        what = "range" if m.group(2) is not None else "index"
        raise InvalidValueError(
            "dataset",
            f"class {what} '{token}' in '{spec}' is outside 0-{count - 1}; "
            f"the set has {count} classes: pick indices from 0 to {count - 1}",
        )
    return range(lo, hi + 1)


def check_selection(
    selection: str | None, classes: tuple[str, ...] | int | None, spec: str
) -> None:
    """Check a class subset before anything loads (no torch): README "Class subsets".

    ``classes`` are the set's class names when its source knows them without loading
    (``digits``: ``0`` .. ``9``; ``()`` for an unlabelled set such as ``uniform``), or only
    their number (an int: the torchvision sets, whose names come with the data), else None
    (an ``npz:`` file or image folder names its classes itself). With a number, indices and
    ranges are checked against it; with None, only a subset that names no class, holds an
    empty item or a reversed range is refused here. The rest is checked when the set loads.

    Raises:
        InvalidValueError: (exit 2) for a malformed or out-of-range subset, one that names no
            class, or any subset of an unlabelled set.
    """
    if selection is None:
        return
    if classes == ():
        raise InvalidValueError(
            "dataset",
            f"'{spec}' selects classes of an unlabelled set; drop the [..] part or use a "
            "labelled set (npz with 'y', imagefolder with class sub-folders)",
        )
    if isinstance(classes, tuple):
        parse_selection(selection, classes, spec)
        return
    tokens = split_items(selection, spec)
    if not tokens:
        raise InvalidValueError(
            "dataset", f"class selection in '{spec}' names no class; write e.g. [0-5]"
        )
    for token in tokens:  # a name is the data's to judge
        if classes is not None:  # the names are ASCII words: an index in other digits is wrong
            _index_token(token, classes, spec)
        elif _INDEX_TOKEN.fullmatch(token):  # a file's class may be named '٣'
            _index_token(token, None, spec)


def _shorten(text: str, limit: int = 120) -> str:
    if len(text) <= limit:
        return text
    cut = text.rfind(", ", 0, limit)
    return (text[:cut] if cut > 0 else text[: limit - 4]) + ", ..."


def select_classes(s: ImageSet, selection: str) -> ImageSet:
    """Keep the images of the selected classes of ``s``, labels re-indexed 0..k-1.

    Raises:
        InvalidValueError: If ``s`` is unlabelled or the selection is malformed.
        DismaxError: If no image of ``s`` belongs to a selected class.
    """
    if s.labels is None:
        raise InvalidValueError(
            "dataset",
            f"'{s.spec}' selects classes of an unlabelled set; drop the [..] part or use a "
            "labelled set (npz with 'y', imagefolder with class sub-folders)"
        )
    import torch

    keep = parse_selection(selection, s.classes, s.spec)
    mapping = torch.full((len(s.classes),), -1, dtype=torch.int64)
    mapping[torch.tensor(keep)] = torch.arange(len(keep))
    mask = mapping[s.labels] >= 0
    if len(s) and not bool(mask.any()):
        have = torch.unique(s.labels).tolist()
        names = ", ".join(s.classes[i] if not s.classes[i].isdigit() else str(i) for i in have)
        part = "it has" if s.split == "all" else f"its {s.split} part has"
        raise DismaxError(
            f"class selection '{selection}' in '{s.spec}' keeps no images: {part} none of "
            f"those classes; pick classes that have images: {_shorten(names)}"
        )
    sub = s.subset(mask.numpy(), split=s.split)
    assert sub.labels is not None
    return replace(
        sub,
        labels=mapping[sub.labels].contiguous(),
        classes=tuple(s.classes[i] for i in keep),
    )
