"""What a user waits for: `cst-bayes reproduce` as a whole process, per stage, and what it writes.

Profiles (``--profiles quick standard full``): each runs ``cst-bayes reproduce --profile P
--out DIR`` in a fresh process, cold (empty DIR) then warm (a rerun that should hit every
cache), and records

* wall and CPU seconds of the whole process (launch to exit; CPU of it and its workers),
  the pipeline's own total (``run.json``'s ``total_seconds``) and seconds per stage
  (``stage_seconds``);
* bytes written per stage folder and in all, and ``du`` of the run folder (disk usage);
* peak memory per stage (``benchmarks/_stage_memory.py``) and of the process.

Scale (``--scales 1 10 100``): the quick profile on simulated ensembles of K x 1,306 agencies
(two members, as the quick profile uses; SYNTHETIC, labelled so in the member files), without
the weighting stage (its scenarios describe the real frames and cannot hold K x the
respondents); time and peak memory per stage, and each run's ratio to the x1 time of the same
invocation (x1 is always run with any other scale). The issue's target: x100 <= 4 x the x1 time.

Writes ``docs/generated/pipeline.md`` (one section per profile and one for the scale runs; a
section not run in this invocation keeps its earlier text and date) and
``benchmarks/results/pipeline.csv`` (this invocation's rows). The machine is shared: compare
figures of one section.

Fresh clone (``--fresh-clone``): ``git clone`` of this checkout's HEAD into a temporary folder
(with the ``shared`` folder beside it linked, as CI has it) and ``make reproduce`` there as one
whole process, exactly what the README tells a new user to run: the virtualenv, the numba
compile of every density (no cache yet) and the default profile. Records the pipeline's own
total from ``reports/run.json``, the whole command's wall time and the size of ``reports/``.

Usage: ``python benchmarks/pipeline.py [--profiles quick standard full] [--scales 1 10 100]
[--fresh-clone]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import (  # noqa: E402
    GENERATED,
    code_version,
    figure_table,
    load,
    run_process,
    stamp,
    write_sections,
)

#: The quick profile's member count: the scale ensembles have as many members.
SCALE_MEMBERS = 2
TARGET_PIPELINE_S = 300.0
TARGET_OUTPUT_MB = 200.0
TARGET_X100_RATIO = 4.0


def folder_bytes(path: Path) -> dict[str, int]:
    """Bytes under each top-level entry of a run folder (files at the top under '.')."""
    out: dict[str, int] = {}
    for p in path.rglob("*"):
        if p.is_file():
            rel = p.relative_to(path)
            key = rel.parts[0] if len(rel.parts) > 1 else "."
            out[key] = out.get(key, 0) + p.stat().st_size
    return out


def disk_usage(path: Path) -> int:
    """``du -s`` of a folder in bytes (blocks on disk, not file lengths)."""
    r = subprocess.run(["du", "-s", "--block-size=1", str(path)], capture_output=True, text=True)
    return int(r.stdout.split()[0]) if r.returncode == 0 else -1


def run_reproduce(out: Path, profile: str, extra: list[str]) -> dict:
    """One whole-process ``cst-bayes reproduce``; see the module docstring for the fields."""
    mem_file = out.parent / f".{out.name}-memory.json"
    cmd = [
        sys.executable,
        str(HERE / "_stage_memory.py"),
        str(mem_file),
        "reproduce",
        "--profile",
        profile,
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]
    load_before = load()
    r = run_process(cmd, adopt_orphans=True)
    # exit 1: some unit unavailable or failed; the run folder still says which
    if r.returncode not in (0, 1):
        raise SystemExit(f"reproduce failed ({r.returncode}):\n{r.stderr[-2000:]}")
    run = json.loads((out / "run.json").read_text())
    mem = json.loads(mem_file.read_text()) if mem_file.exists() else {}
    sizes = folder_bytes(out)
    return {
        "date": stamp(),
        "load_before": load_before,
        "load_after": load(),
        "exit": r.returncode,
        "wall_s": r.wall_s,
        "cpu_s": r.cpu_s,
        # resetting the peak per stage also resets what the kernel reports for the process
        "peak_rss_mb": max([r.peak_rss_mb, *mem.get("stage_peak_rss_mb", {}).values()]),
        "pipeline_s": float(run.get("total_seconds", float("nan"))),
        "stages": run.get("stage_seconds", {}),
        "stage_peak_mb": mem.get("stage_peak_rss_mb", {}),
        "bytes": sizes,
        "total_bytes": sum(sizes.values()),
        "du_bytes": disk_usage(out),
    }


def simulated_ensemble(folder: Path, scale: int, n: int = SCALE_MEMBERS, seed: int = 11) -> Path:
    from cst_bayes.core.fileio import write_microdata
    from cst_bayes.data.simulate import simulate

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        df, _ = simulate(seed + i, scale=scale)
        df = df.drop(columns=["n_approaches"])
        df["agency_id"] = range(1, len(df) + 1)
        write_microdata(
            folder / f"reconstruction-{i:03d}.csv",
            df,
            synthetic=True,
            note=f"simulated (cst_bayes.data.simulate, seed {seed + i}) at x{scale} the study's rows by benchmarks/pipeline.py; not a reconstruction",
        )
    return folder


def scale_stages() -> list[str]:
    from cst_bayes.run.pipeline import STAGES

    return [s for s in STAGES if s != "weights"]


def rows_of(label: str, r: dict) -> list[dict]:
    """Long rows (one per stage and one for the process) for the CSV and the tables."""
    out = [
        dict(
            run=label,
            stage=st,
            seconds=s,
            bytes=r["bytes"].get(st, 0),
            peak_mb=r["stage_peak_mb"].get(st, float("nan")),
            date=r["date"],
        )
        for st, s in r["stages"].items()
    ]
    out.append(
        dict(
            run=label,
            stage="(process)",
            seconds=r["wall_s"],
            bytes=r["total_bytes"],
            peak_mb=r["peak_rss_mb"],
            date=r["date"],
            cpu_s=r["cpu_s"],
            pipeline_s=r["pipeline_s"],
            du_bytes=r["du_bytes"],
        )
    )
    return out


def _num(v: float, fmt: str = ".1f") -> str:
    return "" if v is None or v != v else format(v, fmt)


def profile_section(profile: str, runs: dict[str, dict], code: str) -> str:
    """Markdown for one profile: a stage table (cold and warm) and its figures."""
    cold, warm = runs.get("cold"), runs.get("warm")
    first = cold or warm
    lines = [
        f"## `cst-bayes reproduce --profile {profile}`",
        "",
        f"Measured {first['date']} on {os.cpu_count()} cores; load average "
        f"{first['load_before']:.1f} before, {(warm or cold)['load_after']:.1f} after; code "
        f"{code}. SYNTHETIC data (the shipped reconstructions). Cold: empty run folder; "
        "warm: the same command again (cached units). Stage seconds from `run.json`; MB: bytes "
        "written under the stage's folder; peak MB: the process's peak resident memory while "
        "the stage ran (what earlier stages left loaded included).",
        "",
    ]
    phases = [p for p in ("cold", "warm") if p in runs]
    head = "| stage | " + " | ".join(f"{p} s" for p in phases)
    lines += [head + " | cold MB | cold peak MB |" if cold else head + " |"]
    lines += ["|---|" + "---:|" * (len(phases) + (2 if cold else 0))]
    stages = list(first["stages"])
    for st in stages:
        cells = [_num(runs[p]["stages"].get(st)) for p in phases]
        if cold:
            cells += [_num(cold["bytes"].get(st, 0) / 1e6), _num(cold["stage_peak_mb"].get(st))]
        lines.append(f"| {st} | " + " | ".join(cells) + " |")
    cells = [_num(runs[p]["wall_s"]) for p in phases]
    if cold:
        cells += [_num(cold["total_bytes"] / 1e6), _num(cold["peak_rss_mb"], ".0f")]
    lines.append("| whole process | " + " | ".join(cells) + " |")
    figs = {}
    for p in phases:
        r = runs[p]
        figs |= {
            f"{p}_wall_s": _num(r["wall_s"]),
            f"{p}_cpu_s": _num(r["cpu_s"]),
            f"{p}_pipeline_s": _num(r["pipeline_s"]),
        }
    if cold:
        figs |= {
            "output_mb": _num(cold["total_bytes"] / 1e6),
            "du_mb": _num(cold["du_bytes"] / 1e6),
            "peak_rss_mb": _num(cold["peak_rss_mb"], ".0f"),
            "exit": str(cold["exit"]),
        }
        lines += [
            "",
            f"Targets (issue: full profile): pipeline {figs['cold_pipeline_s']} s cold "
            f"(target <= {TARGET_PIPELINE_S:g} s); run folder {figs['du_mb']} MB on disk "
            f"(target <= {TARGET_OUTPUT_MB:g} MB).",
        ]
    return "\n".join([*lines, "", figure_table(figs)])


def run_fresh_clone(work: Path) -> dict:
    """``make reproduce`` in a fresh clone of HEAD: see the module docstring."""
    root = HERE.parent
    clone = work / "fresh" / "main"
    clone.parent.mkdir(parents=True, exist_ok=True)
    shared = root.parent / "shared"
    if shared.is_dir():
        (clone.parent / "shared").symlink_to(shared)
    subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True)
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True
    ).stdout.strip()
    load_before = load()
    r = run_process(["make", "reproduce"], cwd=clone, adopt_orphans=True)
    if r.returncode != 0:
        raise SystemExit(f"make reproduce failed ({r.returncode}):\n{r.stderr[-2000:]}")
    out = clone / "reports"
    run = json.loads((out / "run.json").read_text())
    return {
        "date": stamp(),
        "load_before": load_before,
        "load_after": load(),
        "code": head,
        "profile": run.get("profile"),
        "wall_s": r.wall_s,
        "pipeline_s": float(run["total_seconds"]),
        "stages": run.get("stage_seconds", {}),
        "du_bytes": disk_usage(out),
    }


def fresh_section(r: dict) -> str:
    figs = {
        "pipeline_s": _num(r["pipeline_s"]),
        "make_wall_s": _num(r["wall_s"]),
        "reports_du_mb": _num(r["du_bytes"] / 1e6),
    }
    lines = [
        "## A fresh clone's `make reproduce`",
        "",
        f"Measured {r['date']} on {os.cpu_count()} cores; load average {r['load_before']:.1f} "
        f"before, {r['load_after']:.1f} after; code {r['code']} (a fresh `git clone`: empty "
        "numba cache, new virtualenv from the pip cache). SYNTHETIC data (the shipped "
        f"reconstructions). Profile `{r['profile']}` (the default). The pipeline took "
        f"{figs['pipeline_s']} s (target <= {TARGET_PIPELINE_S:g} s); the whole command, "
        f"virtualenv and package install included, {figs['make_wall_s']} s; `reports/` holds "
        f"{figs['reports_du_mb']} MB on disk (target <= {TARGET_OUTPUT_MB:g} MB).",
        "",
        "| stage | cold s |",
        "|---|---:|",
        *(f"| {st} | {_num(v)} |" for st, v in r["stages"].items()),
        f"| whole process | {figs['make_wall_s']} |",
    ]
    return "\n".join([*lines, "", figure_table(figs)])


def scale_section(runs: dict[int, dict], code: str) -> str:
    base = runs[1]["wall_s"]
    ks = sorted(runs)
    lines = [
        "## Scale: the quick profile on simulated ensembles of K x 1,306 agencies",
        "",
        f"Measured {runs[ks[0]]['date']} on {os.cpu_count()} cores; load average "
        f"{runs[ks[0]]['load_before']:.1f} before, {runs[ks[-1]]['load_after']:.1f} after; code "
        f"{code}. SYNTHETIC: {SCALE_MEMBERS} simulated members per scale "
        "(`cst_bayes.data.simulate`, study stratum sizes x K); every stage but `weights` (its "
        "scenarios describe the real frames). Seconds per stage and the process's peak resident "
        "MB while it ran.",
        "",
        "| stage | " + " | ".join(f"x{k} s | x{k} peak MB" for k in ks) + " |",
        "|---|" + "---:|---:|" * len(ks),
    ]
    for st in runs[ks[0]]["stages"]:
        cells = [
            f"{_num(runs[k]['stages'].get(st))} | {_num(runs[k]['stage_peak_mb'].get(st))}"
            for k in ks
        ]
        lines.append(f"| {st} | " + " | ".join(cells) + " |")
    cells = [f"{_num(runs[k]['wall_s'])} | {_num(runs[k]['peak_rss_mb'], '.0f')}" for k in ks]
    lines.append("| whole process | " + " | ".join(cells) + " |")
    lines.append(
        "| ratio to x1 (process) | "
        + " | ".join(f"{runs[k]['wall_s'] / base:.2f} | " for k in ks)
        + " |"
    )
    figs: dict[str, str] = {}
    for k in ks:
        figs |= {
            f"x{k}_agencies": str(1306 * k),
            f"x{k}_wall_s": _num(runs[k]["wall_s"]),
            f"x{k}_peak_rss_mb": _num(runs[k]["peak_rss_mb"], ".0f"),
        }
        if k != 1:
            figs[f"x{k}_ratio"] = f"{runs[k]['wall_s'] / base:.2f}"
    if 100 in runs:
        lines += ["", f"x100 / x1 = {figs['x100_ratio']} (target <= {TARGET_X100_RATIO:g})."]
    return "\n".join([*lines, "", figure_table(figs)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--profiles",
        nargs="*",
        default=["quick"],
        choices=["quick", "standard", "full"],
        help="profiles to time (default: quick)",
    )
    ap.add_argument("--phases", nargs="+", default=["cold", "warm"], choices=["cold", "warm"])
    ap.add_argument(
        "--scales",
        type=int,
        nargs="*",
        default=[],
        help="row multipliers for the quick profile (x1 is added)",
    )
    ap.add_argument(
        "--fresh-clone",
        action="store_true",
        help="also time `make reproduce` in a fresh clone of HEAD (what the README says to run)",
    )
    ap.add_argument("--md", type=Path, default=GENERATED / "pipeline.md")
    ap.add_argument("--no-md", action="store_true", help="print only; write no files")
    ap.add_argument(
        "--work",
        type=Path,
        default=None,
        help="folder for the run folders (default: a temporary one, removed)",
    )
    ap.add_argument(
        "--code", default=None, help="what code is measured (default: this checkout's commit)"
    )
    args = ap.parse_args(argv)
    code = args.code or code_version()
    sections: dict[str, str] = {}
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for profile in args.profiles:
            runs = {}
            for phase in args.phases:
                r = run_reproduce(work / f"run-{profile}", profile, [])
                runs[phase] = r
                rows += rows_of(f"{profile}-{phase}", r)
                print(
                    f"{profile} {phase}: {r['wall_s']:.1f} s whole process (pipeline "
                    f"{r['pipeline_s']:.1f} s, CPU {r['cpu_s']:.1f} s), {r['total_bytes'] / 1e6:.1f} MB "
                    f"written, du {r['du_bytes'] / 1e6:.1f} MB, peak {r['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
                for st, s in r["stages"].items():
                    print(
                        f"    {st:12s} {s:7.1f} s {r['bytes'].get(st, 0) / 1e6:8.1f} MB "
                        f"peak {_num(r['stage_peak_mb'].get(st), '.0f')} MB"
                    )
            sections[f"profile-{profile}"] = profile_section(profile, runs, code)
        if args.scales:
            scale_runs = {}
            for k in sorted({1, *args.scales}):
                ens = simulated_ensemble(work / f"ens-x{k}", k)
                extra = ["--reconstructions", str(ens), "--stages", *scale_stages()]
                r = run_reproduce(work / f"scale-x{k}", "quick", extra)
                scale_runs[k] = r
                rows += rows_of(f"quick-x{k}", r)
                print(
                    f"quick x{k}: {r['wall_s']:.1f} s ({r['wall_s'] / scale_runs[1]['wall_s']:.2f} x "
                    f"the x1 time), peak {r['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
            sections["scale"] = scale_section(scale_runs, code)
        if args.fresh_clone:
            r = run_fresh_clone(work)
            rows += [
                dict(run="fresh-clone", stage=st, seconds=v, date=r["date"])
                for st, v in r["stages"].items()
            ]
            rows.append(
                dict(run="fresh-clone", stage="(make reproduce)", seconds=r["wall_s"],
                     bytes=r["du_bytes"], date=r["date"])
            )  # fmt: skip
            print(
                f"fresh clone: make reproduce {r['wall_s']:.1f} s, pipeline {r['pipeline_s']:.1f} s, "
                f"reports {r['du_bytes'] / 1e6:.1f} MB",
                flush=True,
            )
            sections["fresh-clone"] = fresh_section(r)
    if args.no_md:
        return 0
    from cst_bayes.core.fileio import write_csv

    res = HERE / "results" / "pipeline.csv"
    write_csv(
        res, pd.DataFrame(rows), status="SYNTHETIC", notes=f"benchmarks/pipeline.py, {stamp()}"
    )
    print(f"wrote {res}")
    write_sections(
        args.md,
        "benchmarks/pipeline.py",
        "Pipeline timings and sizes",
        ["fresh-clone", "profile-quick", "profile-standard", "profile-full", "scale"],
        sections,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
