"""Evaluation shared by ``dismax score`` and ``dismax benchmark``: logits -> metrics -> report rows.

Definitions: METHOD.md §3 (scores), §4 (calibration), §5 (metrics).
"""

from __future__ import annotations

import functools
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dismax_cli.core._arrays import host_float64
from dismax_cli.core.ensemble import mutual_information, predictive_log_probs
from dismax_cli.core.metric_table import METRICS, keys
from dismax_cli.core.scores import SCORES
from dismax_cli.data import ImageSet
from dismax_cli.engine.checkpoint import ModelBundle
from dismax_cli.engine.predict import predict_images
from dismax_cli.reports import DatasetRecord
from dismax_cli.timing import interleaved_seconds, timing_seconds


class Probabilities(torch.Tensor):
    """``softmax(logits / T)`` as a float64 CPU tensor that carries ``log_softmax(logits / T)``.

    Returned by :func:`probs_at`. It behaves as a plain tensor (operations on it give plain
    tensors); :func:`id_metrics` reads :attr:`log_probs` so that the NLL comes from the logits:
    a probability that underflows to 0 would cap −log p at about 708.4 nats.
    """

    log_probs: torch.Tensor | None = None
    __torch_function__ = torch._C._disabled_torch_function_impl


def id_metrics(
    probs: torch.Tensor, targets: torch.Tensor, *, log_probs: torch.Tensor | None = None
) -> dict[str, float]:
    """Compute every ID metric of the metric table (ACC, ECE, NLL, Brier, AURC, ...).

    The NLL is computed from log-probabilities (``log_probs``, else the ones a
    :class:`Probabilities` from :func:`probs_at` carries), so it is exact for any finite logits:
    ``id_metrics(probs_at(torch.tensor([[0., -1000.]]), 1.0), torch.tensor([1]))["NLL"]`` is
    1000. Plain probabilities fall back to :func:`dismax_cli.core.metrics.nll`, which caps each
    term at about 708.4 nats; prefer :func:`id_metrics_from_logits`.

    Args:
        probs: (N, C) probabilities, e.g. from :func:`probs_at`.
        targets: (N,) int64 class indices.
        log_probs: (N, C) log-probabilities matching ``probs`` (optional).

    Returns:
        ``{key: float}`` for each ID key of :data:`~dismax_cli.core.metric_table.METRICS`
        (NLL in nats, the others fractions; Brier in [0, 2]).

    Raises:
        DismaxError: for empty, misshapen or non-finite inputs, or targets out of range.

    References:
        METHOD.md §5 (accuracy, NLL, ECE); ``dismax_cli.core.uncertainty`` (Brier, AURC,
        adaptive and classwise ECE).
    """
    if log_probs is None and isinstance(probs, Probabilities):
        log_probs = probs.log_probs
    if log_probs is not None and tuple(log_probs.shape) != tuple(probs.shape):
        log_probs = None  # not the log of these probabilities
    values = {}
    for key in keys("id"):
        info = METRICS[key]
        log_fn = info.log_fn
        if log_fn is not None and log_probs is not None:
            values[key] = float(log_fn(log_probs, targets))
        else:
            values[key] = float(info.fn(probs, targets))
    return values


def id_metrics_from_logits(
    logits: torch.Tensor, targets: torch.Tensor, *, temperature: float = 1.0
) -> dict[str, float]:
    """Compute every ID metric of ``softmax(logits / T)``, the NLL in the log domain.

    For a deep ensemble pass the member logits (M, N, C): the predictive distribution is the
    mean of the members' probabilities, whose log is computed stably as
    ``logsumexp_m log_softmax(z_m) − log M`` (never from clipped probabilities), then divided by
    T like a model's logits (METHOD.md §3, §4).

    Args:
        logits: (N, C) logits of one model, or (M, N, C) member logits of an ensemble.
        targets: (N,) int64 class indices.
        temperature: T > 0.

    Returns:
        ``{key: float}`` as :func:`id_metrics` returns.

    Raises:
        DismaxError: for empty, misshapen or non-finite logits, or targets out of range.

    References:
        METHOD.md §3 (deep ensemble), §5 (metrics).
    """
    if logits.ndim == 3:
        logits = predictive_log_probs(logits)
    return id_metrics(probs_at(logits, temperature), targets)


