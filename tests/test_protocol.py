"""The paper protocol, best-val selection and the calibration optimiser (issue 14 items 1-3).

METHOD.md §4 (calibration on the validation split by default; the reference fits T on the ID
test set with bounded L-BFGS-B) and §6 (the reference keeps the best test-accuracy epoch; dismax
keeps the last one, or the best on the validation split when asked).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from typer.testing import CliRunner

from dismax_cli.cli.app import app
from dismax_cli.core.calibration import fit_temperature
from dismax_cli.data import load_id_splits
from dismax_cli.engine import TrainConfig, calibrate_checkpoint, fit, load_bundle, load_checkpoint
from dismax_cli.engine import selection as selection_module
from dismax_cli.engine import streaming as streaming_module
from dismax_cli.engine.data import load_run_data
from dismax_cli.engine.predict import predict_images
from dismax_cli.errors import DismaxError

runner = CliRunner()
PAPER = TrainConfig(method="softmax", epochs=1, protocol="paper", device="cpu")
HONEST = TrainConfig(method="softmax", epochs=1, device="cpu")


def _ece15(logits: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    """15-bin ECE of softmax(logits / T), written out in float64 (METHOD.md §5)."""
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    conf, correct = p.max(axis=1), p.argmax(axis=1) == targets
    bins = np.clip(np.ceil(conf * 15).astype(int) - 1, 0, 14)
    total = 0.0
    for b in range(15):
        members = bins == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - conf[members].mean())
    return float(total)


def _reference_lbfgsb(logits: np.ndarray, targets: np.ndarray) -> float:
    """The reference's optimiser: L-BFGS-B from T = 1, bounds [0.001, 100] (METHOD.md §4)."""
    result = minimize(
        lambda t: _ece15(logits, targets, float(t[0])),
        x0=np.array([1.0]),
        method="L-BFGS-B",
        bounds=[(0.001, 100.0)],
    )
    return float(result.x[0])


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("paper") / "run"
    fit(PAPER, run)
    return run


@pytest.fixture(scope="module")
def honest_trained(tmp_path_factory) -> Path:
    """A 1-epoch honest SoftMax run, trained once; tests take a copy (:func:`honest_copy`)."""
    run = tmp_path_factory.mktemp("honest") / "run"
    fit(HONEST, run)
    return run


def honest_copy(honest_trained: Path, to: Path) -> Path:
    """A fresh copy of the module's honest run (calibrating writes into the checkpoint)."""
    shutil.copytree(honest_trained, to)
    return to


def test_paper_protocol_trains_on_every_training_image(tmp_path: Path, monkeypatch) -> None:
    train_full, test = load_id_splits("digits[0-5]")
    seen: list[int] = []
    real = streaming_module.InMemoryBatches

    def counting(images, labels, **kwargs):
        seen.append(len(images))
        return real(images, labels, **kwargs)

    monkeypatch.setattr(streaming_module, "InMemoryBatches", counting)
    fit(PAPER, tmp_path / "paper")
    fit(TrainConfig(method="softmax", epochs=1, device="cpu"), tmp_path / "honest")
    n = len(train_full)
    assert seen == [n, n - round(0.1 * n)]  # every image; honest holds 10 % out
    meta = load_checkpoint(tmp_path / "paper").meta
    assert meta.split["n_train"] == n and meta.split["n_val"] == 0
    assert meta.data_sha256 is not None
    assert meta.data_sha256["train"] == train_full.pixels_sha256()


def test_paper_protocol_calibrates_on_the_test_split_with_lbfgsb(paper_run: Path) -> None:
    result = calibrate_checkpoint(paper_run)
    _, test = load_id_splits("digits[0-5]")
    assert (result.split, result.optimizer, result.n_val) == ("test", "lbfgsb", len(test))
    logits = predict_images(load_bundle(paper_run), test.images).double().numpy()
    expected = _reference_lbfgsb(logits, test.labels.numpy())
    # The ECE is piecewise in T: the numerical gradients stop within a hair of each other.
    assert result.temperature == pytest.approx(expected, rel=1e-3)
    grid = fit_temperature(logits, test.labels.numpy(), optimizer="grid")
    assert abs(grid - expected) > 1e-2  # the grid search lands elsewhere: it was not used
    stored = load_checkpoint(paper_run).meta
    assert stored.calibration["split"] == "test" and stored.temperature == result.temperature


