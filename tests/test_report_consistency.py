"""Session-6 leftovers of ``dismax show REPORT.json`` and output paths (rep6's items 1-3).

Item 1: a report whose fields disagree (:mod:`dismax_cli.report_consistency`) is refused as
damage, in today's wording (``report 'r.json' is incomplete or damaged (PATH ...)``, exit 1),
before anything is printed or written. Items 2 and 3: output paths refused before any work
exit 2 (a bad option value); ``/dev/stderr`` as an output under ``--format json``
(README "Design notes").
"""

from __future__ import annotations

import copy
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import HEAVY_MODULES, ImportProbe, invoke_in, probe_cli

COMMITTED = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "cifar10-cpu.json"
DAMAGED = "report 'r.json' is incomplete or damaged ("


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    return json.loads(COMMITTED.read_text())


def _show(home: Path, data: dict[str, Any]) -> tuple[int, str, bool]:
    """``dismax show r.json --html page.html`` of ``data``: exit code, the one output line
    (stdout and stderr), and whether the page was written."""
    (home / "r.json").write_text(json.dumps(data))
    (home / "page.html").unlink(missing_ok=True)
    result = invoke_in(home, "show", "r.json", "--html", "page.html")
    return result.exit_code, " ".join(result.output.split()), (home / "page.html").exists()


def _stats(m: dict[str, Any]) -> list[dict[str, Any]]:
    """Every statistic over seeds of one method entry."""
    found = [m["temperature"]]
    for key in ("id_before", "id_after", "score_efficiency"):
        found += [s for s in (m.get(key) or {}).values() if s]
    found += [m[k] for k in ("throughput_per_s", "efficiency", "train_s") if m.get(k)]
    for r in m["ood"] + m.get("ood_means", []):
        found += [s for s in r["metrics"].values() if s]
    return found


def _one_seed(data: dict[str, Any]) -> None:
    """Cut every method to its first seed (one value, std null; intervals dropped: they are
    of the three-seed mean; the per-sample file is not copied)."""
    data.pop("per_sample")
    for m in data["methods"]:
        m["seeds"], m["runs"] = m["seeds"][:1], m["runs"][:1]
        m["reliability"] = m["reliability"][:1]
        for stat in _stats(m):
            stat["values"] = stat["values"][:1]
            stat["mean"], stat["std"] = stat["values"][0], None
        for r in m["ood"]:
            r["intervals"], r["vs_baseline"], r["baseline"] = {}, {}, None