def ood_metrics(
    id_scores: torch.Tensor, ood_scores: torch.Tensor, *, fpr_convention: str = "ours"
) -> dict[str, float]:
    """Every detection metric of the metric table (METHOD.md §5; higher score = more ID).

    Shapes: ``id_scores`` (N_id,), ``ood_scores`` (N_ood,); returns ``{key: fraction}`` for each
    OOD key of :data:`~dismax_cli.core.metric_table.METRICS`. ``fpr_convention`` is
    FPR@95TPR's: ``ours`` or ``openood`` (``--fpr-convention``).
    """
    out = {}
    for key in keys("ood"):
        extra = {"convention": fpr_convention} if key == "FPR@95TPR" else {}
        out[key] = float(METRICS[key].fn(id_scores, ood_scores, **extra))
    return out


def single_model_scores(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every registered score of one model's logits (B, C) at T = 1 -> name: (B,) scores."""
    return {name: fn(logits) for name, fn in SCORES.items()}


def ensemble_scores(member_logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """Scores of a deep ensemble from member logits (M, B, C): on p̄, and −mutual information."""
    log_pbar = predictive_log_probs(member_logits)
    return {
        "msp": SCORES["msp"](log_pbar),
        "neg_entropy": SCORES["neg_entropy"](log_pbar),
        "neg_mutual_information": -mutual_information(member_logits),
    }


@dataclass
class Outputs:
    """What one model (or ensemble) produced on the ID test split and the OOD sets (T = 1)."""

    id_logits: torch.Tensor  # (N, C); for an ensemble, log p̄
    id_scores: dict[str, torch.Tensor]
    ood_scores: dict[str, dict[str, torch.Tensor]]  # ood spec -> score -> (N_ood,)


def model_outputs(
    bundles: Sequence[ModelBundle],
    test: ImageSet,
    oods: dict[str, ImageSet],
    *,
    batch_size: int = 256,
    cache: dict[tuple[int, int], torch.Tensor] | None = None,
) -> Outputs:
    """Run one model (or the members of an ensemble) over the ID test split and every OOD set.

    ``cache`` (keyed by the identities of bundle and image tensor) lets a model that serves
    twice, SoftMax and ensemble member 0 in the benchmark, be run over each set once.
    """
    cache = {} if cache is None else cache

    def member_logits(bundle: ModelBundle, images: torch.Tensor) -> torch.Tensor:
        key = (id(bundle), id(images))
        if key not in cache:
            cache[key] = predict_images(bundle, images, batch_size=batch_size)
        return cache[key]

    def logits_of(images: torch.Tensor) -> torch.Tensor:
        return torch.stack([member_logits(b, images) for b in bundles])

    def scores_of(member_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        if len(bundles) == 1:
            return single_model_scores(member_logits[0])
        return ensemble_scores(member_logits)

    id_member = logits_of(test.images)
    id_logits = id_member[0] if len(bundles) == 1 else predictive_log_probs(id_member)
    return Outputs(
        id_logits=id_logits,
        id_scores=scores_of(id_member),
        ood_scores={spec: scores_of(logits_of(s.images)) for spec, s in oods.items()},
    )


def probs_at(logits: torch.Tensor, temperature: float) -> Probabilities:
    """Return ``softmax(logits / T)`` in float64 on the CPU, carrying its log-probabilities.

    The logits are moved to the CPU before the cast (no float64 on an accelerator). The result
    is a :class:`Probabilities` whose ``log_probs`` is ``log_softmax(logits / T)``, from which
    :func:`id_metrics` computes the NLL.

    Args:
        logits: (N, C) logits (for an ensemble, its log mean probabilities).
        temperature: T > 0.

    Returns:
        (N, C) float64 CPU probabilities.

    References:
        METHOD.md §4 (temperature scaling).
    """
    log_probs = F.log_softmax(host_float64(logits) / float(temperature), dim=1)
    probs = log_probs.exp().as_subclass(Probabilities)
    probs.log_probs = log_probs
    return probs


def measure_throughputs(
    groups: dict[str, Sequence[ModelBundle]],
    images: torch.Tensor,
    *,
    batch_size: int = 256,
    rounds: int = 7,
    min_seconds: float | None = None,
    max_rounds: int = 400,
) -> dict[str, float]:
    """Inference images/s of each model or ensemble on the same ``images`` (the prediction path).

    Timing follows :func:`predict_images` (transform + forward, T = 1) batch by batch. Every
    group is warmed up first; then, ``rounds`` times, each batch is run by every group in turn
    (the order rotated every round), and more rounds follow (up to ``max_rounds``) until every
    group has been timed for ``min_seconds`` (default 1 s, or ``DISMAX_TIMING_SECONDS``:
    :mod:`dismax_cli.timing`). Each timed run follows an untimed run of the same
    group on the same batch, so every method is timed in the same state, as when it predicts a
    data set batch after batch (issue 11: in a fixed order a method read by its neighbour, e.g.
    two copies of one trained digits DisMax 0.981 and 0.970 of SoftMax; now 0.963 and 0.963).
    A batch's time is the median over rounds, a
    pass the sum of those medians. On CPU the time is this process's CPU time
    (``time.process_time``): other processes on a shared machine stretch the wall clock of
    whichever method runs at that moment (the efficiency column read 0.81–0.93 for one set of
    runs, issue 11), but not the work a method does; on CUDA it is the wall clock after a
    synchronisation. Every member of an ensemble processes every image, so an ensemble of M
    costs about M single models.

    Returns:
        ``{group name: images per second}``: per CPU-second on CPU (equal to wall-clock images/s
        on an idle machine with one thread), per second on CUDA.
    """
    if min_seconds is None:
        min_seconds = timing_seconds(1.0)
    batches = [images[start : start + batch_size] for start in range(0, len(images), batch_size)]
    timed = {
        name: functools.partial(_run_group, bundles, batch_size=batch_size)
        for name, bundles in groups.items()
    }
    seconds = interleaved_seconds(
        timed, batches, rounds=rounds, min_seconds=min_seconds, max_rounds=max_rounds
    )
    return {n: len(images) / max(seconds[n], 1e-12) for n in groups}


def _run_group(bundles: Sequence[ModelBundle], batch: torch.Tensor, *, batch_size: int) -> float:
    """Seconds (CPU time on CPU, wall clock on CUDA) for every member of a group to predict."""
    cuda = bool(bundles) and bundles[0].device.type == "cuda"
    clock = time.perf_counter if cuda else time.process_time
    start = clock()
    for b in bundles:
        predict_images(b, batch, batch_size=batch_size)
    if cuda:
        torch.cuda.synchronize()
    return clock() - start


def dataset_record(role: str, data: ImageSet, *, name: str | None = None) -> DatasetRecord:
    """Provenance of ``data`` for a report: spec, split, N, shape and sha256 of the pixels."""
    return DatasetRecord(
        role=role,
        name=name or data.spec,
        spec=data.spec,
        split=data.split,
        n=len(data),
        image_shape=tuple(int(v) for v in data.image_shape),  # type: ignore[arg-type]
        pixels_sha256=data.pixels_sha256(),
        source=data.source,
        synthetic=bool(data.synthetic),
        num_classes=data.num_classes,
    )


def environment(device: torch.device) -> dict[str, object]:
    """Python, torch, platform and device facts for a report."""
    env: dict[str, object] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


__all__ = [
    "Outputs",
    "dataset_record",
    "ensemble_scores",
    "environment",
    "Probabilities",
    "id_metrics",
    "id_metrics_from_logits",
    "measure_throughputs",
    "model_outputs",
    "ood_metrics",
    "probs_at",
    "single_model_scores",
]