def test_paper_protocol_keeps_the_best_test_accuracy_epoch(tmp_path: Path, monkeypatch) -> None:
    """Scripted accuracies 0.5, 0.9, 0.7: epoch 2's weights are the ones the run keeps."""
    script = iter([0.5, 0.9, 0.7])
    measured: list[int] = []

    def scripted(model, transform, images, *, device):
        measured.append(len(images))
        return next(script)

    monkeypatch.setattr(selection_module, "split_accuracy", scripted)
    config = TrainConfig(method="softmax", epochs=3, protocol="paper", device="cpu")
    fit(config, tmp_path / "paper")
    _, test = load_id_splits("digits[0-5]")
    assert measured == [len(test)] * 3  # the ID test split, after every epoch
    monkeypatch.undo()
    fit(TrainConfig(method="softmax", epochs=3, device="cpu", protocol="paper", select="last"),
        tmp_path / "epoch2", stop_after_epoch=2)  # fmt: skip
    kept = load_checkpoint(tmp_path / "paper")
    epoch2 = load_checkpoint(tmp_path / "epoch2")
    assert kept.meta.selection["epoch"] == 2 and kept.meta.selection["accuracies"] == [
        0.5, 0.9, 0.7
    ]  # fmt: skip
    for key, value in epoch2.state_dict.items():
        assert torch.equal(kept.state_dict[key], value), key


def test_best_val_selection_measures_the_validation_split(tmp_path: Path) -> None:
    config = TrainConfig(method="softmax", epochs=3, select="best-val", device="cpu")
    fit(config, tmp_path / "run")
    meta = load_checkpoint(tmp_path / "run").meta
    data = load_run_data(config)
    accuracies = meta.selection["accuracies"]
    assert meta.selection["split"] == "val" and len(accuracies) == 3
    assert meta.selection["epoch"] == int(np.argmax(accuracies)) + 1
    # The stored weights are the kept epoch's: their validation accuracy is the recorded one.
    logits = predict_images(load_bundle(tmp_path / "run"), data.val.images)
    assert float((logits.argmax(1) == data.val.labels).double().mean()) == pytest.approx(
        meta.selection["accuracy"], abs=1e-12
    )


def test_new_fields_at_their_defaults_keep_the_run_key() -> None:
    """Run folders trained before --protocol/--select existed are still reused (same key)."""
    keys = {
        "dataset", "test_dataset", "method", "model", "epochs", "batch_size", "lr", "momentum",
        "weight_decay", "lr_decay", "entropic_scale", "alpha", "fpr", "augment", "seed",
        "val_fraction", "split_seed",
    }  # fmt: skip
    assert set(TrainConfig().identity()) == keys
    assert TrainConfig(select="last").identity() == TrainConfig().identity()
    assert TrainConfig(select="best-val").identity()["select"] == "best-val"
    paper = TrainConfig(protocol="paper").identity()
    assert paper["protocol"] == "paper" and "val_fraction" not in paper


