"""Benchmark of the reconstruction: seconds per member on one core, members per minute on all.

Usage: ``python benchmarks/reconstruct.py [--members 3] [--jobs N]``. Prints one run's figures
(no repetition: the machine is shared, so read them as ratios, not as precise timings).
Target (issue 3): <= 20 s per member on one core.
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
    args = ap.parse_args()

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
        df, fid = rc.reconstruct_one(ss)
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


if __name__ == "__main__":
    main()
