"""The training engine: recipe, resume (also after SIGKILL), checkpoints, calibration."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from dismax_cli.engine import (
    CHECKPOINT_NAME,
    LOG_NAME,
    TrainConfig,
    calibrate_bundle,
    calibrate_checkpoint,
    fit,
    load_bundle,
    load_checkpoint,
    load_payload,
    load_run_data,
    predict_images,
)
from dismax_cli.errors import DismaxError

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
    return load_checkpoint(path).state_dict


@pytest.fixture(scope="module")
def full_digits_run(tmp_path_factory, digits_data) -> Path:
    """DIGITS trained uninterrupted, once for the module: the reference of the resume tests
    (they read its checkpoint, never write it)."""
    run = tmp_path_factory.mktemp("full") / "full"
    assert fit(DIGITS, run, data=digits_data).epochs_run == 4
    return run


def test_resume_after_epoch_2_is_bit_identical(
    tmp_path: Path, digits_data, full_digits_run: Path
) -> None:
    part = fit(DIGITS, tmp_path / "part", data=digits_data, stop_after_epoch=2)
    assert part.epochs_run == 2
    assert load_checkpoint(part.checkpoint).meta.finished is False
    after_2 = _weights(part.checkpoint)
    resumed = fit(DIGITS, tmp_path / "part", resume=True, data=digits_data)
    assert resumed.epochs_run == 2
    assert (full_digits_run / CHECKPOINT_NAME).read_bytes() == (
        tmp_path / "part" / CHECKPOINT_NAME
    ).read_bytes()
    # The log holds one line per epoch, 1..4, in both runs.
    lines = (tmp_path / "part" / LOG_NAME).read_text().splitlines()
    assert [int(line.split('"epoch": ')[1].split(",")[0]) for line in lines] == [1, 2, 3, 4]
    # The weights actually moved: epochs 3 and 4 changed the epoch-2 weights.
    b = _weights(full_digits_run / CHECKPOINT_NAME)
    assert not torch.equal(after_2["head.prototypes"], b["head.prototypes"])


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
    from dismax_cli.engine import TrainConfig, fit
    cfg = TrainConfig(dataset="digits", method="dismax", model="convnet", epochs=4, device="cpu")
    def progress(p):
        if p.epoch_done:
            print("epoch", p.epoch, flush=True)
    fit(cfg, sys.argv[1], resume=True, progress=progress)
    """
)


def test_sigkill_mid_epoch_then_resume_is_bit_identical(
    tmp_path: Path, digits_data, full_digits_run: Path
) -> None:
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
    assert 2 <= state.meta.epoch <= 4
    fit(DIGITS, run, resume=True, data=digits_data)
    assert (full_digits_run / CHECKPOINT_NAME).read_bytes() == (run / CHECKPOINT_NAME).read_bytes()


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
    payload = load_payload(trained)
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
        (lambda p: p.update(split=None), "split=null"),
        (lambda p: p.update(method="isomax"), "method='isomax'"),
        (lambda p: p.update(temperature=-1.0), "temperature=-1.0"),
        (lambda p: p.update(temperature=float("nan")), "temperature=.nan"),
        (lambda p: p.pop("temperature"), "no 'temperature'"),
        (lambda p: p["transform"].update(image_size=32), "transform does not match"),
        (lambda p: p["config"].update(lr="fast"), "config: training option lr='fast'"),
    ],
)
def test_damaged_checkpoint_metadata_is_one_clear_error(
    tmp_path: Path, trained: Path, edit, message: str
) -> None:
    payload = load_payload(trained)
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
    payload = load_payload(tmp_path / "half")
    payload["temperature"] = 0.05
    torch.save(payload, tmp_path / "half" / CHECKPOINT_NAME)
    fit(cfg, tmp_path / "half", resume=True, data=digits_data)
    full, half = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "half")
    assert half.meta.temperature == 1.0
    for key, value in full.state_dict.items():
        assert torch.equal(value, half.state_dict[key]), key


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
    meta = load_payload(trained)
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
        "temperature",
    ):
        assert key in meta, key
    assert meta["method"] == "dismax" and meta["num_classes"] == 10
    assert meta["image_size"] == 8 and meta["channels"] == 1
    # The temperature lives in the metadata, not in the weights (heads return raw logits).
    assert meta["temperature"] == 1.0 and meta["format_version"] == 2
    assert not any("temperature" in key for key in meta["state_dict"])


