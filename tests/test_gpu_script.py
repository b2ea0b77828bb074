"""``benchmarks/gpu/cifar10.sh`` (issue 13 item 6): its CPU smoke path here, the GPU run marked.

The GPU run was not measured (no GPU was available when this was written); ``-m gpu`` on a CUDA
machine runs the real thing and checks its 10-minute budget.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from support import SHARED_DATA as DATA

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu" / "cifar10.sh"
NEEDED = ("cifar10_train_jpeg.npz", "cifar10_test.npz", "tin_resize.npz", "mnist_test.npz")

pytestmark = pytest.mark.skipif(
    not all((DATA / f).is_file() for f in NEEDED), reason=f"{DATA} lacks one of {NEEDED}"
)


#: The smoke run's training file: every 25th image of the 50,000 (class-sorted: 200 per class).
SMOKE_STEP = 25


def _smoke_data(folder: Path) -> Path:
    """``folder`` as ``--data`` for the smoke run: every SMOKE_STEP-th real CIFAR-10 JPEG of
    ``cifar10_train_jpeg.npz`` (its bytes unchanged, same keys), the other three files linked.

    The smoke path subsets to 128 images after loading; decoding all 50,000 JPEGs first is
    test_data's check of that file, not this script's.
    """
    folder.mkdir()
    with np.load(DATA / "cifar10_train_jpeg.npz") as d:
        data, offsets = d["data"], d["offsets"]  # each d[key] reads the array anew
        keep = np.arange(0, len(offsets) - 1, SMOKE_STEP)
        blobs = [data[offsets[i] : offsets[i + 1]] for i in keep]
        np.savez(
            folder / "cifar10_train_jpeg.npz", data=np.concatenate(blobs),
            offsets=np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64),
            y=d["y"][keep], classes=d["classes"], filenames=d["filenames"][keep],
            source=d["source"],
        )  # fmt: skip
    for name in NEEDED[1:]:
        (folder / name).symlink_to(DATA / name)
    return folder


def _run(tmp_path: Path, *args: str, timeout: int) -> dict:
    out = tmp_path / "report.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DISMAX_WORKERS": "0"}
    subprocess.run(
        ["bash", str(SCRIPT), "--out", str(out), *args],
        env=env, check=True, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    return json.loads(out.read_text())


def _check_report(report: dict, *, n_train: int, epochs: int) -> None:
    assert [m["method"] for m in report["methods"]] == ["softmax", "dismax"]
    assert [m["uses_fpr"] for m in report["methods"]] == [False, True]
    assert [m["default_score"] for m in report["methods"]] == ["msp", "mmles"]
    assert report["n_train"] == n_train
    for m in report["methods"]:
        assert len(m["epochs"]) == epochs
        seen = sum(e["images_per_s"] * e["seconds"] for e in m["epochs"])
        assert seen == pytest.approx(n_train * epochs, rel=1e-6)  # every image once per epoch
        assert set(m["ood"]) == {"tin_resize", "mnist"}
        for name in ("tin_resize", "mnist"):
            assert 0.0 <= m["ood"][name][m["default_score"]]["AUROC"] <= 1.0
        acc = m["id_T1"]["ACC"] * report["n_test"]
        assert acc == pytest.approx(round(acc), abs=1e-6)  # a count of right answers
        assert set(m["score_images_per_s"]) == {"cifar10_test", "tin_resize", "mnist"}
        assert min(m["score_images_per_s"].values()) > 0 and m["train_images_per_s"] > 0
    assert report["load_images_per_s"] > 0


def test_gpu_script_smoke_runs_the_whole_path_on_cpu(tmp_path: Path) -> None:
    data = _smoke_data(tmp_path / "data")
    report = _run(
        tmp_path, "--smoke", "--device", "cpu", "--model", "convnet", "--batch-size", "32",
        "--data", str(data), timeout=600,
    )  # fmt: skip
    # 2,000 real JPEGs, 1,800 training images after the 10 % carve, every 14th kept: 128 (on
    # the full file: 45,000, every 351st); 1 epoch.
    _check_report(report, n_train=128, epochs=1)
    assert report["smoke"] is True and report["n_ood"] == {"tin_resize": 128, "mnist": 128}
    assert report["autocast"] is None and report["channels_last"] is False


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_script_full_run_fits_in_ten_minutes(tmp_path: Path) -> None:
    report = _run(tmp_path, timeout=660)
    _check_report(report, n_train=45_000, epochs=15)
    assert report["wall_s"] < 600 and report["autocast"] == "bfloat16"
    assert report["n_ood"] == {"tin_resize": 10_000, "mnist": 10_000}
