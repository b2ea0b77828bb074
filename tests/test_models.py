"""Tests for dismax_cli.models: the backbone contract, the registry and the classifier."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from dismax_cli.errors import DismaxError
from dismax_cli.models import (
    BACKBONES,
    Backbone,
    Classifier,
    ConvNet,
    build_backbone,
    list_backbones,
)

NAMES = ["convnet", "resnet18", "resnet34", "densenet_bc_100", "wrn_28_10"]

EXPECTED_NUM_FEATURES = {
    "convnet": 128,
    "resnet18": 512,
    "resnet34": 512,
    "densenet_bc_100": 342,
    "wrn_28_10": 640,
}

# Exact parameter counts of the feature extractors (no classifier), 3 input channels. The
# published figures count a 10-class linear layer as well, so each expected number below plus
# (D * 10 + 10) gives the figure quoted in the literature:
EXPECTED_PARAMS = {
    # Not published: 3x3 convs 3->32->64->128 without bias + 3 BN layers.
    "convnet": 27 * 32 + 9 * 32 * 64 + 9 * 64 * 128 + 2 * (32 + 64 + 128),
    # + 5,130 = 11,173,962, the usual "11.17M" of the CIFAR ResNet-18 (e.g. OpenOOD v1.5,
    # kuangliu/pytorch-cifar); He et al. arXiv:1512.03385 gives the ImageNet variant only.
    "resnet18": 11_168_832,
    # + 5,130 = 21,282,122, the usual "21.28M" of the CIFAR ResNet-34.
    "resnet34": 21_276_992,
    # + 3,430 = 769,162, the "0.8M" of DenseNet-BC (L=100, k=12) in Huang et al.
    # arXiv:1608.06993, Table 2 (0.77M in the reference PyTorch ports).
    "densenet_bc_100": 765_732,
    # + 6,410 = 36,479,194, the "36.5M" of WRN-28-10 in Zagoruyko & Komodakis
    # arXiv:1605.07146, Table 5.
    "wrn_28_10": 36_472_784,
}


def _num_params(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


@pytest.fixture(autouse=True)
def _seed() -> Iterator[None]:
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def built() -> dict[str, Backbone]:
    """Each backbone built once (3 channels, 32x32) in eval mode, shared by the module."""
    torch.manual_seed(0)
    return {name: build_backbone(name).eval() for name in NAMES}


def test_registry_lists_every_backbone_with_a_one_line_description() -> None:
    assert list_backbones() == NAMES
    assert list(BACKBONES) == NAMES
    for name, spec in BACKBONES.items():
        assert spec.name == name
        assert spec.description and "\n" not in spec.description
        assert str(spec) == spec.description
        assert spec.num_features == EXPECTED_NUM_FEATURES[name]


@pytest.mark.parametrize("name", NAMES)
def test_backbone_output_shape_num_features_and_finite_values(
    built: dict[str, Backbone], name: str
) -> None:
    backbone = built[name]
    assert isinstance(backbone, Backbone)
    assert backbone.num_features == EXPECTED_NUM_FEATURES[name]
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = backbone.forward_features(images)
    assert features.shape == (2, EXPECTED_NUM_FEATURES[name])
    assert features.dtype == torch.float32
    assert torch.isfinite(features).all()
    # After the last BN-ReLU and average pooling: non-negative, and not all zero.
    assert (features >= 0).all()
    assert features.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_parameter_counts_match_the_published_figures(
    built: dict[str, Backbone], name: str
) -> None:
    assert _num_params(built[name]) == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", NAMES)
def test_every_backbone_accepts_one_channel_and_8x8_images(name: str) -> None:
    backbone = build_backbone(name, in_channels=1, image_size=8).eval()
    assert backbone.in_channels == 1
    # Only the stem changes: it loses 2 of its 3 input-channel slices.
    stem = next(m for m in backbone.modules() if isinstance(m, nn.Conv2d))
    assert stem.in_channels == 1
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)
    assert _num_params(backbone) == EXPECTED_PARAMS[name] - 2 * 3 * 3 * stem.out_channels
    with torch.no_grad():
        features = backbone(torch.randn(2, 1, 8, 8))
    assert features.shape == (2, EXPECTED_NUM_FEATURES[name])
    assert torch.isfinite(features).all()


@pytest.mark.parametrize(("image_size", "num_pools"), [(8, 1), (28, 2), (32, 2), (64, 2)])
def test_convnet_pools_only_while_the_map_allows(image_size: int, num_pools: int) -> None:
    backbone = build_backbone("convnet", in_channels=1, image_size=image_size).eval()
    pools = [m for m in backbone.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == num_pools
    with torch.no_grad():
        features = backbone(torch.randn(3, 1, image_size, image_size))
    assert features.shape == (3, 128)
    assert torch.isfinite(features).all()


def test_convnet_forward_features_is_deterministic_in_eval_mode() -> None:
    backbone = build_backbone("convnet").eval()
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        first = backbone.forward_features(images)
        second = backbone.forward_features(images.clone())
        single = backbone.forward_features(images[1:2])
        via_forward = backbone(images)
    assert torch.equal(first, second)
    assert torch.equal(first, via_forward)
    # Eval-mode BN uses running statistics: a row does not depend on the rest of the batch.
    torch.testing.assert_close(single, first[1:2], rtol=1e-5, atol=1e-6)


def test_convnet_train_mode_uses_batch_statistics_and_trains_every_parameter() -> None:
    backbone = ConvNet()
    images = torch.randn(4, 3, 32, 32)
    features = backbone(images)
    assert features.shape == (4, 128)
    features.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in backbone.parameters())
    # Batch statistics moved the running mean away from its initial zeros.
    bn = next(m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d))
    assert bn.running_mean.abs().sum() > 0


def test_channels_last_gives_the_same_features() -> None:
    backbone = build_backbone("convnet").eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = backbone(images)
        backbone = backbone.to(memory_format=torch.channels_last)
        actual = backbone(images.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


def test_resnet_has_the_cifar_stem_and_a_4x4_last_stage(built: dict[str, Backbone]) -> None:
    net = built["resnet18"].net  # type: ignore[attr-defined]
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, nn.Identity) and isinstance(net.fc, nn.Identity)
    shapes: list[tuple[int, ...]] = []
    handle = net.layer4.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    with torch.no_grad():
        built["resnet18"](torch.randn(1, 3, 32, 32))
    handle.remove()
    assert shapes == [(1, 512, 4, 4)]
    resnet34 = built["resnet34"].net  # type: ignore[attr-defined]
    assert [len(resnet34.get_submodule(f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]


def test_densenet_bc_100_has_compression_half_and_a_plain_3x3_stem(
    built: dict[str, Backbone],
) -> None:
    features = built["densenet_bc_100"].features  # type: ignore[attr-defined]
    names = [name for name, _ in features.named_children()]
    assert names[0] == "conv0" and "norm0" not in names and "pool0" not in names
    assert features.conv0.out_channels == 24 and features.conv0.kernel_size == (3, 3)
    transitions = [
        (m.conv.in_channels, m.conv.out_channels)
        for n, m in features.named_children()
        if n.startswith("transition")
    ]
    assert transitions == [(216, 108), (300, 150)]
    # 3 dense blocks of 16 bottleneck layers: 48 layers x 2 convs + stem + 2 transitions + fc
    # (the "100" counts the classifier) = 99 + 1.
    convs = [m for m in features.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 99


def test_wrn_28_10_has_three_groups_of_four_wide_blocks(built: dict[str, Backbone]) -> None:
    wrn = built["wrn_28_10"]
    groups = [wrn.block1, wrn.block2, wrn.block3]  # type: ignore[attr-defined]
    assert [len(group) for group in groups] == [4, 4, 4]
    assert [group[-1].conv2.out_channels for group in groups] == [160, 320, 640]
    # The stem, 12 blocks x 2 convs (depth 28 = 6 * 4 + 4), and one 1x1 shortcut conv at the
    # start of each group, where the width (16 -> 160) or the stride changes.
    convs = [m for m in wrn.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 24 + 3


def test_classifier_gives_logits_with_a_linear_head() -> None:
    backbone = build_backbone("convnet").eval()
    model = Classifier(backbone, nn.Linear(backbone.num_features, 7)).eval()
    images = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        logits = model(images)
        features = model.forward_features(images)
    assert logits.shape == (5, 7)
    assert features.shape == (5, 128)
    assert model.num_features == 128
    torch.testing.assert_close(logits, model.head(features))


def test_classifier_rejects_a_head_of_the_wrong_width() -> None:
    with pytest.raises(DismaxError, match="num_features=128"):
        Classifier(build_backbone("convnet"), nn.Linear(512, 10))


def test_unknown_backbone_lists_the_valid_names() -> None:
    with pytest.raises(DismaxError, match="'resnet50'") as info:
        build_backbone("resnet50")
    message = str(info.value)
    assert "\n" not in message
    for name in NAMES:
        assert name in message


@pytest.mark.parametrize("in_channels", [0, 2, 4, True])
def test_unsupported_in_channels_is_a_dismax_error(in_channels: int) -> None:
    with pytest.raises(DismaxError, match="in_channels"):
        build_backbone("convnet", in_channels=in_channels)


@pytest.mark.parametrize("image_size", [7, 0, -32])
def test_too_small_image_size_is_a_dismax_error(image_size: int) -> None:
    with pytest.raises(DismaxError, match=f"image_size={image_size} .*at least 8"):
        build_backbone("convnet", image_size=image_size)


def test_images_that_do_not_fit_are_a_dismax_error() -> None:
    backbone = build_backbone("convnet", in_channels=1)
    with pytest.raises(DismaxError, match=r"\(B, 1, H, W\)"):
        backbone(torch.randn(2, 3, 32, 32))
    with pytest.raises(DismaxError, match="float"):
        backbone(torch.zeros(2, 1, 32, 32, dtype=torch.uint8))
    with pytest.raises(DismaxError, match="at least 8"):
        backbone(torch.randn(2, 1, 4, 4))
