"""``dismax benchmark --shard I/N``: one benchmark spread over several jobs (issue 13 item 3).

The split is round-robin over the benchmark's (method, seed, member) runs; shards are 0-based
(like ``SLURM_ARRAY_TASK_ID`` with ``--array=0-3``); a job skips a run another job holds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dismax_cli.benchmark import BenchmarkConfig, planned_runs
from dismax_cli.cli.app import app
from dismax_cli.config import InvalidValueError
from dismax_cli.sharding import Shard, parse_shard

runner = CliRunner()
README = Path(__file__).resolve().parents[1] / "README.md"


def _labels(runs: list) -> list[str]:
    return [f"{r.config.method} {r.config.seed} m{r.member}" for r in runs]


def test_the_default_benchmark_is_split_round_robin() -> None:
    plan = planned_runs(BenchmarkConfig())  # 4 methods, 1 seed, 3 ensemble members
    # By hand: SoftMax is member 0 of the ensemble; members 1 and 2 use seeds 1000 and 2000.
    every = [
        "softmax 0 m0", "isomax_plus 0 m0", "dismax 0 m0", "softmax 1000 m1", "softmax 2000 m2",
    ]  # fmt: skip
    assert _labels(plan) == every
    assert _labels(Shard(0, 2).select(plan)) == ["softmax 0 m0", "dismax 0 m0", "softmax 2000 m2"]
    assert _labels(Shard(1, 2).select(plan)) == ["isomax_plus 0 m0", "softmax 1000 m1"]
    assert _labels(Shard(4, 5).select(plan)) == ["softmax 2000 m2"]
    assert Shard(5, 6).select(plan) == []  # more jobs than runs: the last ones have nothing


@pytest.mark.parametrize(
    ("methods", "seeds", "members", "per_seed"),
    [
        (("softmax", "isomax_plus", "dismax", "ensemble"), 3, 3, 5),  # the 15 runs
        (("dismax", "ensemble"), 2, 4, 5),  # softmax is trained for the ensemble, not listed
        (("ensemble",), 2, 2, 2),
        (("softmax", "dismax"), 3, 3, 2),  # no ensemble: ensemble_size trains nothing
    ],
)
def test_every_split_covers_each_run_once_and_is_balanced(
    methods: tuple[str, ...], seeds: int, members: int, per_seed: int
) -> None:
    config = BenchmarkConfig(methods=methods, seeds=seeds, ensemble_size=members)
    plan = planned_runs(config)
    assert len(plan) == seeds * per_seed
    keys = [json.dumps(r.config.identity(), sort_keys=True) for r in plan]
    assert len(set(keys)) == len(keys)  # no training listed twice
    for count in range(1, len(plan) + 3):
        parts = [Shard(i, count).select(plan) for i in range(count)]
        sizes = [len(p) for p in parts]
        assert max(sizes) - min(sizes) <= 1, (count, sizes)
        assert sorted(k for p in parts for k in _labels(p)) == sorted(_labels(plan))


@pytest.mark.parametrize(
    ("text", "expected"), [("0/1", Shard(0, 1)), (" 2 / 3 ", Shard(2, 3)), ("3/4", Shard(3, 4))]
)
def test_shard_values_are_zero_based_index_over_count(text: str, expected: Shard) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("4/4", "numbered from 0"),
        ("-1/4", "out of range"),
        ("0/0", "N = 0"),
        ("1/-2", "N = -2"),
        ("3", "is not I/N"),
        ("a/b", "is not I/N"),
        ("1.0/4", "is not I/N"),
        ("0/4/2", "is not I/N"),
        ("", "is not I/N"),
        ("/4", "is SLURM_ARRAY_TASK_ID set?"),  # --shard "$SLURM_ARRAY_TASK_ID/4" outside Slurm
        ("\u0661/4", "is not I/N"),  # an Arabic-Indic digit one
        ("0/100001", "at most 100,000"),
    ],
)
def test_a_bad_shard_is_one_usage_error_before_anything_is_written(
    value: str, message: str, tmp_path: Path
) -> None:
    with pytest.raises(InvalidValueError, match="0 <= I < N|at most"):
        parse_shard(value)
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["benchmark", "--shard", value, "--runs-dir", str(runs)])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "--shard" in errors[0] and message in errors[0], result.output
    assert repr(value) in errors[0]
    assert "Traceback" not in result.output and not runs.exists()


@pytest.mark.parametrize(
    "flag",
    [
        ["--out", "r.json"],
        ["--require", "softmax:ACC:id>=0.1"],
        ["--plots", "figs"],
        ["--html", "r.html"],
    ],
)
def test_a_shard_job_refuses_report_options(flag: list[str], tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    args = ["benchmark", "--shard", "0/2", "--runs-dir", str(runs), *flag]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert flag[0] in result.output and "without --shard" in result.output
    assert not runs.exists() and not (tmp_path / "r.json").exists()


def test_a_run_locked_by_another_job_is_skipped_and_left_for_later(tmp_path: Path) -> None:
    from dismax_cli.benchmark import run_benchmark, run_data_hash, run_dir_for
    from dismax_cli.engine import load_run_data
    from dismax_cli.engine.lock import RunFolderBusy, run_folder_lock
    from dismax_cli.errors import DismaxError
    from dismax_cli.sharding import train_shard

    runs = tmp_path / "runs"
    config = BenchmarkConfig(
        methods=("softmax", "dismax"), epochs=1, runs_dir=str(runs), device="cpu",
        data_dir=str(tmp_path / "data"), ood=("uniform",),
    )  # fmt: skip
    first = train_shard(config, Shard(0, 2))
    assert (first.trained, first.skipped, first.remaining, first.total) == (
        ("softmax seed 0",), (), 1, 2,
    )  # fmt: skip
    assert "1 of the benchmark's 2 runs is not finished yet" in first.line()
    data = load_run_data(config.train_config("softmax", 0))
    dismax_dir = run_dir_for(runs, planned_runs(config)[1].config, run_data_hash(data))
    with run_folder_lock(dismax_dir):  # another job is training dismax seed 0
        held = train_shard(config, Shard(1, 2))
        assert (held.trained, held.skipped, held.remaining) == ((), ("dismax seed 0",), 1)
        assert "skipped 1 run (dismax seed 0) (another job holds it)" in held.line()
        assert not dismax_dir.exists()
        # The final (unsharded) benchmark stops with one line instead of training it too.
        with pytest.raises(RunFolderBusy, match="wait for it .* then run the benchmark again"):
            run_benchmark(config)
    second = train_shard(config, Shard(1, 2))
    assert (second.trained, second.remaining) == (("dismax seed 0",), 0)
    assert "all 2 runs of the benchmark are finished" in second.line()
    assert isinstance(RunFolderBusy("x", dismax_dir), DismaxError)


def _readme_block() -> list[str]:
    """The README's ``readme-test: shard`` commands (``\\`` continuations joined)."""
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- readme-test: shard -->\n```bash\n", 1)[1].split("```", 1)[0]
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.strip() for line in joined.splitlines() if line.strip()]


