"""Tests for dismax_cli.core.detectors: float64 references, direction, fitting, errors.

Each reference below is written from the detector's paper (loops and numpy in float64), not by
calling the package.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn

from dismax_cli.core.detectors import (
    DETECTORS,
    DetectorStatistics,
    GENDetector,
    KNNDetector,
    MahalanobisDetector,
    ODINDetector,
    ReActDetector,
    ViMDetector,
    get_detector,
    odin_scores,
)
from dismax_cli.core.detectors.knn import kth_neighbour_distance
from dismax_cli.core.detectors.vim import default_principal_dim
from dismax_cli.core.heads import DisMaxHead, IsoMaxPlusHead, SoftMaxHead
from dismax_cli.errors import DismaxError

# ----------------------------------------------------------------------------- helpers


def _logsumexp(z: np.ndarray) -> float:
    top = max(z)
    return top + np.log(sum(np.exp(v - top) for v in z))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def _linear_head(num_features: int, num_classes: int, seed: int) -> SoftMaxHead:
    head = SoftMaxHead(num_features, num_classes).double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head.weight.copy_(
            torch.randn(num_classes, num_features, generator=generator, dtype=torch.float64)
        )
        head.bias.copy_(torch.randn(num_classes, generator=generator, dtype=torch.float64))
    return head


def _head_np(head: SoftMaxHead) -> tuple[np.ndarray, np.ndarray]:
    return head.weight.detach().numpy().copy(), head.bias.detach().numpy().copy()


@pytest.fixture
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    num_train, num_test, dim, classes = 60, 25, 6, 3
    centres = rng.standard_normal((classes, dim)) * 2.0
    targets = np.arange(num_train) % classes
    train = centres[targets] + rng.standard_normal((num_train, dim)) * rng.uniform(0.3, 2.0, dim)
    test = rng.standard_normal((num_test, dim)) * 2.0
    return {"train": train, "targets": targets, "test": test}


def _toy() -> dict[str, torch.Tensor]:
    """Two ID Gaussian blobs (classes) and a far-away OOD cluster, 8-d features."""
    gen = torch.Generator().manual_seed(3)
    dim, n = 8, 200
    scale = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.1], dtype=torch.float64)

    def blob(centre: torch.Tensor, count: int) -> torch.Tensor:
        return centre + torch.randn(count, dim, generator=gen, dtype=torch.float64) * scale

    e = torch.eye(dim, dtype=torch.float64)
    targets = torch.arange(2 * n) % 2
    centres = torch.stack([6.0 * e[0], 6.0 * e[1]])
    train = blob(torch.zeros(dim, dtype=torch.float64), 2 * n) + centres[targets]
    test_targets = torch.arange(n) % 2
    test = blob(torch.zeros(dim, dtype=torch.float64), n) + centres[test_targets]
    ood = blob(8.0 * e[6], n)
    head = SoftMaxHead(dim, 2).double()
    with torch.no_grad():
        head.weight.copy_(e[:2])
        head.bias.zero_()
    return {"train": train, "targets": targets, "test": test, "ood": ood, "head": head}


# ----------------------------------------------------------------------------- registry


def test_registry_lists_the_six_detectors_and_their_inputs() -> None:
    assert list(DETECTORS) == ["odin", "mahalanobis", "knn", "vim", "react", "gen"]
    assert get_detector("knn") is KNNDetector
    assert DETECTORS["odin"].inputs.gradients and not DETECTORS["odin"].inputs.features
    assert DETECTORS["gen"].inputs.logits and not DETECTORS["gen"].inputs.training_statistics
    assert DETECTORS["vim"].inputs.head and DETECTORS["vim"].inputs.logits
    assert DETECTORS["react"].inputs.head and not DETECTORS["react"].inputs.logits
    for name in ("mahalanobis", "knn", "vim", "react"):
        assert DETECTORS[name].inputs.training_statistics and DETECTORS[name].inputs.features
    with pytest.raises(DismaxError, match="unknown detector 'energy'.*odin, mahalanobis"):
        get_detector("energy")


# ----------------------------------------------------------------------------- references


@pytest.mark.parametrize("top_m", [100, 2])
def test_gen_matches_the_generalised_entropy_reference(top_m: int) -> None:
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((30, 5)) * np.array([0.1, 1.0, 5.0])[np.arange(30) % 3, None]
    expected = []
    for z in logits:
        p = sorted(_softmax(z), reverse=True)[: min(top_m, 5)]
        expected.append(-sum(q**0.1 * (1 - q) ** 0.1 for q in p))
    got = GENDetector(top_m=top_m).score(None, logits)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    gamma = GENDetector(gamma=0.5, top_m=top_m).score(None, torch.from_numpy(logits))
    expected_half = [
        -sum(q**0.5 * (1 - q) ** 0.5 for q in sorted(_softmax(z), reverse=True)[: min(top_m, 5)])
        for z in logits
    ]
    assert isinstance(gamma, torch.Tensor)
    np.testing.assert_allclose(gamma.numpy(), expected_half, rtol=1e-9, atol=1e-12)


def test_gen_is_finite_for_extreme_logits() -> None:
    logits = torch.tensor([[1e4, 0.0, -1e4], [0.0, 0.0, 0.0]], dtype=torch.float32)
    scores = GENDetector().score(None, logits)
    assert torch.isfinite(scores).all()
    assert scores[0] == pytest.approx(0.0, abs=1e-12)
    assert scores[1] == pytest.approx(-3 * (1 / 3) ** 0.1 * (2 / 3) ** 0.1, rel=1e-12)


@pytest.mark.parametrize("k", [1, 4, 13])
def test_knn_matches_the_kth_neighbour_reference(data: dict[str, np.ndarray], k: int) -> None:
    def normalise(x: np.ndarray) -> np.ndarray:
        return x / (np.sqrt((x**2).sum()) + 1e-10)

    train = [normalise(x) for x in data["train"]]
    expected = []
    for query in data["test"]:
        q = normalise(query)
        distances = sorted(float(np.sqrt(((q - t) ** 2).sum())) for t in train)
        expected.append(-distances[k - 1])
    detector = KNNDetector(k=k)
    detector.fit(torch.from_numpy(data["train"]), torch.from_numpy(data["targets"]))
    got = detector.score(torch.from_numpy(data["test"]), None)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9, atol=1e-12)


def test_knn_blocks_give_the_exact_search() -> None:
    gen = torch.Generator().manual_seed(5)
    queries = torch.randn(37, 5, generator=gen, dtype=torch.float64)
    keys = torch.randn(23, 5, generator=gen, dtype=torch.float64)
    exact = torch.cdist(queries, keys, compute_mode="donot_use_mm_for_euclid_dist")
    expected = exact.sort(dim=1).values[:, 6]
    for chunk in (1, 23, 50, 10_000):
        got = kth_neighbour_distance(queries, keys, k=7, chunk_elements=chunk)
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


def test_knn_of_a_training_sample_with_k_1_is_zero(data: dict[str, np.ndarray]) -> None:
    detector = KNNDetector(k=1)
    detector.fit(data["train"], data["targets"])
    scores = detector.score(data["train"][:5], None)
    np.testing.assert_allclose(scores, 0.0, atol=1e-7)


def _mahalanobis_reference(train: np.ndarray, targets: np.ndarray, test: np.ndarray) -> np.ndarray:
    classes = sorted(set(int(t) for t in targets))
    means = {c: train[targets == c].mean(axis=0) for c in classes}
    dim = train.shape[1]
    covariance = np.zeros((dim, dim))
    for x, y in zip(train, targets, strict=True):
        d = x - means[int(y)]
        covariance += np.outer(d, d)
    covariance /= len(train)
    precision = np.linalg.pinv(covariance, hermitian=True)
    out = []
    for x in test:
        out.append(-min(float((x - means[c]) @ precision @ (x - means[c])) for c in classes))
    return np.array(out)


def test_mahalanobis_matches_the_tied_gaussian_reference(data: dict[str, np.ndarray]) -> None:
    targets = np.array([0, 2, 5])[data["targets"]]  # non-contiguous class indices
    expected = _mahalanobis_reference(data["train"], targets, data["test"])
    detector = MahalanobisDetector()
    detector.fit(data["train"], targets)
    np.testing.assert_allclose(detector.score(data["test"], None), expected, rtol=1e-9)


def test_mahalanobis_handles_a_singular_covariance(data: dict[str, np.ndarray]) -> None:
    # A duplicated column and a constant column: the covariance has rank D - 2.
    train = np.column_stack([data["train"], data["train"][:, 0], np.full(60, 3.0)])
    test = np.column_stack([data["test"], data["test"][:, 1], np.full(25, -1.0)])
    assert np.linalg.matrix_rank(np.cov(train.T)) == train.shape[1] - 2
    detector = MahalanobisDetector()
    detector.fit(train, data["targets"])
    scores = detector.score(test, None)
    assert np.all(np.isfinite(scores))
    expected = _mahalanobis_reference(train, data["targets"], test)
    np.testing.assert_allclose(scores, expected, rtol=1e-7)
    # Fewer training samples than features: rank-deficient too, still finite.
    few = MahalanobisDetector()
    few.fit(data["train"][:4], np.array([0, 1, 0, 1]))
    assert np.all(np.isfinite(few.score(data["test"], None)))


def _vim_reference(
    train: np.ndarray,
    train_logits: np.ndarray,
    test: np.ndarray,
    test_logits: np.ndarray,
    origin: np.ndarray,
    dim: int,
    alpha: float | None = None,
) -> np.ndarray:
    centred = train - origin
    moment = centred.T @ centred / len(train)
    eigenvalues, eigenvectors = np.linalg.eigh(moment)
    order = np.argsort(-eigenvalues)
    residual_space = eigenvectors[:, order[dim:]]
    if alpha is None:
        residuals = [np.linalg.norm((x - origin) @ residual_space) for x in train]
        alpha = np.mean(train_logits.max(axis=1)) / np.mean(residuals)
    return np.array(
        [
            _logsumexp(z) - alpha * np.linalg.norm((x - origin) @ residual_space)
            for x, z in zip(test, test_logits, strict=True)
        ]
    )


@pytest.mark.parametrize("dim", [None, 2, 5])
def test_vim_matches_the_virtual_logit_reference(
    data: dict[str, np.ndarray], dim: int | None
) -> None:
    head = _linear_head(6, 4, seed=2)
    weight, bias = _head_np(head)
    weight_pinv = np.linalg.pinv(weight)
    origin = -weight_pinv @ bias
    train_logits = data["train"] @ weight.T + bias
    test_logits = data["test"] @ weight.T + bias
    expected = _vim_reference(
        data["train"], train_logits, data["test"], test_logits, origin, 3 if dim is None else dim
    )
    detector = ViMDetector(dim=dim)
    detector.fit(torch.from_numpy(data["train"]), data["targets"], head=head)
    got = detector.score(torch.from_numpy(data["test"]), torch.from_numpy(test_logits))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9, atol=1e-9)


def test_vim_without_linear_weights_uses_the_training_mean(data: dict[str, np.ndarray]) -> None:
    weight = np.random.default_rng(4).standard_normal((4, 6))

    def head(features: torch.Tensor) -> torch.Tensor:  # no (W, b): a plain callable
        return features @ torch.from_numpy(weight).t() + 10.0

    train_logits = data["train"] @ weight.T + 10.0
    test_logits = data["test"] @ weight.T + 10.0
    origin = data["train"].mean(axis=0)
    expected = _vim_reference(data["train"], train_logits, data["test"], test_logits, origin, 3)
    detector = ViMDetector()
    detector.fit(data["train"], data["targets"], head=head)
    np.testing.assert_allclose(detector.score(data["test"], test_logits), expected, rtol=1e-9)


def test_vim_on_a_distance_head_needs_an_explicit_alpha(data: dict[str, np.ndarray]) -> None:
    torch.manual_seed(0)
    for head_class in (DisMaxHead, IsoMaxPlusHead):
        head = head_class(6, 3).double()
        with pytest.raises(DismaxError, match="alpha.*pass ViMDetector\\(alpha=...\\)"):
            ViMDetector().fit(data["train"], data["targets"], head=head)
    head = DisMaxHead(6, 3).double()
    test_logits = head(torch.from_numpy(data["test"])).detach().numpy()
    origin = data["train"].mean(axis=0)
    expected = _vim_reference(
        data["train"],
        None,
        data["test"],
        test_logits,
        origin,
        3,
        alpha=2.5,  # type: ignore[arg-type]
    )
    detector = ViMDetector(alpha=2.5)
    detector.fit(data["train"], data["targets"], head=head)
    np.testing.assert_allclose(detector.score(data["test"], test_logits), expected, rtol=1e-9)


def test_vim_default_principal_dimension_follows_the_paper() -> None:
    assert default_principal_dim(2048) == 1000
    assert default_principal_dim(1536) == 1000
    assert default_principal_dim(768) == 512
    assert default_principal_dim(640) == 320
    assert default_principal_dim(512) == 256
    assert default_principal_dim(342) == 171
    assert default_principal_dim(2) == 1


def test_react_matches_the_clipped_energy_reference(data: dict[str, np.ndarray]) -> None:
    head = _linear_head(6, 4, seed=7)
    weight, bias = _head_np(head)
    for percentile in (90.0, 35.0):
        values = sorted(data["train"].ravel())
        position = percentile / 100 * (len(values) - 1)
        low = int(np.floor(position))
        high = min(low + 1, len(values) - 1)
        threshold = values[low] + (position - low) * (values[high] - values[low])
        expected = [_logsumexp(weight @ np.minimum(x, threshold) + bias) for x in data["test"]]
        detector = ReActDetector(percentile=percentile)
        statistics = detector.fit(data["train"], data["targets"])
        assert statistics.values["threshold"] == pytest.approx(threshold, rel=1e-12)
        got = detector.score(data["test"], None, head=head)
        np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_react_casts_features_to_a_float32_head() -> None:
    head = SoftMaxHead(3, 2)  # float32 parameters
    detector = ReActDetector()
    detector.fit(np.abs(np.random.default_rng(0).standard_normal((20, 3))), np.arange(20) % 2)
    scores = detector.score(torch.ones(4, 3, dtype=torch.float64), None, head=head)
    assert scores.dtype == torch.float64 and scores.shape == (4,)


class _Flat(nn.Module):
    def __init__(self, weight: np.ndarray, bias: np.ndarray) -> None:
        super().__init__()
        self.linear = nn.Linear(weight.shape[1], weight.shape[0]).double()
        with torch.no_grad():
            self.linear.weight.copy_(torch.from_numpy(weight))
            self.linear.bias.copy_(torch.from_numpy(bias))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.linear(images.flatten(1))


def _odin_reference(
    weight: np.ndarray,
    bias: np.ndarray,
    images: np.ndarray,
    temperature: float,
    epsilon: float,
    std: list[float] | None,
) -> np.ndarray:
    out = []
    for image in images:
        x = image.ravel()
        p = _softmax((weight @ x + bias) / temperature)
        predicted = int(np.argmax(p))
        onehot = np.eye(len(p))[predicted]
        # d/dx of -log softmax((Wx + b)/T)_ŷ = Wᵀ (p - onehot) / T
        gradient = (weight.T @ (p - onehot) / temperature).reshape(image.shape)
        step = np.where(gradient >= 0, 1.0, -1.0)
        if std is not None:
            step = step / np.array(std)[:, None, None]
        perturbed = (image - epsilon * step).ravel()
        out.append(_softmax((weight @ perturbed + bias) / temperature).max())
    return np.array(out)


@pytest.mark.parametrize(
    ("temperature", "epsilon", "std"),
    [(1000.0, 0.0014, None), (2.0, 0.1, None), (1.5, 0.05, [0.25, 0.5])],
)
def test_odin_matches_the_perturbed_softmax_reference(
    temperature: float, epsilon: float, std: list[float] | None
) -> None:
    rng = np.random.default_rng(8)
    weight, bias = rng.standard_normal((3, 8)), rng.standard_normal(3)
    images = rng.standard_normal((16, 2, 2, 2))
    model = _Flat(weight, bias).eval()
    expected = _odin_reference(weight, bias, images, temperature, epsilon, std)
    got = odin_scores(
        model, torch.from_numpy(images), temperature=temperature, epsilon=epsilon, input_std=std
    )
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9)
    detector = ODINDetector(temperature=temperature, epsilon=epsilon, input_std=std)
    batched = detector.score_images(model, torch.from_numpy(images), batch_size=5)
    np.testing.assert_allclose(batched.numpy(), expected, rtol=1e-9)


def test_odin_perturbation_raises_every_max_softmax() -> None:
    rng = np.random.default_rng(9)
    model = _Flat(rng.standard_normal((4, 8)), rng.standard_normal(4)).eval()
    images = torch.from_numpy(rng.standard_normal((32, 2, 2, 2)))
    plain = odin_scores(model, images, temperature=1000.0, epsilon=0.0)
    expected_plain = torch.softmax(model(images).detach() / 1000.0, dim=1).max(dim=1).values
    torch.testing.assert_close(plain, expected_plain, rtol=1e-12, atol=0.0)
    perturbed = odin_scores(model, images)
    assert bool((perturbed > plain).all())
    assert not any(p.grad is not None for p in model.parameters())


def test_odin_steps_a_zero_gradient_pixel_by_minus_epsilon() -> None:
    """The reference code's sign is ``torch.ge(grad, 0)``: a zero gradient steps by −ε."""

    def model(images: torch.Tensor) -> torch.Tensor:
        x = images.flatten(1)
        # Pixel 0 enters through a ReLU at 0 (gradient exactly 0); pixel 1 fixes the class.
        return torch.stack([x[:, 1] + 3.0 * torch.relu(-x[:, 0]), -x[:, 1]], dim=1)

    images = torch.tensor([[[0.0, 2.0]], [[0.0, 1.0]]], dtype=torch.float64)  # (2, 1, 2)
    temperature, epsilon = 1.0, 0.1
    got = odin_scores(model, images, temperature=temperature, epsilon=epsilon)
    # Pixel 1: d(−log p_0)/dx1 < 0, so it steps by +ε; pixel 0 steps to −ε and adds 3ε.
    expected = [
        _softmax(np.array([v + epsilon + 3 * epsilon, -(v + epsilon)])).max() for v in (2.0, 1.0)
    ]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


