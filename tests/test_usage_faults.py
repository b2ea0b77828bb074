"""Faults a bad-input tester found (review of session 4): usage errors that loaded torch first,
figure sets left half-written, ``--config`` given twice, a report read through a symbolic link,
messages that showed Python's repr instead of the value as typed.

The project's rule (README "Design notes", "Exit codes and option values"): bad input gets one
line naming the value and the fix, exits non-zero, loses nothing, shows no traceback without
``--debug``, and a usage error answers before torch is imported.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support import ImportProbe

HEAVY = ("torch", "torchvision", "sklearn", "scipy")

#: Files the probes below use, written into the probe's folder.
_FILES = {
    "unknown.yaml": "foo: 1\n",
    "unknown2.yaml": "epochs: 2\nlearning_rate: 0.1\n",
    "typo.yaml": "batchsize: 8\n",
    "two_rows.yaml": "methods: [dismax, dismax_nofpr]\n",
    "no_fpr.yaml": "fpr: false\n",
    "decay.yaml": "epochs: 5\ndecay_epochs: [7]\n",
    "knn.yaml": "require: ['dismax/knn:AUROC:uniform>=0.5']\n",
    "small_ensemble.yaml": "ensemble_size: 1\n",
}


def _probe(
    probe: ImportProbe, tmp_path: Path, args: list[str]
) -> tuple[int, str, list[str]]:
    """Run ``dismax ARGS`` as a fresh interpreter would, in ``tmp_path``: its exit code, stderr,
    and the heavy modules loaded by the time it exits."""
    for name, text in _FILES.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "folder_ckpt" / "checkpoint.pt").mkdir(parents=True, exist_ok=True)
    code = f"import sys\nfrom dismax_cli.cli.app import main\nsys.exit(main({args!r}))\n"
    env = {**os.environ, "DISMAX_OFFLINE": "1", "DISMAX_RUNS_DIR": str(tmp_path / "runs")}
    env["DISMAX_DATA_DIR"] = str(tmp_path / "data")  # a probe that wrongly ran finds nothing
    result = probe.run(code, cwd=tmp_path, env=env)
    return result.code, result.stderr, result.heavy(HEAVY)


# ----------------------------------------------------------------------------- item 1


@pytest.mark.parametrize(
    "args",
    [
        # An unknown key in a --config file (train and benchmark; several spellings).
        ["train", "--config", "unknown.yaml", "--out", "x"],
        ["train", "--config", "unknown2.yaml", "--out", "x"],
        ["train", "--out", "x", "--resume", "--config", "typo.yaml"],
        ["benchmark", "--config", "unknown.yaml"],
        ["benchmark", "--config", "typo.yaml", "--epochs", "1"],
        # --no-fpr where two DisMax rows would result (command line, file, or both).
        ["benchmark", "--methods", "dismax", "dismax_nofpr", "--no-fpr"],
        ["benchmark", "--config", "two_rows.yaml", "--no-fpr"],
        ["benchmark", "--config", "no_fpr.yaml", "--methods", "dismax", "dismax_nofpr"],
        # A --require that this run cannot meet: unknown score, set, method, preset set.
        ["benchmark", "--require", "dismax/knn:AUROC:uniform>=0.5"],
        ["benchmark", "--config", "knn.yaml"],
        ["benchmark", "--require", "softmax/energyy:AUROC:digits[6-9]>=0.5"],
        ["benchmark", "--require", "dismax:AUROC:nosuchset>=0.5"],
        ["benchmark", "--require", "nosuch:AUROC:uniform>=0.5"],
        ["benchmark", "--methods", "softmax", "--require", "dismax:AUROC:uniform>=0.5"],
        ["benchmark", "--ood-preset", "openood-cifar10", "--require", "dismax:AUROC:x>=0.5"],
        # Other values only the merged configuration can refuse.
        ["benchmark", "--epochs", "5", "--decay-epochs", "7"],
        ["benchmark", "--config", "decay.yaml"],
        ["train", "--config", "decay.yaml", "--out", "x"],
        ["benchmark", "--methods", "ensemble", "--ensemble-size", "1"],
        ["benchmark", "--config", "small_ensemble.yaml"],
        ["benchmark", "--val-fraction", "0"],
        ["train", "--out", "x", "--resume", "--val-fraction", "0"],
        ["train", "--out", "x", "--method", "softmax", "--fpr"],
    ],
)
def test_usage_errors_of_merged_settings_answer_before_torch_loads(
    import_probe: ImportProbe, tmp_path: Path, args: list[str]
) -> None:
    code, stderr, heavy = _probe(import_probe, tmp_path, args)
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert heavy == [], (args, heavy)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["calibrate", "folder_ckpt"],
        ["score", "folder_ckpt", "--ood", "uniform"],
        ["detect", "folder_ckpt", "image.png"],
        ["score", "missing.pt", "--ood", "uniform", "--out", "folder_ckpt"],
        ["score", "missing.pt", "--ood", "uniform", "--dump", "missing.pt"],
    ],
)
def test_unusable_paths_of_checkpoint_commands_answer_before_torch_loads(
    import_probe: ImportProbe, tmp_path: Path, args: list[str]
) -> None:
    code, stderr, heavy = _probe(import_probe, tmp_path, args)
    assert code == 1, stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, stderr
    assert heavy == [], (args, heavy)


# ----------------------------------------------------------------------------- item 3


def _invoke(args: list[str]) -> tuple[int, list[str]]:
    from typer.testing import CliRunner

    from dismax_cli.cli.app import app

    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output.strip().splitlines()


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--config", "a.yaml", "--config", "b.yaml", "--out", "x"],
        ["train", "--out", "x", "--config=a.yaml", "--config", "b.yaml"],
        ["benchmark", "--config", "a.yaml", "--epochs", "1", "--config=b.yaml"],
        ["benchmark", "--config", "a.yaml", "--config", "a.yaml"],
    ],
)
def test_config_given_twice_is_refused_naming_both_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text("epochs: 1\n")
    code, lines = _invoke(args)
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: --config is given twice"), lines
    named = [a.partition("=")[2] or a for a in args if a.endswith(".yaml")]
    assert all(f"'{name}'" in lines[0] for name in named), lines
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("args", "named", "dropped"),
    [  # both values are bad: the error names the last, so the first was replaced unchecked
        (["train", "--out", "x", "--epochs", "five", "--epochs", "two"], "'two'", "five"),
        (["train", "--out", "x", "--method", "sofmax", "--method=nope"], "'nope'", "sofmax"),
        (["benchmark", "--device", "gpu7", "--device=tpu9"], "tpu9", "gpu7"),
        (["detect", "r.pt", "i.png", "--tpr", "7", "--tpr", "1.5"], "1.5", "'7'"),
        (["calibrate", "r.pt", "--objective", "mae", "--objective", "mse"], "'mse'", "mae"),
    ],
)
def test_a_single_value_option_given_twice_keeps_the_last_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], named: str, dropped: str
) -> None:
    """Click's rule (argparse's too): the last value counts, so the error names it alone."""
    monkeypatch.chdir(tmp_path)
    code, lines = _invoke(args)
    assert code == 2, lines
    text = " ".join(lines)
    assert named in text and dropped not in text and "given twice" not in text, lines
    assert not (tmp_path / "x").exists()


def test_a_later_value_replaces_an_earlier_one_and_multi_value_options_add_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    # Past the repeat check, the next (deliberate) error is the bad method: the repeat passed.
    code, lines = _invoke(
        ["train", "--out", "x", "--epochs", "two", "--epochs=5", "--fpr", "--no-fpr",
         "--method", "no"]
    )  # fmt: skip
    assert code == 2 and "'no' is not one of" in " ".join(lines), lines
    assert "two" not in " ".join(lines), lines  # the first --epochs was replaced, not checked
    code, lines = _invoke(
        ["benchmark", "--ood", "uniform", "--ood", "gaussian", "--require", "x", "--require", "y"]
    )
    assert code == 2 and "given twice" not in " ".join(lines), lines
    # A value after -- is positional, never a second option.
    from dismax_cli.cli.repeats import OptionSpelling, check_repeats

    check_repeats(["--out", "a", "--", "--out", "b"], {"--out": OptionSpelling("out")})


# ----------------------------------------------------------------------------- item 2

REPORT_JSON = Path(__file__).resolve().parent / "data" / "cifar10-cpu-v1.json"


def _per_sample():  # noqa: ANN202 - a PerSample of two methods and two OOD sets
    import numpy as np

    from dismax_cli import plots

    rng = np.random.default_rng(0)
    targets = rng.integers(0, 10, 120)
    methods = {}
    for name, score in (("softmax", "msp"), ("dismax", "mmles")):
        logits = rng.normal(size=(120, 10))
        logits[np.arange(120), targets] += 3
        methods[name] = plots.MethodSamples(
            logits=logits, temperature=1.2, score=score, id_scores=rng.normal(1, 1, 120),
            ood_scores={"svhn": rng.normal(0, 1, 80), "mnist": rng.normal(0, 1, 80)},
        )
    return plots.PerSample(targets=targets, methods=methods)


def _saved_report(folder: Path) -> Path:
    """A report with its per-sample file, as ``benchmark --out`` writes them."""
    import dataclasses

    from dismax_cli.plots import save_per_sample
    from dismax_cli.reports import from_json, to_json

    digest = save_per_sample(folder / "r.samples.npz", _per_sample())
    report = dataclasses.replace(
        from_json(REPORT_JSON.read_text()),
        per_sample={"file": "r.samples.npz", "sha256": digest, "seed": 0},
    )
    path = folder / "r.json"
    path.write_text(to_json(report) + "\n")
    return path


def _main(args: list[str]) -> int:
    from dismax_cli.cli.app import main

    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _tree(folder: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


def _failing(monkeypatch: pytest.MonkeyPatch, name: str, after: int, error: OSError) -> None:
    """Make ``os.NAME`` fail from its call number ``after + 1`` on (a full disk, say)."""
    real = getattr(os, name)
    calls = {"n": 0}

    def patched(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] > after:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(os, name, patched)


@pytest.mark.parametrize(
    "fault",
    [
        "folder_in_the_way",
        "disk_full_on_third_file",
        "rename_fails_on_second_file",
        "new_plots_folder_disk_full",
        "html_dir",
    ],
)
def test_show_writes_plots_and_page_all_or_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, fault: str
) -> None:
    import errno

    report = _saved_report(tmp_path)
    plots_dir = tmp_path / "plots"
    plots_dir.mkdir()
    (plots_dir / "roc-svhn.png").write_bytes(b"old plot")  # there before: must stay as it is
    (tmp_path / "page.html").write_text("old page")
    html = tmp_path / "page.html"
    if fault == "folder_in_the_way":
        (plots_dir / "pr-svhn.png").mkdir()
    elif fault == "disk_full_on_third_file":
        _failing(monkeypatch, "fsync", 2, OSError(errno.ENOSPC, "No space left on device"))
    elif fault == "rename_fails_on_second_file":
        _failing(monkeypatch, "replace", 1, OSError(errno.EIO, "Input/output error"))
    elif fault == "new_plots_folder_disk_full":  # the folders it creates go again
        plots_dir = tmp_path / "new" / "plots"
        _failing(monkeypatch, "fsync", 4, OSError(errno.ENOSPC, "No space left on device"))
    else:
        html = tmp_path / "new_dir" / "page.html"  # a folder that does not exist: refused first
    before = _tree(tmp_path)
    code = _main(["show", str(report), "--plots", str(plots_dir), "--html", str(html)])
    monkeypatch.undo()
    refused = fault in ("folder_in_the_way", "html_dir")  # before any work: a bad value, exit 2
    assert code == (2 if refused else 1)
    assert _tree(tmp_path) == before
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write --"), lines
    assert captured.out == ""  # no table printed for a failed command


def test_show_still_writes_every_figure_when_nothing_fails(tmp_path: Path) -> None:
    report = _saved_report(tmp_path)
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "roc-svhn.png").write_bytes(b"old plot")
    code = _main(["show", str(report), "--plots", str(tmp_path / "plots" / "new"), "--html",
                  str(tmp_path / "page.html"), "--format", "json"])
    assert code == 0
    written = sorted(p.name for p in (tmp_path / "plots" / "new").iterdir())
    assert "roc-svhn.png" in written and "risk-coverage.png" in written
    assert not [n for n in written if n.startswith(".")]  # no temporary file left
    assert (tmp_path / "page.html").read_text().startswith("<!DOCTYPE html>")


def test_benchmark_writes_report_samples_plots_and_page_all_or_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import types

    from dismax_cli.cli import benchmark_run
    from dismax_cli.cli.common import OutputFormat
    from dismax_cli.errors import DismaxError
    from dismax_cli.reports import from_json

    report = from_json(REPORT_JSON.read_text())
    evidence = types.SimpleNamespace(per_sample=_per_sample, records={"softmax": {0: None}})
    cfg = types.SimpleNamespace(require=(), runs_dir=str(tmp_path / "runs"))
    out = tmp_path / "r.json"
    out.write_text("old report")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "hist-dismax-mnist.png").mkdir()  # in the way of the last plot
    command = {"out": out, "plots": tmp_path / "plots", "html": tmp_path / "page.html",
               "output_format": OutputFormat.json}
    before = _tree(tmp_path)
    with pytest.raises(DismaxError, match="hist-dismax-mnist.png"):
        benchmark_run.finish(report, evidence, cfg, command)
    assert _tree(tmp_path) == before
    (tmp_path / "plots" / "hist-dismax-mnist.png").rmdir()
    benchmark_run.finish(report, evidence, cfg, command)
    assert from_json(out.read_text()).per_sample["file"] == "r.samples.npz"
    assert (tmp_path / "r.samples.npz").is_file() and (tmp_path / "page.html").is_file()
    assert (tmp_path / "plots" / "hist-dismax-mnist.png").is_file()


# ----------------------------------------------------------------------------- item 4


@pytest.mark.parametrize("layout", ["link_elsewhere", "link_renamed", "folder_link", "chain"])
def test_show_reads_the_samples_beside_the_report_a_link_points_to(
    tmp_path: Path, layout: str
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    target = _saved_report(runs)  # runs/r.json + runs/r.samples.npz
    links = tmp_path / "links"
    links.mkdir()
    if layout == "link_elsewhere":
        link = links / "r.json"
        link.symlink_to(target)
    elif layout == "link_renamed":
        link = links / "latest.json"
        link.symlink_to(Path("..") / "runs" / "r.json")  # relative, another name
    elif layout == "folder_link":
        (links / "runs").symlink_to(runs, target_is_directory=True)
        link = links / "runs" / "r.json"
    else:
        (links / "first.json").symlink_to(target)
        link = links / "second.json"
        link.symlink_to(links / "first.json")
    code = _main(["show", str(link), "--plots", str(tmp_path / "plots"), "--format", "json"])
    assert code == 0
    assert (tmp_path / "plots" / "risk-coverage.png").is_file()


def test_samples_beside_the_link_are_the_fallback(tmp_path: Path) -> None:
    from dismax_cli.fileio import report_neighbours

    runs, links = tmp_path / "runs", tmp_path / "links"
    runs.mkdir()
    links.mkdir()
    target = _saved_report(runs)
    (links / "r.json").symlink_to(target)
    (runs / "r.samples.npz").rename(links / "r.samples.npz")  # only beside the link now
    assert report_neighbours(links / "r.json", "r.samples.npz") == (
        runs.resolve() / "r.samples.npz", links / "r.samples.npz"
    )
    code = _main(["show", str(links / "r.json"), "--plots", str(tmp_path / "p"), "--format",
                  "json"])
    assert code == 0 and (tmp_path / "p" / "risk-coverage.png").is_file()
    # A plain report: one place, beside it.
    assert report_neighbours(target, "x.npz") == (runs.resolve() / "x.npz",)


# ----------------------------------------------------------------------------- item 5


@pytest.mark.parametrize(
    ("args", "config", "shown"),
    [
        (["train", "--out", "x", "--method", "it's"], None, "'it's' is not one of"),
        (["train", "--out", "x", "--method", "a\\b"], None, "'a\\b' is not one of"),
        (["train", "--out", "x", "--device", 'gp"u'], None, "device 'gp\"u' is invalid"),
        (["benchmark", "--epochs", "o'clock"], None, "'o'clock' is not an integer"),
        (["train", "--out", "x"], "epochs: true\n", "true is not an integer"),
        (["train", "--out", "x"], "lr: null\n", "lr=null is invalid"),
        (["train", "--out", "x"], "epochs: [1]\n", "epochs=[1] is invalid"),
        (["benchmark"], "methods: [dismax, dismax]\n", "methods [dismax, dismax] name one"),
        (["benchmark", "--ood", "a=uniform", "a=gaussian"], None,
         "OOD sets [a=uniform, a=gaussian] use the name 'a' twice"),
        (["train", "--out", "x"], "decay_epochs: [3, 2]\nepochs: 5\n", "2 in [3, 2] is"),
        (["benchmark"], "require: [\"x'y\"]\n", "requirement 'x'y'"),
    ],
)
def test_messages_show_values_as_typed_not_python_repr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], config: str | None,
    shown: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    if config is not None:
        (tmp_path / "c.yaml").write_text(config)
        args = [*args, "--config", "c.yaml"]
    code, lines = _invoke(args)
    text = lines[-1]  # Click's usage errors put the message on their last line
    assert code == 2 and text.lower().startswith("error: "), lines
    assert shown in text, text
    for python in ("PosixPath(", "['", "\\\\", "True", "None"):
        assert python not in text, text


def test_quote_value_shows_text_paths_lists_and_constants_as_typed() -> None:
    from dismax_cli.errors import quote_value

    assert quote_value("it's") == "'it's'"  # repr: "it's"
    assert quote_value(Path("runs") / "a b") == "'runs/a b'"  # repr: PosixPath('runs/a b')
    assert quote_value(["a", "b"]) == "[a, b]"  # repr: ['a', 'b']
    assert quote_value(("x y", "")) == "['x y', '']"
    assert quote_value([True, None, 3]) == "[true, null, 3]"
    assert quote_value("a\nb") == "'a\\nb'"  # still one line
    assert quote_value(0.5) == "0.5"
