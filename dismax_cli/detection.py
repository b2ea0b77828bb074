"""Post-hoc detectors on trained runs: fit on the training split, cache, score, time.

``dismax score`` and ``dismax benchmark`` call this module for ``--scores``; the detector maths is
in :mod:`dismax_cli.core.detectors`, the names and what applies to which method in
:mod:`dismax_cli.score_names`.

- Statistics (Mahalanobis, KNN, ViM, ReAct) are fitted on the run's **training split only**
  (after the validation carve; never a scored split) from one pass that gives features and
  logits together (:func:`~dismax_cli.engine.predict.predict_features_logits`).
- They are cached in the run folder (``detector_stats.pt``), keyed by the sha256 of the model's
  weights and of the training pixels: retraining or changing the data refits them; calibrating
  (which rewrites only the checkpoint's metadata) does not.
- ViM on a distance head (IsoMax+, DisMax: logits ≤ 0, no linear origin) uses
  ``α = Σ_i |max_c z_ic| / Σ_i ‖(f_i − u) R‖`` (README design notes): the paper's α matches the
  virtual logit's scale to the max logit's, which for negative distances is its magnitude.
- An ensemble gets GEN on its averaged probabilities; the other detectors are n/a for it.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from dismax_cli.core.detectors import DETECTORS, Detector, ViMDetector, odin_scores
from dismax_cli.core.detectors._common import head_logits
from dismax_cli.core.detectors.vim import default_principal_dim, linear_origin
from dismax_cli.core.ensemble import predictive_log_probs
from dismax_cli.core.scores import SCORES
from dismax_cli.data import ImageSet
from dismax_cli.engine import distributed
from dismax_cli.engine.checkpoint import ModelBundle, save_torch_file
from dismax_cli.engine.predict import (
    _find_head,
    image_batches,
    predict_features_logits,
    predict_images,
)
from dismax_cli.errors import DismaxError
from dismax_cli.score_names import ENSEMBLE_SCORES
from dismax_cli.timing import interleaved_seconds, timing_seconds

#: The cache file in a run folder.
CACHE_NAME = "detector_stats.pt"
CACHE_FORMAT = 1
#: Detectors whose statistics come from the training features.
FITTED = ("mahalanobis", "knn", "vim", "react")


def weights_sha256(model: torch.nn.Module) -> str:
    """The sha256 of a model's state dict (names, dtypes, shapes and bytes of every tensor)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _features_logits(bundle: ModelBundle, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Features (N, D) and logits (N, C) of uint8 images in one pass (float32, CPU)."""
    batches = image_batches(images, bundle.transform, batch_size=256, device=bundle.device)
    return predict_features_logits(bundle.model, batches, device=bundle.device)


def _vim_detector(head: torch.nn.Module, features: torch.Tensor) -> ViMDetector:
    """ViM with the paper's α for a linear head; α from |max logit| for a distance head."""
    if linear_origin(head) is not None:
        return ViMDetector()
    feats = features.double()
    dim = default_principal_dim(feats.shape[1])
    probe = ViMDetector(dim=dim, alpha=1.0)
    stats = probe.fit(feats, torch.zeros(len(feats), dtype=torch.long), head=head)
    logits = head_logits(head, feats)
    centred = feats - stats.tensors["origin"]
    residual = torch.linalg.vector_norm(centred @ stats.tensors["residual_basis"], dim=1)
    alpha = float(logits.max(dim=1).values.abs().sum() / residual.sum())
    if not math.isfinite(alpha) or alpha <= 0:
        raise DismaxError(
            f"ViM's alpha for this distance head is {alpha:.4g} (the training residuals are 0); "
            "leave vim out of --scores for this run"
        )
    return ViMDetector(dim=dim, alpha=alpha)


def _cache_key(bundle: ModelBundle, train: ImageSet) -> dict[str, object]:
    return {
        "weights_sha256": weights_sha256(bundle.model),
        "train_pixels_sha256": train.pixels_sha256(),
        "train_n": len(train),
    }


def _read_cache(path: Path, key: dict[str, object]) -> dict[str, object]:
    """The cached statistics of ``path`` when its key matches, else ``{}``."""
    if not path.is_file():
        return {}
    try:
        data = torch.load(path, weights_only=True, map_location="cpu")
    except Exception:  # noqa: BLE001 - an unreadable cache is refitted
        return {}
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or data.get("key") != key:
        return {}
    stats = data.get("detectors")
    return stats if isinstance(stats, dict) else {}