# ----------------------------------------------------------------------------- direction


def _fitted(name: str, toy: dict[str, torch.Tensor]):
    detector = {"knn": KNNDetector(k=10)}.get(name) or DETECTORS[name]()
    detector.fit(toy["train"], toy["targets"], head=toy["head"])
    return detector


@pytest.mark.parametrize("name", ["mahalanobis", "knn", "vim", "react", "gen", "odin"])
def test_in_distribution_scores_above_a_far_ood_cluster(name: str) -> None:
    toy = _toy()
    head = toy["head"]
    if name == "odin":
        model = nn.Sequential(nn.Flatten(), head).eval()
        id_scores = odin_scores(model, toy["test"].reshape(-1, 2, 2, 2))
        ood_scores = odin_scores(model, toy["ood"].reshape(-1, 2, 2, 2))
    else:
        detector = _fitted(name, toy)
        id_scores = detector.score(toy["test"], head(toy["test"]).detach(), head=head)
        ood_scores = detector.score(toy["ood"], head(toy["ood"]).detach(), head=head)
    # AUROC as the rank statistic: the share of (ID, OOD) pairs the ID image wins, ties 1/2.
    diff = id_scores.numpy()[:, None] - ood_scores.numpy()[None, :]
    auroc = float(np.mean((diff > 0) + 0.5 * (diff == 0)))
    assert auroc >= 0.99, (name, auroc)


