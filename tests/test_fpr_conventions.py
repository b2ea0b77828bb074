"""Both FPR@95TPR conventions (issue 15 item 4; METHOD.md §5; README "FPR@95TPR: the exact rule").

The references below are written from each project's documented definition, not from our code:
ours is "the fraction of OOD scores >= the k-th largest ID score, k = ceil(0.95 n_id)"; OpenOOD
v1.5's ``auc_and_fpr_recall`` is ``fpr, tpr, _ = roc_curve(ood_indicator, -conf)`` followed by
``fpr[argmax(tpr >= 0.95)]``.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from dismax_cli.core.metrics import FPR_CONVENTIONS, fpr_at_95_tpr
from dismax_cli.errors import DismaxError


def openood_reference(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    conf = np.concatenate([id_scores, ood_scores])
    ood_indicator = np.concatenate([np.zeros(len(id_scores)), np.ones(len(ood_scores))])
    fpr, tpr, _ = roc_curve(ood_indicator, -conf)
    return float(fpr[np.argmax(tpr >= 0.95)])


def ours_reference(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    # ID positive, every threshold kept: the first curve point at or above 95 % TPR.
    conf = np.concatenate([id_scores, ood_scores])
    id_indicator = np.concatenate([np.ones(len(id_scores)), np.zeros(len(ood_scores))])
    fpr, tpr, _ = roc_curve(id_indicator, conf, drop_intermediate=False)
    return float(fpr[np.argmax(tpr >= 0.95 - 1e-12)])


def test_hand_made_case_pins_both_conventions() -> None:
    ood = np.arange(1.0, 21.0)  # 20 OOD scores 1..20
    id_ = np.array([19.0, 19.5, 25.0, 30.0, 18.0])
    # ours: k = ceil(0.95 * 5) = 5, t* = 5th largest ID = 18; OOD >= 18: 18, 19, 20 -> 3/20.
    assert fpr_at_95_tpr(id_, ood) == pytest.approx(0.15, abs=1e-15)
    # OpenOOD: k = ceil(0.95 * 20) = 19, t* = 19th smallest OOD = 19; ID <= 19: 19 and 18
    # (the tie at 19 counts as called OOD) -> 2/5.
    assert fpr_at_95_tpr(id_, ood, convention="openood") == pytest.approx(0.4, abs=1e-15)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
def test_both_conventions_match_their_documented_definitions(seed: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    n_id, n_ood = rng.integers(1, 400, size=2)
    id_ = rng.normal(1.0, 1.0, n_id)
    ood = rng.normal(0.0, 1.0, n_ood)
    if ties:  # few distinct values: many ties inside and across the sides
        id_, ood = np.round(id_ * 2) / 2, np.round(ood * 2) / 2
    assert fpr_at_95_tpr(id_, ood, convention="openood") == openood_reference(id_, ood)
    assert fpr_at_95_tpr(id_, ood) == ours_reference(id_, ood)


def test_the_conventions_are_different_quantities() -> None:
    rng = np.random.default_rng(7)
    id_, ood = rng.normal(1.0, 1.0, 1000), rng.normal(0.0, 2.0, 1000)
    ours = fpr_at_95_tpr(id_, ood)
    theirs = fpr_at_95_tpr(id_, ood, convention="openood")
    assert abs(ours - theirs) > 0.1  # same scores, very different numbers


def test_unknown_convention_is_an_error() -> None:
    assert FPR_CONVENTIONS == ("ours", "openood")
    with pytest.raises(DismaxError, match="unknown FPR@95TPR convention 'sklearn'"):
        fpr_at_95_tpr([1.0, 2.0], [0.0], convention="sklearn")
