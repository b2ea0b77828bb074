"""The training engine: recipe, resume (also after SIGKILL), checkpoints, calibration."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from dismax_cli.errors import DismaxError
from dismax_cli.training import (
    CHECKPOINT_NAME,
    LOG_NAME,
    TrainConfig,
    calibrate_bundle,
    calibrate_checkpoint,
    fit,
    load_bundle,
    load_checkpoint,
    load_run_data,
    predict_logits,
)

DIGITS = TrainConfig(dataset="digits", method="dismax", model="convnet", epochs=4, device="cpu")


def test_recipe_defaults_follow_method_md_section_6() -> None:
    cfg = TrainConfig()
    assert (cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size) == (0.1, 0.9, 1e-4, 64)
    assert TrainConfig(epochs=300).milestones() == [150, 200, 250]
    paper = TrainConfig(epochs=300)
    assert paper.lr_at(149) == 0.1
    assert paper.lr_at(150) == pytest.approx(0.01)
    assert paper.lr_at(200) == pytest.approx(0.001)
    assert paper.lr_at(299) == pytest.approx(0.0001)
    assert TrainConfig(method="dismax").uses_fpr and not TrainConfig(method="softmax").uses_fpr
    assert not TrainConfig(method="dismax", fpr=False).uses_fpr


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"method": "isomax"}, "unknown method 'isomax'"),
        ({"model": "vgg"}, "unknown model 'vgg'"),
        ({"epochs": 0}, "epochs=0"),
        ({"lr": -1.0}, "lr=-1.0"),
        ({"val_fraction": 1.5}, "val_fraction=1.5"),
        ({"method": "softmax", "fpr": True}, "dismax only"),
        ({"device": "tpu"}, "device 'tpu'"),
    ],
)
def test_invalid_settings_are_named(changes: dict, message: str) -> None:
    with pytest.raises(DismaxError, match=message):
        TrainConfig(**changes).validate()


def test_unknown_config_key_is_an_error() -> None:
    with pytest.raises(DismaxError, match="unknown training option"):
        TrainConfig.from_dict({"epoch": 3})


@pytest.fixture(scope="module")
def digits_data():
    return load_run_data(DIGITS)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["state_dict"]


def test_resume_after_epoch_2_is_bit_identical(tmp_path: Path, digits_data) -> None:
    full = fit(DIGITS, tmp_path / "full", data=digits_data)
    assert full.epochs_run == 4
    part = fit(DIGITS, tmp_path / "part", data=digits_data, stop_after_epoch=2)
    assert part.epochs_run == 2
    assert load_checkpoint(part.checkpoint)["finished"] is False
    resumed = fit(DIGITS, tmp_path / "part", resume=True, data=digits_data)
    assert resumed.epochs_run == 2
    assert (tmp_path / "full" / CHECKPOINT_NAME).read_bytes() == (
        tmp_path / "part" / CHECKPOINT_NAME
    ).read_bytes()
    # The log holds one line per epoch, 1..4, in both runs.
    lines = (tmp_path / "part" / LOG_NAME).read_text().splitlines()
    assert [int(line.split('"epoch": ')[1].split(",")[0]) for line in lines] == [1, 2, 3, 4]
    # The weights actually moved from their initialisation.
    first = fit(DIGITS, tmp_path / "one", data=digits_data, stop_after_epoch=1)
    a, b = _weights(first.checkpoint), _weights(full.checkpoint)
    assert not torch.equal(a["head.prototypes"], b["head.prototypes"])


def test_resume_of_a_finished_run_does_nothing(tmp_path: Path, digits_data) -> None:
    cfg = TrainConfig(dataset="digits", method="softmax", epochs=1, device="cpu")
    fit(cfg, tmp_path / "r", data=digits_data)
    before = (tmp_path / "r" / CHECKPOINT_NAME).read_bytes()
    again = fit(cfg, tmp_path / "r", resume=True, data=digits_data)
    assert again.already_finished and again.epochs_run == 0
    assert (tmp_path / "r" / CHECKPOINT_NAME).read_bytes() == before


def test_existing_run_is_refused_without_resume(tmp_path: Path, digits_data) -> None:
    cfg = TrainConfig(dataset="digits", method="softmax", epochs=1, device="cpu")
    fit(cfg, tmp_path / "r", data=digits_data)
    before = (tmp_path / "r" / CHECKPOINT_NAME).read_bytes()
    with pytest.raises(DismaxError, match="--resume"):
        fit(cfg, tmp_path / "r", data=digits_data)
    with pytest.raises(DismaxError, match="belongs to another run: method='softmax'"):
        fit(
            TrainConfig(dataset="digits", method="dismax", epochs=1),
            tmp_path / "r",
            resume=True,
            data=digits_data,
        )
    assert (tmp_path / "r" / CHECKPOINT_NAME).read_bytes() == before


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    from dismax_cli.training import TrainConfig, fit
    cfg = TrainConfig(dataset="digits", method="dismax", model="convnet", epochs=4, device="cpu")
    def progress(p):
        if p.epoch_done:
            print("epoch", p.epoch, flush=True)
    fit(cfg, sys.argv[1], resume=True, progress=progress)
    """
)


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path: Path, digits_data) -> None:
    fit(DIGITS, tmp_path / "full", data=digits_data)
    run = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(run)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    # Wait until epoch 2 is done, then kill during epoch 3 (batches take milliseconds).
    for line in proc.stdout:
        if line.strip() == "epoch 2":
            break
    time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    state = load_checkpoint(run)
    assert 2 <= state["epoch"] <= 4
    fit(DIGITS, run, resume=True, data=digits_data)
    assert (tmp_path / "full" / CHECKPOINT_NAME).read_bytes() == (
        run / CHECKPOINT_NAME
    ).read_bytes()


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, digits_data
) -> None:
    cfg = TrainConfig(dataset="digits", method="softmax", epochs=3, device="cpu")
    fit(cfg, tmp_path / "r", data=digits_data, stop_after_epoch=1)
    good = (tmp_path / "r" / CHECKPOINT_NAME).read_bytes()
    bad = TrainConfig(dataset="digits", method="softmax", epochs=3, device="cpu", lr=1e30)
    with pytest.raises(DismaxError, match="no epoch finished, so no checkpoint was written"):
        fit(bad, tmp_path / "s", data=digits_data)
    # A fresh run that diverges at once leaves nothing behind; the good run is untouched.
    assert not (tmp_path / "s").exists()
    assert (tmp_path / "r" / CHECKPOINT_NAME).read_bytes() == good


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits_data) -> Path:
    run = tmp_path_factory.mktemp("runs") / "dismax"
    fit(
        TrainConfig(dataset="digits", method="dismax", epochs=2, device="cpu"),
        run,
        data=digits_data,
    )
    return run