def _row(data: dict[str, Any], method: int, ood: str, score: str | None = None) -> int:
    m = data["methods"][method]
    wanted = score or m["default_score"]
    return next(j for j, r in enumerate(m["ood"]) if r["ood"] == ood and r["score"] == wanted)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit setting the dotted JSON ``path`` (``methods[0].n_id``) to ``value``."""

    def edit(data: dict[str, Any]) -> None:
        parts = path.replace("[", ".").replace("]", "").split(".")
        node: Any = data
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node[part]
        last = parts[-1]
        node[int(last) if last.isdigit() else last] = value

    return edit


def _drop_seed(data: dict[str, Any]) -> None:
    m = data["methods"][0]
    m["seeds"], m["runs"] = m["seeds"][:2], m["runs"][:2]


def _extra_value(data: dict[str, Any]) -> None:
    stat = data["methods"][1]["ood"][3]["metrics"]["AUROC"]
    stat["values"].append(stat["mean"])  # the mean and the std stay right
    stat["std"] = statistics.stdev(stat["values"])


def _wrong_std(data: dict[str, Any]) -> None:
    stat = data["methods"][2]["id_after"]["ECE"]
    stat["std"] = statistics.pstdev(stat["values"])  # ddof = 0, not the sample std


def _duplicate_reliability_seed(data: dict[str, Any]) -> None:
    data["methods"][0]["reliability"][1]["seed"] = 0


def _reliability_short(data: dict[str, Any]) -> None:
    del data["methods"][3]["reliability"][2]


def _reliability_unknown_seed(data: dict[str, Any]) -> None:
    data["methods"][1]["reliability"][2]["seed"] = 7


def _reliability_temperature(data: dict[str, Any]) -> None:
    data["methods"][1]["reliability"][0]["temperature"] *= 2


def _bins_miscount(data: dict[str, Any]) -> None:
    bins = data["methods"][0]["reliability"][0]["after"]
    full = next(b for b in bins if b["count"] > 0)
    full["count"] += 1


def _empty_bin_with_accuracy(data: dict[str, Any]) -> None:
    bins = data["methods"][0]["reliability"][0]["before"]
    empty = next(b for b in bins if b["count"] == 0)
    empty["accuracy"] = 0.5


def _interval_not_the_mean(data: dict[str, Any]) -> None:
    iv = data["methods"][0]["ood"][0]["intervals"]["DETACC"]
    iv["value"] = (iv["low"] + iv["value"]) / 2  # inside [low, high], but not the mean


def _difference_wrong(data: dict[str, Any]) -> None:
    j = _row(data, 2, "mnist")
    diff = data["methods"][2]["ood"][j]["vs_baseline"]["AUROC"]
    diff["value"] = (diff["low"] + diff["high"]) / 2 + 0.001 * (diff["high"] - diff["low"])


def _baseline_missing(data: dict[str, Any]) -> None:
    data["methods"][2]["ood"][_row(data, 2, "mnist")]["baseline"] = "nope"


def _no_default_row(data: dict[str, Any]) -> None:
    del data["methods"][0]["ood"][_row(data, 0, "mnist")]


def _unknown_set(data: dict[str, Any]) -> None:
    data["methods"][0]["ood"][_row(data, 0, "mnist", "energy")]["ood"] = "svhn"


def _efficiency(data: dict[str, Any]) -> None:
    data["methods"][2]["efficiency"]["values"][1] *= 1.5
    values = data["methods"][2]["efficiency"]["values"]
    data["methods"][2]["efficiency"]["mean"] = statistics.fmean(values)
    data["methods"][2]["efficiency"]["std"] = statistics.stdev(values)


def _classes(data: dict[str, Any]) -> None:
    data["datasets"][2]["num_classes"] = 9


def _group_of_unknown_sets(data: dict[str, Any]) -> None:
    data["ood_groups"] = {"far": ["mnist", "svhn"]}


def _not_applicable_with_row(data: dict[str, Any]) -> None:
    data["methods"][0]["not_applicable"] = {"energy": "does not apply"}


#: (name, edit, the path the line names, what the line says would agree)
def _softmax_last_with_a_value_less(data: dict[str, Any]) -> None:
    """SoftMax (the efficiency's reference) after the others, a throughput value short: its
    own count must be named before another method's efficiency is compared with it."""
    softmax = data["methods"].pop(0)
    stat = softmax["throughput_per_s"]
    stat["values"] = stat["values"][:2]
    stat["mean"], stat["std"] = statistics.fmean(stat["values"]), statistics.stdev(stat["values"])
    data["methods"].append(softmax)


def _ood_set_twice(data: dict[str, Any]) -> None:
    first = next(d for d in data["datasets"] if d["role"] == "ood")
    data["datasets"].append(dict(first))


CASES: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    ("softmax last, a value short", _softmax_last_with_a_value_less,
     "methods[3].throughput_per_s.values has 2", "one value per seed"),
    ("an OOD set twice", _ood_set_twice, "is OOD set 'tin_resize' again", "listed once"),
    ("seeds vs values", _drop_seed, "methods[0].temperature.values has 3", "lists 2 seed(s)"),
    ("a value too many", _extra_value, "methods[1].ood[3].metrics.AUROC.values has 4",
     "one value per seed"),
    ("runs vs seeds", _set("methods[1].runs", ["a", "b"]), "methods[1].runs lists 2",
     "make 3"),
    ("duplicate reliability seed", _duplicate_reliability_seed,
     "methods[0].reliability[1].seed is 0 again", "each seed once"),
    ("reliability entry missing", _reliability_short, "methods[3].reliability has 2 entries",
     "one entry per seed"),
    ("reliability seed not run", _reliability_unknown_seed,
     "methods[1].reliability[2].seed is 7", "seeds does not list (0, 1, 2)"),
    ("reliability temperature", _reliability_temperature,
     "methods[1].reliability[0].temperature is", "methods[1].temperature.values"),
    ("bins miscount", _bins_miscount, "methods[0].reliability[0].after counts 10001",
     "methods[0].n_id is 10000"),
    ("empty bin with accuracy", _empty_bin_with_accuracy, ".before[0].accuracy is 0.5",
     "expected null"),
    ("std ddof 0", _wrong_std, "methods[2].id_after.ECE.std is", "sample std (ddof = 1)"),
    ("std null with 3 values", _set("methods[0].id_before.ACC.std", None),
     "methods[0].id_before.ACC.std is null", "have a sample std (0.00382143)"),
    ("interval low above high", _set("methods[0].ood[0].intervals.AUROC.low", 0.68),
     "methods[0].ood[0].intervals.AUROC has low 0.68 above high", ""),
    ("interval value not the mean", _interval_not_the_mean,
     "methods[0].ood[0].intervals.DETACC.value is", "the metric's mean is 0.6248"),
    ("difference not the means'", _difference_wrong, "vs_baseline.AUROC.value is",
     "the means differ by"),
    ("baseline not a method", _baseline_missing, ".baseline is 'nope'", "softmax"),
    ("kind score on a benchmark body", _set("kind", "score"), "kind is 'score'",
     "kind 'benchmark' would match"),
    ("kind unknown", _set("kind", "Benchmark"), "kind is 'Benchmark'",
     "expected 'benchmark' or 'score'"),
    ("default row missing", _no_default_row, "methods[0].ood has no row for OOD set 'mnist'",
     "default score 'msp'"),
    ("row of an unlisted set", _unknown_set, ".ood is 'svhn'",
     "tin_resize, mnist, fashion_mnist"),
    ("n_ood vs the set", _set("methods[0].ood[0].n_ood", 9999), "methods[0].ood[0].n_ood is 9999",
     "has 10000 images"),
    ("row n_id vs method", _set("methods[1].ood[2].n_id", 9000),
     "methods[1].ood[2].n_id is 9000", "methods[1].n_id is 10000"),
    ("method n_id vs test set", _set("datasets[2].n", 9000), "methods[0].n_id is 10000",
     "the ID test set has 9000 images (datasets[2].n)"),
    ("ID classes", _classes, "datasets[2].num_classes is 9", "datasets[0].num_classes is 10"),
    ("per-sample seed", _set("per_sample.seed", 5), "per_sample.seed is 5", "ran 0, 1, 2"),
    ("efficiency vs throughputs", _efficiency, "methods[2].efficiency.values[1] is",
     "over SoftMax's at that seed"),
    ("group of unknown sets", _group_of_unknown_sets, "ood_groups.far[1] is 'svhn'",
     "not an OOD set"),
    ("n/a score with a row", _not_applicable_with_row, ".score is 'energy'",
     "not_applicable marks"),
]