def test_honest_default_still_refuses_overlap(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 255, (40, 8, 8, 1), dtype=np.uint8)
    labels = np.arange(40) % 2
    path = tmp_path / "set.npz"
    np.savez(path, x=images, y=labels)
    for protocol in ("honest", "paper"):
        config = TrainConfig(
            dataset=f"npz:{path}", test_dataset=f"npz:{path}", protocol=protocol, device="cpu"
        )
        with pytest.raises(DismaxError, match="overlap|share|same"):
            load_run_data(config)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--val-fraction", "0"], "val_fraction=0 is refused under --protocol honest"),
        (["--val-fraction", "-0.1"], "'-0.1' is not a fraction in [0, 1)"),
        (["--val-fraction", "1"], "'1' is not a fraction in [0, 1)"),
        (["--protocol", "reference"], "'reference' is not one of honest, paper"),
        (["--select", "best-test"], "'best-test' is not one of last, best-val"),
        (["--protocol", "paper", "--select", "best-val"], "needs a validation split"),
    ],
)
def test_bad_protocol_values_exit_2_with_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--epochs", "1", "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output and not out.exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("val_fraction: 0\n", "val_fraction=0 is refused under --protocol honest"),
        ("protocol: reference\n", "'reference' is not one of honest, paper"),
        ("calibration_optimizer: adam\n", "'adam' is not one of grid, lbfgsb"),
        ("protocol: paper\nselect: best-val\n", "needs a validation split"),
    ],
)
def test_bad_yaml_values_exit_2(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bench.yaml"
    config.write_text(text)
    result = runner.invoke(app, ["benchmark", "--config", str(config), "--runs-dir",
                                 str(tmp_path / "runs")])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def test_calibrate_options(tmp_path: Path, paper_run: Path, honest_trained: Path) -> None:
    bad = runner.invoke(app, ["calibrate", str(paper_run), "--calibration-optimizer", "adam"])
    assert bad.exit_code == 2 and "'adam' is not one of grid, lbfgsb" in bad.output
    honest = runner.invoke(app, ["calibrate", str(paper_run), "--protocol", "honest"])
    assert honest.exit_code == 2 and "has no validation split" in honest.output
    # An honest run calibrated with the reference's optimiser on its validation split.
    run = honest_copy(honest_trained, tmp_path / "honest")
    result = runner.invoke(
        app, ["calibrate", str(run), "--calibration-optimizer", "lbfgsb", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    fitted = json.loads(result.stdout)
    data = load_run_data(TrainConfig(method="softmax", epochs=1, device="cpu"))
    logits = predict_images(load_bundle(run), data.val.images).double().numpy()
    assert (fitted["optimizer"], fitted["split"]) == ("lbfgsb", "val")
    assert fitted["temperature"] == pytest.approx(
        _reference_lbfgsb(logits, data.val.labels.numpy()), rel=1e-3
    )


def test_score_report_states_the_paper_protocol(tmp_path: Path, paper_run: Path) -> None:
    calibrate_checkpoint(paper_run)
    out = tmp_path / "score.json"
    result = runner.invoke(app, ["score", str(paper_run), "--ood", "digits[6-9]", "--out",
                                 str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    protocol = json.loads(out.read_text())["protocol"]
    assert protocol["name"] == "paper" and protocol["test_set_seen"] is True
    assert (protocol["calibration_split"], protocol["model_selection"]) == ("test", "best-test")
    assert protocol["training_split"] == "full"
    shown = runner.invoke(app, ["benchmark", "show", str(out)])
    assert "CALIBRATION AND MODEL SELECTION SAW THE TEST SET" in " ".join(shown.output.split())


def test_benchmark_protocol_field_and_loud_table_line(tmp_path: Path, one_timing_round) -> None:
    common = [
        "benchmark", "--epochs", "1", "--methods", "softmax", "dismax", "--ood", "digits[6-9]",
        "--runs-dir", str(tmp_path / "runs"), "--device", "cpu", "--quiet",
    ]  # fmt: skip
    reports = {}
    for protocol in ("honest", "paper"):
        out = tmp_path / f"{protocol}.json"
        result = runner.invoke(app, [*common, "--protocol", protocol, "--out", str(out)])
        assert result.exit_code == 0, result.output
        loud = "CALIBRATION AND MODEL SELECTION SAW THE TEST SET" in " ".join(result.stdout.split())
        assert loud is (protocol == "paper")
        reports[protocol] = json.loads(out.read_text())
    paper, honest = reports["paper"]["protocol"], reports["honest"]["protocol"]
    assert (paper["name"], paper["test_set_seen"], paper["calibration_optimizer"]) == (
        "paper", True, "lbfgsb"
    )  # fmt: skip
    assert (honest["name"], honest["test_set_seen"], honest["calibration_optimizer"]) == (
        "honest", False, "grid"
    )  # fmt: skip
    _, test = load_id_splits("digits[0-5]")
    roles = {d["role"]: d["n"] for d in reports["paper"]["datasets"]}
    assert "val" not in roles and roles["test"] == len(test)
    assert roles["train"] == len(load_id_splits("digits[0-5]")[0])
    shown = runner.invoke(app, ["benchmark", "show", str(tmp_path / "paper.json")])
    assert "CALIBRATION AND MODEL SELECTION SAW THE TEST SET" in " ".join(shown.output.split())


def test_best_val_run_resumed_ends_as_the_uninterrupted_one(tmp_path: Path) -> None:
    config = TrainConfig(method="softmax", epochs=3, select="best-val", device="cpu")
    fit(config, tmp_path / "whole")
    fit(config, tmp_path / "cut", stop_after_epoch=2)
    fit(config, tmp_path / "cut", resume=True)
    whole, cut = load_checkpoint(tmp_path / "whole"), load_checkpoint(tmp_path / "cut")
    assert cut.meta.selection == whole.meta.selection
    for key, value in whole.state_dict.items():
        assert torch.equal(cut.state_dict[key], value), key


def test_calibrate_protocol_paper_on_an_honest_run_uses_the_test_split(
    tmp_path: Path, honest_trained: Path
) -> None:
    run = honest_copy(honest_trained, tmp_path / "honest")
    result = runner.invoke(app, ["calibrate", str(run), "--protocol", "paper", "--format", "json"])
    assert result.exit_code == 0, result.output
    fitted = json.loads(result.stdout)
    _, test = load_id_splits("digits[0-5]")
    assert (fitted["split"], fitted["optimizer"], fitted["n_val"]) == ("test", "lbfgsb", len(test))
    out = tmp_path / "score.json"
    scored = runner.invoke(app, ["score", str(run), "--ood", "digits[6-9]", "--out", str(out)])
    assert scored.exit_code == 0, scored.output
    protocol = json.loads(out.read_text())["protocol"]
    assert protocol["name"] == "paper" and protocol["test_set_seen"] is True
    assert protocol["training_split"] == "train-minus-val"
    assert protocol["model_selection"] == "last"


def test_html_report_states_the_protocol(tmp_path: Path, paper_run: Path) -> None:
    from dismax_cli.benchmark import score_checkpoint
    from dismax_cli.html_report import render_html

    calibrate_checkpoint(paper_run)
    page = render_html(score_checkpoint(paper_run, ["digits[6-9]"]))
    assert '<p id="protocol" class="fail">protocol paper' in page
    assert "CALIBRATION AND MODEL SELECTION SAW THE TEST SET" in page


def test_checkpoints_and_reports_from_before_keep_loading(
    tmp_path: Path, honest_trained: Path
) -> None:
    """A calibration record without optimizer/split and a report without protocol still load."""
    from dismax_cli.benchmark import score_checkpoint
    from dismax_cli.engine.checkpoint import load_payload, save_checkpoint
    from dismax_cli.reports import from_json, to_dict

    run = honest_copy(honest_trained, tmp_path / "old")
    calibrate_checkpoint(run)
    payload = load_payload(run / "checkpoint.pt")
    for key in ("optimizer", "split"):
        del payload["calibration"][key]
    assert "selection" not in payload  # last-epoch runs write the keys they wrote before
    save_checkpoint(run / "checkpoint.pt", payload)
    report = score_checkpoint(run, ["digits[6-9]"])
    assert report.protocol["calibration_split"] == "val"
    assert report.protocol["calibration_optimizer"] == "grid"
    assert report.protocol["test_set_seen"] is False
    old = to_dict(report)
    del old["protocol"]
    assert from_json(json.dumps(old)).protocol is None