# ----------------------------------------------------------------------------- fitting


def _same_statistics(a: DetectorStatistics, b: DetectorStatistics) -> bool:
    return (
        a.detector == b.detector
        and dict(a.values) == dict(b.values)
        and a.tensors.keys() == b.tensors.keys()
        and all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    )


@pytest.mark.parametrize("name", ["mahalanobis", "knn", "vim", "react"])
def test_statistics_come_from_the_fit_inputs_only(name: str) -> None:
    toy = _toy()
    head = toy["head"]
    train = toy["train"].clone()
    detector = _fitted(name, toy)
    first = detector.statistics
    assert first is not None and first.detector == name
    assert torch.equal(toy["train"], train)  # fit does not touch its input
    # Scoring other data changes nothing.
    for split in ("test", "ood"):
        detector.score(toy[split], head(toy[split]).detach(), head=head)
    assert detector.statistics is first and _same_statistics(detector.statistics, first)
    # The statistics are copies: changing the caller's tensor later changes no score.
    before = detector.score(toy["test"], head(toy["test"]).detach(), head=head)
    toy["train"].mul_(3.0).add_(1.0)
    after = detector.score(toy["test"], head(toy["test"]).detach(), head=head)
    assert torch.equal(before, after)
    # Deterministic: the same inputs give the same statistics; other inputs, other statistics.
    again = _fitted(name, {**toy, "train": train})
    assert _same_statistics(again.statistics, first)
    shifted = _fitted(
        name,
        {
            **toy,
            "train": torch.cat([train, toy["ood"][:50]]),
            "targets": torch.cat([toy["targets"], torch.zeros(50).long()]),
        },
    )
    assert not _same_statistics(shifted.statistics, first)


