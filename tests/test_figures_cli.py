"""``dismax benchmark --plots/--html/--bootstrap`` and ``benchmark show --plots/--html`` (issue
16), on the offline default benchmark; bad values answer with one line and write nothing."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from support import run_dismax
from typer.testing import CliRunner

from dismax_cli.cli.app import app
from dismax_cli.plots import DEFAULT_HEIGHT_PX, DEFAULT_WIDTH_PX, PNG_MAGIC, png_size

ROOT = Path(__file__).resolve().parents[1]
#: The CIFAR-10 report committed before intervals and --scores all (one seed, four methods).
OLD_REPORT = ROOT / "tests" / "data" / "cifar10-cpu-v1.json"
runner = CliRunner()


def _dismax(*args: str, env: dict, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    return run_dismax(*args, env=env, cwd=cwd, timeout=timeout)


def _invoke(*args: str, env: dict, cwd: Path):  # noqa: ANN202 (typer's Result)
    """``dismax ARGS`` in-process (CliRunner) in the folder ``cwd``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        return runner.invoke(app, list(args), env=env)


@pytest.fixture(scope="module")
def figures(
    tmp_path_factory: pytest.TempPathFactory, default_benchmark_env: dict, time_one_round
) -> dict:
    """The default benchmark twice, in-process on the session's runs: ``--bootstrap 0 --out``,
    then ``--out --plots --html``; timed for one round (no test here reads a speed)."""
    home = tmp_path_factory.mktemp("figures")
    env = dict(default_benchmark_env)
    with pytest.MonkeyPatch.context() as patch:
        time_one_round(patch)
        first = _invoke("benchmark", "--quiet", "--bootstrap", "0", "--out", "plain.json",
                        env=env, cwd=home)  # fmt: skip
        assert first.exit_code == 0, first.output
        run = _invoke("benchmark", "--quiet", "--out", "r.json", "--plots", "plots", "--html",
                      "r.html", env=env, cwd=home)  # fmt: skip
    assert run.exit_code == 0, run.output
    return {"home": home, "env": env, "stderr": run.stderr, "stdout": run.stdout}


def test_a_rerun_with_the_new_options_reuses_the_trained_runs(figures: dict) -> None:
    plain = json.loads((figures["home"] / "plain.json").read_text())
    report = json.loads((figures["home"] / "r.json").read_text())
    assert plain["methods"][0]["runs"] == report["methods"][0]["runs"]
    assert report["config"]["bootstrap"] == 1000 and plain["config"]["bootstrap"] == 0
    assert all(r["intervals"] == {} for m in plain["methods"] for r in m["ood"])


def test_the_report_names_its_per_sample_file_and_it_holds_labels_and_logits(
    figures: dict,
) -> None:
    home = figures["home"]
    report = json.loads((home / "r.json").read_text())
    named = report["per_sample"]
    path = home / named["file"]
    assert named["file"] == "r.samples.npz"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == named["sha256"]
    with np.load(path, allow_pickle=False) as npz:
        targets = npz["targets"]
        index = json.loads(str(npz["index"].reshape(-1)[0]))
        names = [m["name"] for m in index["methods"]]
        assert names == [m["method"] for m in report["methods"]]
        for i, m in enumerate(report["methods"]):
            logits = npz[f"m{i}_logits"]
            # The stored logits and labels give the report's accuracy at T = 1.
            acc = float(np.mean(np.argmax(logits, axis=1) == targets))
            assert acc == pytest.approx(m["id_before"]["ACC"]["mean"])
            assert index["methods"][i]["temperature"] == m["temperature"]["values"][0]
    assert targets.shape == (report["methods"][0]["n_id"],)


