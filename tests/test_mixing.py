"""Fractional probability regularization mosaics (METHOD.md §2 steps 1–3)."""

from __future__ import annotations

import pytest
import torch

from dismax_cli.core.mixing import fractional_probability_mix
from dismax_cli.errors import DismaxError


def distinct_images(batch: int, height: int = 7, width: int = 9) -> torch.Tensor:
    # Every pixel of every image is unique, so each quadrant identifies its source.
    return torch.arange(batch * 2 * height * width, dtype=torch.float32).reshape(
        batch, 2, height, width
    )


@pytest.mark.parametrize("batch", [1, 2, 3, 5, 8, 16])
def test_quadrants_come_from_the_j_j1_j2_j3_pattern(batch: int) -> None:
    images = distinct_images(batch)
    targets = torch.arange(batch) % 4
    mix = fractional_probability_mix(images, targets, 4, generator=torch.Generator().manual_seed(7))
    h = batch // 2
    n = batch - h
    assert mix.num_clean == h
    assert mix.images.shape == images.shape
    h2, w2 = 7 // 2, 9 // 2
    quadrants = [
        (slice(0, h2), slice(0, w2)),  # top-left: j
        (slice(h2, 7), slice(0, w2)),  # bottom-left: j - 1
        (slice(0, h2), slice(w2, 9)),  # top-right: j - 2
        (slice(h2, 7), slice(w2, 9)),  # bottom-right: j - 3
    ]
    permuted_half = mix.permutation[h:]
    for j in range(n):
        row = mix.images[h + j]
        for k, (rows, cols) in enumerate(quadrants):
            source = int(permuted_half[(j - k) % n])
            assert int(mix.sources[j, k]) == source
            assert torch.equal(row[:, rows, cols], images[source][:, rows, cols])
    # Clean rows are unchanged (permuted) inputs with one-hot targets.
    for i in range(h):
        source = int(mix.permutation[i])
        assert torch.equal(mix.images[i], images[source])
        assert int(mix.targets[i]) == int(targets[source])
        assert float(mix.target_probs[i, targets[source]]) == 1.0
    assert sorted(mix.permutation.tolist()) == list(range(batch))


def test_target_probs_put_a_quarter_per_source_and_sum_to_one() -> None:
    images = distinct_images(8)
    targets = torch.tensor([0, 1, 2, 3, 4, 5, 6, 6])
    mix = fractional_probability_mix(images, targets, 7, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(mix.target_probs.sum(1), torch.ones(8))
    for j in range(4):
        want = torch.zeros(7)
        for source in mix.sources[j]:
            want[targets[source]] += 0.25
        assert torch.equal(mix.target_probs[4 + j], want)
    # Labels 6 and 6 (rows 6 and 7) land in some mosaic together: 0.5 for that class.
    shared = [j for j in range(4) if {6, 7} <= set(mix.sources[j].tolist())]
    assert shared and all(float(mix.target_probs[4 + j, 6]) >= 0.5 for j in shared)


def test_same_generator_seed_gives_the_same_batch() -> None:
    images = torch.randn(10, 3, 8, 8)
    targets = torch.randint(0, 3, (10,))
    a = fractional_probability_mix(images, targets, 3, generator=torch.Generator().manual_seed(11))
    b = fractional_probability_mix(images, targets, 3, generator=torch.Generator().manual_seed(11))
    c = fractional_probability_mix(images, targets, 3, generator=torch.Generator().manual_seed(12))
    assert torch.equal(a.images, b.images) and torch.equal(a.target_probs, b.target_probs)
    assert not torch.equal(a.permutation, c.permutation)


def test_inputs_are_not_modified() -> None:
    images = torch.randn(6, 1, 5, 5)
    before = images.clone()
    fractional_probability_mix(images, torch.zeros(6, dtype=torch.long), 2)
    assert torch.equal(images, before)


def test_bad_inputs() -> None:
    with pytest.raises(DismaxError, match=r"expected \(B, C, H, W\)"):
        fractional_probability_mix(torch.zeros(4, 5, 5), torch.zeros(4, dtype=torch.long), 2)
    with pytest.raises(DismaxError, match="empty batch"):
        fractional_probability_mix(torch.zeros(0, 1, 5, 5), torch.zeros(0, dtype=torch.long), 2)
    with pytest.raises(DismaxError, match=r"labels must lie in \[0, 2\)"):
        fractional_probability_mix(torch.zeros(2, 1, 5, 5), torch.tensor([0, 2]), 2)
