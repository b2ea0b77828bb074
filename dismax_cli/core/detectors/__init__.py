"""Post-hoc OOD detectors that need features, the head, gradients or training statistics.

Every detector follows the conventions of :mod:`dismax_cli.core.scores`: scores of shape
``(N,)``, **higher = more in-distribution**, computed in float64 on the CPU, and NaN/inf inputs
raise :class:`~dismax_cli.errors.DismaxError`. The common API:

- ``detector.fit(train_features, train_targets, *, head=None)`` fits statistics on the
  training split only and returns a frozen :class:`DetectorStatistics`;
  ``statistics.to_dict()`` is a plain dict of tensors, floats and ints that ``torch.save``
  writes and ``torch.load(..., weights_only=True)`` reads back, and ``detector.load(...)``
  takes it again;
- ``detector.score(features, logits, *, head=None)`` -> scores ``(N,)``;
- ODIN needs the model and the images instead: :func:`odin_scores` (or
  ``ODINDetector.score_images``).

:data:`DETECTORS` maps each name to its class; ``DETECTORS[name].inputs`` says what it needs
(:class:`DetectorInputs`: features, logits, head, gradients, training statistics).

=============  ========  ======  ====  =========  ==========
name           features  logits  head  gradients  statistics
=============  ========  ======  ====  =========  ==========
``odin``                                yes
``mahalanobis`` yes                                yes
``knn``        yes                                 yes
``vim``        yes       yes     fit               yes
``react``      yes               score             yes
``gen``                  yes
=============  ========  ======  ====  =========  ==========

References: see each module (ODIN arXiv:1706.02690, Mahalanobis arXiv:1807.03888, KNN
arXiv:2204.06507, ViM arXiv:2203.10807, ReAct arXiv:2111.12797, GEN CVPR 2023).
"""

from __future__ import annotations

from dismax_cli.core.detectors._common import (
    Detector,
    DetectorInputs,
    DetectorStatistics,
    Head,
)
from dismax_cli.core.detectors.gen import GENDetector
from dismax_cli.core.detectors.knn import KNNDetector
from dismax_cli.core.detectors.mahalanobis import MahalanobisDetector
from dismax_cli.core.detectors.odin import ODINDetector, odin_scores
from dismax_cli.core.detectors.react import ReActDetector
from dismax_cli.core.detectors.vim import ViMDetector
from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q

DETECTORS: dict[str, type[Detector]] = {
    "odin": ODINDetector,
    "mahalanobis": MahalanobisDetector,
    "knn": KNNDetector,
    "vim": ViMDetector,
    "react": ReActDetector,
    "gen": GENDetector,
}
"""Every post-hoc detector by name; ``DETECTORS[name].inputs`` lists what it needs."""


def get_detector(name: str) -> type[Detector]:
    """Look up a detector class by name.

    Raises:
        DismaxError: If ``name`` is not a key of :data:`DETECTORS`; the message lists them.
    """
    try:
        return DETECTORS[name]
    except KeyError:
        raise DismaxError(
            f"unknown detector {q(name)}; choose one of: {', '.join(DETECTORS)}"
        ) from None


__all__ = [
    "DETECTORS",
    "Detector",
    "DetectorInputs",
    "DetectorStatistics",
    "GENDetector",
    "Head",
    "KNNDetector",
    "MahalanobisDetector",
    "ODINDetector",
    "ReActDetector",
    "ViMDetector",
    "get_detector",
    "odin_scores",
]