def test_uncertainty_metrics_and_reliability_bins_are_in_the_json(figures: dict) -> None:
    report = json.loads((figures["home"] / "r.json").read_text())
    for m in report["methods"]:
        for key in ("BRIER", "AURC", "AECE", "CWECE"):
            assert 0 <= m["id_after"][key]["mean"] <= (2 if key == "BRIER" else 1)
        (rel,) = m["reliability"]
        for stage in ("before", "after"):
            assert len(rel[stage]) == 15
            assert sum(b["count"] for b in rel[stage]) == m["n_id"]
            ece = sum(b["count"] / m["n_id"] * abs(b["accuracy"] - b["confidence"])
                      for b in rel[stage] if b["count"])  # fmt: skip
            stats = m["id_before"] if stage == "before" else m["id_after"]
            assert ece == pytest.approx(stats["ECE"]["mean"], abs=1e-9)


def test_every_plot_kind_is_a_png_of_the_stated_size(figures: dict) -> None:
    plots = figures["home"] / "plots"
    names = sorted(p.name for p in plots.iterdir())
    methods = ["softmax", "isomax_plus", "dismax", "ensemble"]
    for m in methods:
        assert f"reliability-{m}.png" in names
        assert f"hist-{m}-uniform.png" in names
        assert any(re.fullmatch(rf"hist-{m}-digits_6_9-[0-9a-f]{{8}}\.png", n) for n in names)
    for kind in ("roc", "pr"):
        assert f"{kind}-uniform.png" in names
    assert "risk-coverage.png" in names
    assert len(names) == 4 + 4 * 2 + 2 * 2 + 1
    for name in names:
        data = (plots / name).read_bytes()
        assert data[:8] == PNG_MAGIC
        assert png_size(data) == (DEFAULT_WIDTH_PX, DEFAULT_HEIGHT_PX)
    assert "wrote 17 plot(s)" in figures["stderr"]


def test_show_redraws_the_same_plots_and_page_from_the_saved_data(figures: dict) -> None:
    home = figures["home"]
    shown = _invoke("benchmark", "show", "r.json", "--plots", "again", "--html", "again.html",
                    env=figures["env"], cwd=home)  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert shown.stdout == figures["stdout"]
    first = {p.name: p.read_bytes() for p in (home / "plots").iterdir()}
    again = {p.name: p.read_bytes() for p in (home / "again").iterdir()}
    assert first == again
    assert (home / "again.html").read_bytes() == (home / "r.html").read_bytes()


def test_tables_show_the_uncertainty_table_intervals_and_differences(figures: dict) -> None:
    out = figures["stdout"]
    assert "In-distribution: uncertainty at the calibrated T" in out
    assert "uniform: minus SoftMax (points, paired)" in out
    assert max(len(line) for line in out.splitlines()) <= 80
    report = json.loads((figures["home"] / "r.json").read_text())
    dismax = report["methods"][2]
    r = next(r for r in dismax["ood"] if r["ood"] == "uniform" and r["score"] == "mmles")
    interval = r["intervals"]["AUROC"]
    assert interval["low"] <= r["metrics"]["AUROC"]["mean"] <= interval["high"]
    assert f"(±{100 * (interval['high'] - interval['low']) / 2:.2f})" in out
    assert f"{100 * r['vs_baseline']['AUROC']['value']:+.2f}" in out


