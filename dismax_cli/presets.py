"""OOD set presets: OpenOOD v1.5's near-OOD and far-OOD sets for CIFAR-10 and CIFAR-100 (no torch).

OpenOOD v1.5 (Zhang et al., "OpenOOD v1.5: Enhanced Benchmark for Out-of-Distribution
Detection", arXiv:2306.09301) scores a CIFAR model on

- near-OOD: CIFAR-100 (CIFAR-10 for a CIFAR-100 model; the whole test split, 10,000 images)
  and TinyImageNet (7,793 images of its list ``benchmark_imglist/cifar10/test_tin.txt``: the
  TIN images whose classes do not overlap CIFAR's);
- far-OOD: MNIST (all 70,000 images, ``test_mnist.txt``), SVHN (the test split, 26,032),
  Textures (all of DTD, 5,640) and Places365 (35,195 images of ``test_places365.txt``);

and reports the unweighted mean over the sets of each group. Their image lists cannot be
downloaded here, so a preset is defined by set names: where OpenOOD uses exactly a set this
package can load (``cifar100``, ``svhn``, ``textures``) that is the default; where it uses a
list of its own (TinyImageNet, Places365) there is no default and the set must be given as
``--ood LABEL=SPEC`` (e.g. ``--ood tin=imagefolder:DIR`` holding the listed images); MNIST
defaults to its 10,000-image test split and the report says that it differs from OpenOOD's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dismax_cli.config import InvalidValueError
from dismax_cli.errors import quote_value as q

if TYPE_CHECKING:
    from dismax_cli.reports import OODResult

#: The spec prefix of a preset set that has no default source here (a list of OpenOOD's).
LIST_SPEC_PREFIX = "openood-list:"


@dataclass(frozen=True)
class PresetSet:
    """One set of a preset.

    Attributes:
        label: Its name in tables, JSON and ``--require`` (override with ``--ood LABEL=SPEC``).
        group: ``near`` or ``far``.
        spec: The default spec, or ``None`` when OpenOOD uses an image list of its own.
        openood_count: How many images OpenOOD scores.
        openood_source: What OpenOOD scores (its list file or the split).
    """

    label: str
    group: str
    spec: str | None
    openood_count: int
    openood_source: str


def _sets(near_cifar: str) -> tuple[PresetSet, ...]:
    name = "CIFAR-100" if near_cifar == "cifar100" else "CIFAR-10"
    list_dir = "cifar10" if near_cifar == "cifar100" else "cifar100"
    return (
        PresetSet(near_cifar, "near", near_cifar, 10_000, f"the {name} test split"),
        PresetSet("tin", "near", None, 7_793, f"benchmark_imglist/{list_dir}/test_tin.txt"),
        PresetSet("mnist", "far", "mnist", 70_000, f"benchmark_imglist/{list_dir}/test_mnist.txt"),
        PresetSet("svhn", "far", "svhn", 26_032, "the SVHN test split"),
        PresetSet("textures", "far", "textures", 5_640, "all of DTD"),
        PresetSet(
            "places365", "far", None, 35_195, f"benchmark_imglist/{list_dir}/test_places365.txt"
        ),
    )


#: Preset name -> its sets (near first, then far).
PRESETS: dict[str, tuple[PresetSet, ...]] = {
    "openood-cifar10": _sets("cifar100"),
    "openood-cifar100": _sets("cifar10"),
}
#: Mean groups in report order.
GROUPS = ("near", "far")


def check_preset(name: str | None) -> str | None:
    """Return ``name`` if it is a preset (or ``None``).

    Raises:
        InvalidValueError: for another name (exit 2), listing the presets.
    """
    if name is None or name in PRESETS:
        return name
    raise InvalidValueError(
        "ood_preset", f"--ood-preset {q(name)} is not a preset: choose {' or '.join(PRESETS)}"
    )


def resolve_ood(name: str, entries: Sequence[str], *, defaults: Sequence[str]) -> tuple[str, ...]:
    """The OOD entries of a benchmark with preset ``name``.

    Every preset set comes first, in the preset's order, as ``LABEL=SPEC``: an entry of
    ``entries`` labelled like a preset set replaces that set's spec; the other entries follow.
    ``entries`` equal to ``defaults`` (the benchmark's default sets) count as not given.
    A set without a default source gets the spec ``openood-list:LABEL`` (see :func:`list_problem`).
    """
    from dismax_cli.gates import split_label

    given = [] if tuple(entries) == tuple(defaults) else list(entries)
    by_label = {split_label(e)[0]: e for e in given if "=" in e}
    out: list[str] = []
    for s in PRESETS[name]:
        entry = by_label.pop(s.label, None)
        out.append(entry or f"{s.label}={s.spec or LIST_SPEC_PREFIX + s.label}")
    labels = {s.label for s in PRESETS[name]}
    out += [e for e in given if split_label(e)[0] not in labels]
    return tuple(out)


def groups(name: str | None, labels: Sequence[str]) -> dict[str, list[str]]:
    """``{"near": [...], "far": [...]}``: the preset's labels present in ``labels``."""
    if name is None:
        return {}
    sets = PRESETS[name]
    return {g: [s.label for s in sets if s.group == g and s.label in labels] for g in GROUPS}


def list_problem(spec: str) -> str | None:
    """The one-line fix for a preset set without a source here, or ``None`` for other specs."""
    if not spec.startswith(LIST_SPEC_PREFIX):
        return None
    label = spec[len(LIST_SPEC_PREFIX) :]
    found = [s for sets in PRESETS.values() for s in sets if s.label == label]
    source = found[0].openood_source if found else "OpenOOD's list"
    count = f"{found[0].openood_count:,} " if found else ""
    return (
        f"OOD set {q(label)} of the OpenOOD preset has no offline source here (OpenOOD scores "
        f"the {count}images of {source}): give them as --ood {label}=imagefolder:DIR or "
        f"{label}=npz:FILE"
    )


def count_notes(name: str | None, sizes: dict[str, int]) -> list[str]:
    """Notes for preset sets whose size differs from OpenOOD's (means then differ from theirs)."""
    if name is None:
        return []
    notes = []
    for s in PRESETS[name]:
        n = sizes.get(s.label)
        if n is not None and n != s.openood_count:
            notes.append(
                f"OOD set {s.label} holds {n:,} images, OpenOOD's {s.openood_count:,} "
                f"({s.openood_source}): its {s.group}-OOD mean is not OpenOOD's"
            )
    return notes


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def group_means(
    per_seed: Sequence[dict[tuple[str, str], dict[str, float]]],
    ood_groups: dict[str, list[str]],
    *,
    n_id: int,
    n_ood: dict[str, int],
) -> tuple[OODResult, ...]:
    """Unweighted means over each group's sets, per score (as OpenOOD v1.5 reports them).

    For every seed, each metric of a score is the plain mean over the group's sets (not
    weighted by their sizes); the result is a :class:`~dismax_cli.reports.Stat` over seeds.
    A score is averaged only where every set of the group has it.

    Args:
        per_seed: Per seed, ``{(set, score): {metric: value}}``.
        ood_groups: ``{"near": [sets], "far": [sets]}``.
        n_id: ID test images; ``n_ood``: images per set (the result's ``n_ood`` is their sum).

    Returns:
        One :class:`~dismax_cli.reports.OODResult` per (group, score), ``ood`` = the group.
    """
    from dismax_cli.reports import OODResult, Stat

    out: list[OODResult] = []
    first = per_seed[0]
    scores = list(dict.fromkeys(score for (_, score) in first))
    for group, labels in ood_groups.items():
        if not labels:
            continue
        for score in scores:
            if any((label, score) not in first for label in labels):
                continue
            metrics = first[(labels[0], score)]
            means = {
                key: Stat.of([_mean([r[(lab, score)][key] for lab in labels]) for r in per_seed])
                for key in metrics
            }
            total = sum(n_ood[label] for label in labels)
            out.append(OODResult(ood=group, score=score, n_id=n_id, n_ood=total, metrics=means))
    return tuple(out)


__all__ = [
    "GROUPS",
    "group_means",
    "PRESETS",
    "PresetSet",
    "check_preset",
    "count_notes",
    "groups",
    "list_problem",
    "resolve_ood",
]