def test_bad_checkpoints_give_one_clear_error(tmp_path: Path, trained: Path) -> None:
    good = (trained / CHECKPOINT_NAME).read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good[: len(good) // 2])
    corrupted = tmp_path / "corrupted.pt"
    corrupted.write_bytes(good[:100] + bytes(200) + good[300:])
    other = tmp_path / "tensor.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    for path, message in (
        (truncated, "not a readable dismax checkpoint"),
        (corrupted, "not a readable dismax checkpoint"),
        (other, "is not a dismax checkpoint"),
        (text, "not a readable dismax checkpoint"),
        (tmp_path / "missing.pt", "does not exist"),
    ):
        with pytest.raises(DismaxError, match=message) as info:
            load_checkpoint(path)
        assert "\n" not in str(info.value)
    assert (trained / CHECKPOINT_NAME).read_bytes() == good


def test_checkpoint_with_other_class_count_is_refused(tmp_path: Path, trained: Path) -> None:
    payload = load_checkpoint(trained)
    payload["num_classes"] = 7
    payload["classes"] = [str(c) for c in range(7)]
    edited = tmp_path / "edited.pt"
    torch.save(payload, edited)
    with pytest.raises(DismaxError, match="do not fit a dismax convnet with 7 classes"):
        load_bundle(edited)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p.pop("method"), "no 'method'"),
        (lambda p: p.pop("config"), "no 'config'"),
        (lambda p: p.update(num_classes="three"), "num_classes='three'"),
        (lambda p: p.update(split=None), "split=None"),
        (lambda p: p.update(method="isomax"), "method='isomax'"),
        (lambda p: p["state_dict"]["head.temperature"].fill_(-1.0), "temperature=-1.0"),
        (lambda p: p["transform"].update(image_size=32), "transform does not match"),
        (lambda p: p["config"].update(lr="fast"), "config: training option lr='fast'"),
    ],
)
def test_damaged_checkpoint_metadata_is_one_clear_error(
    tmp_path: Path, trained: Path, edit, message: str
) -> None:
    payload = load_checkpoint(trained)
    edit(payload)
    edited = tmp_path / "edited.pt"
    torch.save(payload, edited)
    with pytest.raises(DismaxError, match="damaged metadata") as info:
        load_checkpoint(edited)
    assert message in str(info.value)


