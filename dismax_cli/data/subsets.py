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

_RANGE_TOKEN = re.compile(r"(\d+)\s*-\s*(\d+)", re.ASCII)


def parse_selection(selection: str, classes: tuple[str, ...], spec: str) -> list[int]:
    """Return the sorted class indices that ``selection`` (``"0-5"``, ``"cat,dog"``) names.

    Raises:
        DismaxError: For a token that is no index, range or class name, a reversed or
            out-of-range range, or a selection that names no class.
    """
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
            raise InvalidValueError(
                "dataset",
                f"class selection '{token}' in '{spec}' is neither a class index, a range "
                f"such as 0-5 nor a class name; classes are {', '.join(classes[:12])}"
                + (" ..." if len(classes) > 12 else ""),
            )
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise InvalidValueError(
                "dataset",
                f"class range '{token}' in '{spec}' is reversed; write the lower index first, "
                f"[{hi}-{lo}]",
            )
        if hi >= len(classes):
            raise InvalidValueError(
                "dataset",
                f"class range '{token}' in '{spec}' is outside 0-{len(classes) - 1}; "
                f"the set has {len(classes)} classes",
            )
        chosen.update(range(lo, hi + 1))
    if not chosen:
        raise InvalidValueError(
            "dataset", f"class selection in '{spec}' names no class; write e.g. [0-5]"
        )
    return sorted(chosen)


def check_selection(selection: str | None, classes: tuple[str, ...] | None, spec: str) -> None:
    """Check a class subset before anything loads (no torch): README "Class subsets".

    ``classes`` are the set's class names when its source knows them without loading
    (``digits``: ``0`` .. ``9``; ``()`` for an unlabelled set such as ``uniform``), else None
    (an ``npz:`` file or image folder names its classes itself: then only a subset that names
    no class at all or holds a reversed range is refused here, the rest when it is loaded).

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
    if classes is not None:
        parse_selection(selection, classes, spec)
        return
    tokens = [t.strip() for t in selection.split(",") if t.strip()]
    if not tokens:
        raise InvalidValueError(
            "dataset", f"class selection in '{spec}' names no class; write e.g. [0-5]"
        )
    for token in tokens:  # a name is the file's to judge; a reversed range is never right
        m = _RANGE_TOKEN.fullmatch(token)
        if m and int(m.group(2)) < int(m.group(1)):
            raise InvalidValueError(
                "dataset",
                f"class range '{token}' in '{spec}' is reversed; write the lower index first, "
                f"[{m.group(2)}-{m.group(1)}]",
            )


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
