"""Tests for dismax_cli.models: the backbone contract, the registry and the classifier."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
import torchvision
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
from dismax_cli.models.wrn import WideBasicBlock

NAMES = ["convnet", "resnet18", "resnet34", "densenet_bc_100", "wrn_28_10"]
#: The ImageNet-stem backbones of the 224-pixel recipe (tests/test_imagenet_recipe.py).
IMAGENET_NAMES = ["resnet18_224", "resnet50_224"]

EXPECTED_NUM_FEATURES = {
    "convnet": 128,
    "resnet18": 512,
    "resnet34": 512,
    "densenet_bc_100": 342,
    "wrn_28_10": 640,
    "resnet18_224": 512,
    "resnet50_224": 2048,
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
    # The reference code's WRN-28-10 (METHOD.md §6, issue 14): a bias on every convolution adds
    # 16 (stem) + 4 * 2 * (160 + 320 + 640) + (160 + 320 + 640) (the three 1x1 shortcuts)
    # = 10,096 to the bias-free 36,472,784; + 6,410 = 36,489,290 with a 10-class linear
    # layer, the "36.5M" of WRN-28-10 in Zagoruyko & Komodakis arXiv:1605.07146, Table 5.
    "wrn_28_10": 36_472_784 + 16 + 9 * (160 + 320 + 640),
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
    assert list_backbones() == NAMES + IMAGENET_NAMES
    assert list(BACKBONES) == NAMES + IMAGENET_NAMES
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


# --------------------------------------------------------------------------- initialisation
# The reference code's rules (METHOD.md §6, issue 14 item 4), checked on the built modules.


def _assert_kaiming_normal_fan_out(module: nn.Module) -> None:
    """Every conv weight ~ N(0, 2 / fan_out), fan_out = out_channels * kh * kw.

    Each conv's sample std must be within sampling error of sqrt(2 / fan_out), and all weights
    divided by that std, pooled, must look standard normal (std 1, kurtosis 3; a uniform
    initialisation has kurtosis 1.8).
    """
    pooled = []
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    assert convs
    for conv in convs:
        weight = conv.weight.detach().double()
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
        expected = math.sqrt(2.0 / fan_out)
        # 6 standard errors of a sample std (about 1 / sqrt(2n)), at least 10 %.
        tolerance = max(0.1, 6.0 / math.sqrt(2 * weight.numel()))
        ratio = weight.std().item() / expected
        assert abs(ratio - 1) < tolerance, (conv, fan_in, fan_out, ratio)
        pooled.append((weight / expected).flatten())
    z = torch.cat(pooled)
    assert abs(z.mean().item()) < 0.01
    assert abs(z.std().item() - 1) < 0.01
    kurtosis = ((z - z.mean()) ** 4).mean().item() / z.var().item() ** 2
    assert abs(kurtosis - 3) < 0.1


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "densenet_bc_100", "wrn_28_10"])
def test_convolutions_are_kaiming_normal_with_fan_out(
    built: dict[str, Backbone], name: str
) -> None:
    _assert_kaiming_normal_fan_out(built[name])


@pytest.mark.parametrize(
    ("name", "num_blocks"), [("resnet18", 2 + 2 + 2 + 2), ("resnet34", 3 + 4 + 6 + 3)]
)
def test_resnet_zero_initialises_the_last_bn_of_every_residual_block(
    built: dict[str, Backbone], name: str, num_blocks: int
) -> None:
    net = built[name].net  # type: ignore[attr-defined]
    blocks = [m for m in net.modules() if isinstance(m, torchvision.models.resnet.BasicBlock)]
    assert len(blocks) == num_blocks
    last_bns = {id(block.bn2) for block in blocks}
    for block in blocks:
        assert torch.equal(block.bn2.weight, torch.zeros_like(block.bn2.weight))
        assert torch.equal(block.bn2.bias, torch.zeros_like(block.bn2.bias))
    # Every other BatchNorm (stem, bn1, the downsampling shortcuts) starts at weight 1, bias 0.
    others = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d) and id(m) not in last_bns]
    assert len(others) == 1 + num_blocks + 3
    for bn in others:
        assert torch.equal(bn.weight, torch.ones_like(bn.weight))
        assert torch.equal(bn.bias, torch.zeros_like(bn.bias))
    # Hence a block that keeps its shape starts as the identity on non-negative inputs (the
    # output of the previous block's ReLU).
    block = net.layer2[1]
    assert block.downsample is None
    x = torch.rand(2, 128, 8, 8)
    with torch.no_grad():
        assert torch.equal(block(x), x)


@pytest.mark.parametrize("name", ["densenet_bc_100", "wrn_28_10"])
def test_batchnorm_starts_at_weight_one_and_bias_zero(
    built: dict[str, Backbone], name: str
) -> None:
    bns = [m for m in built[name].modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns
    for bn in bns:
        assert torch.equal(bn.weight, torch.ones_like(bn.weight))
        assert torch.equal(bn.bias, torch.zeros_like(bn.bias))


def test_densenet_has_no_linear_layer_left_in_the_backbone(built: dict[str, Backbone]) -> None:
    # torchvision's classifier (the only Linear, whose bias the reference zeroes) is dropped:
    # the method's head replaces it, so every parameter is a conv or a BatchNorm.
    assert not [m for m in built["densenet_bc_100"].modules() if isinstance(m, nn.Linear)]


def test_wrn_convolutions_have_biases_with_pytorch_default_init(
    built: dict[str, Backbone],
) -> None:
    convs = [m for m in built["wrn_28_10"].modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 24 + 3
    for conv in convs:
        assert conv.bias is not None, conv
        fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
        bound = 1 / math.sqrt(fan_in)
        # The reference re-initialises conv weights only; biases keep U(-bound, bound).
        assert conv.bias.abs().max().item() <= bound
        assert conv.bias.abs().max().item() > 0.5 * bound


def test_wrn_blocks_put_the_stride_on_conv2_and_the_shortcut_on_the_raw_input(
    built: dict[str, Backbone],
) -> None:
    wrn = built["wrn_28_10"]
    for group, (in_planes, out_planes, stride) in zip(
        [wrn.block1, wrn.block2, wrn.block3],  # type: ignore[attr-defined]
        [(16, 160, 1), (160, 320, 2), (320, 640, 2)],
        strict=True,
    ):
        first = group[0]
        assert isinstance(first, WideBasicBlock)
        assert first.conv1.stride == (1, 1) and first.conv2.stride == (stride, stride)
        assert first.shortcut is not None and first.shortcut.stride == (stride, stride)
        # The shortcut reads the block's raw input (in_planes channels, not activated).
        assert first.shortcut.in_channels == in_planes == first.bn1.num_features
        assert first.shortcut.out_channels == out_planes
        assert all(block.shortcut is None for block in group[1:])


def test_wrn_keeps_the_standard_batchnorm_momentum(built: dict[str, Backbone]) -> None:
    # The reference's final BatchNorm has momentum 0.9 (running stats ~ the last batch); the
    # README's Design notes say why dismax keeps PyTorch's 0.1 everywhere.
    bns = [m for m in built["wrn_28_10"].modules() if isinstance(m, nn.BatchNorm2d)]
    assert built["wrn_28_10"].bn.momentum == 0.1  # type: ignore[attr-defined]
    assert all(bn.momentum == 0.1 for bn in bns)


def _reference_wide_block(
    x: torch.Tensor, params: dict[str, torch.Tensor], *, stride: int, training: bool, eps: float
) -> torch.Tensor:
    """The reference code's wide_basic forward in float64 functional ops (dropout rate 0)."""

    def bn(t: torch.Tensor, prefix: str) -> torch.Tensor:
        return F.batch_norm(
            t,
            None if training else params[f"{prefix}.running_mean"],
            None if training else params[f"{prefix}.running_var"],
            params[f"{prefix}.weight"],
            params[f"{prefix}.bias"],
            training=training,
            eps=eps,
        )

    out = F.conv2d(F.relu(bn(x, "bn1")), params["conv1.weight"], params["conv1.bias"], padding=1)
    out = F.conv2d(
        F.relu(bn(out, "bn2")),
        params["conv2.weight"],
        params["conv2.bias"],
        stride=stride,
        padding=1,
    )
    if "shortcut.weight" in params:
        shortcut = F.conv2d(x, params["shortcut.weight"], params["shortcut.bias"], stride=stride)
    else:
        shortcut = x
    return out + shortcut


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize(
    ("in_planes", "out_planes", "stride"), [(6, 10, 1), (10, 10, 2), (6, 10, 2), (10, 10, 1)]
)
def test_wrn_block_forward_matches_a_float64_reference_block(
    in_planes: int, out_planes: int, stride: int, training: bool
) -> None:
    block = WideBasicBlock(in_planes, out_planes, stride=stride)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in (block.bn1, block.bn2):  # non-trivial affine and running statistics
            module.weight.uniform_(0.5, 1.5, generator=generator)
            module.bias.normal_(0, 0.3, generator=generator)
            module.running_mean.normal_(0, 0.3, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
        for conv in [block.conv1, block.conv2, block.shortcut]:
            if conv is not None:
                assert conv.bias is not None
                conv.bias.normal_(0, 0.1, generator=generator)
    params = {k: v.detach().clone().double() for k, v in block.state_dict().items()}
    x = torch.randn(3, in_planes, 9, 9, generator=generator)
    block.train(training)
    with torch.no_grad():
        actual = block(x)
    expected = _reference_wide_block(
        x.double(), params, stride=stride, training=training, eps=block.bn1.eps
    )
    assert actual.shape == (3, out_planes, math.ceil(9 / stride), math.ceil(9 / stride))
    torch.testing.assert_close(actual.double(), expected, rtol=1e-5, atol=1e-5)
