"""``dismax benchmark``: the offline default, reports, the CI gate, configs and bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support import SHARED_DATA as SHARED
from support import run_dismax
from typer.testing import CliRunner

from dismax_cli.benchmark import BenchmarkConfig, parse_requirements
from dismax_cli.cli.app import app
from dismax_cli.cli.common import EXIT_REQUIREMENT_FAILED
from dismax_cli.errors import DismaxError
from dismax_cli.reports import METRICS, from_json, to_json

runner = CliRunner()


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory, default_benchmark_env: dict) -> dict:
    """``dismax benchmark --format json --out R`` with no other arguments, as a real process
    (its stdout is a pipe that must hold the JSON only); the runs are the session's."""
    home = tmp_path_factory.mktemp("bench")
    env = dict(default_benchmark_env)
    out = home / "report.json"
    proc = run_dismax("benchmark", "--format", "json", "--out", str(out), env=env, cwd=home)
    assert proc.returncode == 0, proc.stderr
    return {"stdout": proc.stdout, "stderr": proc.stderr, "out": out, "home": home, "env": env}


def test_default_run_prints_valid_json_with_every_method_and_metric(default_run: dict) -> None:
    report = json.loads(default_run["stdout"])  # stdout holds JSON only
    assert report["schema_version"] == 1 and report["kind"] == "benchmark"
    assert [m["method"] for m in report["methods"]] == [
        "softmax",
        "isomax_plus",
        "dismax",
        "ensemble",
    ]
    assert report["config"]["dataset"] == "digits[0-5]"
    assert report["config"]["ood"] == ["digits[6-9]", "uniform"]
    for key in ("tool_version", "environment", "conventions", "datasets", "created"):
        assert report[key]
    assert {"python", "torch", "device"} <= set(report["environment"])
    assert "fpr_at_95_tpr_rule" in report["conventions"]
    roles = [d["role"] for d in report["datasets"]]
    assert roles == ["train", "val", "test", "ood", "ood"]
    for d in report["datasets"]:
        assert len(d["pixels_sha256"]) == 64 and d["n"] > 0 and len(d["image_shape"]) == 3
    assert [d["synthetic"] for d in report["datasets"] if d["role"] == "ood"] == [False, True]
    for m in report["methods"]:
        for stage in ("id_before", "id_after"):
            assert 0 <= m[stage]["ACC"]["mean"] <= 1 and 0 <= m[stage]["ECE"]["mean"] <= 1
            assert m[stage]["NLL"]["mean"] >= 0
        assert {(r["ood"], r["score"]) for r in m["ood"]} >= {
            ("digits[6-9]", m["default_score"]),
            ("uniform", m["default_score"]),
        }
        for r in m["ood"]:
            assert r["n_id"] == m["n_id"] > 0 and r["n_ood"] > 0
            assert set(r["metrics"]) == {"AUROC", "AUPR-IN", "AUPR-OUT", "FPR@95TPR", "DETACC"}
            for stat in r["metrics"].values():
                assert 0.0 <= stat["mean"] <= 1.0
    by_name = {m["method"]: m for m in report["methods"]}
    assert by_name["softmax"]["efficiency"]["mean"] == 1.0
    # Ensemble of 3 vs SoftMax, measured in this run: about 1/3.
    assert by_name["ensemble"]["efficiency"]["mean"] < 0.5
    assert by_name["ensemble"]["members"] == 3
    assert by_name["dismax"]["uses_fpr"] is True
    assert 0.5 < by_name["dismax"]["efficiency"]["mean"] < 2.0
    # --out holds the same report, written atomically (no temporary file left behind).
    assert json.loads(default_run["out"].read_text()) == report
    assert [p.name for p in default_run["out"].parent.glob(".report.json*")] == []


# ----------------------------------------------------------------------------- outcome pins
# Issue 12 item 5: the deterministic digits run must still *learn*. A model whose optimizer
# step does nothing scores ACC ~0.17 (1 in 6 classes) and AUROC ~0.5; these pins catch it.
# Each helper lists what is wrong with a report (empty when every pin holds), so the same
# check runs on a report from deliberately broken training (see the commit message).