def test_calibration_keeps_predictions_and_model_state(trained: Path, digits_data) -> None:
    bundle = load_bundle(trained)
    state = {k: v.clone() for k, v in bundle.model.state_dict().items()}
    before = predict_images(bundle, digits_data.test.images)
    result = calibrate_bundle(bundle, digits_data.val)
    after = predict_images(bundle, digits_data.test.images)
    # Logits stay raw (T = 1, METHOD.md §3); the fitted T is recorded with the run.
    assert torch.equal(before, after)
    assert result.temperature != 1.0
    assert bundle.temperature == result.temperature == bundle.meta.temperature
    assert bundle.meta.calibration["temperature"] == result.temperature
    for key, value in bundle.model.state_dict().items():
        assert torch.equal(value, state[key]), key  # BatchNorm statistics included
    assert result.ece_after <= result.ece_before


def test_calibrate_checkpoint_stores_the_temperature(tmp_path: Path, trained: Path) -> None:
    run = tmp_path / "copy"
    run.mkdir()
    (run / CHECKPOINT_NAME).write_bytes((trained / CHECKPOINT_NAME).read_bytes())
    result = calibrate_checkpoint(run)
    stored = load_checkpoint(run)
    assert stored.meta.temperature == result.temperature != 1.0
    assert stored.meta.calibration["temperature"] == result.temperature
    assert load_bundle(run).temperature == result.temperature
    original = load_checkpoint(trained)
    assert original.meta.temperature == 1.0
    for key, value in original.state_dict.items():  # the weights are not touched
        assert torch.equal(value, stored.state_dict[key]), key
    with pytest.raises(DismaxError, match="objective 'mse'"):
        calibrate_checkpoint(run, objective="mse")


def test_scoring_does_not_depend_on_batch_size_or_mutate_the_model(
    trained: Path, digits_data
) -> None:
    bundle = load_bundle(trained)
    bundle.model.train()  # predict_images must switch to eval and back
    state = {k: v.clone() for k, v in bundle.model.state_dict().items()}
    images = digits_data.test.images
    outs = [predict_images(bundle, images, batch_size=b) for b in (1, 7, 256)]
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
    logits = predict_images(bundle, digits_data.test.images)
    assert logits.shape == (len(digits_data.test), 10) and torch.isfinite(logits).all()
    cpu = predict_images(load_bundle(tmp_path / "gpu", device="cpu"), digits_data.test.images)
    assert (cpu.argmax(1) == logits.argmax(1)).float().mean() > 0.95  # bf16 vs fp32


def test_calibration_without_a_finite_optimum_keeps_the_training_temperature_or_the_upper_bound(
) -> None:
    from dismax_cli.engine import fit_temperature_noted, training_temperature

    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    assert training_temperature("dismax", 10.0) == pytest.approx(0.1)
    assert training_temperature("softmax", 10.0) == 1.0
    t, note = fit_temperature_noted(logits, torch.tensor([0, 1]), objective="ece", fallback=0.1)
    assert t == 0.1 and "every validation prediction is correct" in note and "T = 0.001" in note
    # At the upper bound the bound is kept (METHOD.md §4), not the sharper training T.
    t, note = fit_temperature_noted(logits, torch.tensor([1, 0]), objective="nll", fallback=0.1)
    assert t == 100.0 and "every validation prediction is wrong" in note and "T = 100" in note
    assert note.endswith("so that bound is kept (probabilities near uniform)")
    # A split with a finite optimum is fitted as usual: T = 2 / ln 3 (issue 3's case).
    t, note = fit_temperature_noted(
        torch.tensor([[2.0, 0.0]] * 4), torch.tensor([0, 0, 0, 1]), objective="nll", fallback=1.0
    )
    assert note is None and t == pytest.approx(1.820478, abs=1e-4)


# --------------------------------------------------------------------------- batches of one


@pytest.mark.parametrize("batch_size", [2, 3, 7, 41, 64, 100])
def test_no_training_batch_holds_fewer_than_two_images(batch_size: int) -> None:
    """Every batch has 2 <= b <= batch_size + 1 images and the epoch covers each image once."""
    from dismax_cli.engine.loop import iterate_batches

    for n in range(2, 300):
        batches = list(iterate_batches(n, batch_size, torch.Generator().manual_seed(n)))
        sizes = [len(b) for b in batches]
        assert min(sizes) >= 2, (n, sizes)
        assert max(sizes) <= batch_size + 1, (n, sizes)
        assert sorted(torch.cat(batches).tolist()) == list(range(n))
        # Full batches stay full; only a one-image remainder changes the partition.
        full = n // batch_size
        if n % batch_size != 1 or full == 0:
            assert sizes[:full] == [batch_size] * full
        else:
            assert sizes == [batch_size] * (full - 1) + [batch_size + 1]


