"""``DISMAX_TIMING_SECONDS``: how long the Cost columns time each method (dismax_cli/timing.py)."""

from __future__ import annotations

import pytest

from dismax_cli import evaluation
from dismax_cli.config import InvalidValueError
from dismax_cli.timing import TIMING_SECONDS_VARIABLE, timing_seconds


def _rounds_timed(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Run measure_throughputs on two fake groups whose every batch 'takes' 10 ms of CPU."""
    calls = {"a": 0, "b": 0}

    def fake_run(bundles, batch, *, batch_size):  # noqa: ANN001, ANN202
        calls[bundles[0]] += 1
        return 0.01

    monkeypatch.setattr(evaluation, "_run_group", fake_run)
    import torch

    evaluation.measure_throughputs({"a": ["a"], "b": ["b"]}, torch.zeros(10, 3, 4, 4))  # type: ignore[dict-item]
    # One warm-up, then each timed run follows an untimed run of the same group.
    return {name: (n - 1) // 2 for name, n in calls.items()}


def test_unset_times_each_method_for_one_second(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TIMING_SECONDS_VARIABLE, raising=False)
    # Rounds until 1.0 s at 0.01 s a batch: 100 timed batches each (float sums reach 1.0
    # after 100 or 101 additions).
    assert all(n in (100, 101) for n in _rounds_timed(monkeypatch).values())


@pytest.mark.parametrize(("value", "timed"), [("0", 7), ("0.2", 20), (" 0.5 ", 50)])
def test_the_variable_sets_the_minimum(
    value: str, timed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TIMING_SECONDS_VARIABLE, value)
    # "0": only the fixed 7 rounds; otherwise rounds until value seconds at 0.01 s each.
    assert all(n in (timed, timed + 1) for n in _rounds_timed(monkeypatch).values())


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf", "1e999"])
def test_bad_values_name_the_variable(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TIMING_SECONDS_VARIABLE, value)
    with pytest.raises(InvalidValueError, match=rf"DISMAX_TIMING_SECONDS={value!r} is invalid"):
        timing_seconds(1.0)


def test_a_bad_value_stops_the_benchmark_before_anything_trains(tmp_path) -> None:  # noqa: ANN001
    import os

    from support import run_dismax

    env = dict(os.environ, DISMAX_TIMING_SECONDS="fast", DISMAX_RUNS_DIR=str(tmp_path / "runs"))
    proc = run_dismax("benchmark", "--epochs", "1", env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    expected = "DISMAX_TIMING_SECONDS='fast' is invalid: use a number of seconds from 0 to 86,400"
    assert expected in lines[0]
    assert not (tmp_path / "runs").exists()


def test_detectors_and_models_share_one_interleaved_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    """measure_score_costs (detectors) times like measure_throughputs: rotating order, each
    timed run right after an untimed run of the same item (dismax_cli.timing)."""
    import torch

    from dismax_cli import detection

    monkeypatch.setenv(TIMING_SECONDS_VARIABLE, "0")
    log: list[str] = []
    work = {("m", s): (lambda batch, s=s: log.append(s)) for s in ("x", "y", "z")}
    detection.measure_score_costs(work, torch.zeros(4, 3, 2, 2), rounds=3)  # type: ignore[arg-type]
    # Warm-up x y z, then per round each item twice in a row, the order rotating by one.
    assert "".join(log) == "xyz" + "xxyyzz" + "yyzzxx" + "zzxxyy"


def test_a_bad_value_answers_before_torch_loads() -> None:
    import os
    import subprocess
    import sys

    code = (
        "import sys\nfrom dismax_cli.cli.app import main\n"
        "try:\n    main(['benchmark'])\nexcept SystemExit as exc:\n    code = exc.code\n"
        "print(code, 'torch' in sys.modules)"
    )
    env = dict(os.environ, DISMAX_TIMING_SECONDS="-2")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.split() == ["2", "False"], out.stdout + out.stderr
