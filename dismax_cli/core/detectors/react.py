"""ReAct + energy: clip the features at a percentile of the training activations, then energy.

References:
    Sun, Guo and Li, "ReAct: Out-of-distribution Detection With Rectified Activations",
    arXiv:2111.12797 (NeurIPS 2021; reference code: github.com/deeplearning-wisc/react).
    Liu, Wang, Owens and Li, "Energy-based Out-of-distribution Detection", arXiv:2010.03759.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from dismax_cli.core.detectors._common import (
    Detector,
    DetectorInputs,
    DetectorStatistics,
    Head,
    check_feature_size,
    check_positive_float,
    head_logits,
    require_head,
)
from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q


class ReActDetector(Detector):
    """Score ``logsumexp_c h(min(f, t))_c``: the energy of the head on clipped features.

    :meth:`fit` sets the threshold ``t`` to the ``percentile``-th percentile of every entry of
    the training features (all N·D activations flattened, linear interpolation as
    ``numpy.percentile``, as the reference code); only an upper clip is applied, as in the
    paper (the features are post-ReLU there). :meth:`score` clips the features at ``t``, runs
    the head ``h`` on them (cast to the head's dtype and device, no autograd) and returns the
    energy in float64 (METHOD.md §3 ``energy``). Pass the head at T = 1 (METHOD.md §3). The
    ``logits`` argument is not used.

    Args:
        percentile: In (0, 100], default 90 as in the paper.

    Shape:
        features ``(N, D)`` -> scores ``(N,)``.

    Raises:
        DismaxError: For a percentile outside (0, 100]; at score, without a head, for features
            of another D, NaN/inf values or no statistics.

    References:
        Sun, Guo and Li, "ReAct: Out-of-distribution Detection With Rectified Activations",
        arXiv:2111.12797.
    """

    name: ClassVar[str] = "react"
    inputs: ClassVar[DetectorInputs] = DetectorInputs(
        features=True, logits=False, head=True, gradients=False, training_statistics=True
    )
    required_values: ClassVar[tuple[str, ...]] = ("threshold", "num_features")

    def __init__(self, *, percentile: float = 90.0) -> None:
        super().__init__()
        self.percentile = check_positive_float(percentile, name="percentile")
        if self.percentile > 100.0:
            raise DismaxError(f"percentile={q(percentile)} is invalid; pass 0 < percentile ≤ 100")

    def _config(self) -> dict[str, float | int]:
        return {"percentile": self.percentile}

    def _fit(
        self, features: torch.Tensor, targets: torch.Tensor, head: Head | None
    ) -> tuple[dict[str, torch.Tensor], dict[str, float | int]]:
        threshold = float(np.percentile(features.numpy().ravel(), self.percentile))
        return {}, {"threshold": threshold, "num_features": int(features.shape[1])}

    def _score(
        self,
        features: torch.Tensor | None,
        logits: torch.Tensor | None,
        head: Head | None,
        statistics: DetectorStatistics | None,
    ) -> torch.Tensor:
        assert features is not None and statistics is not None
        check_feature_size(features, int(statistics.values["num_features"]), detector=self.name)
        head = require_head(head, detector=self.name, when="score time")
        clipped = features.clamp(max=float(statistics.values["threshold"]))
        return torch.logsumexp(head_logits(head, clipped), dim=1)


__all__ = ["ReActDetector"]
