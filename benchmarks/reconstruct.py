"""Benchmark of the reconstruction: seconds per member on one core, members per minute on all.

Usage: ``python benchmarks/reconstruct.py [--members 3] [--jobs N]``. Prints one run's figures
(no repetition: the machine is shared, so read them as ratios, not as precise timings).
Target: <= 20 s per member on one core.

``python benchmarks/reconstruct.py --bounds [--starts 2] [--steps-scale 0.6] [--all]``: CPU
seconds per bound (one statistic, both directions) of the bound search, on a sample of
statistics (every kind, every stratum) or on all of them, and the projected time of all bounds
on 2 cores. Target: all bounds <= 15 min on 2 cores (1,800 CPU s).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--members", type=int, default=3, help="members timed on one core")
    ap.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="processes for the parallel run"
    )
    ap.add_argument("--seed", type=int, default=99)
    ap.add_argument("--bounds", action="store_true", help="benchmark the bound search instead")
    ap.add_argument("--starts", type=int, default=2)
    ap.add_argument("--steps-scale", type=float, default=0.6)
    ap.add_argument("--all", action="store_true", help="every statistic, not a sample")
    args = ap.parse_args()
    if args.bounds:
        bench_bounds(args)
        return

    import numpy as np

    from cst_bayes import reconstruct as rc

    t = time.perf_counter()
    rc._kernel()
    rc.load_targets()
    rc.tetrachoric_table2()
    print(f"setup (numba cache load / compile, targets): {time.perf_counter() - t:.1f} s")

    seeds = np.random.SeedSequence(args.seed).spawn(args.members)
    times, cpu, steps, ok = [], [], [], 0
    for ss in seeds:
        t, c = time.perf_counter(), time.process_time()
        df, _ = rc.reconstruct_one(ss)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        steps.append(df.attrs["reconstruction"]["steps"])
        ok += bool(df.attrs["reconstruction"]["converged"])
    one, one_cpu = sum(times) / len(times), sum(cpu) / len(cpu)
    us = 1e6 * sum(cpu) / sum(steps)
    # CPU seconds are what "one core" costs; wall seconds depend on who else uses the machine.
    print(
        f"one process: {len(times)} members, {one_cpu:.1f} CPU s per member "
        f"(min {min(cpu):.1f}, max {max(cpu):.1f}; wall {one:.1f} s), {us:.1f} us per proposal, "
        f"{ok}/{len(times)} agree with every target; target <= 20 s -> ratio {one_cpu / 20:.2f}"
    )

    n_par = max(args.jobs, 2)
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        man = rc.build_ensemble(n_par, args.seed + 1, d, jobs=args.jobs, progress=False)
        el = time.perf_counter() - t
    print(
        f"{args.jobs} processes: {n_par} members in {el:.1f} s -> {60 * n_par / el:.1f} members per minute "
        f"({sum(m['targets']['all_forced_met'] for m in man['members'])}/{n_par} agree); "
        f"load average now {os.getloadavg()[0]:.1f}"
    )


SAMPLE = [
    "count_sd|1-49",
    "count_sd|state",
    "count_share_5|50-999",
    "count_mean_case|1000+",
    "n_case_court|state",
    "count_share_0|all",
    "all3_training+task_force+advocates|all",
]


def bench_bounds(args: argparse.Namespace) -> None:
    from cst_bayes.reconstruct import bounds as B

    t = time.perf_counter()
    b, _ = B.compute_bounds(
        None,
        n_starts=args.starts,
        steps_scale=args.steps_scale,
        jobs=args.jobs,
        only=None if args.all else SAMPLE,
    )
    wall = time.perf_counter() - t
    searched = b[~b["statistic"].str.startswith(("or_", "count_mean_nocase"))]
    per = searched["seconds"]
    n_all = sum(st.kind >= 0 for st in B.statistics())
    total = per.mean() * n_all
    print(b[["statistic", "stratum", "lower", "upper", "lower_half", "upper_half", "seconds"]])
    print(
        f"{len(per)} searched statistics ({args.starts} starts, steps x {args.steps_scale}): "
        f"{per.mean():.1f} CPU s per bound pair (min {per.min():.1f}, max {per.max():.1f}); "
        f"wall {wall:.0f} s; all {n_all} -> {total:.0f} CPU s = {total / 2 / 60:.1f} min on 2 "
        f"free cores (target 15); load average now {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