def fit_detectors(
    bundle: ModelBundle,
    train: ImageSet,
    names: Sequence[str],
    *,
    run_dir: str | Path | None = None,
) -> tuple[dict[str, Detector], bool]:
    """Detectors ``names`` ready to score, fitted on ``train`` (the training split) or cached.

    Args:
        bundle: The trained run.
        train: Its training split (after the validation carve); never a scored split.
        names: Keys of :data:`~dismax_cli.core.detectors.DETECTORS`.
        run_dir: The run folder holding the cache (``None``: no cache).

    Returns:
        ``({name: detector}, reused)``: ``reused`` is True when every fitted statistic came
        from the cache.

    Raises:
        DismaxError: when a detector cannot be fitted (one line naming it).
    """
    detectors: dict[str, Detector] = {n: DETECTORS[n]() for n in names if n != "vim"}
    fitted = [n for n in names if n in FITTED]
    if not fitted:
        return {n: detectors[n] for n in names}, True
    head = _find_head(bundle.model)
    path = None if run_dir is None else Path(run_dir) / CACHE_NAME
    key = _cache_key(bundle, train)
    cached = {} if path is None else _read_cache(path, key)
    if all(n in cached for n in fitted) and _load_cached(detectors, cached, names):
        return {n: detectors[n] for n in names}, True
    assert train.labels is not None
    features, _ = _features_logits(bundle, train.images)
    if "vim" in names:
        detectors["vim"] = _vim_detector(head, features)
    stats = dict(cached)
    for n in fitted:
        try:
            stats[n] = detectors[n].fit(features, train.labels, head=head).to_dict()
        except DismaxError as exc:
            raise DismaxError(f"detector {n} cannot be fitted on this run: {exc}") from None
    if path is not None and distributed.rank() == 0:  # under torchrun rank 0 writes the cache
        _write_cache(path, key, stats)
    return {n: detectors[n] for n in names}, False


def _load_cached(
    detectors: dict[str, Detector], cached: dict[str, object], names: Sequence[str]
) -> bool:
    """Load every fitted detector of ``names`` from ``cached``; False when a setting differs."""
    if "vim" in names:
        values = cached["vim"]["values"]  # type: ignore[index]
        detectors["vim"] = ViMDetector(dim=values.get("dim"), alpha=values.get("alpha"))
    try:
        for n in names:
            if n in FITTED:
                detectors[n].load(cached[n])  # type: ignore[arg-type]
    except DismaxError:
        return False  # other settings: the caller refits
    return True


def _write_cache(path: Path, key: dict[str, object], stats: dict[str, object]) -> None:
    """Write the fitted statistics atomically; a read-only run folder is refitted next time."""
    payload = {"format": CACHE_FORMAT, "key": key, "detectors": stats}
    try:
        save_torch_file(path, payload)
    except DismaxError:
        pass  # a read-only run folder or a full disk: fit again next time


