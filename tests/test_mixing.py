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
    images = distinct_images(8, 8, 6)  # even sizes: every quadrant is a quarter
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


def quadrant_pixel_shares(height: int, width: int) -> list[float]:
    """Shares of the H·W pixels of top-left, bottom-left, top-right, bottom-right (split H//2)."""
    h2, w2 = height // 2, width // 2
    counts = [h2 * w2, (height - h2) * w2, h2 * (width - w2), (height - h2) * (width - w2)]
    return [count / (height * width) for count in counts]


@pytest.mark.parametrize(
    ("height", "width"), [(33, 33), (33, 32), (32, 33), (7, 9), (1, 6), (6, 1), (1, 1), (32, 32)]
)
def test_mosaic_weights_are_each_quadrants_share_of_the_pixels(height: int, width: int) -> None:
    # Issue 9 item 4: at 33x33 the quadrants cover 256/272/272/289 pixels, not a quarter each.
    batch = 8
    images = distinct_images(batch, height, width)
    targets = torch.arange(batch)  # distinct labels: each weight lands in its own class
    mix = fractional_probability_mix(
        images, targets, batch, generator=torch.Generator().manual_seed(5)
    )
    shares = quadrant_pixel_shares(height, width)
    for j in range(batch - mix.num_clean):
        row = mix.images[mix.num_clean + j, 0]
        for k, source in enumerate(mix.sources[j].tolist()):
            # The weight equals the fraction of the mosaic's pixels taken from that source.
            from_source = torch.isin(row, images[source, 0]).float().mean()
            assert float(mix.target_probs[mix.num_clean + j, targets[source]]) == pytest.approx(
                shares[k], abs=1e-6
            )
            assert float(from_source) == pytest.approx(shares[k], abs=1e-6)
    assert torch.allclose(mix.target_probs.sum(1), torch.ones(batch), atol=1e-6)
    if height % 2 == 0 and width % 2 == 0:
        assert shares == [0.25] * 4  # the paper's case stays exactly a quarter


def test_odd_size_hand_case_33x33() -> None:
    images = distinct_images(2, 33, 33)
    mix = fractional_probability_mix(images, torch.tensor([0, 1]), 2)
    # One mosaic of n = 1 image: every quadrant from the same source, so the weights add to 1.
    assert float(mix.target_probs[1].sum()) == pytest.approx(1.0, abs=1e-6)
    images4 = distinct_images(4, 33, 33)
    mix4 = fractional_probability_mix(
        images4, torch.arange(4), 4, generator=torch.Generator().manual_seed(0)
    )
    for j in range(2):
        got = {
            int(targets): float(mix4.target_probs[2 + j, targets]) for targets in torch.arange(4)
        }
        sources = mix4.sources[j].tolist()  # n = 2: j, j-1, j-2 = j, j-3 = j-1 (mod 2)
        want = {0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0}
        for k, count in enumerate([256, 272, 272, 289]):
            want[sources[k]] += count / 1089
        assert got == pytest.approx(want, abs=1e-6)
