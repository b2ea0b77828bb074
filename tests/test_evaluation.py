"""Reported ID metrics (dismax_cli.evaluation): the NLL comes from logits (issue 9 item 15)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dismax_cli import evaluation
from dismax_cli.core.calibration import nll_from_logits
from dismax_cli.evaluation import id_metrics, probs_at


def reference_nll(logits: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    """mean −log softmax(z / T)_y in float64 via an explicit max-shifted logsumexp."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    top = z.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(targets)), targets]))


def test_nll_of_an_underflowing_target_probability_is_not_capped() -> None:
    # The case: probs_at gave p_y = 0 and the clamp reported 708.396 instead of 1000.
    metrics = id_metrics(probs_at(torch.tensor([[0.0, -1000.0]]), 1.0), torch.tensor([1]))
    assert metrics["NLL"] == pytest.approx(1000.0, rel=1e-12)


@pytest.mark.parametrize("temperature", [1.0, 0.1, 3.0])
def test_reported_nll_matches_the_log_domain_reference(temperature: float) -> None:
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((50, 6)) * 3000.0  # many target probabilities underflow
    targets = rng.integers(0, 6, 50)
    per_sample = [
        reference_nll(logits[i : i + 1], targets[i : i + 1], temperature) for i in range(50)
    ]
    assert sum(v > 750.0 for v in per_sample) >= 10  # past the 708.4 cap of a clamped p_y
    z, y = torch.tensor(logits, dtype=torch.float32), torch.tensor(targets)
    want32 = reference_nll(z.double().numpy(), targets, temperature)
    via_probs = id_metrics(probs_at(z, temperature), y)
    via_logits = evaluation.id_metrics_from_logits(z, y, temperature=temperature)
    for got in (via_probs, via_logits):
        assert got["NLL"] == pytest.approx(want32, rel=1e-9)
    # ACC and ECE are unchanged by where the NLL comes from.
    assert via_probs["ACC"] == pytest.approx(float(np.mean(logits.argmax(1) == targets)))


def test_ensemble_nll_comes_from_member_logits_stably() -> None:
    # Two members: log p̄_y = logsumexp(−1000, −2000) − log 2 = −1000 − log 2 (to 1e-300).
    member_logits = torch.tensor([[[0.0, -1000.0]], [[0.0, -2000.0]]])
    got = evaluation.id_metrics_from_logits(member_logits, torch.tensor([1]))
    assert got["NLL"] == pytest.approx(1000.0 + math.log(2.0), rel=1e-12)
    # With a temperature: softmax(log p̄ / T), p̄ = mean of the members' softmax.
    rng = np.random.default_rng(5)
    members = rng.standard_normal((3, 20, 4)) * 300.0
    targets = rng.integers(0, 4, 20)
    z = members - members.max(axis=2, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=2, keepdims=True))
    top = log_p.max(axis=0)
    log_mean = top + np.log(np.exp(log_p - top).sum(axis=0)) - math.log(3.0)
    want = reference_nll(log_mean, targets, 0.5)
    got = evaluation.id_metrics_from_logits(
        torch.tensor(members), torch.tensor(targets), temperature=0.5
    )["NLL"]
    assert got == pytest.approx(want, rel=1e-9)
    assert got == pytest.approx(nll_from_logits(log_mean, targets, temperature=0.5), rel=1e-9)


def test_plain_probabilities_still_work() -> None:
    probs = torch.tensor([[0.75, 0.25], [0.5, 0.5]], dtype=torch.float64)
    got = id_metrics(probs, torch.tensor([0, 1]))
    assert got["NLL"] == pytest.approx((-math.log(0.75) - math.log(0.5)) / 2)
    assert got["ACC"] == pytest.approx(0.5)
