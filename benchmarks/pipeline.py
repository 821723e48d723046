"""What a user waits for: `cst-bayes reproduce` as a whole process, per stage, and what it writes.

For each profile asked for, runs ``cst-bayes reproduce --profile P --out DIR`` in a fresh
process (cold run: empty DIR; then a warm rerun that should hit every cache), and prints

* wall seconds of the process, and seconds per stage (from the run's ``run.json``);
* bytes written, in all and per top-level folder of the run;

then, with ``--scale K [K ...]``, the quick profile on simulated ensembles of K x 1,306
agencies (labelled SYNTHETIC; two members, as the quick profile uses; without the weighting
stage, whose scenarios are the real frames' and cannot hold K x the respondents), with the process's
peak memory (``ru_maxrss`` of the children), so the cost curve can be read against x1.

Results go to ``benchmarks/results/pipeline.csv`` (one row per run and stage). The machine
is shared: compare numbers measured in the same run.

Usage: ``python benchmarks/pipeline.py [--profile quick] [--profile full] [--scale 10 100]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
CLI = [sys.executable, "-m", "cst_bayes"]


def folder_bytes(path: Path) -> dict[str, int]:
    """Bytes under each top-level entry of a run folder (files at the top under '.')."""
    out: dict[str, int] = {}
    for p in path.rglob("*"):
        if p.is_file():
            rel = p.relative_to(path)
            key = rel.parts[0] if len(rel.parts) > 1 else "."
            out[key] = out.get(key, 0) + p.stat().st_size
    return out


#: Runs the command as its own child and prints that child's peak RSS (KiB) last on stderr:
#: RUSAGE_CHILDREN of a fresh wrapper is the peak of this one run, not of every run so far.
_WRAP = (
    "import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(rc)"
)


def run_reproduce(out: Path, profile: str, extra: list[str]) -> dict:
    """One whole-process run; wall seconds, stage seconds, bytes, peak RSS of the process."""
    cmd = [*CLI, "reproduce", "--profile", profile, "--out", str(out), "--no-progress", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _WRAP, *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"reproduce failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    peak_kib = int(proc.stderr.strip().splitlines()[-1])
    run = json.loads((out / "run.json").read_text())
    sizes = folder_bytes(out)
    return {
        "wall_s": wall,
        "exit": proc.returncode,
        "stages": run.get("stage_seconds", {}),
        "bytes": sizes,
        "total_bytes": sum(sizes.values()),
        "peak_rss_mb": peak_kib / 1024,
    }


def simulated_ensemble(folder: Path, scale: int, n: int = 2, seed: int = 11) -> Path:
    from cst_bayes.core.fileio import write_microdata
    from cst_bayes.data.simulate import simulate

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        df, _ = simulate(seed + i, scale=scale)
        df = df.drop(columns=["n_approaches"])
        df["agency_id"] = range(1, len(df) + 1)
        write_microdata(
            folder / f"reconstruction-{i:03d}.csv", df, synthetic=True, note=f"x{scale} rows"
        )
    return folder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", action="append", help="profiles to time (default: quick)")
    ap.add_argument(
        "--scale", type=int, nargs="*", default=[], help="row multipliers for the quick profile"
    )
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        for profile in args.profile or ["quick"]:
            out = tmp_path / f"run-{profile}"
            for phase in ("cold", "warm"):
                r = run_reproduce(out, profile, [])
                print(
                    f"{profile:8s} {phase}: {r['wall_s']:7.1f} s whole process, "
                    f"{r['total_bytes'] / 1e6:8.1f} MB written, peak {r['peak_rss_mb']:.0f} MB"
                )
                for stage, s in r["stages"].items():
                    print(f"    {stage:10s} {s:7.1f} s  {r['bytes'].get(stage, 0) / 1e6:8.1f} MB")
                    rows.append(
                        dict(
                            run=f"{profile}-{phase}",
                            stage=stage,
                            seconds=s,
                            bytes=r["bytes"].get(stage, 0),
                        )
                    )
                rows.append(
                    dict(
                        run=f"{profile}-{phase}",
                        stage="(process)",
                        seconds=r["wall_s"],
                        bytes=r["total_bytes"],
                    )
                )
        base = None
        for k in [1, *args.scale] if args.scale else []:
            ens = simulated_ensemble(tmp_path / f"ens-x{k}", k)
            # the weighting scenarios describe the real frames: x10 respondents exceed the
            # sampled agencies, so the scale runs leave the weighting stage out
            stages = ["audit", "data", "tables", "models", "prior_check", "ppc", "psense",
                      "prior_scale", "compare", "report"]  # fmt: skip
            extra = ["--reconstructions", str(ens), "--stages", *stages]
            r = run_reproduce(tmp_path / f"scale-x{k}", "quick", extra)
            base = base or r["wall_s"]
            print(
                f"quick x{k:<4d}: {r['wall_s']:7.1f} s ({r['wall_s'] / base:4.2f} x the x1 time), "
                f"peak {r['peak_rss_mb']:.0f} MB"
            )
            for stage, s in r["stages"].items():
                print(f"    {stage:10s} {s:7.1f} s")
                rows.append(
                    dict(run=f"quick-x{k}", stage=stage, seconds=s, bytes=r["bytes"].get(stage, 0))
                )
            rows.append(
                dict(
                    run=f"quick-x{k}",
                    stage="(process)",
                    seconds=r["wall_s"],
                    bytes=r["total_bytes"],
                    peak_rss_mb=r["peak_rss_mb"],
                )
            )
    res = HERE / "results" / "pipeline.csv"
    table = pd.DataFrame(rows)
    table.to_csv(res, index=False)
    print(f"wrote {res}")
    write_markdown(table, HERE.parent / "docs" / "generated" / "pipeline.md")
    return 0


def write_markdown(table: pd.DataFrame, path: Path) -> None:
    """The docs' timing table: seconds and MB per stage and run, as measured in this run."""
    import datetime
    import os

    wide = table.pivot_table(index="stage", columns="run", values="seconds", aggfunc="first")
    size = table.pivot_table(index="stage", columns="run", values="bytes", aggfunc="first") / 1e6
    order = [s for s in table["stage"].drop_duplicates() if s != "(process)"] + ["(process)"]
    runs = list(table["run"].drop_duplicates())
    lines = [
        "<!-- written by benchmarks/pipeline.py; do not edit -->",
        f"Measured {datetime.date.today()} on {os.cpu_count()} cores (load average at the end "
        f"{os.getloadavg()[0]:.1f}); SYNTHETIC data (the shipped ensemble or simulated members).",
        "",
        "| stage | " + " | ".join(f"{r} s | {r} MB" for r in runs) + " |",
        "|---|" + "---:|---:|" * len(runs),
    ]
    for s in order:
        cells = []
        for r in runs:
            sec = wide.get(r, {}).get(s, float("nan"))
            mb = size.get(r, {}).get(s, float("nan"))
            cells.append(f"{sec:.1f} | {mb:.1f}" if sec == sec else " | ")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