#: Distance-head scores (METHOD.md §6: MDS, MMLES) judged per method and OOD set, with floors.
#: IsoMax+ separates uniform noise far less well than DisMax on this 8x8 toy (MDS ~0.76, as in
#: the README's sample output), so its uniform floor only says "far better than chance".
DETECTION_FLOORS = {
    ("dismax", "uniform"): 0.9,
    ("dismax", "digits[6-9]"): 0.9,
    ("isomax_plus", "digits[6-9]"): 0.9,
    ("isomax_plus", "uniform"): 0.65,
}


def accuracy_problems(report: dict) -> list[str]:
    """Every method classifies the 216 ID test digits with ACC >= 0.9, before and after T."""
    return [
        f"{m['method']} {stage} ACC {m[stage]['ACC']['mean']:.4f} < 0.9"
        for m in report["methods"]
        for stage in ("id_before", "id_after")
        if not m[stage]["ACC"]["mean"] >= 0.9
    ]


def detection_problems(report: dict) -> list[str]:
    """DisMax and IsoMax+ MDS and MMLES AUROC reach their floors (:data:`DETECTION_FLOORS`)."""
    by_name = {m["method"]: m for m in report["methods"]}
    problems = []
    for (method, ood), floor in DETECTION_FLOORS.items():
        rows = {r["score"]: r for r in by_name[method]["ood"] if r["ood"] == ood}
        for score in ("mds", "mmles"):
            auroc = rows[score]["metrics"]["AUROC"]["mean"]
            if not auroc >= floor:
                problems.append(f"{method} {score} AUROC vs {ood} {auroc:.4f} < {floor}")
    return problems


def calibration_problems(report: dict) -> list[str]:
    """Temperature scaling (§5) lowers the ECE of the distance heads below their T = 1 ECE."""
    by_name = {m["method"]: m for m in report["methods"]}
    problems = []
    for method in ("isomax_plus", "dismax"):
        before = by_name[method]["id_before"]["ECE"]["mean"]
        after = by_name[method]["id_after"]["ECE"]["mean"]
        if not after < before:
            problems.append(f"{method} ECE calibrated {after:.4f} >= T=1 {before:.4f}")
    return problems


def test_every_method_learns_the_digits(default_run: dict) -> None:
    assert accuracy_problems(json.loads(default_run["stdout"])) == []


def test_distance_heads_tell_ood_from_id(default_run: dict) -> None:
    assert detection_problems(json.loads(default_run["stdout"])) == []


def test_calibration_lowers_the_ece_of_the_distance_heads(default_run: dict) -> None:
    assert calibration_problems(json.loads(default_run["stdout"])) == []


def test_json_round_trips_through_the_dataclasses(default_run: dict) -> None:
    report = from_json(default_run["out"].read_text())
    assert from_json(to_json(report)) == report
    assert json.loads(to_json(report)) == json.loads(default_run["out"].read_text())


