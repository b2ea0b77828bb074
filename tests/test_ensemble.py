"""Tests for dismax_cli.core.ensemble: mean of probabilities, mutual information."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dismax_cli.core.ensemble import mutual_information, predictive_log_probs, predictive_probs
from dismax_cli.core.scores import msp
from dismax_cli.errors import DismaxError

TWO_MEMBERS = [[[10.0, 0.0]], [[0.0, 1.0]]]  # (M=2, B=1, C=2)


def _reference(member_logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 numpy: p̄ = mean softmax, MI = H(p̄) - mean H(p_m)."""
    z = np.asarray(member_logits, dtype=np.float64)
    exp = np.exp(z - z.max(axis=-1, keepdims=True))
    probs = exp / exp.sum(axis=-1, keepdims=True)
    mean = probs.mean(axis=0)

    def entropy(p: np.ndarray) -> np.ndarray:
        return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)

    return mean, entropy(mean) - entropy(probs).mean(axis=0)


def test_two_member_hand_case() -> None:
    probs = predictive_probs(TWO_MEMBERS)
    np.testing.assert_allclose(probs, [[0.634448, 0.365552]], atol=1e-6)
    assert msp(predictive_log_probs(TWO_MEMBERS))[0] == pytest.approx(0.6344, abs=5e-5)
    assert mutual_information(TWO_MEMBERS)[0] == pytest.approx(0.3652, abs=5e-5)


def test_averages_probabilities_not_logits() -> None:
    probs = predictive_probs(TWO_MEMBERS)
    of_mean_logits = torch.softmax(torch.tensor([[5.0, 0.5]], dtype=torch.float64), dim=1)
    assert probs[0, 0] < 0.64 < of_mean_logits[0, 0].item()  # 0.634 vs 0.989


def test_matches_float64_reference_and_kinds() -> None:
    rng = np.random.default_rng(4)
    member_logits = rng.standard_normal((5, 7, 4)) * np.array([0.1, 1.0, 5.0, 30.0])[None, None]
    expected_probs, expected_mi = _reference(member_logits)
    probs = predictive_probs(member_logits)
    mi = mutual_information(member_logits)
    assert isinstance(probs, np.ndarray) and probs.shape == (7, 4) and probs.dtype == np.float64
    assert isinstance(mi, np.ndarray) and mi.shape == (7,)
    np.testing.assert_allclose(probs, expected_probs, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(mi, expected_mi, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(mi >= 0.0) and np.all(mi <= math.log(5) + 1e-12)
    log_probs = predictive_log_probs(member_logits)
    np.testing.assert_allclose(np.exp(log_probs), probs, rtol=1e-12)
    as_tensor = torch.from_numpy(member_logits)
    torch_probs = predictive_probs(as_tensor)
    torch_mi = mutual_information(as_tensor)
    assert isinstance(torch_probs, torch.Tensor) and torch_probs.dtype == torch.float64
    assert isinstance(torch_mi, torch.Tensor) and torch_mi.shape == (7,)
    np.testing.assert_array_equal(torch_probs.numpy(), probs)
    np.testing.assert_array_equal(torch_mi.numpy(), mi)


def test_identical_members_have_zero_mutual_information() -> None:
    member = np.random.default_rng(6).standard_normal((1, 9, 3))
    member_logits = np.repeat(member, 4, axis=0)
    np.testing.assert_allclose(mutual_information(member_logits), 0.0, atol=1e-15)
    probs = predictive_probs(member_logits)
    np.testing.assert_allclose(probs, predictive_probs(member), rtol=1e-12)


def test_zero_probabilities_keep_everything_finite() -> None:
    member_logits = torch.tensor([[[0.0, -2000.0]], [[-2000.0, 0.0]]], dtype=torch.float32)
    mi = mutual_information(member_logits)
    assert bool(torch.isfinite(mi).all())
    assert mi.item() == pytest.approx(math.log(2.0), abs=1e-12)  # confident, opposite members
    assert bool(torch.isfinite(predictive_log_probs(member_logits)).all())


def test_bad_inputs_raise() -> None:
    with pytest.raises(DismaxError, match=r"member_logits must have 3 dimensions \(M, B, C\)"):
        predictive_probs(np.zeros((2, 3)))
    with pytest.raises(DismaxError, match="member_logits holds 1 NaN or infinite value"):
        mutual_information([[[0.0, float("inf")]]])
    with pytest.raises(DismaxError, match="0 members"):
        predictive_probs(np.zeros((0, 2, 3)))
    with pytest.raises(DismaxError, match="0 classes"):
        mutual_information(torch.zeros(2, 2, 0))
