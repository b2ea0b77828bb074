"""``--model torchvision:NAME`` and ``--model timm:NAME`` (issue 11 item 7).

A tiny 32×32 npz is made in the test (ImageNet models on 8×8 digits run but are not sensible);
train, calibrate, score, resume and benchmark rebuild the library's model from the checkpoint.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from typer.testing import CliRunner

from dismax_cli.adapters import replace_head
from dismax_cli.cli.app import app
from dismax_cli.core.heads import DisMaxHead, SoftMaxHead

runner = CliRunner()
CLASSES = 3


def _npz(path: Path, n_per_class: int, *, channels: int, seed: int) -> Path:
    """Class k is bright in quadrant k of a 32×32 image, plus noise: learnable in one epoch."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 60, size=(n_per_class * CLASSES, 32, 32, channels), dtype=np.uint8)
    y = np.repeat(np.arange(CLASSES), n_per_class)
    for i, k in enumerate(y):
        r, c = divmod(int(k), 2)
        x[i, 16 * r : 16 * r + 16, 16 * c : 16 * c + 16] += 180
    np.savez(path, x=x, y=y.astype(np.int64), classes=np.array(["a", "b", "c"]))
    return path


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("DISMAX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DISMAX_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("DISMAX_OFFLINE", "1")
    specs = {}
    for channels in (1, 3):
        train = _npz(tmp_path / f"train{channels}.npz", 40, channels=channels, seed=channels)
        test = _npz(tmp_path / f"test{channels}.npz", 12, channels=channels, seed=10 + channels)
        specs[f"train{channels}"], specs[f"test{channels}"] = f"npz:{train}", f"npz:{test}"
    return specs


def _train(data: dict[str, str], out: Path, model: str, *extra: str, channels: int = 3):
    args = ["train", "--dataset", data[f"train{channels}"], "--test-dataset"]
    args += [data[f"test{channels}"], "--model", model, "--epochs", "1", "--batch-size", "16"]
    return runner.invoke(app, [*args, "--out", str(out), "--quiet", *extra])


def _score(run: Path) -> dict:
    result = runner.invoke(app, ["score", str(run), "--ood", "uniform", "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _test_accuracy_rebuilt_in_the_test(run: Path, net: torch.nn.Module, npz: str) -> float:
    """Load the checkpoint's ``net.*`` weights into a model built here; its test accuracy."""
    from dismax_cli.engine import load_checkpoint
    from dismax_cli.engine.checkpoint import bundle_from_checkpoint

    ckpt = load_checkpoint(run)
    weights = {k[4:]: v for k, v in ckpt.state_dict.items() if k.startswith("net.")}
    assert len(weights) == len(ckpt.state_dict)
    net.load_state_dict(weights)
    net.eval()
    transform = bundle_from_checkpoint(ckpt).transform
    arrays = np.load(npz.removeprefix("npz:"))
    images = transform(torch.from_numpy(arrays["x"]))
    if images.shape[1] != 3 and isinstance(net, torchvision.models.ResNet):
        images = images.expand(-1, 3, -1, -1)
    with torch.no_grad():
        predictions = net(images).argmax(1)
    return float((predictions == torch.from_numpy(arrays["y"])).double().mean())


def test_torchvision_resnet18_trains_calibrates_and_scores(
    data: dict[str, str], tmp_path: Path
) -> None:
    run = tmp_path / "tv"
    result = _train(data, run, "torchvision:resnet18")
    assert result.exit_code == 0, result.output
    from dismax_cli.engine import load_bundle, load_checkpoint
    from dismax_cli.models.external import ExternalClassifier

    meta = load_checkpoint(run).meta
    assert meta.model == "torchvision:resnet18" and meta.config.model == "torchvision:resnet18"
    bundle = load_bundle(run)
    assert isinstance(bundle.model, ExternalClassifier)
    assert isinstance(bundle.model.net, torchvision.models.ResNet)
    assert isinstance(bundle.model.net.fc, DisMaxHead) and bundle.model.head is bundle.model.net.fc
    assert bundle.model.net.fc.prototypes.shape == (CLASSES, 512)

    calibrated = runner.invoke(app, ["calibrate", str(run), "--format", "json"])
    assert calibrated.exit_code == 0, calibrated.output
    report = _score(run)
    row = report["methods"][0]
    assert row["label"] == "DisMax (FPR)"
    # The score command's accuracy is that of a torchvision ResNet-18 rebuilt in the test.
    net = replace_head(torchvision.models.resnet18(num_classes=CLASSES), "dismax")
    expected = _test_accuracy_rebuilt_in_the_test(run, net, data["test3"])
    assert row["id_before"]["ACC"]["mean"] == pytest.approx(expected)


def test_timm_resnet18_trains_and_scores_on_grey_images(
    data: dict[str, str], tmp_path: Path
) -> None:
    timm = pytest.importorskip("timm")
    run = tmp_path / "timm"
    result = _train(data, run, "timm:resnet18", "--method", "softmax", channels=1)
    assert result.exit_code == 0, result.output
    from dismax_cli.engine import load_bundle

    bundle = load_bundle(run)
    assert type(bundle.model.net).__module__.startswith("timm.")
    assert isinstance(bundle.model.net.get_classifier(), SoftMaxHead)
    assert bundle.model.net.conv1.in_channels == 1  # built with in_chans = the data's channels
    row = _score(run)["methods"][0]
    net = timm.create_model("resnet18", pretrained=False, num_classes=CLASSES, in_chans=1)
    net = replace_head(net, "softmax")
    expected = _test_accuracy_rebuilt_in_the_test(run, net, data["test1"])
    assert row["id_before"]["ACC"]["mean"] == pytest.approx(expected)


def test_an_interrupted_torchvision_run_resumes_to_the_same_checkpoint(
    data: dict[str, str], tmp_path: Path
) -> None:
    from dismax_cli.engine import TrainConfig, fit

    # 12 grey images a class (2 steps of 16 an epoch, not 7): resuming is about the state saved
    # between epochs, which a few steps of the 11.7 M-weight net exercise as fully.
    train = _npz(tmp_path / "train-small.npz", 12, channels=1, seed=1)
    test = _npz(tmp_path / "test-small.npz", 4, channels=1, seed=11)
    cfg = TrainConfig(
        dataset=f"npz:{train}", test_dataset=f"npz:{test}", model="torchvision:resnet18",
        method="isomax_plus", epochs=2, batch_size=16, device="cpu",
    )  # fmt: skip
    fit(cfg, tmp_path / "whole")
    fit(cfg, tmp_path / "split", stop_after_epoch=1)
    fit(cfg, tmp_path / "split", resume=True)
    whole = (tmp_path / "whole" / "checkpoint.pt").read_bytes()
    assert (tmp_path / "split" / "checkpoint.pt").read_bytes() == whole


def test_a_model_with_dropout_trains_reproducibly_resumes_exactly_and_spares_the_rng(
    tmp_path: Path,
) -> None:
    """Dropout draws from torch's global generator: seeded per (seed, epoch, rank) in ``fit``.

    Without that, two runs of one config differ and a resumed run leaves its uninterrupted
    twin; ``fit`` also gives the caller's global generator back as it found it.
    """
    import torch

    from dismax_cli.engine import TrainConfig, fit

    train = _npz(tmp_path / "train-small.npz", 12, channels=1, seed=1)
    test = _npz(tmp_path / "test-small.npz", 4, channels=1, seed=11)
    cfg = TrainConfig(
        dataset=f"npz:{train}", test_dataset=f"npz:{test}",
        model="torchvision:mobilenet_v3_small", method="isomax_plus", epochs=2, batch_size=16,
        device="cpu",
    )  # fmt: skip
    torch.manual_seed(123)
    state = torch.get_rng_state()
    fit(cfg, tmp_path / "whole")
    assert torch.equal(torch.get_rng_state(), state)
    fit(cfg, tmp_path / "again")
    fit(cfg, tmp_path / "split", stop_after_epoch=1)
    fit(cfg, tmp_path / "split", resume=True)
    whole = (tmp_path / "whole" / "checkpoint.pt").read_bytes()
    assert (tmp_path / "again" / "checkpoint.pt").read_bytes() == whole
    assert (tmp_path / "split" / "checkpoint.pt").read_bytes() == whole


def test_benchmark_with_a_torchvision_model(data: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    args = ["benchmark", "--dataset", data["train3"], "--test-dataset", data["test3"]]
    args += ["--ood", "uniform", "--model", "torchvision:mobilenet_v3_small", "--epochs", "1"]
    args += ["--methods", "softmax", "dismax", "--batch-size", "16", "--out", str(out), "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["config"]["model"] == "torchvision:mobilenet_v3_small"
    for row in report["methods"]:
        assert Path(row["runs"][0]).name.startswith(f"{row['method']}-torchvision-mobilenet")
    from dismax_cli.engine import load_bundle

    dismax_run = next(m for m in report["methods"] if m["method"] == "dismax")["runs"][0]
    assert isinstance(load_bundle(dismax_run).model.net.classifier[-1], DisMaxHead)


@pytest.mark.parametrize(
    ("model", "needles"),
    [
        ("torchvision:resnet1", ["torchvision", "'resnet1'", "list_models(module=m)", "resnet18"]),
        ("timm:no_such_net", ["timm", "'no_such_net'", "timm.list_models"]),
        ("torchvision:", ["torchvision:NAME", "timm:NAME"]),
        ("resnet", ["convnet", "torchvision:NAME", "timm:NAME"]),
    ],
)
def test_a_bad_model_name_is_a_usage_error_saying_how_to_find_names(
    data: dict[str, str], tmp_path: Path, model: str, needles: list[str]
) -> None:
    if model.startswith("timm:"):
        pytest.importorskip("timm")
    for command in ("train", "benchmark"):
        if command == "train":
            result = _train(data, tmp_path / "bad", model)
        else:
            args = ["benchmark", "--dataset", data["train3"], "--model", model, "--epochs", "1"]
            result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        text = " ".join(result.output.split())
        for needle in needles:
            assert needle in text, (needle, text)
        assert "internal error" not in text
    assert not (tmp_path / "bad").exists()


def test_timm_missing_names_the_install_command(
    data: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    result = _train(data, tmp_path / "r", "timm:resnet18")
    assert result.exit_code == 1, result.output
    assert 'pip install -e ".[timm]"' in " ".join(result.output.split())
    assert not (tmp_path / "r").exists()


def test_a_model_that_cannot_take_the_images_is_refused_before_training(
    data: dict[str, str], tmp_path: Path
) -> None:
    # ViT-B/16 needs 224×224 inputs; the data are 32×32.
    result = _train(data, tmp_path / "vit", "torchvision:vit_b_16")
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "'torchvision:vit_b_16' cannot take 32x32 images" in text
    assert "internal error" not in text and not (tmp_path / "vit").exists()