def _start(command: str, cwd: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", command], cwd=cwd, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _finish(proc: subprocess.Popen) -> tuple[str, str]:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    return out, err


def _comparable(report: dict) -> list[dict]:
    """Each method's results without timings (throughput, efficiency, train time, reuse)."""
    keep = ("method", "label", "seeds", "temperature", "id_before", "id_after", "n_id", "ood")
    rows = [{k: m[k] for k in keep} for m in report["methods"]]
    for row, m in zip(rows, report["methods"], strict=True):
        row["runs"] = [Path(r).name for r in m["runs"]]  # the same run keys in both folders
    return rows


def test_two_concurrent_shard_jobs_then_a_final_report_equal_to_one_job(tmp_path: Path) -> None:
    """The README's commands: two ``--shard`` jobs at once into one runs folder, then the report;
    against one job of the same settings in a folder of its own."""
    *jobs, wait, final = _readme_block()
    assert [j.endswith("&") and f"--shard {i}/2" in j for i, j in enumerate(jobs)] == [True] * 2
    assert wait == "wait" and "--shard" not in final and "--out report.json" in final
    env = dict(
        os.environ, DISMAX_OFFLINE="1", DISMAX_DATA_DIR=str(tmp_path / "data"),
        OMP_NUM_THREADS="1", NO_COLOR="1", COLUMNS="200",
    )  # fmt: skip
    alone = final.replace("runs-shared", "runs-alone").replace("report.json", "alone.json")
    started = [_start(job.rstrip("&"), tmp_path, env) for job in jobs]
    reference = _start(alone, tmp_path, env)
    results = [_finish(job) for job in started]
    # By hand: 6 runs (2 seeds x softmax, dismax, ensemble member 1), dealt out alternately.
    expected = [
        "trained 3 runs (softmax seed 0, softmax seed 1000, dismax seed 1)",
        "trained 3 runs (dismax seed 0, softmax seed 1, softmax seed 1001)",
    ]
    for (out, err), trained in zip(results, expected, strict=True):
        assert out == ""  # a shard job writes no report
        summary = err.strip().splitlines()[-1]
        assert trained in summary and "of 6 runs" in summary, summary
    shared = tmp_path / "runs-shared"
    assert len(os.listdir(shared)) == 6  # lock files are gone; one folder per run
    _, final_err = _finish(_start(final, tmp_path, env))
    assert "training " not in final_err  # every run was found finished
    _finish(reference)
    report = json.loads((tmp_path / "report.json").read_text())
    single = json.loads((tmp_path / "alone.json").read_text())
    assert all(m["reused_runs"] for m in report["methods"])
    assert {Path(r).name for m in report["methods"] for r in m["runs"]} == set(os.listdir(shared))
    assert not any(m["reused_runs"] for m in single["methods"])
    assert _comparable(report) == _comparable(single)


@pytest.mark.parametrize(
    ("methods", "seeds", "members"),
    [
        (("softmax", "isomax_plus", "dismax", "ensemble"), 2, 3),
        (("ensemble", "dismax"), 1, 2),
        (("dismax", "iso_ensemble", "ensemble"), 2, 3),  # two ensembles of different members
        (("ensemble", "softmax_ensemble"), 1, 2),  # two ensembles sharing every member
    ],
)
def test_the_plan_is_every_run_the_benchmark_trains(
    methods: tuple[str, ...], seeds: int, members: int, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:  # fmt: skip
    """``planned_runs`` against what ``run_benchmark`` asks to train (training stubbed out)."""
    import dismax_cli.benchmark as bench
    from dismax_cli.core.methods import MethodSpec, register_method, unregister_method

    asked: list[str] = []

    class Stop(Exception):
        pass

    def record(config, runs_dir, data, data_hash, progress):  # noqa: ANN001, ANN202
        asked.append(f"{config.method} {config.seed}")
        return tmp_path / f"{config.method}-{config.seed}", True

    def stop(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise Stop

    for name, of in (("iso_ensemble", "isomax_plus"), ("softmax_ensemble", "softmax")):
        register_method(MethodSpec(
            name=name, label=name, description="test ensemble", make_head=None, make_loss=None,
            default_score="msp", members_of=of,
        ))  # fmt: skip
    monkeypatch.setattr(bench, "_train_or_reuse", record)
    monkeypatch.setattr(bench, "load_bundle", stop)  # end a seed's training step here
    try:
        config = BenchmarkConfig(
            methods=methods, seeds=1, seed=5, ensemble_size=members, ood=("uniform",),
            runs_dir=str(tmp_path / "runs"), data_dir=str(tmp_path / "data"), device="cpu",
        )  # fmt: skip
        trained: list[str] = []
        for k in range(seeds):  # one seed at a time: the stub stops after its trainings
            asked.clear()
            with pytest.raises(Stop):
                bench.run_benchmark(dataclasses.replace(config, seed=5 + k))
            trained += list(dict.fromkeys(asked))  # a shared member is asked for twice
        plan = planned_runs(dataclasses.replace(config, seeds=seeds))
        assert [f"{r.config.method} {r.config.seed}" for r in plan] == trained
    finally:
        unregister_method("iso_ensemble")
        unregister_method("softmax_ensemble")


def test_a_shard_job_fails_on_an_unusable_ood_set_before_it_trains(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    absent = tmp_path / "absent.npz"
    args = ["benchmark", "--shard", "0/2", "--runs-dir", str(runs), "--epochs", "1"]
    result = runner.invoke(
        app, [*args, "--ood", f"npz:{absent}"], env={"DISMAX_DATA_DIR": str(tmp_path / "data")}
    )
    assert result.exit_code == 1, result.output
    assert "absent.npz" in result.output and "Traceback" not in result.output
    assert "training" not in result.output and not runs.exists()
