"""A benchmark's per-sample evidence: bootstrap intervals, reliability bins, the per-sample npz.

:class:`Evidence` collects, while :func:`dismax_cli.benchmark.run_benchmark` scores, each
method's ID test logits (T = 1), calibrated temperature and default-score values on the ID test
split and every OOD set, per seed. :meth:`Evidence.finish` adds to the report:

* per method and seed the 15 equal-width reliability bins at T = 1 and at the calibrated T
  (METHOD.md §5; :func:`dismax_cli.core.uncertainty.reliability_bins`);
* with ``bootstrap`` = R > 0, for every OOD metric of the default score a 95 % percentile
  interval over test samples, and for each method against the baseline (SoftMax) the paired
  difference with its interval (:mod:`dismax_cli.core.bootstrap`). Resample r draws the same
  ID and OOD indices for every method and every seed (they depend only on the bootstrap seed and
  the set sizes), so with several seeds the interval is that of the *seed mean*: for each
  resample the metric is averaged over seeds, then the quantiles are taken. It measures
  test-sample noise only; the spread over training seeds stays the ``std`` of the report.

:meth:`Evidence.per_sample` gives the first seed's data for :mod:`dismax_cli.plots`; the CLI
writes it beside ``--out`` (:func:`write_per_sample`), and ``dismax benchmark show`` reads it back
(:func:`load_report_samples`) to redraw the same plots.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

import numpy as np

from dismax_cli.bootstrap_settings import DEFAULT_BOOTSTRAP, MAX_BOOTSTRAP, check_bootstrap
from dismax_cli.core.bootstrap import bootstrap_distribution
from dismax_cli.core.metric_table import METRICS, keys
from dismax_cli.core.uncertainty import reliability_bins
from dismax_cli.errors import DismaxError, quote_path
from dismax_cli.errors import quote_value as q
from dismax_cli.fileio import report_neighbours, samples_path
from dismax_cli.plots import (
    MethodSamples,
    PerSample,
    load_per_sample,
    per_sample_bytes,
    save_per_sample,
    softmax,
)
from dismax_cli.reports import Interval, MethodResult, OODResult, Report

#: The seed of the bootstrap's index streams (fixed: the same report, the same intervals).
BOOTSTRAP_SEED = 0
#: The intervals' coverage.
BOOTSTRAP_LEVEL = 0.95
#: Reliability-diagram bins (the ECE's, METHOD.md §5).
RELIABILITY_BINS = 15


@dataclass
class SeedSamples:
    """One method's outputs for one seed.

    Attributes:
        logits: ID test logits at T = 1 ``(N, C)`` (an ensemble: log of the mean probability).
        temperature: The calibrated temperature T (§4).
        score: The default score's name.
        id_scores: That score on the ID test split ``(N,)``.
        ood_scores: OOD label -> that score on the set ``(N_ood,)``.
    """

    logits: np.ndarray
    temperature: float
    score: str
    id_scores: np.ndarray
    ood_scores: dict[str, np.ndarray]


@dataclass
class Evidence:
    """Per-sample outputs of a benchmark: ``records[method][seed]`` and the ID labels ``(N,)``."""

    targets: np.ndarray | None = None
    records: dict[str, dict[int, SeedSamples]] = field(default_factory=dict)
    #: (method, OOD set, metric, resamples) -> (seed-mean value, (R,) resampled seed means):
    #: the baseline's distributions are computed once, not once per method compared with it.
    _cache: dict[tuple[str, str, str, int], tuple[float, np.ndarray]] = field(
        default_factory=dict, repr=False
    )
    #: FPR@95TPR's convention (``--fpr-convention``), the one the report's metrics use.
    fpr_convention: str = "ours"

    def add(
        self,
        method: str,
        seed: int,
        outputs: Any,
        temperature: float,
        targets: Any,
        score: str,
    ) -> None:
        """Keep a method's outputs for one seed.

        Args:
            outputs: :class:`dismax_cli.evaluation.Outputs` (``id_logits`` (N, C), ``id_scores``
                and ``ood_scores`` by score name).
            targets: ID test labels ``(N,)`` int64 (the same for every method and seed).
            score: The method's default score (a key of ``outputs.id_scores``).
        """
        self.targets = np.asarray(targets.cpu() if hasattr(targets, "cpu") else targets)
        self.records.setdefault(method, {})[int(seed)] = SeedSamples(
            logits=_numpy(outputs.id_logits),
            temperature=float(temperature),
            score=score,
            id_scores=_numpy(outputs.id_scores[score]),
            ood_scores={o: _numpy(s[score]) for o, s in outputs.ood_scores.items()},
        )

    def per_sample(self) -> PerSample:
        """The first seed's data of every method, for :mod:`dismax_cli.plots`.

        Raises:
            DismaxError: when nothing was collected.
        """
        if self.targets is None or not self.records:
            raise DismaxError("no per-sample data was collected: run the benchmark first")
        methods = {}
        for method, seeds in self.records.items():
            s = seeds[min(seeds)]
            methods[method] = MethodSamples(
                logits=s.logits, temperature=s.temperature, score=s.score,
                id_scores=s.id_scores, ood_scores=dict(s.ood_scores),
            )  # fmt: skip
        return PerSample(targets=self.targets.astype(np.int64), methods=methods)

    def finish(
        self,
        report: Report,
        *,
        bootstrap: int = DEFAULT_BOOTSTRAP,
        baseline: str = "softmax",
        status: Callable[[str], None] | None = None,
        fpr_convention: str = "ours",
    ) -> Report:
        """Return ``report`` with reliability bins and (``bootstrap`` > 0) intervals added;
        FPR@95TPR's intervals follow ``fpr_convention``, as the report's metrics do."""
        if fpr_convention != self.fpr_convention:
            self.fpr_convention, self._cache = fpr_convention, {}
        methods = []
        for m in report.methods:
            seeds = self.records.get(m.method)
            if not seeds:
                methods.append(m)
                continue
            if status is not None and bootstrap > 0:
                status(f"bootstrap intervals of {m.method} ({bootstrap:,} resamples)")
            methods.append(self._finish_method(m, seeds, bootstrap, baseline))
        return dataclasses.replace(report, methods=tuple(methods))

    def _finish_method(
        self, m: MethodResult, seeds: dict[int, SeedSamples], bootstrap: int, baseline: str
    ) -> MethodResult:
        assert self.targets is not None
        targets = self.targets
        reliability = tuple(_reliability(seed, s, targets) for seed, s in sorted(seeds.items()))
        base = self.records.get(baseline) if m.method != baseline else None
        ood = []
        for r in m.ood:
            if bootstrap > 0 and r.score == m.default_score:
                r = self._with_intervals(m.method, r, base, baseline, bootstrap)
            ood.append(r)
        return dataclasses.replace(m, reliability=reliability, ood=tuple(ood))

    def _distribution(
        self, method: str, ood: str, key: str, resamples: int
    ) -> tuple[float, np.ndarray]:
        """The seed-mean metric of ``method`` on ``ood``, full sample and resampled (cached)."""
        cache_key = (method, ood, key, resamples)
        if cache_key not in self._cache:
            seeds = self.records[method]
            sides = [(seeds[s].id_scores, seeds[s].ood_scores[ood]) for s in sorted(seeds)]
            self._cache[cache_key] = seed_mean_distribution(
                key, sides, resamples, fpr_convention=self.fpr_convention
            )
        return self._cache[cache_key]

    def _with_intervals(
        self,
        method: str,
        r: OODResult,
        base: dict[int, SeedSamples] | None,
        baseline: str,
        resamples: int,
    ) -> OODResult:
        """``r`` with an interval per OOD metric and, with a baseline, the paired differences
        (the same seeds and the same resamples for both methods)."""
        seeds = self.records[method]
        paired = (
            base is not None
            and set(base) == set(seeds)
            and all(r.ood in s.ood_scores for s in base.values())
        )
        intervals, diffs = {}, {}
        for key in keys("ood"):
            value, values = self._distribution(method, r.ood, key, resamples)
            intervals[key] = _interval(value, values, resamples)
            if paired:
                base_value, base_values = self._distribution(baseline, r.ood, key, resamples)
                diffs[key] = _interval(value - base_value, values - base_values, resamples)
        return dataclasses.replace(
            r, intervals=intervals, vs_baseline=diffs, baseline=baseline if paired else None
        )


def _numpy(values: Any) -> np.ndarray:
    return np.asarray(values.detach().cpu() if hasattr(values, "detach") else values)


def _reliability(seed: int, s: SeedSamples, targets: np.ndarray) -> dict[str, Any]:
    """The reliability bins of one seed at T = 1 and at the calibrated T, as JSON-ready data."""

    def bins(temperature: float) -> list[dict[str, Any]]:
        probs = softmax(s.logits, temperature)
        return [dataclasses.asdict(b) for b in reliability_bins(probs, targets, RELIABILITY_BINS)]

    before, after = bins(1.0), bins(s.temperature)
    return {"seed": seed, "temperature": s.temperature, "before": before, "after": after}


def seed_mean_distribution(
    key: str, sides: list[tuple[np.ndarray, np.ndarray]], resamples: int,
    *, fpr_convention: str = "ours",
) -> tuple[float, np.ndarray]:
    """The seed-mean of a pair metric on the full sample and on each bootstrap resample.

    Args:
        key: An OOD key of the metric table (``AUROC``).
        sides: Per seed ``(id_scores (N_id,), ood_scores (N_ood,))``; every seed has the same
            ``N_id`` and ``N_ood``, so resample r uses the same indices for every seed.
        resamples: R >= 1.
        fpr_convention: FPR@95TPR's rule, ``ours`` or ``openood`` (METHOD.md §5).

    Returns:
        ``(value, (R,) values)``: the mean over seeds of the metric, full sample and resampled.
    """
    fn = METRICS[key].fn
    if key == "FPR@95TPR" and fpr_convention != "ours":  # not vectorised: one call a resample
        fn = functools.partial(fn, convention=fpr_convention)
    value = float(np.mean([fn(i, o) for i, o in sides]))
    dists = [
        bootstrap_distribution(fn, i, o, resamples=resamples, seed=BOOTSTRAP_SEED) for i, o in sides
    ]
    return value, np.mean(dists, axis=0)


def _interval(value: float, values: np.ndarray, resamples: int) -> Interval:
    """The percentile interval of ``values`` (R,) at :data:`BOOTSTRAP_LEVEL` (METHOD.md §6).

    As computed: a percentile interval of a skewed resampled distribution (a discrete metric
    such as FPR@95TPR on a small set) may miss the full-sample ``value``, and is not widened.
    """
    tail = (1.0 - BOOTSTRAP_LEVEL) / 2.0
    low, high = (float(x) for x in np.quantile(values, [tail, 1.0 - tail]))
    return Interval(
        value=float(value), low=low, high=high, resamples=int(resamples),
        level=BOOTSTRAP_LEVEL, seed=BOOTSTRAP_SEED,
    )  # fmt: skip


# --------------------------------------------------------------------------- files


def per_sample_file(
    report: Report, evidence: Evidence, report_path: str | Path
) -> tuple[Report, bytes]:
    """The first seed's per-sample npz for beside ``report_path`` (its bytes, not written),
    and ``report`` naming it (``per_sample = {"file", "sha256", "seed"}``)."""
    data = per_sample_bytes(evidence.per_sample())
    seed = min(min(seeds) for seeds in evidence.records.values())
    entry = {"file": samples_path(report_path).name, "sha256": sha256(data).hexdigest()}
    return dataclasses.replace(report, per_sample={**entry, "seed": seed}), data


def write_per_sample(report: Report, evidence: Evidence, report_path: str | Path) -> Report:
    """Write the first seed's per-sample npz beside ``report_path``; name it in the report.

    Returns:
        ``report`` with ``per_sample = {"file", "sha256", "seed"}`` (file relative to the
        report's folder).

    Raises:
        DismaxError: when the file cannot be written.
    """
    per_sample = evidence.per_sample()
    path = samples_path(report_path)
    try:
        digest = save_per_sample(path, per_sample)
    except OSError as exc:
        raise DismaxError(f"cannot write the per-sample file {q(path)}: {exc.strerror}") from None
    seed = min(min(seeds) for seeds in evidence.records.values())
    return dataclasses.replace(
        report, per_sample={"file": path.name, "sha256": digest, "seed": seed}
    )


def _distinct_files(paths: list[Path]) -> list[Path]:
    """``paths`` without repeats of one file (``/abs/r.samples.npz`` and ``r.samples.npz``)."""
    seen: dict[str, Path] = {}
    for path in paths:
        seen.setdefault(os.path.abspath(path), path)
    return list(seen.values())


def load_report_samples(report: Report, report_path: str | Path) -> PerSample:
    """Read the per-sample npz a report names (checked against its sha256), from beside the
    report a symbolic link points to first, then from beside the link
    (:func:`~dismax_cli.fileio.report_neighbours`), then, for a renamed pair (``r.json`` copied
    from ``base.json``), ``STEM.samples.npz`` beside the report (the sha256 confirms it).

    Raises:
        DismaxError: when the report names none (a ``score`` report, an older report, or one
            written without --out), or the file is missing or changed.
    """
    where = quote_path(report_path)
    if not report.per_sample:
        if report.kind == "score":
            raise DismaxError(
                f"report {where} was written by dismax score, whose reports hold no per-sample "
                "data: run dismax benchmark with --out to draw plots"
            )
        raise DismaxError(
            f"report {where} names no per-sample file (it was written before dismax stored "
            "one, or without --out): rerun the benchmark with --out to draw plots"
        )
    name = report.per_sample["file"]
    places = list(report_neighbours(report_path, name))
    renamed = samples_path(report_path)
    places += [renamed] if renamed not in places else []
    found = [p for p in places if p.exists()]
    if not found:
        looked = ", ".join(quote_path(p) for p in _distinct_files(places))
        names = " or ".join(quote_path(n) for n in dict.fromkeys((str(name), renamed.name)))
        raise DismaxError(
            f"the per-sample file {quote_path(name)} that report {where} names is missing "
            f"(looked for {looked}): copy the .samples.npz the benchmark wrote with this "
            f"report next to it, as {names}"
        )
    first: DismaxError | None = None
    for path in found:  # the first whose bytes are the ones the report names
        try:
            return load_per_sample(path, sha256=report.per_sample["sha256"])
        except DismaxError as exc:
            first = first or exc
    raise first  # type: ignore[misc]


__all__ = [
    "BOOTSTRAP_LEVEL",
    "BOOTSTRAP_SEED",
    "DEFAULT_BOOTSTRAP",
    "MAX_BOOTSTRAP",
    "Evidence",
    "check_bootstrap",
    "SeedSamples",
    "load_report_samples",
    "per_sample_file",
    "samples_path",
    "seed_mean_distribution",
    "write_per_sample",
]
