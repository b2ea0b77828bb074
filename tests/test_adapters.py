"""``replace_head`` on real torchvision (and, when installed, timm) models (METHOD.md §1)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torchvision
from torch import nn

from dismax_cli.adapters import find_classifier, replace_head
from dismax_cli.core.heads import DisMaxHead, IsoMaxPlusHead, SoftMaxHead
from dismax_cli.errors import DismaxError

tvm = torchvision.models


def _small_vit() -> nn.Module:
    return tvm.VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=7,
    )


# (builder, the classifier's qualified name in that torchvision model, input side)
TORCHVISION = {
    "resnet18": (lambda: tvm.resnet18(weights=None, num_classes=7), "fc", 32),
    "densenet121": (lambda: tvm.densenet121(weights=None, num_classes=7), "classifier", 32),
    "efficientnet_b0": (
        lambda: tvm.efficientnet_b0(weights=None, num_classes=7),
        "classifier.1",
        32,
    ),
    "mobilenet_v3_small": (
        lambda: tvm.mobilenet_v3_small(weights=None, num_classes=7),
        "classifier.3",
        32,
    ),
    "convnext_tiny": (lambda: tvm.convnext_tiny(weights=None, num_classes=7), "classifier.2", 32),
    "vision_transformer": (_small_vit, "heads.head", 32),
}

TIMM = {
    "timm:resnet18": ("resnet18", "fc"),
    "timm:vit_tiny_patch16_224": ("vit_tiny_patch16_224", "head"),
}


def _timm_builder(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        timm = pytest.importorskip("timm", reason="timm is absent: pip install -e '.[timm]'")
        kwargs = {"img_size": 32} if "vit" in name else {}
        return timm.create_model(name, pretrained=False, num_classes=7, **kwargs)

    return build


CASES = {
    **TORCHVISION,
    **{key: (_timm_builder(name), where, 32) for key, (name, where) in TIMM.items()},
}


@pytest.mark.parametrize("key", list(CASES))
@pytest.mark.parametrize(
    ("method", "head_type"),
    [("dismax", DisMaxHead), ("isomax_plus", IsoMaxPlusHead), ("softmax", SoftMaxHead)],
)
def test_contract_shape_finite_logits_and_gradient_reach_the_new_head(
    key: str, method: str, head_type: type
) -> None:
    build, where, side = CASES[key]
    torch.manual_seed(0)
    model = build()
    old = model.get_submodule(where)
    assert isinstance(old, nn.Linear)  # the fixture names the real classifier
    in_features = old.in_features

    out = replace_head(model, method, num_classes=5)

    assert out is model
    head = model.get_submodule(where)
    assert isinstance(head, head_type)
    assert head.num_features == in_features and head.num_classes == 5
    model.train()
    logits = model(torch.randn(2, 3, side, side))
    assert logits.shape == (2, 5)
    assert torch.isfinite(logits).all()
    logits.logsumexp(dim=1).sum().backward()
    grads = [p.grad for p in head.parameters()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_default_keeps_the_class_count_and_the_model_outputs_the_heads_logits() -> None:
    model = tvm.resnet18(weights=None, num_classes=10).eval()
    replace_head(model, "dismax")
    assert model.fc.num_classes == 10
    images = torch.randn(3, 3, 32, 32)
    seen: list[torch.Tensor] = []
    model.fc.register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
    with torch.no_grad():
        logits = model(images)
        features = seen[0]
        assert features.shape == (3, 512)
        # The DisMax logits of METHOD.md §1 computed here from the head's own parameters.
        f = nn.functional.normalize(features.double(), dim=1)
        p = nn.functional.normalize(model.fc.prototypes.double(), dim=1)
        delta = model.fc.distance_scale.double().abs() * torch.cdist(f, p) / 2**0.5
        expected = -(delta + delta.mean(dim=1, keepdim=True))
        assert torch.allclose(logits.double(), expected, atol=1e-4)


def test_the_last_linear_of_a_custom_model_is_replaced_not_an_inner_one() -> None:
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(12, 8),
        nn.ReLU(),
        nn.Sequential(nn.Linear(8, 6), nn.ReLU()),
        nn.Linear(6, 3),
    )
    assert find_classifier(model)[0] == "4"
    replace_head(model, "isomax_plus")
    assert isinstance(model[1], nn.Linear) and isinstance(model[3][0], nn.Linear)
    assert isinstance(model[4], IsoMaxPlusHead) and model[4].num_features == 6
    assert model(torch.randn(4, 3, 2, 2)).shape == (4, 3)


def test_a_model_without_linear_classifier_names_what_was_searched() -> None:
    model = tvm.squeezenet1_1(weights=None, num_classes=4)  # 1x1-convolution classifier
    with pytest.raises(DismaxError, match=r"SqueezeNet has no nn\.Linear.*get_classifier"):
        replace_head(model)


def test_bad_method_class_count_and_non_module_are_clear_errors() -> None:
    with pytest.raises(DismaxError, match="unknown method 'cosine'"):
        replace_head(tvm.resnet18(weights=None), "cosine")
    with pytest.raises(DismaxError, match="num_classes=1"):
        replace_head(tvm.resnet18(weights=None), num_classes=1)
    with pytest.raises(DismaxError, match="needs a torch nn.Module"):
        replace_head("resnet18")  # type: ignore[arg-type]


def test_new_head_follows_the_old_layers_dtype() -> None:
    model = nn.Sequential(nn.Linear(4, 3)).double()
    replace_head(model, "dismax")
    assert model[0].prototypes.dtype == torch.float64
    assert model(torch.randn(2, 4, dtype=torch.float64)).dtype == torch.float64
