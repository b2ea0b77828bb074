"""Time what ``--bootstrap`` adds to a CIFAR-10-sized benchmark (``Evidence.finish``).

Usage: python benchmarks/speed/evidence.py [--methods 4] [--oods 3] [--n-id 10000]
       [--n-ood 10000] [--resamples 1000] [--seeds 1]

Seeded scores (ID ~ N(1, 1), OOD ~ N(0, 1), float32) and 10-class logits for each method, as
the CIFAR-10 CPU benchmark has them (4 methods, 3 OOD sets of 10,000 against 10,000 test
images); it times the reliability bins, every OOD metric's interval for each method and the
paired differences from the first method (SoftMax), and prints the seconds per bootstrapped
metric (each method's distributions are computed once; the baseline's are reused). The 1-minute
load average is printed: other processes on the machine slow the timings down.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from dismax_cli.evaluation import Outputs
from dismax_cli.evidence import Evidence
from dismax_cli.reports import DatasetRecord, MethodResult, OODResult, Report, Stat

OOD_KEYS = ("AUROC", "AUPR-IN", "AUPR-OUT", "FPR@95TPR", "DETACC")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", type=int, default=4)
    parser.add_argument("--oods", type=int, default=3)
    parser.add_argument("--n-id", type=int, default=10_000)
    parser.add_argument("--n-ood", type=int, default=10_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    names = ["softmax"] + [f"m{i}" for i in range(1, args.methods)]
    oods = [f"ood{j}" for j in range(args.oods)]
    targets = torch.as_tensor(rng.integers(0, 10, args.n_id))
    evidence = Evidence()
    for seed in range(args.seeds):
        for name in names:
            logits = torch.as_tensor(rng.normal(size=(args.n_id, 10)).astype(np.float32))
            id_scores = torch.as_tensor(rng.normal(1, 1, args.n_id).astype(np.float32))
            ood = {o: {"s": torch.as_tensor(rng.normal(0, 1, args.n_ood).astype(np.float32))}
                   for o in oods}  # fmt: skip
            evidence.add(name, seed, Outputs(logits, {"s": id_scores}, ood), 1.0, targets, "s")
    stat = Stat.of([0.5] * args.seeds)
    methods = tuple(
        MethodResult(
            method=n, default_score="s", seeds=tuple(range(args.seeds)), runs=(), uses_fpr=False,
            temperature=stat, id_before={}, id_after={}, n_id=args.n_id,
            ood=tuple(OODResult(o, "s", args.n_id, args.n_ood, {k: stat for k in OOD_KEYS})
                      for o in oods),
        )  # fmt: skip
        for n in names
    )
    sets = tuple(DatasetRecord("ood", o, o, "test", args.n_ood, (32, 32, 3), "", "", True, 0)
                 for o in oods)  # fmt: skip
    report = Report("benchmark", "0", "now", {}, {}, sets, methods)
    start = time.perf_counter()
    evidence.finish(report, bootstrap=args.resamples)
    seconds = time.perf_counter() - start
    count = args.methods * args.oods * len(OOD_KEYS)
    print(
        f"{args.methods} methods x {args.oods} OOD sets x {len(OOD_KEYS)} metrics, "
        f"{args.n_id:,} ID + {args.n_ood:,} OOD scores, {args.resamples:,} resamples, "
        f"{args.seeds} seed(s): {seconds:.1f} s in all, {seconds / count:.2f} s per "
        f"bootstrapped metric; 1-min load average {os.getloadavg()[0]:.2f} on "
        f"{os.cpu_count()} CPUs"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