def test_every_null_in_the_benchmark_json_has_a_reason(default_run: dict) -> None:
    """One seed: every std is null, and each null says why (a jq gate cannot mistake it)."""

    def holds_null(value: object) -> bool:
        return value is None or (isinstance(value, list) and any(holds_null(v) for v in value))

    def unexplained(node: object, path: str) -> list[str]:
        bad = []
        if isinstance(node, dict):
            for key, value in node.items():
                reason = node.get(f"{key}_null_reason")
                if holds_null(value) and not (isinstance(reason, str) and reason):
                    bad.append(f"{path}.{key}")
                bad += unexplained(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                bad += unexplained(value, f"{path}[{i}]")
        return bad

    report = json.loads(default_run["out"].read_text())
    assert unexplained(report, "$") == []
    for m in report["methods"]:
        for stat in (m["temperature"], m["id_after"]["ECE"], m["ood"][0]["metrics"]["AUROC"]):
            assert stat["std"] is None and "one seed" in stat["std_null_reason"]
    assert "ddof = 1" in report["conventions"]["std"]


def test_show_reproduces_the_table(default_run: dict, one_timing_round: None) -> None:
    # In-process, timed for one round: show must print the saved Cost table, whatever it holds.
    saved = default_run["home"] / "table-run.json"
    again = runner.invoke(app, ["benchmark", "--out", str(saved)], env=default_run["env"])
    assert again.exit_code == 0, again.output
    shown = run_dismax("benchmark", "show", str(saved), env=default_run["env"], timeout=600)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == again.stdout
    assert "AUROC" in shown.stdout and "DisMax (FPR)" in shown.stdout
    assert "reusing" in again.stderr  # the second run reused the finished runs


def _invoke(default_run: dict, *args: str):
    env = {
        k: default_run["env"][k] for k in ("DISMAX_RUNS_DIR", "DISMAX_DATA_DIR", "DISMAX_OFFLINE")
    }
    return runner.invoke(app, ["benchmark", *args], env=env)


def test_require_passes_and_fails_with_the_documented_exit_code(
    default_run: dict, one_timing_round: None
) -> None:
    report = json.loads(default_run["stdout"])
    dismax = next(m for m in report["methods"] if m["method"] == "dismax")
    auroc = next(r for r in dismax["ood"] if r["ood"] == "uniform" and r["score"] == "mmles")
    value = auroc["metrics"]["AUROC"]["mean"]
    ok = _invoke(
        default_run, "--format", "json", "--require", f"dismax:AUROC:uniform>={value - 0.01:.4f}"
    )
    assert ok.exit_code == 0, ok.output
    failing = _invoke(
        default_run,
        "--format",
        "json",
        "--require",
        f"dismax:AUROC:uniform>={min(value + 0.01, 1.0):.4f}",
        "--require",
        "softmax:ECE:id<=0",
    )
    assert failing.exit_code == EXIT_REQUIREMENT_FAILED, failing.output[-400:]
    assert "2 requirement(s) failed" in failing.output
    assert "dismax:AUROC:uniform" in failing.output and "softmax:ECE:id<=0" in failing.output


@pytest.mark.parametrize(
    ("require", "message"),
    [
        ("vit:AUROC:uniform>=0.5", "method 'vit'"),
        ("dismax:AUC:uniform>=0.5", "unknown metric 'AUC'"),
        ("dismax:AUROC:svhn>=0.5", "OOD set 'svhn'"),
        ("dismax:AUROC:uniform", "has no comparison"),
        ("dismax:ACC:uniform>=0.5", "in-distribution metric"),
        ("dismax:AUROC:uniform>=90", "is a fraction"),
    ],
)
def test_bad_requirements_are_errors_before_training(require: str, message: str) -> None:
    with pytest.raises(DismaxError, match=message):
        parse_requirements([require], methods=["softmax", "dismax"], ood=["uniform"])


def test_bad_inputs_are_one_clear_error_and_no_report(default_run: dict, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("dataset: digits[0-5]\nepochz: 3\n")
    # Exit 2: a value that is wrong whatever the machine holds; exit 1: a valid value that
    # fails here (README, exit codes).
    cases = [
        (["--methods", "softmax", "vit"], "'vit' is not one of", 2),
        (["--ood", "nosuchset"], "nosuchset", 2),  # an unknown name: invalid whatever the machine
        (["--ood", f"npz:{tmp_path / 'absent.npz'}"], "absent.npz", 1),
        (["--config", str(bad_config)], "epochz", 2),
        (["--config", str(tmp_path / "missing.yaml")], "does not exist", 1),
        (["--seeds", "0"], "--seeds", 2),
    ]
    for args, message, code in cases:
        result = _invoke(default_run, *args, "--out", str(out))
        assert result.exit_code == code, (args, result.output)
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output
        assert not out.exists()
    unwritable = _invoke(default_run, "--out", str(tmp_path / "no" / "such" / "dir" / "r.json"))
    assert unwritable.exit_code == 2 and "does not exist" in unwritable.output


def test_config_keys_mirror_the_cli_and_unknown_keys_fail(tmp_path: Path) -> None:
    for path in sorted(
        (Path(__file__).resolve().parents[1] / "benchmarks" / "configs").glob("*.yaml")
    ):
        import yaml

        values = yaml.safe_load(path.read_text())
        BenchmarkConfig.from_dict({k.replace("-", "_"): v for k, v in values.items()})
    with pytest.raises(DismaxError, match="unknown benchmark option"):
        BenchmarkConfig.from_dict({"epocs": 1})
    assert BenchmarkConfig().validate().methods == ("softmax", "isomax_plus", "dismax", "ensemble")


@pytest.mark.skipif(not (SHARED / "cifar10_test.npz").exists(), reason="../shared/data is absent")
def test_cifar10_npz_subset_against_tin_resize_for_one_epoch(
    tmp_path: Path, one_timing_round: None
) -> None:
    """Real CIFAR-10 and TinyImageNet npz files through the benchmark, on subsets: the first
    500 images of tin_resize.npz (every key of the file kept), 20 training and 20 test
    images per class, and one timing round (the Cost table's speeds are not read here)."""
    ood_n = 500
    with np.load(SHARED / "cifar10_train_10k.npz") as d:
        keep = np.concatenate([np.flatnonzero(d["y"] == c)[:20] for c in range(10)])
        np.savez(tmp_path / "train.npz", x=d["x"][keep], y=d["y"][keep], classes=d["classes"])
    with np.load(SHARED / "cifar10_test.npz") as d:
        keep = np.concatenate([np.flatnonzero(d["y"] == c)[:20] for c in range(10)])
        np.savez(tmp_path / "test.npz", x=d["x"][keep], y=d["y"][keep], classes=d["classes"])
    with np.load(SHARED / "tin_resize.npz") as d:
        n = len(d["x"])
        np.savez(tmp_path / "tin.npz", **{k: d[k][:ood_n] if len(d[k]) == n else d[k] for k in d})
    result = runner.invoke(
        app,
        [
            "benchmark",
            "--dataset",
            f"npz:{tmp_path / 'train.npz'}",
            "--test-dataset",
            f"npz:{tmp_path / 'test.npz'}",
            "--ood",
            f"npz:{tmp_path / 'tin.npz'}",
            "--epochs",
            "1",
            "--methods",
            "softmax",
            "dismax",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--format",
            "json",
        ],
        env={"DISMAX_OFFLINE": "1", "DISMAX_DATA_DIR": str(tmp_path / "data")},
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    train = next(d for d in report["datasets"] if d["role"] == "train")
    test = next(d for d in report["datasets"] if d["role"] == "test")
    ood = next(d for d in report["datasets"] if d["role"] == "ood")
    assert train["image_shape"] == [32, 32, 3]
    assert test["n"] == 200 and test["image_shape"] == [32, 32, 3]
    assert ood["n"] == ood_n and ood["image_shape"] == [32, 32, 3]
    for m in report["methods"]:
        r = next(r for r in m["ood"] if r["score"] == m["default_score"])
        assert r["n_id"] == 200 and r["n_ood"] == ood_n
        for key in METRICS:
            if METRICS[key].kind == "ood":
                assert 0 <= r["metrics"][key]["mean"] <= 1


def test_a_damaged_run_in_the_runs_dir_names_the_folder_to_delete(tmp_path: Path) -> None:
    from dismax_cli.benchmark import BenchmarkProgress, _train_or_reuse, run_dir_for

    config = BenchmarkConfig(dataset="digits[0-5]").train_config("softmax", 0)
    run_dir = run_dir_for(tmp_path, config, "hash")
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(b"truncated")
    with pytest.raises(DismaxError, match="delete the folder") as info:
        _train_or_reuse(config, tmp_path, None, "hash", BenchmarkProgress())  # type: ignore[arg-type]
    assert str(run_dir) in str(info.value)
