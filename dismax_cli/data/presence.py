"""Every set a benchmark needs and cannot have, named in one message before anything loads.

Offline (``DISMAX_OFFLINE=1``) a named set that is not in the data directory cannot be
fetched; without this check the benchmark would stop at the first one (the ID set), and the
user would learn of each missing OOD set only after fetching the one before it. Here every
set is looked for on disk (no torch, no reading of the data) by its source's optional
``missing`` method (``data/sources/``: a torchvision set's files of the parts it needs, an
ODIN set's cache, folder or archive, an ``npz:`` file or image folder, the last two online
too); an OpenOOD preset set that has no source here is named with its fix. Sets that are
present, and sets that need no files (``digits``, synthetic noise), pass; what is present
but broken is still found when it loads. README "Design notes".
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from dismax_cli.data.download import offline
from dismax_cli.data.registry import parse_spec, resolve_data_dir, split_entry
from dismax_cli.data.sources import SOURCES
from dismax_cli.errors import DismaxError

#: The stand-ins a message offers for sets that cannot be fetched offline.
STAND_INS = (
    "a set can also be replaced by a local file: --dataset npz:FILE, --ood LABEL=npz:FILE or "
    "LABEL=imagefolder:DIR "
    "(e.g. --dataset npz:../shared/data/cifar10_train_10k.npz --test-dataset "
    "npz:../shared/data/cifar10_test.npz --ood tin_resize=npz:../shared/data/tin_resize.npz)"
)


def _id_parts(spec: str, test_spec: str | None) -> list[tuple[str, tuple[str, ...]]]:
    """The ID specs and the parts of each that load (as :func:`load_id_splits` reads them)."""
    if test_spec is None:
        return [(spec, ("train", "test"))]
    return [(spec, ("train",)), (test_spec, ("test",))]


def missing_sets(
    dataset: str,
    ood: Sequence[str],
    *,
    test_dataset: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> list[tuple[str, str]]:
    """``(role, message)`` per set of a benchmark that cannot be loaded (ID sets first; role
    ``"id"`` or ``"ood"``), each message its loader's own, with the fix.

    Online (``DISMAX_OFFLINE`` unset) a missing named set is downloaded, so only ``npz:`` and
    ``imagefolder:`` paths are looked for. A spec that does not parse is left to the loaders.
    """
    root = resolve_data_dir(data_dir)
    wanted = [("id", spec, parts) for spec, parts in _id_parts(dataset, test_dataset)]
    wanted += [("ood", split_entry(entry)[1], ("test",)) for entry in ood]
    from dismax_cli.presets import list_problem  # an OpenOOD set without a source here

    problems: list[tuple[str, str]] = []
    for role, spec, parts in wanted:
        if (no_source := list_problem(spec)) is not None:
            problems.append((role, no_source))
            continue
        try:
            parsed = parse_spec(spec)
            source = SOURCES[parsed.kind]
            if not (offline() or getattr(source, "local", False)):
                continue  # online, a named set is downloaded
            missing = getattr(source, "missing", None)  # optional in the Source protocol
            problem = missing(parsed, parts, root) if missing else None
        except DismaxError:  # a bad spec: its loader names it
            continue
        if problem is not None and problem not in (p for _, p in problems):
            problems.append((role, problem))
    return problems


def check_sets_present(
    dataset: str,
    ood: Sequence[str],
    *,
    test_dataset: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> None:
    """Refuse a benchmark whose sets are missing, every one named (see the module docstring).

    Raises:
        DismaxError: ``the in-distribution set and N OOD sets cannot be used: (1) ...; (2)
            ...`` (or ``N OOD sets ...``), each with its own fix (the file to fetch by hand and
            where to save it), then the local stand-ins; one missing set gives its loader's
            own message.
    """
    problems = missing_sets(dataset, ood, test_dataset=test_dataset, data_dir=data_dir)
    if not problems:
        return
    if len(problems) == 1:
        raise DismaxError(problems[0][1])
    n_ood = sum(role == "ood" for role, _ in problems)
    n_id = len(problems) - n_ood
    parts = []
    if n_id:  # the train and the test set of --test-dataset are two
        parts.append("the in-distribution set" if n_id == 1 else f"{n_id} in-distribution sets")
    if n_ood:
        parts.append(f"{n_ood} OOD set{'s' if n_ood != 1 else ''}")
    listed = "; ".join(f"({i}) {p}" for i, (_, p) in enumerate(problems, 1))
    raise DismaxError(f"{' and '.join(parts)} cannot be used: {listed}; {STAND_INS}")


__all__ = ["STAND_INS", "check_sets_present", "missing_sets"]
