"""224-pixel recipes, ImageNet-stem backbones, imagenet sources, decay epochs (issue 13 item 5).

References: torchvision's ImageNet reference recipe (RandomResizedCrop 224 + flip; Resize 256,
CenterCrop 224; mean 0.485/0.456/0.406, std 0.229/0.224/0.225) and its published parameter
counts (resnet18 11,689,512; resnet50 25,557,032, each with a 1,000-class fc).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from support import SHARED_DATA
from torch import nn
from torchvision.transforms import v2
from typer.testing import CliRunner

from dismax_cli.benchmark import BenchmarkConfig
from dismax_cli.cli.app import app
from dismax_cli.config import InvalidValueError, read_yaml_config
from dismax_cli.data import load_dataset, load_id_splits
from dismax_cli.data.stream import StreamSet
from dismax_cli.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageTransform,
    random_resized_crop_batch,
    random_resized_crop_box,
)
from dismax_cli.engine.build import build_training
from dismax_cli.engine.config import TrainConfig
from dismax_cli.errors import DismaxError
from dismax_cli.models import build_backbone

REPO = Path(__file__).resolve().parents[1]
TIN = SHARED_DATA / "tin_test_64_jpeg.npz"
#: The CLI in this process (typer's runner, through main()'s one error handler): exit codes,
#: stderr lines and files are what a ``dismax`` process gives.
runner = CliRunner()


def test_imagenet_eval_transform_is_resize_256_centre_crop_224_and_imagenet_stats() -> None:
    torch.manual_seed(0)
    images = torch.randint(0, 256, (2, 300, 400, 3), dtype=torch.uint8)
    transform = ImageTransform(
        image_size=224, channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD, resize=256
    )
    reference = v2.Compose(
        [
            v2.Resize(256, antialias=True),
            v2.CenterCrop(224),
            v2.Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)),
        ]
    )
    expected = reference(images.permute(0, 3, 1, 2).float() / 255.0)
    got = transform(images)
    assert got.shape == (2, 3, 224, 224)
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-5)
    # A 224x224 input is still resized to 256 and cropped, as torchvision's pipeline does.
    square = images[:, :224, :224]
    expected_square = reference(square.permute(0, 3, 1, 2).float() / 255.0)
    torch.testing.assert_close(transform(square), expected_square, rtol=0, atol=2e-5)


def test_transform_dict_keeps_resize_and_reads_checkpoints_without_it() -> None:
    t = ImageTransform(image_size=224, channels=3, mean=(0.5,), std=(0.25,), resize=256)
    assert t.to_dict()["resize"] == 256
    assert ImageTransform.from_dict(t.to_dict()) == t
    old = {"image_size": 32, "channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3}
    restored = ImageTransform.from_dict(old)
    assert restored.resize == 32 and restored.to_dict() == old  # format of today's checkpoints
    with pytest.raises(DismaxError, match="resize '200' must be an integer >= image_size 224"):
        ImageTransform(image_size=224, channels=3, mean=(0.5,), std=(0.25,), resize=200)


def test_random_resized_crop_boxes_follow_torchvision_bounds() -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        top, left, h, w = random_resized_crop_box(375, 500, generator=generator)
        assert 0 <= top and top + h <= 375 and 0 <= left and left + w <= 500
        # Rounding of w and h moves area and ratio by at most one pixel per side.
        assert 0.08 * 375 * 500 - (h + w + 1) <= h * w <= 375 * 500
        assert 3 / 4 - 1 / min(h, w) <= w / h <= 4 / 3 + 1 / min(h, w)
    # 10 x 1000: no draw fits; the fallback crops the centre at the widest ratio, 4/3:
    # h = 10, w = round(10 * 4 / 3) = 13, top = 0, left = (1000 - 13) // 2 = 493.
    assert random_resized_crop_box(10, 1000, generator=generator) == (0, 493, 10, 13)
    batch = torch.randint(0, 256, (3, 64, 80, 3), dtype=torch.uint8)
    out = random_resized_crop_batch(batch, size=224, generator=torch.Generator().manual_seed(1))
    assert out.shape == (3, 224, 224, 3) and out.dtype == torch.uint8


@pytest.mark.parametrize(
    ("name", "features", "published"),
    [("resnet18_224", 512, 11_689_512), ("resnet50_224", 2048, 25_557_032)],
)
def test_imagenet_stem_resnets_at_224(name: str, features: int, published: int) -> None:
    backbone = build_backbone(name).eval()
    fc = features * 1000 + 1000  # the 1,000-class classifier the published count includes
    assert sum(p.numel() for p in backbone.parameters()) == published - fc
    conv1 = backbone.net.conv1
    assert conv1.kernel_size == (7, 7) and conv1.stride == (2, 2)
    assert isinstance(backbone.net.maxpool, nn.MaxPool2d)
    seen = []
    backbone.net.layer4.register_forward_hook(lambda m, a, out: seen.append(out.shape))
    with torch.no_grad():
        out = backbone(torch.randn(2, 3, 224, 224))
    assert out.shape == (2, features) and seen == [torch.Size([2, features, 7, 7])]


FIRST20 = SHARED_DATA / "cifar10_test_first20_png.npz"


def _train_set() -> object:
    if not FIRST20.is_file():
        pytest.skip(f"{FIRST20} is absent (20 real 32x32 RGB CIFAR-10 images)")
    return load_dataset(f"npz:{FIRST20}", split="all")


@pytest.mark.parametrize(
    ("model", "image_size", "recipe", "side", "resize"),
    [
        ("resnet18_224", None, "imagenet", 224, 256),  # selected by the backbone
        ("convnet", 224, "imagenet", 224, 256),  # selected by --image-size
        ("convnet", 288, "imagenet", 288, 329),  # round(288 * 256 / 224) = 329
        ("convnet", 64, "cifar", 64, 64),
        ("convnet", None, "cifar", 32, 32),  # the data's side (CIFAR-10 is 32x32)
    ],
)
def test_recipe_is_chosen_by_backbone_or_image_size(
    model: str, image_size: int | None, recipe: str, side: int, resize: int
) -> None:
    config = TrainConfig(method="softmax", model=model, image_size=image_size)
    setup = build_training(config, _train_set(), torch.device("cpu"))
    assert setup.recipe == recipe
    assert (setup.transform.image_size, setup.transform.resize) == (side, resize)
    if recipe == "imagenet":
        assert setup.transform.mean == IMAGENET_MEAN and setup.transform.std == IMAGENET_STD


def test_decay_epochs_set_the_learning_rate_steps() -> None:
    config = TrainConfig(epochs=90, decay_epochs=(30, 60), lr=0.1)
    assert config.milestones() == [30, 60]
    rates = [config.lr_at(e) for e in (0, 29, 30, 59, 60, 89)]
    assert rates == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    assert TrainConfig(epochs=90).milestones() == [45, 60, 75]  # default 1/2, 2/3, 5/6
    cases = [((60, 30), "greater than 60"), ((30, 90), "below epochs=90"), ((0,), "at least 1")]
    for bad, why in cases:
        with pytest.raises(InvalidValueError, match=why):
            TrainConfig(epochs=90, decay_epochs=bad).validate()


def test_new_fields_at_their_defaults_keep_the_run_key() -> None:
    key = TrainConfig(method="softmax").identity()
    assert not {"image_size", "decay_epochs", "stream"} & set(key)
    assert TrainConfig(method="softmax", stream=True).identity()["stream"] is True
    assert TrainConfig(method="softmax", image_size=224).identity()["image_size"] == 224


def test_paper_imagenet_config_is_read_by_the_real_config_reader() -> None:
    values = read_yaml_config(REPO / "benchmarks" / "configs" / "imagenet1k-resnet18.yaml")
    config = BenchmarkConfig.from_dict(values).validate()
    train = config.train_config("dismax", config.seed)
    assert (train.dataset, train.model, train.image_size) == ("imagenet1k", "resnet18_224", 224)
    assert (train.batch_size, train.epochs, train.lr, train.weight_decay) == (256, 90, 0.1, 1e-4)
    assert train.milestones() == [30, 60] and train.stream is True
    assert config.ood == ("imagenet_o",) and config.methods == ("softmax", "dismax")


def test_missing_imagenet_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(DismaxError) as info:
        load_dataset("imagenet1k", split="train", data_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message and "cannot be downloaded" in message
    assert str(tmp_path / "imagenet1k") in message and "train/<wnid>/*.JPEG" in message
    with pytest.raises(DismaxError, match=r"imagenet_o' as <wnid>/\*\.jpg"):
        load_dataset("imagenet-o", data_dir=tmp_path)


def _fake_imagenet(root: Path) -> Path:
    """imagenet1k (3 classes: 12 train + 4 val each) and imagenet_o (10) from real TIN JPEGs."""
    with np.load(TIN) as d:
        data, offsets = d["data"], d["offsets"]
    k = 0
    for part, per_class in (("imagenet1k/train", 12), ("imagenet1k/val", 4), ("imagenet_o", 5)):
        for c in range(3 if part != "imagenet_o" else 2):
            folder = root / part / f"n0000000{c}"
            folder.mkdir(parents=True)
            for _ in range(per_class):
                (folder / f"{k}.JPEG").write_bytes(data[offsets[k] : offsets[k + 1]].tobytes())
                k += 1
    return root


@pytest.mark.skipif(not TIN.is_file(), reason=f"{TIN} is absent (real TIN JPEGs)")
def test_imagenet_sources_stream_and_train_and_score_from_the_cli(tmp_path: Path) -> None:
    data_dir = _fake_imagenet(tmp_path / "data")
    train, test = load_id_splits("imagenet1k", data_dir=data_dir)
    assert isinstance(train, StreamSet) and isinstance(test, StreamSet)
    assert (len(train), len(test)) == (36, 12)
    assert train.classes == ("n00000000", "n00000001", "n00000002")
    assert train.mean == IMAGENET_MEAN
    env = {"DISMAX_WORKERS": "1"}  # one DataLoader worker process streams the files
    run = tmp_path / "run"
    common = ["--data-dir", str(data_dir)]
    cmd = ["train", "--dataset", "imagenet1k", "--model", "convnet", "--image-size", "32",
           "--epochs", "1", "--batch-size", "8", "--out", str(run), "--device", "cpu",
           *common]  # fmt: skip
    trained = runner.invoke(app, cmd, env=env)
    assert trained.exit_code == 0, trained.output
    score = ["score", str(run), "--ood", "imagenet_o", "--format", "json", "--device", "cpu",
             *common]  # fmt: skip
    out = runner.invoke(app, score, env=env)
    assert out.exit_code == 0, out.output
    counts = dict(_find(json.loads(out.stdout), "n_ood"))
    assert counts and all(v == {"imagenet_o": 10} or v == 10 for v in counts.values()), counts
    assert set(dict(_find(json.loads(out.stdout), "n_id")).values()) == {12}


def _find(node: object, key: str, path: str = "") -> list[tuple[str, object]]:
    """Every ``key`` in a JSON tree, with its path."""
    found: list[tuple[str, object]] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                found.append((f"{path}/{k}", v))
            found.extend(_find(v, key, f"{path}/{k}"))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found.extend(_find(v, key, f"{path}/{i}"))
    return found


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--image-size", "7"], "'7' is not an integer from 8 to 4,096"),
        (["--image-size", "x"], "'x' is not an integer from 8 to 4,096"),
        (["--decay-epochs", "60,30"], "not a list of strictly increasing epochs"),
        (["--decay-epochs", "a"], "not a list of strictly increasing epochs"),
        (["--epochs", "90", "--decay-epochs", "30,90"], "below epochs=90"),
    ],
)
def test_bad_new_option_values_exit_2_with_one_line(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    assert needle in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr and not out.exists()


def test_bad_decay_epochs_in_a_config_file_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 10\ndecay_epochs: [3, 2]\n")
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "r"), "--config", str(config)])
    assert result.exit_code == 2 and "decay_epochs" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_bad_workers_variable_exits_2_before_a_run_folder(tmp_path: Path) -> None:
    if not TIN.is_file():
        pytest.skip(f"{TIN} is absent")
    data_dir = _fake_imagenet(tmp_path / "data")
    cmd = ["train", "--dataset", "imagenet1k", "--data-dir", str(data_dir), "--out",
           str(tmp_path / "r"), "--epochs", "1"]  # fmt: skip
    result = runner.invoke(app, cmd, env={"DISMAX_WORKERS": "two"})
    assert result.exit_code == 2 and "DISMAX_WORKERS='two' is invalid" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "r").exists()
