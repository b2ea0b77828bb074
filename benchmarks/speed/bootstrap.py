"""Time the percentile bootstrap of each OOD metric on 10,000 ID + 10,000 OOD seeded scores.

Usage: python benchmarks/speed/bootstrap.py [--n-id 10000] [--n-ood 10000] [--resamples 1000]
       [--repeats 3] [--limit 2.0]

Scores are seeded float32 draws, ID ~ N(1, 1) and OOD ~ N(0, 1) (float32 rounding gives a few
ties). For each metric (AUROC, AUPR-IN, AUPR-OUT, FPR@95TPR, DETACC) it times one
``bootstrap_interval`` call (index drawing, the vectorised resampled metric, the exact full-sample
value and the quantiles) ``--repeats`` times and prints the median and the fastest run in
seconds; it also prints one ``paired_bootstrap_difference`` call per metric (two methods, shared
resamples; not gated). Target (issue 16): the median bootstrap of every metric under ``--limit``
seconds (2 s) on 2 CPU cores. Exits 1 when any metric misses it. The 1-minute load average is
printed: other processes on the machine slow the timings down.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

from dismax_cli.core.bootstrap import bootstrap_interval, paired_bootstrap_difference

METRICS = ["AUROC", "AUPR-IN", "AUPR-OUT", "FPR@95TPR", "DETACC"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-id", type=int, default=10_000)
    parser.add_argument("--n-ood", type=int, default=10_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=float, default=2.0)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    id_scores = rng.normal(1.0, 1.0, args.n_id).astype(np.float32)
    ood_scores = rng.normal(0.0, 1.0, args.n_ood).astype(np.float32)
    other_id = (id_scores + rng.normal(0.0, 0.5, args.n_id)).astype(np.float32)
    other_ood = (ood_scores + rng.normal(0.0, 0.5, args.n_ood)).astype(np.float32)
    bootstrap_interval("AUROC", id_scores[:100], ood_scores[:100], resamples=10)  # warm-up

    print(
        f"bootstrap of {args.n_id:,} ID + {args.n_ood:,} OOD scores, {args.resamples:,} resamples, "
        f"median and fastest of {args.repeats} runs; 1-min load average "
        f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    print(f"{'metric':10s} {'median (s)':>11s} {'fastest (s)':>12s} {'paired (s)':>11s}  interval")
    missed = []
    for name in METRICS:
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            interval = bootstrap_interval(
                name, id_scores, ood_scores, resamples=args.resamples, seed=0
            )
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        paired_bootstrap_difference(
            name, id_scores, ood_scores, other_id, other_ood, resamples=args.resamples, seed=0
        )
        paired = time.perf_counter() - start
        median = statistics.median(times)
        if median >= args.limit:
            missed.append(name)
        print(
            f"{name:10s} {median:11.3f} {min(times):12.3f} {paired:11.3f}  "
            f"{interval.value:.4f} [{interval.low:.4f}, {interval.high:.4f}]"
        )
    print(
        f"target median < {args.limit:g} s per metric: "
        + ("met" if not missed else f"MISSED ({', '.join(missed)})")
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
