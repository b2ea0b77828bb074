"""Scoring trained runs: one seed's outputs and metrics (:class:`SeedResult`), the per-method
aggregate (:func:`method_result`), and one checkpoint scored on its own (:func:`score_checkpoint`,
``dismax score``), with its per-sample dump (:func:`write_scores_npz`). Protocol: METHOD.md §5, §7.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dismax_cli import __version__
from dismax_cli.benchmark_plan import BenchmarkProgress
from dismax_cli.config_types import InvalidValueError
from dismax_cli.core.methods import get_method
from dismax_cli.core.scores import SCORES
from dismax_cli.data import ImageSet, check_disjoint, load_ood
from dismax_cli.data.stream import streaming
from dismax_cli.detection import DetectorStage
from dismax_cli.engine import (
    LOG_NAME,
    ModelBundle,
    RunData,
    distributed,
    load_bundle,
    load_checkpoint,
    read_train_log,
    rebuild_run_data,
)
from dismax_cli.errors import DismaxError, shell_command
from dismax_cli.errors import quote_value as q
from dismax_cli.evaluation import (
    Outputs,
    dataset_record,
    environment,
    id_metrics,
    model_outputs,
    ood_metrics,
    probs_at,
)
from dismax_cli.fileio import atomic_write
from dismax_cli.gates import check_ood_labels, split_label
from dismax_cli.presets import group_means, list_problem
from dismax_cli.protocol import protocol_record
from dismax_cli.reports import MethodResult, OODResult, Report, Stat, conventions_for
from dismax_cli.score_names import check_fpr_convention, not_applicable, parse_scores


@dataclass
class SeedResult:
    """What one method scored at one seed (the inputs of :func:`method_result`)."""

    temperature: float
    id_before: dict[str, float]
    id_after: dict[str, float]
    ood: dict[tuple[str, str], dict[str, float]]
    n_id: int
    n_ood: dict[str, int]
    throughput: float
    train_s: float
    runs: list[str]
    reused: bool
    score_efficiency: dict[str, float] = dataclasses.field(default_factory=dict)


def train_seconds(run_dirs: Sequence[Path]) -> float:
    """The summed epoch seconds of the training logs of ``run_dirs``."""
    return float(sum(e.seconds for d in run_dirs for e in read_train_log(d / LOG_NAME)))


def evaluate(
    temperature: float,
    data: RunData,
    oods: dict[str, ImageSet],
    outputs: Outputs,
    fpr_convention: str = "ours",
) -> tuple[dict[str, float], dict[str, float], dict[tuple[str, str], dict[str, float]]]:
    """ID metrics at T = 1 and at ``temperature``, and OOD metrics per ``(set, score)``."""
    targets = data.test.labels
    assert targets is not None
    before = id_metrics(probs_at(outputs.id_logits, 1.0), targets)
    after = id_metrics(probs_at(outputs.id_logits, temperature), targets)
    ood: dict[tuple[str, str], dict[str, float]] = {}
    for spec in oods:
        for score, id_scores in outputs.id_scores.items():
            ood[(spec, score)] = ood_metrics(
                id_scores, outputs.ood_scores[spec][score], fpr_convention=fpr_convention
            )
    return before, after, ood


def load_ood_sets(
    entries: Sequence[str],
    *,
    like: ImageSet,
    data_dir: str | None,
    progress: BenchmarkProgress | None = None,
) -> dict[str, ImageSet]:
    """Load every OOD entry (``SPEC`` or ``LABEL=SPEC``) by its label, checked against ``like``.

    Every entry is tried before anything fails, so one message names all the sets that cannot
    be loaded (each with its own fix), not only the first.

    Raises:
        DismaxError: the one error, or ``N OOD sets cannot be used: (1) ...; (2) ...``
            (an InvalidValueError, exit 2, when every one is a bad spec or subset).
    """
    oods: dict[str, ImageSet] = {}
    problems: list[DismaxError] = []
    for entry in entries:
        label, spec = split_label(entry)
        started = time.perf_counter()
        if progress is not None:
            progress.now(f"loading OOD set {label}")
        if (missing := list_problem(spec)) is not None:
            problems.append(DismaxError(missing))
            continue
        try:
            ood_set = load_ood(spec, like=like, data_dir=data_dir)
            check_disjoint(like, ood_set)
        except DismaxError as exc:
            problems.append(exc)
            continue
        oods[label] = ood_set
        if progress is not None:
            progress.say(
                f"loaded OOD set {label}: {len(ood_set):,} images in "
                f"{time.perf_counter() - started:.1f} s"
            )
    if problems:
        listed = "; ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))
        text = f"{len(problems)} OOD sets cannot be used: {listed}"
        text = str(problems[0]) if len(problems) == 1 else text
        if all(isinstance(p, InvalidValueError) for p in problems):  # bad specs: exit 2
            raise InvalidValueError("ood", text)
        raise DismaxError(text)
    return oods


def scored_outputs(
    stage: DetectorStage,
    method: str,
    group: Sequence[ModelBundle],
    data: RunData,
    oods: dict[str, ImageSet],
    cache: dict[tuple[int, int], torch.Tensor],
) -> Outputs:
    """The logit scores of ``method`` plus its ``--scores`` detectors (one pass per set)."""
    sets = {"id": data.test.images, **{label: o.images for label, o in oods.items()}}
    extra = stage.add_scores(method, group, sets, cache) if stage.scores else {}
    outputs = model_outputs(group, data.test, oods, cache=cache)
    if extra:
        outputs.id_scores.update(extra["id"])
        for label in oods:
            outputs.ood_scores[label].update(extra[label])
    return outputs


def with_scores(
    result: MethodResult,
    seeds: list[SeedResult],
    scores: Sequence[str],
    ood_groups: dict[str, list[str]],
) -> MethodResult:
    """Add the ``--scores`` fields: n/a reasons, per-score efficiency, near/far means."""
    ensemble = bool(get_method(result.method).members_of)
    efficiency = {}
    if seeds[0].score_efficiency:
        efficiency = {
            s: Stat.of([r.score_efficiency[s] for r in seeds]) for s in seeds[0].score_efficiency
        }
    means = group_means(
        [r.ood for r in seeds], ood_groups, n_id=seeds[0].n_id, n_ood=seeds[0].n_ood
    )
    return dataclasses.replace(
        result,
        not_applicable=not_applicable(scores, ensemble=ensemble) if scores else {},
        score_efficiency=efficiency,
        ood_means=means,
    )


def _stats(dicts: list[dict[str, float]]) -> dict[str, Stat]:
    return {k: Stat.of([d[k] for d in dicts]) for k in dicts[0]}


def method_result(
    method: str,
    results: list[SeedResult],
    seeds: list[int],
    softmax_throughput: list[float],
    ensemble_size: int,
) -> MethodResult:
    """The report row of ``method``: mean ± std over ``seeds`` of every metric, its efficiency
    (throughput / SoftMax's at the same seed; None when SoftMax's is not finite)."""
    first = results[0]
    ood = tuple(
        OODResult(
            ood=spec, score=score, n_id=first.n_id, n_ood=first.n_ood[spec],
            metrics=_stats([r.ood[(spec, score)] for r in results]),
        )  # fmt: skip
        for (spec, score) in first.ood
    )
    efficiency = None
    if all(math.isfinite(t) for t in softmax_throughput):
        efficiency = Stat.of(
            [r.throughput / t for r, t in zip(results, softmax_throughput, strict=True)]
        )
    spec = get_method(method)
    is_ensemble = spec.members_of is not None
    uses_fpr = False if is_ensemble else load_checkpoint(results[0].runs[0]).meta.uses_fpr
    members = ensemble_size if is_ensemble else 1
    return MethodResult(
        method=method,
        label=spec.row_label(uses_fpr=uses_fpr, members=members),
        default_score=spec.default_score,
        seeds=tuple(seeds),
        runs=tuple(run for r in results for run in r.runs),
        uses_fpr=uses_fpr,
        temperature=Stat.of([r.temperature for r in results]),
        id_before=_stats([r.id_before for r in results]),
        id_after=_stats([r.id_after for r in results]),
        n_id=first.n_id,
        ood=ood,
        throughput_per_s=Stat.of([r.throughput for r in results]),
        efficiency=efficiency,
        train_s=Stat.of([r.train_s for r in results]),
        reused_runs=all(r.reused for r in results),
        members=members,
    )


def synthetic_notes(oods: dict[str, ImageSet]) -> list[str]:
    """One note per synthetic OOD set (noise is a sanity check, not a benchmark)."""
    return [
        f"{o.spec} is synthetic ({o.source}), not real images: a sanity check, not a benchmark"
        for o in oods.values()
        if o.synthetic
    ]


# --------------------------------------------------------------------------- score one checkpoint


def run_protocol(meta: Any) -> dict[str, Any]:
    """The protocol record of a trained (and maybe calibrated) run, from its checkpoint metadata.

    Calibration records written before the optimizer and split were stored were fitted on the
    validation split with the grid search.
    """
    calibration = meta.calibration or {}
    split = calibration.get("split", "val") if meta.calibration is not None else None
    return protocol_record(
        training=meta.config.protocol,
        selection=meta.config.selection,
        calibration_split=split,
        optimizer=calibration.get("optimizer", "grid") if split else None,
        val_fraction=meta.config.val_fraction,
    )


def write_scores_npz(
    path: str | Path, outputs: Outputs, labels: torch.Tensor | None = None
) -> None:
    """Write per-sample scores atomically: ``id/<score>`` and ``ood/<set>/<score>`` arrays (N,).

    Also ``id_logits`` (N, C) at T = 1 and, when given, ``id_labels`` (N,) int64 (the ID test
    labels, so that a reliability diagram can be drawn from the dump).

    Raises:
        DismaxError: when the file cannot be written.
    """
    arrays = _score_arrays(outputs, labels)
    path = Path(path)
    if not distributed.is_main():  # under torchrun only rank 0 writes files
        return
    try:
        atomic_write(path, lambda handle: np.savez(handle, **arrays))
    except OSError as exc:
        raise DismaxError(f"cannot write scores to {q(path)}: {exc.strerror}") from None


def _score_arrays(outputs: Outputs, labels: torch.Tensor | None) -> dict[str, np.ndarray]:
    arrays = {"id_logits": outputs.id_logits.numpy()}
    if labels is not None:
        arrays["id_labels"] = labels.cpu().numpy().astype(np.int64)
    for score, values in outputs.id_scores.items():
        arrays[f"id/{score}"] = values.numpy()
    for spec, scores in outputs.ood_scores.items():
        for score, values in scores.items():
            arrays[f"ood/{spec}/{score}"] = values.numpy()
    return arrays


def scores_npz_bytes(outputs: Outputs, labels: torch.Tensor | None = None) -> bytes:
    """The bytes :func:`write_scores_npz` writes (same arrays), for an all-or-nothing writer."""
    buffer = io.BytesIO()
    arrays = _score_arrays(outputs, labels)
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _run_folder(path: str | Path) -> Path:
    """The run folder of a checkpoint path or of a run folder."""
    return Path(path) if Path(path).is_dir() else Path(path).parent


def _load_scored(
    path: str | Path,
    ood: Sequence[str],
    data_dir: str | None,
    device: str,
    progress: BenchmarkProgress,
) -> tuple[ModelBundle, RunData, dict[str, ImageSet]]:
    """The checkpoint's model, its rebuilt ID splits and the OOD sets, with progress lines."""
    bundle = load_bundle(path, device=device)
    config = bundle.meta.config
    started = time.perf_counter()
    progress.now(f"loading the ID splits of {config.dataset}")
    data = rebuild_run_data(bundle.meta, data_dir=data_dir)
    progress.say(
        f"loaded ID test split {config.test_dataset or config.dataset}: "
        f"{len(data.test):,} images "
        f"in {time.perf_counter() - started:.1f} s"
    )
    with streaming(config.stream):
        oods = load_ood_sets(
            ood, like=data.test, data_dir=data_dir or config.data_dir, progress=progress
        )
    return bundle, data, oods