def _odin(bundle: ModelBundle, images: torch.Tensor, detector: Detector) -> torch.Tensor:
    """ODIN scores of uint8 images through the run's transform (ε in raw pixel units)."""
    model, transform = bundle.model, bundle.transform
    std = [float(s) for s in transform.std]
    was_training = model.training
    model.eval()
    try:
        out = [
            odin_scores(
                model,
                batch,
                temperature=detector.temperature,  # type: ignore[attr-defined]
                epsilon=detector.epsilon,  # type: ignore[attr-defined]
                input_std=std,
            )
            for batch in image_batches(images, transform, batch_size=256, device=bundle.device)
        ]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def single_detector_scores(
    bundle: ModelBundle,
    detectors: dict[str, Detector],
    images: torch.Tensor,
    features: torch.Tensor,
    logits: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Every detector's scores (N,) for one model's images, features (N, D) and logits (N, C)."""
    head = _find_head(bundle.model)
    out: dict[str, torch.Tensor] = {}
    for name, detector in detectors.items():
        if name == "odin":
            out[name] = _odin(bundle, images, detector)
        else:
            out[name] = torch.as_tensor(detector.score(features, logits, head=head))
    return out


def detector_outputs(
    bundles: Sequence[ModelBundle],
    detectors: dict[str, Detector],
    sets: dict[str, torch.Tensor],
    logits_cache: dict[tuple[int, int], torch.Tensor],
) -> dict[str, dict[str, torch.Tensor]]:
    """Detector scores of one model (or ensemble) on each set: ``{set: {detector: (N,)}}``.

    A single model's features and logits come from one pass per set; its logits are put into
    ``logits_cache`` (keyed as :func:`dismax_cli.evaluation.model_outputs` keys it) so the logit
    scores reuse them. An ensemble's detectors (GEN) score log p̄ of its members' logits.
    """
    out: dict[str, dict[str, torch.Tensor]] = {}
    for label, images in sets.items():
        if len(bundles) == 1:
            features, logits = _features_logits(bundles[0], images)
            logits_cache[(id(bundles[0]), id(images))] = logits
            out[label] = single_detector_scores(bundles[0], detectors, images, features, logits)
        else:
            member = []
            for b in bundles:
                key = (id(b), id(images))
                if key not in logits_cache:
                    logits_cache[key] = predict_images(b, images)
                member.append(logits_cache[key])
            log_pbar = predictive_log_probs(torch.stack(member))
            out[label] = {n: torch.as_tensor(d.score(None, log_pbar)) for n, d in detectors.items()}
    return out


Work = Callable[[torch.Tensor], object]


def score_work(
    bundles: Sequence[ModelBundle], score: str, detectors: dict[str, Detector]
) -> Work:
    """What scoring one batch of uint8 images with ``score`` costs: prediction + the score."""
    if len(bundles) > 1:

        def ensemble(batch: torch.Tensor) -> object:
            member = torch.stack([predict_images(b, batch) for b in bundles])
            if score == "neg_mutual_information" or score not in detectors:
                from dismax_cli.evaluation import ensemble_scores

                return ensemble_scores(member)[score]
            return detectors[score].score(None, predictive_log_probs(member))

        return ensemble
    bundle = bundles[0]
    if score == "odin":
        return lambda batch: _odin(bundle, batch, detectors["odin"])
    if score in detectors:
        head = _find_head(bundle.model)

        def detect(batch: torch.Tensor) -> object:
            features, logits = _features_logits(bundle, batch)
            return detectors[score].score(features, logits, head=head)

        return detect
    return lambda batch: SCORES[score](predict_images(bundle, batch))


def measure_score_costs(
    work: dict[tuple[str, str], Work],
    images: torch.Tensor,
    *,
    cuda: bool = False,
    rounds: int = 3,
    batch_size: int = 256,
    min_seconds: float | None = None,
    max_rounds: int = 200,
) -> dict[tuple[str, str], float]:
    """Images/s of each (method, score) on the same ``images``, timed interleaved.

    As :func:`dismax_cli.evaluation.measure_throughputs`: one warm-up each, then at least
    ``rounds`` rounds over the batches with every item in turn (order rotated every round,
    each timed run right after an untimed one: :func:`dismax_cli.timing.interleaved_seconds`),
    more (up to ``max_rounds``) until every item has been timed for ``min_seconds`` (default
    0.25 s, or ``DISMAX_TIMING_SECONDS``: :mod:`dismax_cli.timing`);
    the median per batch; on CPU the CPU time of this process with one thread (with more,
    the idle OpenMP threads' spinning counts as CPU time and moved the ratios by ±30 % on the
    digits), on CUDA the wall clock (synchronised).

    Returns:
        ``{(method, score): images per second}``.
    """
    if min_seconds is None:
        min_seconds = timing_seconds(0.25)
    threads = torch.get_num_threads()
    if not cuda:
        torch.set_num_threads(1)  # idle OpenMP threads' spinning would count as CPU time
    try:
        return _timed(work, images, cuda, rounds, batch_size, min_seconds, max_rounds)
    finally:
        torch.set_num_threads(threads)


def _timed(
    work: dict[tuple[str, str], Work],
    images: torch.Tensor,
    cuda: bool,
    rounds: int,
    batch_size: int,
    min_seconds: float,
    max_rounds: int,
) -> dict[tuple[str, str], float]:
    batches = [images[s : s + batch_size] for s in range(0, len(images), batch_size)]
    clock = time.perf_counter if cuda else time.process_time

    def timer(run: Work) -> Callable[[torch.Tensor], float]:
        def seconds(batch: torch.Tensor) -> float:
            start = clock()
            run(batch)
            if cuda:
                torch.cuda.synchronize()
            return clock() - start

        return seconds

    seconds = interleaved_seconds(
        {name: timer(run) for name, run in work.items()},
        batches,
        rounds=rounds,
        min_seconds=min_seconds,
        max_rounds=max_rounds,
    )
    return {n: len(images) / max(seconds[n], 1e-12) for n in work}


__all__ = [
    "CACHE_NAME",
    "ENSEMBLE_SCORES",
    "detector_outputs",
    "fit_detectors",
    "measure_score_costs",
    "score_work",
    "single_detector_scores",
    "weights_sha256",
]


class DetectorStage:
    """The ``--scores`` part of ``score`` and ``benchmark`` for one seed (a hook, few calls).

    :meth:`prepare` fits (or loads) every method's detectors on the training split,
    :meth:`add_scores` adds their scores to a method's :class:`~dismax_cli.evaluation.Outputs`
    (one features+logits pass per set), :meth:`costs` times every (method, score) on the same
    images relative to SoftMax with MSP.

    Args:
        scores: ``--scores`` (``("all",)`` or names; ``()``: no detector, nothing done).
    """

    def __init__(self, scores: Sequence[str]) -> None:
        self.scores = tuple(scores)
        self.detectors: dict[str, dict[str, Detector]] = {}
        self.reused: dict[str, bool] = {}
        self._done: dict[tuple[str, int], dict[str, torch.Tensor]] = {}

    def prepare(
        self,
        method: str,
        bundles: Sequence[ModelBundle],
        train: ImageSet,
        run_dir: str | Path | None,
    ) -> None:
        """Fit (or load from ``run_dir``'s cache) the detectors ``method`` needs."""
        from dismax_cli.score_names import detectors_to_run

        names = detectors_to_run(self.scores, ensemble=len(bundles) > 1)
        if len(bundles) > 1:
            self.detectors[method] = {n: DETECTORS[n]() for n in names}
            self.reused[method] = True
            return
        self.detectors[method], self.reused[method] = fit_detectors(
            bundles[0], train, names, run_dir=run_dir
        )

    def add_scores(
        self,
        method: str,
        bundles: Sequence[ModelBundle],
        sets: dict[str, torch.Tensor],
        logits_cache: dict[tuple[int, int], torch.Tensor],
    ) -> dict[str, dict[str, torch.Tensor]]:
        """``{set: {detector: scores (N,)}}`` of ``method`` (``"id"`` is the ID test split)."""
        detectors = self.detectors.get(method, {})
        if not detectors:
            return {label: {} for label in sets}
        todo = {k: v for k, v in sets.items() if (method, id(v)) not in self._done}
        for label, scores in detector_outputs(bundles, detectors, todo, logits_cache).items():
            self._done[(method, id(todo[label]))] = scores
        return {label: self._done[(method, id(images))] for label, images in sets.items()}

    def costs(
        self,
        groups: dict[str, Sequence[ModelBundle]],
        available: dict[str, Sequence[str]],
        images: torch.Tensor,
        *,
        baseline: tuple[str, str],
        rounds: int = 3,
    ) -> dict[str, dict[str, float]]:
        """``{method: {score: images/s relative to baseline}}``; ``{}`` without the baseline.

        The baseline (SoftMax's MSP) is timed also when it is not among the shown scores
        (``--scores knn``), so that every shown score still gets its relative speed.
        """
        if baseline[0] not in groups:
            return {}
        work = {
            (m, s): score_work(groups[m], s, self.detectors.get(m, {}))
            for m in groups
            for s in available[m]
        }
        if baseline not in work:
            method, score = baseline
            work[baseline] = score_work(groups[method], score, self.detectors.get(method, {}))
        cuda = any(b.device.type == "cuda" for bs in groups.values() for b in bs)
        rates = measure_score_costs(work, images, cuda=cuda, rounds=rounds)
        ref = rates[baseline]
        out: dict[str, dict[str, float]] = {m: {} for m in groups}
        for (m, s), rate in rates.items():
            if s in available[m]:
                out[m][s] = rate / ref
        return out