def test_batch_size_one_and_a_one_image_training_split_are_clear_errors(
    tmp_path: Path, digits_data
) -> None:
    import dataclasses as dc

    with pytest.raises(DismaxError, match=r"batch_size=1 is invalid.*at least 2"):
        TrainConfig(batch_size=1).validate()
    one = dc.replace(digits_data, train=digits_data.train.subset([0], split="train"))
    with pytest.raises(DismaxError, match=r"holds 1 image\(s\).*at least 2"):
        fit(DIGITS, tmp_path / "run", data=one)
    assert not (tmp_path / "run").exists()


def test_resnet18_trains_with_a_one_image_remainder_through_the_cli(tmp_path: Path) -> None:
    """The reported crash: 780 training images, batch 41 -> a last batch of 1 (BatchNorm)."""
    from typer.testing import CliRunner

    from dismax_cli.cli.app import app

    out = tmp_path / "run"
    env = {"DISMAX_DATA_DIR": str(tmp_path / "data"), "DISMAX_OFFLINE": "1"}
    args = ["train", "--dataset", "digits[0-5]", "--model", "resnet18", "--batch-size", "41"]
    result = CliRunner().invoke(
        app, [*args, "--epochs", "1", "--device", "cpu", "--out", str(out)], env=env
    )
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    log = [json.loads(line) for line in (out / LOG_NAME).read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1]
    assert log[0]["lr"] == 0.1  # the only epoch runs at --lr (item: milestones)
    refused = CliRunner().invoke(app, [*args[:-1], "1", "--out", str(tmp_path / "one")], env=env)
    # An invalid option value: a usage error (exit 2) naming the option and the rule.
    assert refused.exit_code == 2 and "--batch-size" in refused.output
    assert "at least 2" in refused.output
    assert "Traceback" not in refused.output and not (tmp_path / "one").exists()
    # Eval mode (scoring, calibration) is fine with one image: same logits as in a batch.
    bundle = load_bundle(out)
    images = load_run_data(TrainConfig(dataset="digits[0-5]")).test.images[:5]
    batched = predict_images(bundle, images)
    single = torch.cat([predict_images(bundle, images[i : i + 1], batch_size=1) for i in range(5)])
    assert torch.allclose(single, batched, atol=1e-5)


def test_the_benchmark_refuses_batch_size_one_before_training() -> None:
    from dismax_cli.benchmark import BenchmarkConfig

    with pytest.raises(DismaxError, match=r"batch_size=1 is invalid"):
        BenchmarkConfig(batch_size=1).validate()


def test_resume_with_a_folded_remainder_is_byte_identical(tmp_path: Path, digits_data) -> None:
    n = len(digits_data.train)
    batch_size = next(b for b in range(64, n) if n % b == 1)
    config = TrainConfig(
        dataset="digits", method="dismax", epochs=2, device="cpu", batch_size=batch_size
    )
    fit(config, tmp_path / "full", data=digits_data)
    fit(config, tmp_path / "part", data=digits_data, stop_after_epoch=1)
    fit(config, tmp_path / "part", data=digits_data, resume=True)
    full = (tmp_path / "full" / CHECKPOINT_NAME).read_bytes()
    assert (tmp_path / "part" / CHECKPOINT_NAME).read_bytes() == full


# --------------------------------------------------------------------------- lr milestones


def test_milestones_are_distinct_epochs_after_the_first_for_every_epoch_count() -> None:
    """METHOD.md §6: decays at 1/2, 2/3, 5/6 of the epochs; never on epoch 0, never stacked."""
    for epochs in range(1, 401):
        cfg = TrainConfig(epochs=epochs, lr=0.1, lr_decay=0.1)
        ms = cfg.milestones()
        assert ms == sorted(set(ms)), (epochs, ms)
        assert all(1 <= m <= epochs - 1 for m in ms), (epochs, ms)
        assert len(ms) == min(3, epochs - 1), (epochs, ms)
        assert cfg.lr_at(0) == 0.1
        rates = [cfg.lr_at(e) for e in range(epochs)]
        # Each decay is one factor of lr_decay between two consecutive epochs.
        for a, b in zip(rates, rates[1:], strict=False):
            assert b == a or b == pytest.approx(a * 0.1), (epochs, rates)
        assert rates[-1] == pytest.approx(0.1 * 0.1 ** len(ms))
        if epochs >= 12:  # long enough for every rounded fraction to be its own epoch
            for m, f in zip(ms, (1 / 2, 2 / 3, 5 / 6), strict=True):
                assert abs(m - f * epochs) <= 0.5, (epochs, ms)