@pytest.mark.parametrize(("edit", "path", "agree"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_an_inconsistent_report_is_refused_as_damage(
    tmp_path: Path, committed: dict[str, Any], edit: Callable, path: str, agree: str
) -> None:
    data = copy.deepcopy(committed)
    edit(data)
    code, line, wrote = _show(tmp_path, data)
    assert code == 1, line
    assert line.startswith("error: " + DAMAGED) and path in line and agree in line, line
    assert "Traceback" not in line and not wrote  # nothing printed, nothing written


def test_one_seed_has_std_zero_or_null(tmp_path: Path, committed: dict[str, Any]) -> None:
    data = copy.deepcopy(committed)
    _one_seed(data)
    code, line, wrote = _show(tmp_path, data)
    assert code == 0 and wrote, line  # a consistent one-seed report shows
    data["methods"][1]["id_before"]["NLL"]["std"] = 0.0
    code, line, wrote = _show(tmp_path, data)
    assert code == 0 and wrote, line
    data["methods"][1]["id_before"]["NLL"]["std"] = 0.01
    code, line, wrote = _show(tmp_path, data)
    assert code == 1 and not wrote
    assert DAMAGED + "methods[1].id_before.NLL.std is 0.01, but one value has std 0" in line


@pytest.fixture(scope="module")
def score_json(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real ``dismax score`` report of a one-epoch digits run."""
    home = tmp_path_factory.mktemp("score")
    train = ["train", "--dataset", "digits[0-5]", "--epochs", "1", "--out", "run", "-q"]
    assert invoke_in(home, *train).exit_code == 0
    result = invoke_in(home, "score", "run", "--ood", "uniform", "--out", "s.json", "-q")
    assert result.exit_code == 0, result.output
    return json.loads((home / "s.json").read_text())


def test_kind_benchmark_on_a_score_body_is_damage(
    tmp_path: Path, score_json: dict[str, Any]
) -> None:
    assert _show(tmp_path, score_json)[0] == 0  # the report as written shows
    code, line, _ = _show(tmp_path, {**score_json, "kind": "benchmark"})
    assert code == 1 and line.startswith("error: " + DAMAGED + "kind is 'benchmark'"), line
    assert "config.checkpoint is set" in line and "kind 'score' would match" in line
    body = copy.deepcopy(score_json)
    del body["config"]["checkpoint"]
    code, line, _ = _show(tmp_path, body)
    assert code == 1 and "kind is 'score'" in line and "config.checkpoint is missing" in line


# ----------------------------------------------------------------------------- items 2 and 3

LONG = "a" * 300  # one name over the usual 255-byte NAME_MAX
BENCH = ["benchmark", "--epochs", "1", "--methods", "softmax", "--bootstrap", "0", "-q"]
#: command -> (arguments before the output option, {option: folder?})
COMMANDS: dict[str, tuple[list[str], dict[str, bool]]] = {
    "score": (["score", "r1", "--ood", "uniform", "-q"], {"--out": False, "--dump": False}),
    "benchmark": (BENCH, {"--out": False, "--plots": True, "--html": False}),
    "show": (["show", "r.json"], {"--plots": True, "--html": False}),
    "train": (["train", "--dataset", "digits[0-5]", "--epochs", "1", "-q"], {"--out": True}),
}
#: kind -> (the value, the words of its line, applies to a folder option, to a file option)
KINDS: dict[str, tuple[str, str, bool, bool]] = {
    "missing folder": ("nope/x.json", "does not exist", False, True),
    "folder where a file goes": ("dir", "is a folder: name a file inside it", False, True),
    "file among the parents": ("file/x", "is a file, not a folder", True, True),
    "file where a folder goes": ("file", "is a file", True, False),
    "symbolic link loop": ("loop1", "symbolic link loop", True, True),
    "name too long": (LONG, "too long for the file system", True, True),
    "read-only folder": ("ro/x", "is not writable", True, True),
}
ROWS = [
    (command, option, kind)
    for command, (_, options) in COMMANDS.items()
    for option, folder in options.items()
    for kind, (_, _, for_folder, for_file) in KINDS.items()
    if (for_folder if folder else for_file)
]


@pytest.fixture(scope="module")
def out_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained run ``r1``, a saved report ``r.json``, and the paths of every kind."""
    home = tmp_path_factory.mktemp("outputs")
    train = ["train", "--dataset", "digits[0-5]", "--epochs", "1", "--out", "r1", "-q"]
    assert invoke_in(home, *train).exit_code == 0
    (home / "r.json").write_bytes(COMMITTED.read_bytes())
    (home / "dir").mkdir()
    (home / "ro").mkdir()
    (home / "file").write_text("x")
    (home / "loop1").symlink_to("loop2")
    (home / "loop2").symlink_to("loop1")
    return home


@pytest.fixture
def read_only(out_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``out_home/ro`` (and ``r1`` for calibrate) read-only, as a read-only mount is: the
    tests run as root, whom ``chmod`` does not stop."""
    import os

    real_access = os.access
    frozen = {str(out_home / "ro"), str(out_home / "r1")}

    def access(path: object, mode: int, **kwargs: object) -> bool:
        if os.path.abspath(str(path)) in frozen and mode & os.W_OK:
            return False
        return real_access(path, mode, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "access", access)


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch, no_work: None) -> None:
    """Training, calibrating, scoring or benchmarking now fails the test."""
    import dismax_cli.engine as engine

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the command started its work before refusing the output path")

    monkeypatch.setattr(engine, "fit", fail)
    monkeypatch.setattr(engine, "calibrate_checkpoint", fail)


@pytest.mark.parametrize(("command", "option", "kind"), ROWS,
                         ids=[f"{c} {o} {k}" for c, o, k in ROWS])  # fmt: skip
def test_a_refused_output_path_is_a_bad_value_exit_2(
    out_home: Path, read_only: None, no_training: None, command: str, option: str, kind: str
) -> None:
    value, words, _, _ = KINDS[kind]
    before = sorted(p.name for p in out_home.iterdir())
    result = invoke_in(out_home, *COMMANDS[command][0], option, value)
    line = " ".join(result.output.split())
    assert result.exit_code == 2, line
    assert line.startswith("error: ") and words in line and "Traceback" not in line, line
    assert f"{option} '{value}'" in line  # the value as typed, with its option
    assert sorted(p.name for p in out_home.iterdir()) == before  # nothing created


def test_calibrate_into_a_read_only_run_folder_is_exit_2(
    out_home: Path, read_only: None, no_training: None
) -> None:
    result = invoke_in(out_home, "calibrate", "r1")
    line = " ".join(result.output.split())
    assert result.exit_code == 2 and "folder 'r1' is not writable" in line, line


def test_train_into_a_folder_that_holds_other_files_is_exit_2(out_home: Path) -> None:
    (out_home / "dir2").mkdir(exist_ok=True)
    (out_home / "dir2" / "notes.txt").write_text("mine")
    result = invoke_in(out_home, *COMMANDS["train"][0], "--out", "dir2")
    assert result.exit_code == 2 and "is not empty and holds no run" in result.output
    assert sorted(p.name for p in (out_home / "dir2").iterdir()) == ["notes.txt"]
    result = invoke_in(out_home, *COMMANDS["train"][0], "--out", "r1")  # a run: --resume
    assert result.exit_code == 2 and "already holds a run: pass --resume" in result.output


def test_a_failure_while_writing_stays_exit_1(
    out_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    real_replace = os.replace

    def replace(src: object, dst: object, **kwargs: object) -> None:  # the disk fills up
        if os.fspath(dst).endswith("full.json"):  # type: ignore[arg-type]
            raise OSError(errno.ENOSPC, "No space left on device", os.fspath(dst))  # type: ignore[arg-type]
        real_replace(src, dst, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", replace)
    result = invoke_in(out_home, *COMMANDS["score"][0], "--out", "full.json")
    assert result.exit_code == 1 and "No space left on device" in result.output
    assert not (out_home / "full.json").exists()


def _run(home: Path, *args: str) -> tuple[int, str, str]:
    """``dismax ARGS`` as a real process (its own stdout and stderr pipes)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "DISMAX_DATA_DIR": str(home / "data"), "DISMAX_OFFLINE": "1",
           "DISMAX_RUNS_DIR": str(home / "runs"), "PYTHONPATH": str(COMMITTED.parents[2])}
    proc = subprocess.run([sys.executable, "-m", "dismax_cli", *args], cwd=home, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize(
    ("args", "stream"),
    [
        (["show", "r.json", "--format", "json", "--html", "/dev/stdout"], "standard output"),
        (["show", "r.json", "--format", "json", "--html", "/dev/stderr"], "standard error"),
        (["show", "r.json", "--html", "/dev/stderr"], "standard error"),
        (["show", "r.json", "--format", "json", "--plots", "/dev/stderr"], "standard error"),
        (["score", "r1", "--ood", "uniform", "--format", "json", "--out", "/dev/stderr"],
         "standard error"),
        (["score", "r1", "--ood", "uniform", "--dump", "/dev/stderr"], "standard error"),
        ([*BENCH, "--format", "json", "--out", "/dev/stderr"], "standard error"),
    ],
)
def test_the_commands_own_streams_as_outputs_are_refused(
    out_home: Path, args: list[str], stream: str
) -> None:
    code, out, err = _run(out_home, *args)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1, err
    value = args[-1]
    what = "folder" if args[-2] == "--plots" else "file"
    assert lines[0].startswith(f"error: cannot write {args[-2]} '{value}': it is this command's "
                               f"{stream}") and f"to a {what} of its own" in lines[0], lines


def test_an_openood_benchmark_writes_intervals_show_accepts(tmp_path: Path) -> None:
    """Under ``--fpr-convention openood`` the FPR@95TPR interval was of OUR rule's value
    (0.84 against a metric mean of 0.70 on digits): show then refused the tool's own report."""
    args = [*BENCH, "--ood", "digits[6-9]", "--fpr-convention", "openood", "--bootstrap", "20",
            "--out", "oo.json"]  # fmt: skip
    result = invoke_in(tmp_path, *args)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "oo.json").read_text())
    row = data["methods"][0]["ood"][0]
    interval, mean = row["intervals"]["FPR@95TPR"], row["metrics"]["FPR@95TPR"]["mean"]
    assert interval["value"] == pytest.approx(mean, abs=1e-12)
    assert invoke_in(tmp_path, "show", "oo.json").exit_code == 0


def test_an_older_openood_reports_fpr_interval_of_our_rule_still_shows(
    tmp_path: Path, committed: dict[str, Any]
) -> None:
    """Before the evidence fix, --fpr-convention openood reports held FPR@95TPR intervals of
    our rule's value (0.84 against a mean of 0.70 on digits), with the same tool and schema
    versions: show keeps showing them (a report dismax wrote is not damage). Any other metric's
    interval is still compared, and so is FPR@95TPR's under our convention."""
    data = copy.deepcopy(committed)
    data.pop("per_sample")  # the tables-only page (the samples file is not beside it here)
    row = data["methods"][0]["ood"][0]
    row["intervals"]["FPR@95TPR"]["value"] = row["intervals"]["FPR@95TPR"]["low"]
    data["config"]["fpr_convention"] = "openood"
    assert _show(tmp_path, data)[0] == 0
    data["config"]["fpr_convention"] = "ours"
    code, line, _ = _show(tmp_path, data)
    assert code == 1 and "intervals.FPR@95TPR.value" in line, line



def test_train_into_a_run_without_resume_is_refused_before_torch(
    out_home: Path, import_probe: ImportProbe
) -> None:
    """It was exit 2 only after torch had loaded and the data was read (2.7 s; tester,
    session 6); the CLI now looks for the checkpoint first, in the engine's words."""
    before = (out_home / "r1" / "checkpoint.pt").read_bytes()
    result = probe_cli(import_probe, out_home, ["train", "--epochs", "1", "--out", "r1"])
    assert result.code == 2, result.stderr
    assert "run folder 'r1' already holds a run: pass --resume" in result.stderr
    assert result.heavy(HEAVY_MODULES) == []
    assert (out_home / "r1" / "checkpoint.pt").read_bytes() == before