@pytest.mark.parametrize("name", ["mahalanobis", "knn", "vim", "react", "gen"])
def test_statistics_survive_a_weights_only_round_trip(name: str) -> None:
    toy = _toy()
    head = toy["head"]
    detector = _fitted(name, toy)
    buffer = io.BytesIO()
    torch.save(detector.statistics.to_dict(), buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    fresh = {"knn": KNNDetector(k=10)}.get(name) or DETECTORS[name]()
    fresh.load(loaded)
    logits = head(toy["ood"]).detach()
    assert torch.equal(
        fresh.score(toy["ood"], logits, head=head), detector.score(toy["ood"], logits, head=head)
    )
    with pytest.raises(AttributeError):
        fresh.statistics.detector = "other"  # type: ignore[misc]
    mine = torch.ones(3, dtype=torch.float64)
    own = DetectorStatistics(detector=name, tensors={"a": mine}, values={"b": 1})
    mine.zero_()
    loaded["tensors"][next(iter(loaded["tensors"]))].zero_() if loaded["tensors"] else None
    assert torch.equal(own.tensors["a"], torch.ones(3, dtype=torch.float64))
    assert torch.equal(
        fresh.score(toy["ood"], logits, head=head), detector.score(toy["ood"], logits, head=head)
    )
    with pytest.raises(TypeError):
        fresh.statistics.tensors["x"] = torch.zeros(1)  # type: ignore[index]


def test_loading_mismatched_statistics_is_an_error() -> None:
    toy = _toy()
    statistics = _fitted("knn", toy).statistics
    with pytest.raises(DismaxError, match="fitted with k=10.*k=50"):
        KNNDetector().load(statistics)
    with pytest.raises(DismaxError, match="fitted by detector 'knn', not 'mahalanobis'"):
        MahalanobisDetector().load(statistics)
    with pytest.raises(DismaxError, match="format"):
        KNNDetector(k=10).load({"detector": "knn"})
    broken = statistics.to_dict()
    del broken["tensors"]["train_features"]
    with pytest.raises(DismaxError, match="lack train_features"):
        KNNDetector(k=10).load(broken)


# ----------------------------------------------------------------------------- errors


def test_knn_rejects_k_above_the_training_set_and_k_below_1() -> None:
    features = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(DismaxError, match="k=50 exceeds the 10 training features"):
        KNNDetector().fit(features, np.arange(10) % 2)
    with pytest.raises(DismaxError, match="k=0 is invalid"):
        KNNDetector(k=0)


def test_mahalanobis_needs_two_classes() -> None:
    features = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(DismaxError, match="1 class.*at least 2 classes"):
        MahalanobisDetector().fit(features, np.zeros(10, dtype=int))


@pytest.mark.parametrize("name", ["mahalanobis", "knn", "vim", "react"])
def test_wrong_shapes_and_missing_fit_are_errors(name: str) -> None:
    toy = _toy()
    head = toy["head"]
    fresh = {"knn": KNNDetector(k=10)}.get(name) or DETECTORS[name]()
    with pytest.raises(DismaxError, match="no statistics; call fit"):
        fresh.score(toy["test"], head(toy["test"]).detach(), head=head)
    with pytest.raises(DismaxError, match="must have 2 dimensions"):
        fresh.fit(toy["train"][:, 0], toy["targets"], head=head)
    with pytest.raises(DismaxError, match="one target per row"):
        fresh.fit(toy["train"], toy["targets"][:-1], head=head)
    with pytest.raises(DismaxError, match="integer class indices"):
        fresh.fit(toy["train"], toy["targets"].double(), head=head)
    detector = _fitted(name, toy)
    wider = torch.cat([toy["test"], toy["test"][:, :1]], dim=1)
    with pytest.raises(DismaxError, match="9 columns but .* fitted on 8"):
        detector.score(wider, head(toy["test"]).detach(), head=head)
    if detector.inputs.logits:
        with pytest.raises(DismaxError, match="logits has 199 rows but features have 200"):
            detector.score(toy["test"], head(toy["test"]).detach()[:-1], head=head)


@pytest.mark.parametrize("name", ["mahalanobis", "knn", "vim", "react", "gen"])
def test_non_finite_inputs_are_errors(name: str) -> None:
    toy = _toy()
    head = toy["head"]
    bad = toy["train"].clone()
    bad[3, 2] = float("nan")
    detector = {"knn": KNNDetector(k=10)}.get(name) or DETECTORS[name]()
    with pytest.raises(DismaxError, match="train_features holds 1 NaN or infinite value"):
        detector.fit(bad, toy["targets"], head=head)
    detector.fit(toy["train"], toy["targets"], head=head)
    logits = head(toy["test"]).detach()
    if detector.inputs.features:
        features = toy["test"].clone()
        features[0, 0] = float("inf")
        with pytest.raises(DismaxError, match="features holds 1 NaN or infinite value"):
            detector.score(features, logits, head=head)
    if detector.inputs.logits:
        bad_logits = logits.clone()
        bad_logits[1, 1] = float("-inf")
        with pytest.raises(DismaxError, match="logits holds 1 NaN or infinite value"):
            detector.score(toy["test"], bad_logits, head=head)


def test_heads_are_required_where_used_and_their_output_checked() -> None:
    toy = _toy()
    with pytest.raises(DismaxError, match="'vim' needs the model's head at fit time"):
        ViMDetector().fit(toy["train"], toy["targets"])
    react = ReActDetector()
    react.fit(toy["train"], toy["targets"])
    with pytest.raises(DismaxError, match="'react' needs the model's head at score time"):
        react.score(toy["test"], None)
    with pytest.raises(DismaxError, match="head logits holds 400 NaN"):
        react.score(toy["test"], None, head=lambda f: torch.full((len(f), 2), float("nan")))
    with pytest.raises(DismaxError, match="needs features"):
        react.score(None, None, head=toy["head"])
    with pytest.raises(DismaxError, match="needs logits"):
        GENDetector().score(None, None)
    with pytest.raises(DismaxError, match="dim=8 leaves no residual space"):
        ViMDetector(dim=8).fit(toy["train"], toy["targets"], head=toy["head"])


def test_invalid_settings_are_errors() -> None:
    with pytest.raises(DismaxError, match="gamma=0 is invalid"):
        GENDetector(gamma=0)
    with pytest.raises(DismaxError, match="top_m=0 is invalid"):
        GENDetector(top_m=0)
    with pytest.raises(DismaxError, match="percentile=101"):
        ReActDetector(percentile=101)
    with pytest.raises(DismaxError, match="alpha=-1"):
        ViMDetector(alpha=-1)
    with pytest.raises(DismaxError, match="temperature=0"):
        ODINDetector(temperature=0)


def test_odin_errors() -> None:
    rng = np.random.default_rng(0)
    model = _Flat(rng.standard_normal((3, 8)), rng.standard_normal(3))
    images = torch.from_numpy(rng.standard_normal((4, 2, 2, 2)))
    with pytest.raises(DismaxError, match="training mode; call model.eval"):
        odin_scores(model, images)
    model.eval()
    with pytest.raises(DismaxError, match="one finite std > 0 per channel \\(2"):
        odin_scores(model, images, input_std=[0.2, 0.2, 0.2])
    with pytest.raises(DismaxError, match="one finite std > 0"):
        odin_scores(model, images, input_std=[0.2, 0.0])
    with pytest.raises(DismaxError, match="temperature=-1"):
        odin_scores(model, images, temperature=-1)
    with pytest.raises(DismaxError, match="epsilon=.nan"):
        odin_scores(model, images, epsilon=float("nan"))
    nan_images = images.clone()
    nan_images[0, 0, 0, 0] = float("nan")
    with pytest.raises(DismaxError, match="images hold 1 NaN"):
        odin_scores(model, nan_images)
    with pytest.raises(DismaxError, match="floating-point tensor"):
        odin_scores(model, images.long())
    with pytest.raises(DismaxError, match="maps images \\(N, ...\\) to logits"):
        odin_scores(lambda x: x.sum(dim=(1, 2, 3)), images)
    with pytest.raises(DismaxError, match="score_images"):
        ODINDetector().score(None, None)
