"""Issue 11 item 6: a CLI-trained run from Python (``load_run``) and ``dismax detect``.

Rules checked (METHOD.md §3–§5): scores at T = 1, probabilities ``softmax(logits / T)`` at the
fitted T, and the threshold at a validation TPR is FPR@95TPR's k-th largest ID score.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support import run_dismax
from typer.testing import CliRunner

from dismax_cli import DismaxError, Run, fpr_at_95_tpr, load_run, tpr_threshold
from dismax_cli.cli.app import app
from dismax_cli.core.scores import SCORES
from dismax_cli.engine import (
    CHECKPOINT_NAME,
    TrainConfig,
    calibrate_checkpoint,
    fit,
    load_payload,
    load_run_data,
)

CONFIG = TrainConfig(dataset="digits[0-5]", method="dismax", epochs=2, device="cpu")
runner = CliRunner()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny real digits run, before (``raw``) and after (``run``) ``dismax calibrate``."""
    top = tmp_path_factory.mktemp("deploy")
    folder = top / "run"
    fit(CONFIG, folder, data=load_run_data(CONFIG))
    shutil.copytree(folder, top / "raw")
    calibrate_checkpoint(folder)
    return {"run": folder, "raw": top / "raw"}


@pytest.fixture(scope="module")
def data():  # noqa: ANN201 - RunData
    return load_run_data(CONFIG)


def _float64_scores(logits: torch.Tensor) -> dict[str, np.ndarray]:
    """The §3 scores, written again in float64 from the formulas."""
    z = logits.double()
    log_p = torch.log_softmax(z, dim=1)
    neg_entropy = (log_p.exp() * log_p).sum(1)
    return {
        "msp": log_p.exp().max(1).values.numpy(),
        "max_logit": z.max(1).values.numpy(),
        "mds": z.max(1).values.numpy(),
        "neg_entropy": neg_entropy.numpy(),
        "energy": torch.logsumexp(z, 1).numpy(),
        "mmles": (z.max(1).values + z.mean(1) + neg_entropy).numpy(),
    }


def test_load_run_gives_the_model_transform_classes_and_temperature(runs: dict) -> None:
    run = load_run(runs["run"], device="cpu")
    assert isinstance(run, Run)
    payload = load_payload(runs["run"])
    assert run.classes == tuple(payload["classes"]) == tuple(str(i) for i in range(6))
    assert run.temperature == payload["temperature"] and run.temperature != 1.0
    assert run.transform.to_dict() == payload["transform"]
    assert run.default_score == "mmles" and not run.model.training


def test_predict_uint8_nhwc_and_float_nchw_agree_and_follow_the_temperature_rule(
    runs: dict, data
) -> None:
    run = load_run(runs["run"], device="cpu")
    images = data.test.images[:64]
    as_uint8 = run.predict(images)
    as_float = run.predict(images.permute(0, 3, 1, 2).float() / 255.0)
    as_numpy = run.predict(images.numpy())
    assert torch.equal(as_uint8.labels, as_float.labels)
    assert torch.equal(as_uint8.labels, as_numpy.labels)
    torch.testing.assert_close(as_float.logits, as_uint8.logits, rtol=1e-5, atol=1e-5)
    # Raw logits are the model's on the run's transform (T = 1) ...
    with torch.no_grad():
        direct = run.model(run.transform(images))
    torch.testing.assert_close(as_uint8.logits, direct, rtol=1e-5, atol=1e-5)
    assert torch.equal(as_uint8.labels, direct.argmax(1))
    # ... probabilities are softmax(logits / T) at the fitted T ...
    expected = torch.softmax(direct.double() / run.temperature, dim=1)
    torch.testing.assert_close(as_uint8.probs.double(), expected, rtol=1e-4, atol=1e-6)
    # ... and every OOD score uses the raw logits.
    assert set(as_uint8.scores) == set(SCORES)
    for name, values in _float64_scores(direct).items():
        np.testing.assert_allclose(as_uint8.scores[name].numpy(), values, rtol=1e-4, atol=1e-5)
    assert as_uint8.class_names == [run.classes[i] for i in direct.argmax(1).tolist()]