def _html_helpers():
    path = ROOT / "tests" / "test_html_report.py"
    spec = importlib.util.spec_from_file_location("_html_tests", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_the_page_is_self_contained_and_holds_the_new_values(figures: dict) -> None:
    page = (figures["home"] / "r.html").read_text(encoding="utf-8")
    links = set(re.findall(r'<a href="(https?://[^"]+)"', page))
    assert set(re.findall(r"https?://[^\s\"'<>()]+", page)) <= links
    assert page.count("data:image/png;base64,") == 17
    report = json.loads((figures["home"] / "r.json").read_text())
    for m in report["methods"]:
        assert f"{m['id_after']['BRIER']['mean']:.4f}" in page
        assert f"{100 * m['id_after']['AURC']['mean']:.2f}" in page
    assert 'id="uncertainty-table"' in page and 'id="reliability-table-0"' in page


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_headless_chromium_renders_the_benchmark_page(figures: dict, tmp_path: Path) -> None:
    helpers = _html_helpers()
    url = (figures["home"] / "r.html").as_uri()
    netlog = tmp_path / "net.json"
    dom = helpers._chromium(tmp_path, url, "--dump-dom", f"--log-net-log={netlog}").stdout
    requests = helpers._page_requests(netlog)
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    parsed = helpers._parse(dom.decode())
    assert "diff-table-0" in parsed.tables and "uncertainty-table" in parsed.tables
    report = json.loads((figures["home"] / "r.json").read_text())
    rows = parsed.tables["uncertainty-table"][1:]
    for row, m in zip(rows, report["methods"], strict=True):
        assert row[1] == f"{m['id_after']['BRIER']['mean']:.4f}"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--bootstrap", "-1"], "'-1' is not an integer from 0 to 100,000"),
        (["--bootstrap", "1.5"], "'1.5' is not an integer from 0 to 100,000"),
        (["--bootstrap", "200000"], "(too large)"),
        (["--plots", "afile"], "--plots 'afile' is a file: pass a folder"),
    ],
)
def test_bad_values_are_usage_errors_and_nothing_is_written(
    args: list[str], needle: str, tmp_path: Path, default_benchmark_env: dict
) -> None:
    (tmp_path / "afile").write_text("")
    proc = _dismax("benchmark", *args, "--out", "r.json", "--html", "r.html",
                   env=default_benchmark_env, cwd=tmp_path, timeout=120)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_bad_bootstrap_in_a_config_file_names_key_and_file(
    tmp_path: Path, default_benchmark_env: dict
) -> None:
    (tmp_path / "c.yaml").write_text("bootstrap: -3\n")
    proc = _dismax("benchmark", "--config", "c.yaml", env=default_benchmark_env, cwd=tmp_path,
                   timeout=120)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "key 'bootstrap' in config file 'c.yaml'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_show_of_the_committed_old_report(tmp_path: Path, default_benchmark_env: dict) -> None:
    env = default_benchmark_env
    plots = _invoke("benchmark", "show", str(OLD_REPORT), "--plots", "p", env=env, cwd=tmp_path)
    assert plots.exit_code == 1 and isinstance(plots.exception, SystemExit)  # no crash
    assert "names no per-sample file" in plots.stderr and "Traceback" not in plots.stderr
    assert plots.stdout == "" and list(tmp_path.iterdir()) == []  # nothing half-written
    page = _invoke("benchmark", "show", str(OLD_REPORT), "--html", "old.html", env=env,
                   cwd=tmp_path)  # fmt: skip
    assert page.exit_code == 0, page.output
    assert "no plots: the report has no per-sample data" in page.stderr
    text = (tmp_path / "old.html").read_text(encoding="utf-8")
    assert "data:image/png" not in text and 'id="ood-table-2"' in text
    assert "no uncertainty metrics" in page.stdout and "no bootstrap intervals" in page.stdout


def test_dump_stores_the_id_labels(figures: dict) -> None:
    report = json.loads((figures["home"] / "r.json").read_text())
    run = report["methods"][0]["runs"][0]
    scoring = _invoke("score", run, "--ood", "uniform", "--dump", "d.npz", "--format", "json",
                      env=figures["env"], cwd=figures["home"])  # fmt: skip
    assert scoring.exit_code == 0, scoring.output
    scored = json.loads(scoring.stdout)
    with np.load(figures["home"] / "d.npz") as npz:
        labels, logits = npz["id_labels"], npz["id_logits"]
    assert labels.dtype == np.int64 and labels.shape == (logits.shape[0],)
    acc = float(np.mean(np.argmax(logits, axis=1) == labels))
    assert acc == pytest.approx(scored["methods"][0]["id_before"]["ACC"]["mean"])