def _score_each_set(
    path: str | Path,
    bundle: ModelBundle,
    data: RunData,
    oods: dict[str, ImageSet],
    scores: tuple[str, ...],
    progress: BenchmarkProgress,
) -> Outputs:
    """Score the ID test split, then one OOD set at a time (ID logits cached) with progress."""
    cache: dict[tuple[int, int], torch.Tensor] = {}
    stage = DetectorStage(scores)
    method = bundle.meta.method
    if scores:
        progress.now("fitting the detectors on the training split")
        stage.prepare(method, [bundle], data.train, _run_folder(path))
    started = time.perf_counter()
    progress.now(f"scoring the ID test split ({len(data.test):,} images)")
    id_outputs = scored_outputs(stage, method, [bundle], data, {}, cache)
    progress.say(
        f"scored the ID test split: {len(data.test):,} images in "
        f"{time.perf_counter() - started:.1f} s"
    )
    ood_scores: dict[str, dict[str, torch.Tensor]] = {}
    for label, ood_set in oods.items():
        started = time.perf_counter()
        progress.now(f"scoring OOD set {label} ({len(ood_set):,} images)")
        ood_scores[label] = scored_outputs(
            stage, method, [bundle], data, {label: ood_set}, cache
        ).ood_scores[label]
        progress.say(
            f"scored OOD set {label}: {len(ood_set):,} images in "
            f"{time.perf_counter() - started:.1f} s"
        )
    return Outputs(id_outputs.id_logits, id_outputs.id_scores, ood_scores)


