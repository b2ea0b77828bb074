"""Tests for dismax_cli.core.scores: formulas, direction, finiteness, input kinds, registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dismax_cli.core.metrics import auroc
from dismax_cli.core.scores import (
    SCORES,
    energy,
    get_score,
    max_logit,
    mds,
    mmles,
    msp,
    neg_entropy,
)
from dismax_cli.errors import DismaxError


def _reference(name: str, logits: np.ndarray) -> np.ndarray:
    """METHOD.md §3, written independently in float64 numpy."""
    z = np.asarray(logits, dtype=np.float64)
    top = z.max(axis=1, keepdims=True)
    log_normaliser = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
    log_p = z - log_normaliser[:, None]
    p = np.exp(log_p)
    entropy_term = np.sum(np.where(p > 0, p * log_p, 0.0), axis=1)
    if name == "msp":
        return p.max(axis=1)
    if name in ("max_logit", "mds"):
        return z.max(axis=1)
    if name == "neg_entropy":
        return entropy_term
    if name == "energy":
        return log_normaliser
    if name == "mmles":
        return z.max(axis=1) + z.mean(axis=1) + entropy_term
    raise AssertionError(name)


@pytest.fixture
def random_logits() -> np.ndarray:
    rng = np.random.default_rng(0)
    scales = np.array([0.01, 1.0, 10.0, 100.0])[:, None, None]
    return (rng.standard_normal((4, 16, 7)) * scales).reshape(64, 7)


def test_registry_holds_exactly_the_six_scores() -> None:
    assert list(SCORES) == ["msp", "max_logit", "mds", "neg_entropy", "energy", "mmles"]
    assert SCORES["msp"] is msp and SCORES["mmles"] is mmles and SCORES["mds"] is mds
    assert SCORES["max_logit"] is max_logit and SCORES["energy"] is energy
    assert SCORES["neg_entropy"] is neg_entropy


def test_get_score_returns_the_function_and_rejects_unknown_names() -> None:
    assert get_score("energy") is energy
    with pytest.raises(DismaxError, match="unknown score 'odin'.*msp, max_logit, mds"):
        get_score("odin")


@pytest.mark.parametrize("name", list(SCORES))
def test_scores_match_float64_reference(name: str, random_logits: np.ndarray) -> None:
    expected = _reference(name, random_logits)
    from_numpy = SCORES[name](random_logits)
    from_torch = SCORES[name](torch.from_numpy(random_logits))
    assert isinstance(from_numpy, np.ndarray) and from_numpy.dtype == np.float64
    assert isinstance(from_torch, torch.Tensor) and from_torch.dtype == torch.float64
    assert from_numpy.shape == from_torch.shape == (64,)
    np.testing.assert_allclose(from_numpy, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(from_torch.numpy(), from_numpy)


@pytest.mark.parametrize("name", list(SCORES))
def test_float32_tensor_and_list_inputs_give_the_same_values(name: str) -> None:
    logits32 = torch.tensor([[1.5, -0.25, 3.0], [0.0, 0.0, 0.0], [-7.0, 2.0, 2.0]])
    from_tensor = SCORES[name](logits32)
    from_list = SCORES[name](logits32.tolist())
    assert from_tensor.dtype == torch.float64
    assert isinstance(from_list, np.ndarray)
    np.testing.assert_array_equal(from_tensor.numpy(), from_list)
    np.testing.assert_allclose(from_list, _reference(name, logits32.numpy()), rtol=1e-12)


def test_hand_values() -> None:
    logits = np.array([[np.log(3.0), 0.0]])  # p = [0.75, 0.25]
    assert msp(logits)[0] == pytest.approx(0.75, abs=1e-15)
    assert max_logit(logits)[0] == pytest.approx(np.log(3.0))
    assert energy(logits)[0] == pytest.approx(np.log(4.0))
    entropy = 0.75 * np.log(0.75) + 0.25 * np.log(0.25)
    assert neg_entropy(logits)[0] == pytest.approx(entropy)
    assert mmles(logits)[0] == pytest.approx(np.log(3.0) * 1.5 + entropy)


def test_mds_is_minus_the_scaled_distance_to_the_nearest_prototype() -> None:
    """§6 MDS on an IsoMax+ head, by hand: logits -|s| d_j, so MDS = -|s| min_j d_j.

    (Comparing mds with max_logit would hold by construction: they are one formula.)
    """
    from dismax_cli.core.heads import IsoMaxPlusHead

    head = IsoMaxPlusHead(2, 3)
    with torch.no_grad():
        head.prototypes.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]]))
        head.distance_scale.fill_(-2.5)  # |s| = 2.5
    features = torch.tensor([[0.6, 0.8], [3.0, 0.0]])  # unit (0.6, 0.8); direction (1, 0)
    # Row 0: distances to (1,0), (0,1), (-1,0) are sqrt(0.8), sqrt(0.4), sqrt(3.2): nearest is
    # the second prototype. Row 1: distance 0 to the first prototype.
    expected = np.array([-2.5 * np.sqrt(0.4), 0.0])
    np.testing.assert_allclose(mds(head(features).detach()), expected, atol=1e-6)


def test_zero_probability_entropy_is_zero_and_mmles_finite() -> None:
    logits = torch.tensor([[0.0, -200.0]], dtype=torch.float32)
    assert neg_entropy(logits).item() == pytest.approx(0.0, abs=1e-12)
    value = mmles(logits).item()
    assert np.isfinite(value)
    assert value == pytest.approx(0.0 + (-100.0) + 0.0, abs=1e-12)


@pytest.mark.parametrize("name", list(SCORES))
def test_scores_are_finite_for_extreme_float32_logits(name: str) -> None:
    biggest = float(np.finfo(np.float32).max)
    logits = torch.tensor([[biggest, -biggest, 0.0], [-biggest, -biggest, -biggest]])
    assert bool(torch.isfinite(SCORES[name](logits)).all())


def test_extreme_float64_logits_keep_entropy_finite() -> None:
    logits = np.array([[1e308, -1e308]])  # z - max overflows to -inf: 0 * log 0 must give 0
    assert neg_entropy(logits)[0] == 0.0
    assert np.isfinite(mmles(logits)[0])


@pytest.mark.parametrize("name", list(SCORES))
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_logits_raise(name: str, bad: float) -> None:
    logits = [[0.0, 1.0], [bad, 0.0]]
    with pytest.raises(DismaxError, match="logits holds 1 NaN or infinite value"):
        SCORES[name](logits)
    with pytest.raises(DismaxError, match="logits holds 1 NaN or infinite value"):
        SCORES[name](torch.tensor(logits))


@pytest.mark.parametrize("name", list(SCORES))
def test_wrong_shapes_raise(name: str) -> None:
    with pytest.raises(
        DismaxError, match=r"logits must have 2 dimensions \(B, C\), got shape \(3,\)"
    ):
        SCORES[name](np.zeros(3))
    with pytest.raises(DismaxError, match="0 classes"):
        SCORES[name](np.zeros((3, 0)))


def test_empty_batch_gives_empty_scores() -> None:
    assert msp(np.zeros((0, 4))).shape == (0,)
    assert mmles(torch.zeros(0, 4)).shape == (0,)


@pytest.mark.parametrize("name", list(SCORES))
def test_every_score_ranks_peaked_logits_as_in_distribution(name: str) -> None:
    rng = np.random.default_rng(2)
    classes = rng.integers(0, 10, 200)
    peaked = 0.1 * rng.standard_normal((200, 10))
    peaked[np.arange(200), classes] += 8.0
    flat = 0.1 * rng.standard_normal((300, 10))
    score = SCORES[name]
    assert auroc(score(peaked), score(flat)) > 0.5
    assert auroc(score(torch.from_numpy(peaked)), score(torch.from_numpy(flat))) > 0.99


def test_tensor_output_keeps_autograd() -> None:
    logits = torch.tensor([[1.0, 2.0, 0.5]], requires_grad=True)
    mmles(logits).sum().backward()
    assert logits.grad is not None and bool(torch.isfinite(logits.grad).all())