def test_calibrating_an_unfinished_run_is_refused_and_resume_trains_at_t1(
    tmp_path: Path, digits_data
) -> None:
    cfg = TrainConfig(dataset="digits", method="dismax", epochs=3, device="cpu")
    fit(cfg, tmp_path / "full", data=digits_data)
    fit(cfg, tmp_path / "half", data=digits_data, stop_after_epoch=1)
    with pytest.raises(DismaxError, match="unfinished run"):
        calibrate_checkpoint(tmp_path / "half")
    # Even a temperature written into an unfinished checkpoint does not leak into training.
    payload = load_checkpoint(tmp_path / "half")
    payload["state_dict"]["head.temperature"].fill_(0.05)
    torch.save(payload, tmp_path / "half" / CHECKPOINT_NAME)
    fit(cfg, tmp_path / "half", resume=True, data=digits_data)
    full, half = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "half")
    for key, value in full["state_dict"].items():
        assert torch.equal(value, half["state_dict"][key]), key


def test_resume_refuses_changed_training_data(tmp_path: Path, digits_data) -> None:
    import dataclasses

    cfg = TrainConfig(dataset="digits", method="softmax", epochs=2, device="cpu")
    fit(cfg, tmp_path / "r", data=digits_data, stop_after_epoch=1)
    flipped = dataclasses.replace(
        digits_data.train, images=(255 - digits_data.train.images).contiguous()
    )
    changed = dataclasses.replace(digits_data, train=flipped)
    with pytest.raises(DismaxError, match="train images differ"):
        fit(cfg, tmp_path / "r", resume=True, data=changed)


def test_checkpoint_carries_what_is_needed(trained: Path) -> None:
    meta = load_checkpoint(trained)
    for key in (
        "method",
        "model",
        "classes",
        "image_size",
        "channels",
        "mean",
        "std",
        "dataset",
        "split",
        "split_seed",
        "config",
        "tool_version",
        "transform",
    ):
        assert key in meta, key
    assert meta["method"] == "dismax" and meta["num_classes"] == 10
    assert meta["image_size"] == 8 and meta["channels"] == 1
    assert float(meta["state_dict"]["head.temperature"]) == 1.0


def test_calibration_keeps_predictions_and_model_state(trained: Path, digits_data) -> None:
    bundle = load_bundle(trained)
    state = {k: v.clone() for k, v in bundle.model.state_dict().items()}
    before = predict_logits(bundle, digits_data.test.images)
    result = calibrate_bundle(bundle, digits_data.val)
    after = predict_logits(bundle, digits_data.test.images)
    assert torch.equal(before.argmax(1), after.argmax(1))
    assert result.temperature == pytest.approx(float(bundle.model.head.temperature))
    assert torch.allclose(after, before / result.temperature, rtol=1e-5, atol=1e-6)
    for key, value in bundle.model.state_dict().items():
        if key != "head.temperature":
            assert torch.equal(value, state[key]), key  # BatchNorm statistics included
    assert result.ece_after <= result.ece_before