def _checkpoint_notes(path: str | Path, meta: Any, temperature: float) -> list[str]:
    """Why this checkpoint's numbers may not be final: unfinished, or never calibrated."""
    run = Path(path).parent if Path(path).name == "checkpoint.pt" else Path(path)
    if not meta.finished:
        return [
            f"the checkpoint is from an unfinished run (epoch {meta.epoch} of "
            f"{meta.epochs}); finish it with `{shell_command('train', '--out', run, '--resume')}`"
        ]
    if meta.calibration is None:
        return [
            f"this {meta.method} run was never calibrated, so ECE and NLL are at "
            f"T = {temperature:g}, not at a fitted temperature: calibrate it with "
            f"`{shell_command('calibrate', run)}` and score again"
        ]
    return []


def _checkpoint_row(
    path: str | Path,
    meta: Any,
    result: SeedResult,
    score: str | None,
    scores: tuple[str, ...],
) -> MethodResult:
    """The report row of one checkpoint (no throughput: nothing was timed against SoftMax)."""
    row = method_result(meta.method, [result], [meta.config.seed], [float("nan")], 1)
    if score is not None:
        row = dataclasses.replace(row, default_score=score)
    return dataclasses.replace(
        with_scores(row, [result], scores, {}), throughput_per_s=None, uses_fpr=meta.uses_fpr
    )