def test_predict_adapts_other_sizes_and_channels_through_the_transform(runs: dict, data) -> None:
    run = load_run(runs["run"], device="cpu")
    grey = data.test.images[:8]  # (8, 8, 8, 1)
    rgb = grey.expand(-1, -1, -1, 3).contiguous()
    big = torch.nn.functional.interpolate(
        rgb.permute(0, 3, 1, 2).float(), size=16, mode="nearest"
    ).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    reference = run.predict(grey)
    # Grey -> RGB -> grey (luma weights sum to 1) gives the same model input.
    torch.testing.assert_close(run.predict(rgb).logits, reference.logits, rtol=1e-4, atol=1e-4)
    # A list of images of different sizes is predicted image by image in its order.
    mixed = run.predict([big[0].numpy(), grey[1].numpy()[..., 0], rgb[2].numpy()])
    torch.testing.assert_close(mixed.logits[0], run.predict(big[:1]).logits[0])
    torch.testing.assert_close(mixed.logits[1], reference.logits[1])
    torch.testing.assert_close(mixed.logits[2], run.predict(rgb[2:3]).logits[0])


@pytest.mark.parametrize(
    "images, match",
    [
        (torch.randn(4, 3, 8, 8), "not the 0..1 pixel scale"),  # already normalised
        (torch.zeros(4, 8, 8, 3), "C = 1 or 3"),  # channels-last floats
        (torch.zeros(4, 3, 8, 8, dtype=torch.uint8).permute(0, 1, 2, 3), "channels-first"),
        (torch.zeros(4, 8, 8, 1, dtype=torch.int32), "images of dtype int32 cannot"),
        ([np.zeros((8, 8, 3), dtype=np.float32)], "image 0 of the list"),
        ("images.png", "images given as text cannot"),
    ],
)
def test_predict_refuses_other_layouts_with_the_fix(runs: dict, images, match: str) -> None:
    run = load_run(runs["run"], device="cpu")
    with pytest.raises(DismaxError, match=match):
        run.predict(images)


