"""KNN: the distance to the k-th nearest L2-normalised training feature.

References:
    Sun, Ming, Zhu and Li, "Out-of-Distribution Detection with Deep Nearest Neighbors",
    arXiv:2204.06507 (ICML 2022; reference code: github.com/deeplearning-wisc/knn-ood).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from dismax_cli.core.detectors._common import (
    Detector,
    DetectorInputs,
    DetectorStatistics,
    Head,
    check_feature_size,
    check_positive_int,
    l2_normalise,
)
from dismax_cli.errors import DismaxError

_CHUNK_ELEMENTS = 1 << 23
"""Entries of one (queries × training) distance block: 8 Mi float64 = 64 MiB."""


class KNNDetector(Detector):
    """Score ``−‖ẑ − ẑ_(k)‖₂``, minus the distance to the k-th nearest training feature.

    Features are L2-normalised, ``ẑ = f / (‖f‖₂ + 1e-10)`` (the reference code's
    normaliser), and so are the training features kept by :meth:`fit`. The search is exact and
    batched: queries are compared with all training features in blocks of at most
    ``_CHUNK_ELEMENTS`` distances (64 MiB), through
    ``‖a − b‖² = ‖a‖² + ‖b‖² − 2 a·b`` in float64 (clamped at 0), so 50 000 training features
    of any D need no more than that block besides the statistics themselves. The reference code
    (faiss ``IndexFlatL2``) ranks by the squared distance; the square root changes no rank.
    Needs the features only; the statistics are the ``(N_train, D)`` normalised training
    features (float64).

    Args:
        k: The neighbour's rank, default 50 (the paper's choice for CIFAR-10 with all
            training samples).

    Shape:
        features ``(N, D)`` -> scores ``(N,)``, in ``[−2, 0]``.

    Raises:
        DismaxError: For ``k < 1``; at fit, for ``k`` above the number of training features;
            at score, for features of another D, NaN/inf values or no statistics.

    References:
        Sun, Ming, Zhu and Li, "Out-of-Distribution Detection with Deep Nearest Neighbors",
        arXiv:2204.06507.
    """

    name: ClassVar[str] = "knn"
    inputs: ClassVar[DetectorInputs] = DetectorInputs(
        features=True, logits=False, head=False, gradients=False, training_statistics=True
    )
    required_tensors: ClassVar[tuple[str, ...]] = ("train_features",)

    def __init__(self, *, k: int = 50) -> None:
        super().__init__()
        self.k = check_positive_int(k, name="k")

    def _config(self) -> dict[str, float | int]:
        return {"k": self.k}

    def _fit(
        self, features: torch.Tensor, targets: torch.Tensor, head: Head | None
    ) -> tuple[dict[str, torch.Tensor], dict[str, float | int]]:
        self._check_k(features.shape[0])
        return {"train_features": l2_normalise(features)}, {}

    def _check_k(self, num_train: int) -> None:
        if self.k > num_train:
            raise DismaxError(
                f"k={self.k} exceeds the {num_train} training features; pass k ≤ {num_train} "
                "or fit on more training samples"
            )

    def _score(
        self,
        features: torch.Tensor | None,
        logits: torch.Tensor | None,
        head: Head | None,
        statistics: DetectorStatistics | None,
    ) -> torch.Tensor:
        assert features is not None and statistics is not None
        train = statistics.tensors["train_features"]
        check_feature_size(features, train.shape[1], detector=self.name)
        self._check_k(train.shape[0])
        return -kth_neighbour_distance(l2_normalise(features), train, k=self.k)


def kth_neighbour_distance(
    queries: torch.Tensor, keys: torch.Tensor, *, k: int, chunk_elements: int = _CHUNK_ELEMENTS
) -> torch.Tensor:
    """Return each query's Euclidean distance to its k-th nearest key (exact, in blocks).

    Shape:
        queries ``(N, D)``, keys ``(M, D)`` (float64, k ≤ M) -> ``(N,)``.
    """
    key_sq = keys.square().sum(dim=1)
    rows = max(1, chunk_elements // max(1, keys.shape[0]))
    out = torch.empty(queries.shape[0], dtype=torch.float64)
    for start in range(0, queries.shape[0], rows):
        block = queries[start : start + rows]
        sq = block.square().sum(dim=1, keepdim=True) + key_sq - 2.0 * (block @ keys.t())
        out[start : start + rows] = torch.kthvalue(sq.clamp_min_(0.0), k, dim=1).values
    return out.sqrt_()


__all__ = ["KNNDetector", "kth_neighbour_distance"]