def score_checkpoint(
    path: str | Path,
    ood: Sequence[str],
    *,
    data_dir: str | None = None,
    device: str = "cpu",
    score: str | None = None,
    dump: str | Path | None = None,
    progress: BenchmarkProgress | None = None,
    scores: Sequence[str] = (),
    fpr_convention: str = "ours",
    dump_to: Callable[[bytes], None] | None = None,
) -> Report:
    """Evaluate one checkpoint on its ID test split and each OOD set (``dismax score``).

    ACC/NLL/ECE are reported at T = 1 and at the checkpoint's stored temperature; OOD metrics for
    every score (``score`` or the method's default is the one tables show). ``progress`` gets
    :func:`~dismax_cli.benchmark_plan.score_steps` lines (each set loaded and scored, with its
    size and seconds). A run that was never calibrated (``dismax calibrate``) gets a note saying
    so. ``scores`` (``--scores``) adds the post-hoc detectors, fitted on the run's training split
    (cached in the run folder); ``fpr_convention`` is FPR@95TPR's (``ours`` or ``openood``).
    ``dump_to`` (instead of ``dump``) gets the dump's npz bytes, written by the caller.

    Raises:
        DismaxError: for an unreadable checkpoint, unknown sets or scores, or overlapping splits.
    """
    progress = progress or BenchmarkProgress()
    if score is not None and score not in SCORES:
        raise DismaxError(f"unknown score {q(score)}: choose one of {', '.join(SCORES)}")
    check_ood_labels(ood)
    scores = parse_scores(scores)
    check_fpr_convention(fpr_convention)
    bundle, data, oods = _load_scored(path, ood, data_dir, device, progress)
    outputs = _score_each_set(path, bundle, data, oods, scores, progress)
    if dump_to is not None:  # the caller writes it (with --out, all or nothing)
        dump_to(scores_npz_bytes(outputs, data.test.labels))
    elif dump is not None:
        write_scores_npz(dump, outputs, data.test.labels)
    temperature, meta = bundle.temperature, bundle.meta
    before, after, ood_results = evaluate(temperature, data, oods, outputs, fpr_convention)
    result = SeedResult(
        temperature=temperature, id_before=before, id_after=after, ood=ood_results,
        n_id=len(data.test), n_ood={s: len(o) for s, o in oods.items()},
        throughput=float("nan"), train_s=train_seconds([_run_folder(path)]),
        runs=[str(path)], reused=True,
    )  # fmt: skip
    row = _checkpoint_row(path, meta, result, score, scores)
    return Report(
        kind="score",
        tool_version=__version__,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        config={
            "checkpoint": str(path),
            "ood": list(ood),
            "score": score or row.default_score,
            "scores": list(scores),
            "fpr_convention": fpr_convention,
            "calibration": meta.calibration,
            "train_config": meta.config.to_dict(),
        },
        environment=environment(bundle.device),
        datasets=(
            dataset_record("test", data.test),
            *(dataset_record("ood", o, name=label) for label, o in oods.items()),
        ),
        methods=(row,),
        notes=tuple(synthetic_notes(oods) + _checkpoint_notes(path, meta, temperature)),
        conventions=conventions_for(fpr_convention),
        protocol=run_protocol(meta),
    )


__all__ = [
    "SeedResult",
    "evaluate",
    "load_ood_sets",
    "method_result",
    "run_protocol",
    "score_checkpoint",
    "scored_outputs",
    "synthetic_notes",
    "train_seconds",
    "with_scores",
    "write_scores_npz",
]