def test_threshold_is_the_kth_largest_validation_score_and_keeps_95_percent(
    runs: dict, data
) -> None:
    run = load_run(runs["run"], device="cpu")
    val = run.predict(data.val.images)
    ood = run.predict(load_run_data(TrainConfig(dataset="digits[6-9]")).test.images)
    n = len(data.val)
    for name in SCORES:
        scores = val.scores[name].numpy()
        for tpr, k in ((0.95, (95 * n + 99) // 100), (0.9, (9 * n + 9) // 10), (1.0, n)):
            threshold = run.threshold(name, tpr=tpr)
            assert threshold == np.sort(scores)[::-1][k - 1]
        threshold = run.threshold(name)
        kept = np.count_nonzero(scores >= threshold) / n
        assert kept >= 0.95
        # The largest such threshold: any higher validation score keeps less than 95 %.
        higher = scores[scores > threshold]
        assert higher.size == 0 or np.count_nonzero(scores >= higher.min()) / n < 0.95
        # The same rule as FPR@95TPR: both agree on the OOD share above the threshold.
        ood_scores = ood.scores[name].numpy()
        assert np.count_nonzero(ood_scores >= threshold) / len(ood_scores) == pytest.approx(
            fpr_at_95_tpr(scores, ood_scores)
        )
    assert run.threshold() == run.threshold("mmles")


def test_tpr_threshold_counts_k_exactly() -> None:
    values = np.arange(100, 0, -1, dtype=np.float64)  # 100, 99, ..., 1
    # 0.07 * 100 is 7.000000000000001 in floats: k must still be 7, not 8.
    assert tpr_threshold(values, tpr=0.07) == 94.0
    assert tpr_threshold(values, tpr=0.95) == 6.0
    assert tpr_threshold(values[:20], tpr=0.95) == 82.0  # k = 19 of 20
    assert tpr_threshold(values[:21], tpr=0.95) == 81.0  # k = ceil(19.95) = 20
    for bad in (0.0, 1.5, -0.1, math.nan):
        with pytest.raises(DismaxError, match="tpr"):
            tpr_threshold(values, tpr=bad)


def test_an_uncalibrated_run_says_to_run_calibrate(runs: dict) -> None:
    run = load_run(runs["raw"], device="cpu")
    assert run.temperature == 1.0
    with pytest.raises(DismaxError, match="dismax calibrate"):
        run.threshold()
    with pytest.raises(DismaxError, match="unknown score 'nope'"):
        load_run(runs["run"], device="cpu").threshold("nope")


def test_a_checkpoint_calibrated_before_thresholds_loads_and_asks_for_calibrate(
    tmp_path: Path, runs: dict
) -> None:
    old = tmp_path / "old"
    shutil.copytree(runs["run"], old)
    payload = load_payload(old)
    del payload["thresholds"]
    torch.save(payload, old / CHECKPOINT_NAME)
    run = load_run(old, device="cpu")
    assert run.temperature == payload["temperature"]  # the fitted T is still used
    with pytest.raises(DismaxError, match="dismax calibrate"):
        run.threshold()


def test_damaged_thresholds_are_refused_on_load(tmp_path: Path, runs: dict) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(runs["run"], bad)
    payload = load_payload(bad)
    payload["thresholds"] = {"mmles": [1.0, 2.0]}  # not sorted from the highest
    torch.save(payload, bad / CHECKPOINT_NAME)
    with pytest.raises(DismaxError, match="damaged.*mmles"):
        load_run(bad, device="cpu")


# --------------------------------------------------------------------------- dismax detect


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, data) -> dict:
    """An npz of 6 test digits, a folder of PNGs (grey 8x8, RGB 20x20) and their arrays."""
    top = tmp_path_factory.mktemp("detect-inputs")
    images = data.test.images[:6].numpy()
    np.savez(top / "digits.npz", x=images)
    folder = top / "pngs"
    (folder / "sub").mkdir(parents=True)
    grey = images[0][..., 0]
    Image.fromarray(grey).save(folder / "a.png")
    rgb = np.asarray(Image.fromarray(grey).convert("RGB").resize((20, 20)))
    Image.fromarray(rgb).save(folder / "sub" / "b.png")
    odd = top / "[bold]odd name.png"
    Image.fromarray(grey).save(odd)
    return {"npz": top / "digits.npz", "folder": folder, "odd": odd, "images": images,
            "grey": grey, "rgb": rgb}  # fmt: skip


def _detect(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["detect", *args], env={"COLUMNS": "80", "NO_COLOR": "1"})
    return result.exit_code, result.stdout, result.stderr


def test_detect_json_labels_every_image_of_an_npz_a_folder_and_files(
    runs: dict, inputs: dict
) -> None:
    code, out, err = _detect(
        str(runs["run"]), str(inputs["npz"]), str(inputs["folder"]), str(inputs["odd"]),
        "--format", "json", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    document = json.loads(out)
    run = load_run(runs["run"], device="cpu")
    threshold = run.threshold("mmles")
    assert document["score"] == "mmles" and document["threshold"] == threshold
    rows = document["images"]
    names = [row["image"] for row in rows]
    assert names == [
        *(f"{inputs['npz']}[{i}]" for i in range(6)),
        str(inputs["folder"] / "a.png"),
        str(inputs["folder"] / "sub" / "b.png"),
        str(inputs["odd"]),
    ]
    expected = run.predict(
        [*inputs["images"], inputs["grey"], inputs["rgb"], inputs["grey"]]
    )
    scores = expected.scores["mmles"].tolist()
    for row, score, label, confidence in zip(
        rows, scores, expected.labels.tolist(), expected.confidence.tolist(), strict=True
    ):
        assert row["score"] == pytest.approx(score, abs=1e-6)
        assert row["in_distribution"] is (score >= threshold)
        assert row["label"] == label and row["class"] == run.classes[label]
        assert row["confidence"] == pytest.approx(confidence, abs=1e-6)
    assert document["n_in_distribution"] == sum(s >= threshold for s in scores)
    assert document["n_images"] == 9


def test_detect_table_fits_80_columns_and_shows_names_verbatim(
    runs: dict, inputs: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(inputs["npz"].parent)
    code, out, err = _detect(
        str(runs["run"]), inputs["odd"].name, "digits.npz", "--score", "msp", "--tpr", "0.9",
        "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines), max(map(len, lines))
    assert lines[0].split() == ["image", "verdict", "msp", "class", "conf", "%"]
    assert lines[2].split()[:2] == ["[bold]odd", "name.png"]  # verbatim, not rich markup
    run = load_run(runs["run"], device="cpu")
    threshold = run.threshold("msp", tpr=0.9)
    rows = [line.split() for line in lines[2:] if line.startswith("digits.npz[")]
    expected = run.predict(list(inputs["images"]))
    assert [row[0] for row in rows] == [f"digits.npz[{i}]" for i in range(6)]
    assert [row[1] for row in rows] == [
        "ID" if s >= threshold else "OOD" for s in expected.scores["msp"].tolist()
    ]
    assert [row[3] for row in rows] == expected.class_names
    assert f"msp >= {threshold:.6g}" in " ".join(err.split())


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda d: d / "missing.png", "does not exist"),
        (lambda d: (d / "bad.png").write_bytes(b"not a png") and d / "bad.png", "bad.png"),
        (lambda d: (d / "notes.txt").write_text("hi") and d / "notes.txt", "not an npz file"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "holds no image files"),
        (lambda d: np.savez(d / "f.npz", x=np.zeros((2, 8, 8), np.float32)) or d / "f.npz",
         "dtype float32"),
    ],
)  # fmt: skip
def test_detect_refuses_unreadable_inputs_in_one_line(
    tmp_path: Path, runs: dict, inputs: dict, make, match: str
) -> None:
    bad = make(tmp_path)
    code, out, err = _detect(str(runs["run"]), str(inputs["npz"]), str(bad), "--device", "cpu")
    assert code == 1
    assert out == ""  # nothing half-done: no row of the readable npz either
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and match in lines[0], err


def test_detect_on_an_uncalibrated_run_says_to_calibrate(runs: dict, inputs: dict) -> None:
    code, out, err = _detect(str(runs["raw"]), str(inputs["npz"]), "--device", "cpu")
    assert code == 1 and out == ""
    assert "dismax calibrate" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("tpr", ["0", "1.5", "x"])
def test_detect_refuses_a_tpr_outside_0_1_as_a_usage_error(
    runs: dict, inputs: dict, tpr: str
) -> None:
    code, out, _ = _detect(str(runs["run"]), str(inputs["npz"]), "--tpr", tpr)
    assert code == 2 and out == ""


def test_detect_runs_as_a_real_command_and_its_help_does_not_import_torch(
    runs: dict, inputs: dict
) -> None:
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1"}
    proc = run_dismax(
        "detect", str(runs["run"]), str(inputs["npz"]), "--format", "json", env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["images"]) == 6
    probe = (
        "import sys\nfrom dismax_cli.cli.app import main\n"
        "try:\n    main(['detect', '--help'])\nexcept SystemExit:\n    pass\n"
        "print([m for m in ('torch', 'torchvision', 'sklearn', 'scipy') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert out.stdout.strip().splitlines()[-1] == "[]"