def test_milestones_of_the_paper_and_of_short_runs() -> None:
    assert TrainConfig(epochs=300).milestones() == [150, 200, 250]
    assert TrainConfig(epochs=60).milestones() == [30, 40, 50]  # 50 / 67 / 83 % (§6)
    assert TrainConfig(epochs=1).milestones() == []
    assert TrainConfig(epochs=2).milestones() == [1]
    assert TrainConfig(epochs=4).milestones() == [1, 2, 3]
    assert TrainConfig(epochs=1).lr_at(0) == TrainConfig().lr


# --------------------------------------------------------------------------- no float64 on device


def test_loss_meter_keeps_no_float64_on_the_device() -> None:
    """MPS has no float64: the accumulator's device tensor is float32 on any device."""
    from dismax_cli.engine.loop import LossMeter

    meta = LossMeter(3, torch.device("meta"))
    meta.add(torch.zeros((), device="meta"), 5)
    assert meta.losses.device.type == "meta" and meta.losses.dtype == torch.float32
    meter = LossMeter(3, torch.device("cpu"))
    for loss, n in ((0.25, 4), (0.5, 4), (1.0, 3)):
        meter.add(torch.tensor(loss), n)
    assert meter.total() == 0.25 * 4 + 0.5 * 4 + 1.0 * 3
    meter = LossMeter(2, torch.device("cpu"))
    meter.add(torch.tensor(float("nan")), 2)
    assert not math.isfinite(meter.total())


@pytest.mark.parametrize("method", ["softmax", "dismax"])
def test_the_training_loop_creates_no_float64_tensor(
    method: str, tmp_path: Path, digits_data, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spy on every tensor op from the first epoch to the end of ``fit`` (on the CPU)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    import dismax_cli.engine.run as training

    class Float64Spy(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: set[str] = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor) and t.dtype == torch.float64:
                    self.ops.add(str(func))
            return out

    spy = Float64Spy()
    original = training.epoch_generator
    started: list[bool] = []

    def start_spying(seed: int, epoch: int) -> torch.Generator:
        if not started:
            spy.__enter__()
            started.append(True)
        return original(seed, epoch)

    monkeypatch.setattr(training, "epoch_generator", start_spying)
    config = TrainConfig(dataset="digits", method=method, epochs=2, device="cpu")
    try:
        result = fit(config, tmp_path / "run", data=digits_data)
    finally:
        if started:
            spy.__exit__(None, None, None)
    assert started and result.epochs_run == 2
    assert math.isfinite(result.history[-1].loss) and result.history[-1].loss > 0
    assert spy.ops == set()


def test_calibration_nll_comes_from_logits_not_clamped_probabilities(
    trained: Path, digits_data, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 9 item 15: a target whose probability underflows costs its full NLL (here 1000)."""
    import dismax_cli.engine.calibrate as training

    n = len(digits_data.val)
    classes = digits_data.val.num_classes
    logits = torch.zeros(n, classes)
    logits[:, 0] = 8.0  # confident class 0 ...
    targets = digits_data.val.labels
    wrong = int((targets != 0).nonzero()[0])
    logits[wrong] = 0.0
    logits[wrong, int(targets[wrong])] = -1000.0  # ... and one target at -1000 below the rest
    monkeypatch.setattr(training, "predict_images", lambda *a, **k: logits.clone())
    result = calibrate_bundle(load_bundle(trained), digits_data.val)
    # Reference in float64, written out: NLL_n = logsumexp(z_n) - z_{n, y_n}.
    z = logits.double()
    per_sample = torch.logsumexp(z, 1) - z[torch.arange(n), targets]
    assert per_sample[wrong] == pytest.approx(1000.0 + math.log(classes - 1), abs=1e-9)
    assert result.nll_before == pytest.approx(float(per_sample.mean()), rel=1e-12)
    zt = z / result.temperature
    after = (torch.logsumexp(zt, 1) - zt[torch.arange(n), targets]).mean()
    assert result.nll_after == pytest.approx(float(after), rel=1e-12)