def test_calibrate_checkpoint_stores_the_temperature(tmp_path: Path, trained: Path) -> None:
    run = tmp_path / "copy"
    run.mkdir()
    (run / CHECKPOINT_NAME).write_bytes((trained / CHECKPOINT_NAME).read_bytes())
    result = calibrate_checkpoint(run)
    stored = load_checkpoint(run)
    assert float(stored["state_dict"]["head.temperature"]) == pytest.approx(result.temperature)
    assert stored["calibration"]["temperature"] == pytest.approx(result.temperature)
    assert float(load_bundle(run).model.head.temperature) == pytest.approx(result.temperature)
    with pytest.raises(DismaxError, match="objective 'mse'"):
        calibrate_checkpoint(run, objective="mse")


def test_scoring_does_not_depend_on_batch_size_or_mutate_the_model(
    trained: Path, digits_data
) -> None:
    bundle = load_bundle(trained)
    bundle.model.train()  # predict_logits must switch to eval and back
    state = {k: v.clone() for k, v in bundle.model.state_dict().items()}
    images = digits_data.test.images
    outs = [predict_logits(bundle, images, batch_size=b) for b in (1, 7, 256)]
    assert torch.allclose(outs[0], outs[1], rtol=0, atol=1e-5)
    assert torch.allclose(outs[0], outs[2], rtol=0, atol=1e-5)
    # Equal to float32 rounding (BLAS blocking differs with the batch size); predictions equal.
    assert torch.equal(outs[0].argmax(1), outs[1].argmax(1))
    assert torch.equal(outs[0].argmax(1), outs[2].argmax(1))
    assert bundle.model.training
    for key, value in bundle.model.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run with -m gpu)")
def test_cuda_training_bf16_channels_last_and_scoring(tmp_path: Path, digits_data) -> None:
    cfg = TrainConfig(dataset="digits", method="dismax", epochs=2, device="cuda")
    result = fit(cfg, tmp_path / "gpu", data=digits_data)
    assert result.epochs_run == 2
    bundle = load_bundle(tmp_path / "gpu", device="cuda")
    logits = predict_logits(bundle, digits_data.test.images)
    assert logits.shape == (len(digits_data.test), 10) and torch.isfinite(logits).all()
    cpu = predict_logits(load_bundle(tmp_path / "gpu", device="cpu"), digits_data.test.images)
    assert (cpu.argmax(1) == logits.argmax(1)).float().mean() > 0.95  # bf16 vs fp32


def test_calibration_without_a_finite_optimum_keeps_the_training_temperature() -> None:
    from dismax_cli.training import fit_temperature_noted, training_temperature

    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    assert training_temperature("dismax", 10.0) == pytest.approx(0.1)
    assert training_temperature("softmax", 10.0) == 1.0
    t, note = fit_temperature_noted(logits, torch.tensor([0, 1]), objective="ece", fallback=0.1)
    assert t == 0.1 and "every validation prediction is correct" in note and "T = 0.001" in note
    t, note = fit_temperature_noted(logits, torch.tensor([1, 0]), objective="nll", fallback=1.0)
    assert t == 1.0 and "every validation prediction is wrong" in note and "T = 100" in note
    # A split with a finite optimum is fitted as usual: T = 2 / ln 3 (issue 3's case).
    t, note = fit_temperature_noted(
        torch.tensor([[2.0, 0.0]] * 4), torch.tensor([0, 0, 0, 1]), objective="nll", fallback=1.0
    )
    assert note is None and t == pytest.approx(1.820478, abs=1e-4)
