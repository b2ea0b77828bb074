"""Time how fast the CLI answers ``--help`` and usage errors (issue 10, item 13).

Usage: python benchmarks/speed/cli_startup.py [--runs 10] [--limit 1.0]

Runs each command line below as a fresh subprocess (``python -m dismax_cli ...``, so the
worktree's code is timed, not whatever ``dismax`` is on PATH) ``--runs`` times, interleaved so
that background load affects all alike, and prints the median wall time of each, the exit code
and which heavy modules (torch, torchvision, sklearn, scipy) were in ``sys.modules`` when the
command exited (one extra run per command).
Target: every median under ``--limit`` seconds (1.0) on an idle 2-core machine. Exits 1 when a
median is over the limit.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

#: (label, arguments); usage errors must answer as fast as help.
COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("dismax --help", ("--help",)),
    ("dismax train --help", ("train", "--help")),
    ("dismax score --help", ("score", "--help")),
    ("dismax benchmark --help", ("benchmark", "--help")),
    ("dismax train --epochs ten (usage error)", ("train", "--epochs", "ten", "--out", "x")),
    ("dismax train --method foo (usage error)", ("train", "--method", "foo", "--out", "x")),
    ("dismax benchmark --device gpu (usage error)", ("benchmark", "--device", "gpu")),
    # Malformed dataset specs are usage errors too (issue 10 item 13: no torch to check them).
    (
        "dismax train --dataset digits[9-0] (usage error)",
        ("train", "--dataset", "digits[9-0]", "--out", "x"),
    ),
    ("dismax train --dataset foo (usage error)", ("train", "--dataset", "foo", "--out", "x")),
    ("dismax benchmark --ood uniform:0 (usage error)", ("benchmark", "--ood", "uniform:0")),
    ("dismax benchmark --ood a[b]=uniform (usage error)", ("benchmark", "--ood", "a[b]=uniform")),
    ("dismax score --ood foo (usage error)", ("score", "run", "--ood", "foo")),
)

HEAVY = ("torch", "torchvision", "sklearn", "scipy")

_PROBE = (
    "import atexit, sys\n"
    "atexit.register(lambda: sys.__stderr__.write('HEAVY=' + ','.join(m for m in {heavy!r} "
    "if m in sys.modules) + '\\n'))\n"
    "from dismax_cli.cli.app import main\n"
    "main(sys.argv[1:])\n"
)


def run_once(args: tuple[str, ...]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "dismax_cli", *args], capture_output=True, text=True
    )
    return time.perf_counter() - start, proc.returncode


def heavy_modules(args: tuple[str, ...]) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=HEAVY), *args], capture_output=True, text=True
    )
    lines = [line for line in proc.stderr.splitlines() if line.startswith("HEAVY=")]
    return (lines[-1].removeprefix("HEAVY=") or "none") if lines else "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--limit", type=float, default=1.0)
    opts = parser.parse_args()
    env_note = f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}"
    times: dict[str, list[float]] = {label: [] for label, _ in COMMANDS}
    codes: dict[str, int] = {}
    for _ in range(opts.runs):
        for label, args in COMMANDS:
            seconds, code = run_once(args)
            times[label].append(seconds)
            codes[label] = code
    print(f"median of {opts.runs} runs each ({env_note}, load {os.getloadavg()[0]:.2f})")
    print(f"{'command':<50} {'median s':>8} {'max s':>6} {'exit':>4}  heavy modules loaded")
    worst = 0.0
    for label, args in COMMANDS:
        median = statistics.median(times[label])
        worst = max(worst, median)
        print(
            f"{label:<50} {median:8.3f} {max(times[label]):6.3f} {codes[label]:>4}  "
            f"{heavy_modules(args)}"
        )
    ok = worst < opts.limit
    print(f"slowest median {worst:.3f} s: {'within' if ok else 'OVER'} the {opts.limit} s target")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
