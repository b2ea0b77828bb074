"""Detectors wired into ``score`` and ``benchmark`` (issue 15): --scores, --require METHOD/SCORE,
--ood-preset, --fpr-convention, the statistics cache and the speed column.

The detector maths is tested in ``test_detectors.py``; here what the commands do with it. The
digits runs are the session's default-benchmark runs (``conftest.default_benchmark_env``).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from support import SHARED_DATA as SHARED
from typer.testing import CliRunner

from dismax_cli.cli.app import app
from dismax_cli.cli.common import EXIT_REQUIREMENT_FAILED
from dismax_cli.config import InvalidValueError
from dismax_cli.gates import parse_requirements
from dismax_cli.presets import PRESETS, group_means, list_problem, resolve_ood
from dismax_cli.reports import from_json, to_json
from dismax_cli.score_names import (
    DETECTOR_SCORES,
    ENSEMBLE_SCORES,
    FPR_CONVENTIONS,
    LOGIT_SCORES,
    parse_scores,
)

runner = CliRunner()


# --------------------------------------------------------------------------- names, no torch


def test_the_name_tables_match_the_registries() -> None:
    from dismax_cli.cli import options as opt
    from dismax_cli.core import metrics
    from dismax_cli.core.detectors import DETECTORS
    from dismax_cli.core.scores import SCORES

    assert LOGIT_SCORES == tuple(SCORES)
    assert DETECTOR_SCORES == tuple(DETECTORS)
    assert FPR_CONVENTIONS == metrics.FPR_CONVENTIONS
    assert set(opt.SCORES_CHOICE.choices) == {"all", *SCORES, *DETECTORS, *ENSEMBLE_SCORES}


@pytest.mark.parametrize(
    ("values", "message"),
    [(["foo"], "'foo' is not a score"), (["all", "msp"], "mixes all with names"), ([""], "''")],
)
def test_bad_scores_are_refused(values: list[str], message: str) -> None:
    with pytest.raises(InvalidValueError, match=message):
        parse_scores(values)
    assert parse_scores(["knn", "msp", "knn"]) == ("knn", "msp")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--scores", "foo"], "'foo' is not one of all, msp"),
        (["--scores", "all", "msp"], "mixes all with names"),
        (["--ood-preset", "openood"], "'openood' is not one of openood-cifar10"),
        (["--fpr-convention", "OpenOOD"], "'OpenOOD' is not one of ours, openood"),
        (["--require", "softmax/:AUROC:uniform>=0.5"], "names no score after '/'"),
        (["--require", "softmax/knn:AUROC:uniform>=0.5"], "add it with --scores knn"),
        (["--require", "ensemble/knn:AUROC:uniform>=0.5", "--scores", "all"], "'knn'"),
    ],
)
def test_bad_option_values_exit_2_with_one_line(
    args: list[str], needle: str, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["benchmark", "--runs-dir", str(tmp_path / "runs"), *args])
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()  # nothing trained or written


def test_bad_values_in_a_config_file_exit_2(tmp_path: Path) -> None:
    for key, value in (("scores", "[foo]"), ("ood_preset", "x"), ("fpr_convention", "theirs")):
        config = tmp_path / f"{key}.yaml"
        config.write_text(f"{key}: {value}\n")
        result = runner.invoke(app, ["benchmark", "--config", str(config)])
        assert result.exit_code == 2, result.output
        assert key in result.output and str(config) in result.output


def test_score_command_refuses_bad_values_before_loading(tmp_path: Path) -> None:
    for args in (["--scores", "nope"], ["--fpr-convention", "x"]):
        result = runner.invoke(app, ["score", str(tmp_path), "--ood", "uniform", *args])
        assert result.exit_code == 2 and "is not one of" in result.output


def test_requirement_with_a_score_is_parsed_and_the_old_form_kept() -> None:
    scores = {"softmax": ("msp", "odin"), "dismax": ("mmles",)}
    new, old = parse_requirements(
        ["softmax/odin:AUROC:uniform>=0.9", "dismax:FPR@95TPR:uniform<=0.2"],
        methods=["softmax", "dismax"],
        ood=["uniform"],
        scores=scores,
    )
    assert (new.method, new.score, new.metric, new.threshold) == ("softmax", "odin", "AUROC", 0.9)
    assert (old.method, old.score, old.metric) == ("dismax", None, "FPR@95TPR")
    with pytest.raises(InvalidValueError, match="do not depend on a score"):
        parse_requirements(["softmax/odin:ACC:id>=0.9"], methods=None, ood=None, scores=scores)


# --------------------------------------------------------------------------- the preset


def test_the_openood_presets_hold_openoods_near_and_far_sets() -> None:
    for name, near in (("openood-cifar10", "cifar100"), ("openood-cifar100", "cifar10")):
        sets = PRESETS[name]
        assert [(s.label, s.group) for s in sets] == [
            (near, "near"),
            ("tin", "near"),
            ("mnist", "far"),
            ("svhn", "far"),
            ("textures", "far"),
            ("places365", "far"),
        ]
        counts = {s.label: s.openood_count for s in sets}
        assert counts == {
            near: 10_000,
            "tin": 7_793,
            "mnist": 70_000,
            "svhn": 26_032,
            "textures": 5_640,
            "places365": 35_195,
        }
        # OpenOOD's own image lists have no offline source: no default spec, a fix instead.
        assert [s.label for s in sets if s.spec is None] == ["tin", "places365"]


def test_resolve_ood_overrides_by_label_and_keeps_extra_sets() -> None:
    defaults = ("digits[6-9]", "uniform")
    plain = resolve_ood("openood-cifar10", defaults, defaults=defaults)
    assert plain == (
        "cifar100=cifar100",
        "tin=openood-list:tin",
        "mnist=mnist",
        "svhn=svhn",
        "textures=textures",
        "places365=openood-list:places365",
    )
    given = ["extra=uniform", "tin=npz:tin.npz"]
    resolved = resolve_ood("openood-cifar10", given, defaults=defaults)
    assert resolved[1] == "tin=npz:tin.npz" and resolved[-1] == "extra=uniform"
    assert len(resolved) == 7
    assert resolve_ood("openood-cifar10", resolved, defaults=defaults) == resolved  # idempotent
    fix = list_problem("openood-list:places365")
    assert fix is not None and "35,195" in fix and "--ood places365=imagefolder:DIR" in fix
    assert list_problem("uniform") is None


def test_group_means_are_unweighted_over_sets() -> None:
    per_seed = [
        {("a", "msp"): {"AUROC": 0.9}, ("b", "msp"): {"AUROC": 0.5}, ("c", "msp"): {"AUROC": 0.2}},
        {("a", "msp"): {"AUROC": 0.7}, ("b", "msp"): {"AUROC": 0.3}, ("c", "msp"): {"AUROC": 0.4}},
    ]
    (near, far) = group_means(
        per_seed, {"near": ["a", "b"], "far": ["c"]}, n_id=10, n_ood={"a": 5, "b": 995, "c": 1}
    )
    # (0.9 + 0.5)/2 and (0.7 + 0.3)/2: not weighted by the sizes 5 and 995.
    assert near.ood == "near" and near.n_ood == 1000
    assert near.metrics["AUROC"].values == pytest.approx((0.7, 0.5))
    assert near.metrics["AUROC"].mean == pytest.approx(0.6)
    assert far.metrics["AUROC"].values == pytest.approx((0.2, 0.4))


# --------------------------------------------------------------------------- ViM on distance heads


def test_vim_alpha_on_a_distance_head_matches_the_max_logit_magnitude() -> None:
    from dismax_cli.core.heads import DisMaxHead
    from dismax_cli.detection import _vim_detector

    torch.manual_seed(0)
    head = DisMaxHead(8, 3)
    features = torch.randn(200, 8)
    detector = _vim_detector(head, features)
    # float64 reference: plain PCA around the mean, the D - dim smallest directions.
    f = features.double().numpy()
    centred = f - f.mean(axis=0)
    _, vectors = np.linalg.eigh(centred.T @ centred / len(f))
    residual = np.linalg.norm(centred @ vectors[:, : 8 - 4], axis=1)
    with torch.no_grad():
        logits = head(features.double()).numpy()
    assert (logits <= 0).all()  # the paper's α would be negative here
    expected = np.abs(logits.max(axis=1)).sum() / residual.sum()
    assert detector.alpha == pytest.approx(expected, rel=1e-6)  # the head runs in float32


# --------------------------------------------------------------------------- on the digits default


@pytest.fixture(scope="module")
def all_scores(
    tmp_path_factory: pytest.TempPathFactory, default_benchmark_env: dict, time_one_round
) -> dict:
    """``dismax benchmark --scores all`` on the default digits runs (trained once a session),
    in-process: the runs are the session's, so this only fits the detectors and scores. Timed
    for one round: the tests read that each row has a finite speed, not its value."""
    home = tmp_path_factory.mktemp("all-scores")
    out = home / "report.json"
    with pytest.MonkeyPatch.context() as patch:
        time_one_round(patch)
        result = runner.invoke(
            app,
            ["benchmark", "--scores", "all", "--format", "json", "--out", str(out)],
            env=default_benchmark_env,
        )
    assert result.exit_code == 0, result.output
    return {"report": json.loads(out.read_text()), "env": default_benchmark_env, "home": home}


def _rows(report: dict, method: str, ood: str) -> dict[str, dict]:
    m = next(m for m in report["methods"] if m["method"] == method)
    return {r["score"]: r["metrics"] for r in m["ood"] if r["ood"] == ood}


def test_every_detector_runs_for_every_method_on_digits(all_scores: dict) -> None:
    report = all_scores["report"]
    assert report["config"]["scores"] == ["all"]
    for method in ("softmax", "isomax_plus", "dismax"):
        for ood in ("digits[6-9]", "uniform"):
            rows = _rows(report, method, ood)
            assert set(rows) == {*LOGIT_SCORES, *DETECTOR_SCORES}
            for score, metrics in rows.items():
                assert 0.0 <= metrics["AUROC"]["mean"] <= 1.0, (method, ood, score)
    ensemble = next(m for m in report["methods"] if m["method"] == "ensemble")
    assert {r["score"] for r in ensemble["ood"]} == {*ENSEMBLE_SCORES, "gen"}
    assert set(ensemble["not_applicable"]) == {
        "max_logit", "mds", "energy", "mmles", "odin", "mahalanobis", "knn", "vim", "react"
    }
    assert "features or input gradients" in ensemble["not_applicable"]["knn"]


def test_detectors_against_msp_on_softmax_as_measured(all_scores: dict) -> None:
    """Measured on the digits default (2 threads): Mahalanobis beats MSP on both sets, ODIN
    beats it on uniform noise; on digits[6-9] ODIN's ε = 0.0014 is under half a grey level of
    the 8x8 digits, so ODIN is the T = 1000 softmax, which ranks like the max logit."""
    report = all_scores["report"]
    uniform = {s: r["AUROC"]["mean"] for s, r in _rows(report, "softmax", "uniform").items()}
    digits = {s: r["AUROC"]["mean"] for s, r in _rows(report, "softmax", "digits[6-9]").items()}
    assert uniform["mahalanobis"] >= uniform["msp"] + 0.01  # measured 1.0000 vs 0.9824
    assert digits["mahalanobis"] >= digits["msp"] + 0.002  # measured 0.9792 vs 0.9743
    assert uniform["odin"] >= uniform["msp"]  # measured 0.9835 vs 0.9824
    assert abs(digits["odin"] - digits["max_logit"]) <= 0.005  # measured 0.9679 vs 0.9682
    assert 0.95 <= uniform["odin"] <= 1.0 and 0.95 <= digits["odin"] <= 1.0


def test_every_row_has_a_speed_relative_to_softmax_msp(all_scores: dict) -> None:
    for m in all_scores["report"]["methods"]:
        speeds = {k: v["mean"] for k, v in m["score_efficiency"].items()}
        assert set(speeds) == {r["score"] for r in m["ood"]}
        assert all(math.isfinite(v) and v > 0 for v in speeds.values())
    softmax = all_scores["report"]["methods"][0]
    assert softmax["score_efficiency"]["msp"]["mean"] == 1.0  # the reference itself


def test_scores_without_msp_still_get_a_speed_relative_to_softmax_msp(
    all_scores: dict, tmp_path: Path, time_one_round
) -> None:
    """``--scores knn`` shows no MSP row, yet the speed column is relative to SoftMax's MSP:
    the reference is timed anyway (it was a KeyError, "internal error", before)."""
    out = tmp_path / "knn.json"
    with pytest.MonkeyPatch.context() as patch:
        time_one_round(patch)
        result = runner.invoke(
            app,
            ["benchmark", "--methods", "softmax", "dismax", "--scores", "knn", "--out", str(out)],
            env=all_scores["env"],
        )
    assert result.exit_code == 0, result.output
    for m in json.loads(out.read_text())["methods"]:
        speeds = {k: v["mean"] for k, v in m["score_efficiency"].items()}
        assert set(speeds) == {"knn"}, speeds
        assert math.isfinite(speeds["knn"]) and speeds["knn"] > 0
    rows = [line.split() for line in result.output.splitlines()]
    knn = [row for row in rows if row[:2] == ["SoftMax", "knn"]]
    assert len(knn) == 2 and all(float(row[-1]) > 0 for row in knn), result.output  # 2 OOD sets
    assert not any(row[:2] == ["SoftMax", "msp"] for row in rows)


def test_the_table_shows_every_score_within_80_columns(all_scores: dict) -> None:
    report = from_json(json.dumps(all_scores["report"]))
    assert from_json(to_json(report)) == report
    shown = runner.invoke(app, ["benchmark", "show", str(all_scores["home"] / "report.json")])
    assert shown.exit_code == 0
    lines = shown.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    table = lines[lines.index(next(line for line in lines if line.startswith("OOD: uniform"))) :]
    assert any(line.split()[:2] == ["SoftMax", "msp"] for line in table)
    for score in DETECTOR_SCORES:
        assert any(line.split()[:1] == [score] for line in table), score
    assert any("n/a for Ensemble x3: max_logit" in line for line in lines)


def _cli_env(all_scores: dict) -> dict[str, str]:
    keys = ("DISMAX_RUNS_DIR", "DISMAX_DATA_DIR", "DISMAX_OFFLINE")
    return {k: all_scores["env"][k] for k in keys}


def _runs(env: dict, method: str) -> Path:
    return next(Path(env["DISMAX_RUNS_DIR"]).glob(f"{method}-convnet-seed0-*"))


def test_statistics_are_cached_by_weights_and_refit_when_they_change(
    all_scores: dict, tmp_path: Path
) -> None:
    from dismax_cli.detection import CACHE_NAME, fit_detectors
    from dismax_cli.engine import load_bundle, rebuild_run_data

    for method in ("softmax", "isomax_plus", "dismax"):
        assert (_runs(all_scores["env"], method) / CACHE_NAME).is_file()
    run = tmp_path / "run"
    shutil.copytree(_runs(all_scores["env"], "softmax"), run)
    bundle = load_bundle(run)
    data = rebuild_run_data(bundle.meta, data_dir=all_scores["env"]["DISMAX_DATA_DIR"])
    names = ["mahalanobis", "knn", "vim", "react"]
    first, reused = fit_detectors(bundle, data.train, names, run_dir=run)
    assert reused  # the benchmark's cache, copied with the run
    with torch.no_grad():
        bundle.model.head.weight[0, 0] += 1.0  # other weights: the cache no longer applies
    refit, reused = fit_detectors(bundle, data.train, names, run_dir=run)
    assert not reused
    old_w = first["vim"].statistics.tensors["origin"]  # the origin depends on the head
    assert not torch.allclose(old_w, refit["vim"].statistics.tensors["origin"])
    _, reused = fit_detectors(bundle, data.train, names, run_dir=run)
    assert reused  # the refit was written back for the new weights


def test_statistics_are_fitted_on_the_training_split_only(
    all_scores: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dismax_cli.benchmark import score_checkpoint
    from dismax_cli.core.detectors import Detector
    from dismax_cli.engine import load_bundle, rebuild_run_data
    from dismax_cli.engine.predict import image_batches, predict_features_logits

    run = tmp_path / "run"
    shutil.copytree(_runs(all_scores["env"], "softmax"), run)
    (run / "detector_stats.pt").unlink()
    seen: list[torch.Tensor] = []
    original = Detector.fit

    def spy(self, train_features, train_targets, *, head=None):  # type: ignore[no-untyped-def]
        seen.append(torch.as_tensor(train_features).double())
        return original(self, train_features, train_targets, head=head)

    monkeypatch.setattr(Detector, "fit", spy)
    report = score_checkpoint(
        run,
        ["uniform"],
        data_dir=all_scores["env"]["DISMAX_DATA_DIR"],
        scores=("mahalanobis", "knn"),
    )
    bundle = load_bundle(run)
    data = rebuild_run_data(bundle.meta, data_dir=all_scores["env"]["DISMAX_DATA_DIR"])
    batches = image_batches(
        data.train.images, bundle.transform, batch_size=64, device=bundle.device
    )
    train_features, _ = predict_features_logits(bundle.model, batches)
    assert len(seen) == 2
    for features in seen:
        assert features.shape[0] == len(data.train) != len(data.test)
        torch.testing.assert_close(features, train_features.double(), rtol=1e-5, atol=1e-5)
    # The Mahalanobis class means are the per-class means of the training features.
    stats = torch.load(run / "detector_stats.pt", weights_only=True)["detectors"]["mahalanobis"]
    labels = data.train.labels.numpy()
    classes = stats["tensors"]["classes"].numpy()
    assert classes.tolist() == list(range(6))
    expected = np.stack([train_features.double().numpy()[labels == c].mean(0) for c in classes])
    np.testing.assert_allclose(stats["tensors"]["class_means"].numpy(), expected, atol=1e-5)
    scores = {r.score for r in report.methods[0].ood}
    assert {"mahalanobis", "knn", "msp"} <= scores and "odin" not in scores


def test_require_can_name_a_score(all_scores: dict, one_timing_round: None) -> None:
    softmax = _rows(all_scores["report"], "softmax", "uniform")
    value = softmax["mahalanobis"]["AUROC"]["mean"]
    env = _cli_env(all_scores)
    result = runner.invoke(
        app,
        [
            "benchmark",
            "--methods", "softmax", "dismax",
            "--scores", "msp", "mahalanobis",
            "--format", "json",
            "--require",
            f"softmax/mahalanobis:AUROC:uniform>={value - 0.001}",
            "softmax:AUROC:uniform>=0.5",
            "softmax/mahalanobis:FPR@95TPR:uniform<=0.05",
            "dismax/msp:AUROC:uniform>=0.999",
        ],
        env=env,
    )
    report = json.loads(result.stdout)
    passed = [r["passed"] for r in report["requirements"]]
    measured = report["requirements"][3]["value"]
    expected_dismax = _rows(all_scores["report"], "dismax", "uniform")["msp"]["AUROC"]["mean"]
    assert measured == pytest.approx(expected_dismax)  # the msp row, not the default mmles
    assert passed[:3] == [True, True, True]
    assert passed[3] is (expected_dismax >= 0.999)
    assert result.exit_code == (0 if all(passed) else EXIT_REQUIREMENT_FAILED)


def _openood_fpr(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """OpenOOD v1.5 (its ``fpr_recall``): OOD positive, the first threshold catching 95 % of
    OOD; the fraction of ID at or below it."""
    ood_sorted = np.sort(ood_scores)
    k = math.ceil(0.95 * len(ood_scores))
    threshold = ood_sorted[k - 1]
    return float(np.mean(id_scores <= threshold))


def test_fpr_convention_is_applied_and_named(all_scores: dict, tmp_path: Path) -> None:
    report = all_scores["report"]
    assert report["conventions"]["fpr_at_95_tpr_convention"] == "ours"
    run = _runs(all_scores["env"], "softmax")
    env = _cli_env(all_scores)
    dump, out = tmp_path / "s.npz", tmp_path / "r.json"
    result = runner.invoke(
        app,
        [
            "score", str(run), "--ood", "uniform", "--scores", "knn",
            "--fpr-convention", "openood", "--dump", str(dump), "--out", str(out),
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    scored = json.loads(out.read_text())
    assert scored["conventions"]["fpr_at_95_tpr_convention"] == "openood"
    assert "OOD is the positive class" in scored["conventions"]["fpr_at_95_tpr_rule"]
    arrays = np.load(dump)
    for score in ("msp", "knn"):
        row = next(r for r in scored["methods"][0]["ood"] if r["score"] == score)
        expected = _openood_fpr(arrays[f"id/{score}"], arrays[f"ood/uniform/{score}"])
        assert row["metrics"]["FPR@95TPR"]["mean"] == pytest.approx(expected, abs=1e-12)


@pytest.mark.skipif(not (SHARED / "cifar100_test_first20.npz").exists(), reason="no ../shared/data")
def test_the_openood_preset_with_local_stand_ins(
    all_scores: dict, one_timing_round: None
) -> None:
    env = _cli_env(all_scores)
    base = ["benchmark", "--methods", "softmax", "dismax", "--ood-preset", "openood-cifar10"]
    missing = runner.invoke(app, [*base, "--format", "json"], env=env)
    assert missing.exit_code == 1 and "Traceback" not in missing.output
    assert "OOD set 'tin' of the OpenOOD preset has no offline source" in missing.output
    assert "places365=imagefolder:DIR" in missing.output and "'cifar100'" in missing.output
    stand_ins = [
        f"cifar100=npz:{SHARED / 'cifar100_test_first20.npz'}",
        f"tin=npz:{SHARED / 'cifar10_test_first20_png.npz'}",
        "mnist=uniform",
        "svhn=gaussian",
        "textures=uniform",
        "places365=gaussian",
    ]
    result = runner.invoke(
        app,
        [*base, "--ood", *stand_ins, "--format", "json", "--require", "dismax:AUROC:far>=0"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ood_groups"] == {
        "near": ["cifar100", "tin"],
        "far": ["mnist", "svhn", "textures", "places365"],
    }
    assert report["config"]["ood_preset"] == "openood-cifar10"
    assert any("cifar100 holds 20 images, OpenOOD's 10,000" in n for n in report["notes"])
    for m in report["methods"]:
        per_set = {(r["ood"], r["score"]): r["metrics"]["AUROC"]["mean"] for r in m["ood"]}
        for mean in m["ood_means"]:
            labels = report["ood_groups"][mean["ood"]]
            expected = sum(per_set[(label, mean["score"])] for label in labels) / len(labels)
            assert mean["metrics"]["AUROC"]["mean"] == pytest.approx(expected, abs=1e-12)
    dismax = next(m for m in report["methods"] if m["method"] == "dismax")
    far = next(r for r in dismax["ood_means"] if r["ood"] == "far" and r["score"] == "mmles")
    assert report["requirements"][0]["value"] == pytest.approx(far["metrics"]["AUROC"]["mean"])
