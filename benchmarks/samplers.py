"""Sampler benchmarks for the main model (logit_approaches_strata), SYNTHETIC data.

The headline is what a user waits for, one fit as a whole process, from launch to exit:

* A: ``cst-bayes fit logit_approaches_strata --data FILE --out TMP --quiet`` (the CLI's
  defaults: 4 chains x 1000 draws after 1000 tuning);
* B: ``Rscript benchmarks/rstanarm_main.R FILE SEED``: rstanarm's ``stan_glmer`` of the same
  model (any_cst on the nine approaches + (1 | stratum), binomial logit), same chains and draws;

run in turn A B A B ... (``--rounds``), after one untimed CLI run that fills numba's disk
cache. Per run: wall seconds and CPU seconds (the process and its descendants); then medians,
rstanarm/CLI ratios of the medians, load average before and after. FILE defaults to
``data/reconstructed/reconstruction-001.csv`` (a SYNTHETIC reconstruction).

With ``--parts inprocess scale`` it also times fits inside one Python process (the package's
samplers, PyMC's NUTS, bambi if installed) and the cost growth at 10 x and 100 x the rows.

Writes ``docs/generated/samplers.md`` (one section per part; parts not run keep their earlier
section and date) and ``benchmarks/results/samplers.csv``; prints the target line. The machine
is shared: compare figures of one run.

Usage: ``python benchmarks/samplers.py [--rounds 5] [--parts whole inprocess scale]``;
``--quick``: a smoke run (1 round of 2 chains x 200 + 200, writes nothing unless ``--md``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from cst_bayes.core.config import APPROACHES

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import (  # noqa: E402
    GENERATED,
    ROOT,
    code_version,
    figure_table,
    load,
    run_process,
    stamp,
    write_sections,
)

MODEL = "logit_approaches_strata"
DATA = ROOT / "data" / "reconstructed" / "reconstruction-001.csv"
TARGET_WALL_S = 5.0
TARGET_RATIO = 15.0


# ---------------------------------------------------------------- whole process (headline)


def cli_command() -> list[str]:
    """The installed ``cst-bayes`` entry point beside this interpreter (what users run)."""
    exe = Path(sys.executable).parent / "cst-bayes"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "cst_bayes"]


def cli_run(data: Path, settings: tuple[int, int, int] | None, seed: int) -> dict:
    """A: one ``cst-bayes fit`` process; min bulk ESS of the nine coefficients from its summary."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [*cli_command(), "fit", MODEL, "--data", str(data), "--out", tmp, "--quiet"]
        if settings is not None:
            chains, draws, tune = settings
            cmd += ["--chains", str(chains), "--draws", str(draws), "--tune", str(tune)]
        if seed:
            cmd += ["--seed", str(seed)]
        r = run_process(cmd, adopt_orphans=True)
        if r.returncode != 0:
            raise SystemExit(f"cst-bayes fit failed ({r.returncode}): {r.stderr[-1500:]}")
        summ = pd.read_csv(Path(tmp) / f"{MODEL}-summary.csv")
        ess = float(summ.loc[summ["term"].isin(APPROACHES), "ess_bulk"].min())
        out_bytes = sum(p.stat().st_size for p in Path(tmp).iterdir())
    return dict(
        tool="cst-bayes fit",
        wall_s=r.wall_s,
        cpu_s=r.cpu_s,
        peak_rss_mb=r.peak_rss_mb,
        min_ess_bulk=ess,
        output_mb=out_bytes / 1e6,
        inner_s=np.nan,
        divergences=np.nan,
    )


def r_run(data: Path, settings: tuple[int, int, int] | None, seed: int) -> dict:
    """B: one ``Rscript benchmarks/rstanarm_main.R`` process (it prints wall_s,ess,div)."""
    cmd = ["Rscript", str(HERE / "rstanarm_main.R"), str(data), str(seed)]
    if settings is not None:
        cmd += [str(x) for x in settings]
    r = run_process(cmd, adopt_orphans=True)
    if r.returncode != 0:
        raise SystemExit(f"Rscript rstanarm failed ({r.returncode}): {r.stderr[-1500:]}")
    inner, ess, div = r.stdout.strip().splitlines()[-1].split(",")
    return dict(
        tool="Rscript rstanarm",
        wall_s=r.wall_s,
        cpu_s=r.cpu_s,
        peak_rss_mb=r.peak_rss_mb,
        min_ess_bulk=float(ess),
        output_mb=np.nan,
        inner_s=float(inner),
        divergences=int(div),
    )


def rstanarm_available() -> str | None:
    """None when ``Rscript`` can load rstanarm, else why not."""
    if not shutil.which("Rscript"):
        return "Rscript not installed (Debian: r-base-core r-cran-rstanarm)"
    r = run_process(["Rscript", "-e", "suppressPackageStartupMessages(library(rstanarm))"])
    return None if r.returncode == 0 else "R package rstanarm not installed (r-cran-rstanarm)"


def bench_whole(
    data: Path,
    rounds: int,
    settings: tuple[int, int, int] | None,
    seed: int,
    with_r: bool,
    code: str | None = None,
) -> tuple[pd.DataFrame, dict]:
    """A B A B ...: ``rounds`` CLI runs and (``with_r``) as many rstanarm runs, in turn."""
    info = dict(date=stamp(), load_before=load(), code=code or code_version())
    t = time.perf_counter()
    cli_run(data, (2, 50, 50), seed)  # untimed: numba's disk cache, page cache
    info["warmup_s"] = time.perf_counter() - t
    rows = []
    for i in range(1, rounds + 1):
        for run in (cli_run, r_run) if with_r else (cli_run,):
            res = run(data, settings, seed)
            res["round"] = i
            rows.append(res)
            print(
                f"  round {i} {res['tool']:17s} wall {res['wall_s']:6.1f} s  "
                f"CPU {res['cpu_s']:6.1f} s  min ESS {res['min_ess_bulk']:6.0f}",
                flush=True,
            )
    info["load_after"] = load()
    return pd.DataFrame(rows), info


def whole_summary(runs: pd.DataFrame) -> dict[str, float]:
    med = runs.groupby("tool")[["wall_s", "cpu_s"]].median()
    out = {
        "cli_median_wall_s": med.loc["cst-bayes fit", "wall_s"],
        "cli_median_cpu_s": med.loc["cst-bayes fit", "cpu_s"],
    }
    if "Rscript rstanarm" in med.index:
        out["rstanarm_median_wall_s"] = med.loc["Rscript rstanarm", "wall_s"]
        out["rstanarm_median_cpu_s"] = med.loc["Rscript rstanarm", "cpu_s"]
        out["ratio_wall"] = out["rstanarm_median_wall_s"] / out["cli_median_wall_s"]
        out["ratio_cpu"] = out["rstanarm_median_cpu_s"] / out["cli_median_cpu_s"]
    return out


def target_line(s: dict[str, float]) -> str:
    ratio = f"{s['ratio_wall']:.1f} x" if "ratio_wall" in s else "not measured"
    return (
        f"whole-process fit: median {s['cli_median_wall_s']:.1f} s (target <= {TARGET_WALL_S:g} s); "
        f"rstanarm/CLI {ratio} (target >= {TARGET_RATIO:g} x)"
    )


def whole_markdown(
    runs: pd.DataFrame, info: dict, s: dict[str, float], data: Path, settings_txt: str, note: str
) -> str:
    rel = data.relative_to(ROOT) if data.is_relative_to(ROOT) else data
    lines = [
        "## One fit as a user runs it: whole process, `cst-bayes fit` vs `Rscript` rstanarm",
        "",
        f"Measured {info['date']} on {os.cpu_count()} cores; load average {info['load_before']:.1f} "
        f"before, {info['load_after']:.1f} after; code {info['code']}. SYNTHETIC data "
        f"(`{rel}`), model `{MODEL}`, {settings_txt}, run in turn (A B A B ...). Wall: launch to "
        "exit. CPU: user + system of the process and its descendants. ESS: min bulk ESS of the "
        f"nine approach coefficients. An untimed CLI run came first ({info['warmup_s']:.1f} s). "
        + note,
        "",
        "| round | process | wall s | CPU s | peak RSS MB | min bulk ESS | divergences | "
        "stan_glmer call s | output MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def cell(v, fmt):
        return "" if v != v else format(v, fmt)

    for _, r in runs.iterrows():
        lines.append(
            f"| {r['round']} | {r['tool']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
            f"{r['peak_rss_mb']:.0f} | {r['min_ess_bulk']:.0f} | {cell(r['divergences'], '.0f')} | "
            f"{cell(r['inner_s'], '.1f')} | {cell(r['output_mb'], '.1f')} |"
        )
    figs = {k: f"{v:.1f}" for k, v in s.items()}
    figs["rounds"] = str(int(runs["round"].max()))
    lines += ["", figure_table(figs), "", f"`{target_line(s)}`"]
    return "\n".join(lines)


# ---------------------------------------------------------------- inside one Python process


def _min_ess(post, var: str = "beta") -> float:
    import arviz as az

    return float(az.ess(post[[var]], method="bulk")[var].min())


def row(name: str, compile_s: float, sample_s: float, ess: float, div: int, note: str = "") -> dict:
    wall = compile_s + sample_s
    return dict(
        sampler=name,
        compile_s=round(compile_s, 2),
        sample_s=round(sample_s, 2),
        wall_s=round(wall, 2),
        min_ess_bulk=round(ess),
        ess_per_s=round(ess / wall, 1) if wall > 0 else np.nan,
        divergences=div,
        note=note,
    )


def bench_package(df, df2, draws, tune, chains, seed) -> list[dict]:
    from cst_bayes.bayes import models as M
    from cst_bayes.bayes import samplers as samplers_mod

    out = []
    runs = [  # (label, data, sampler, fast density, note)
        (
            "package nutpie (first fit in the process)",
            df,
            "nutpie",
            True,
            "fast numba density; compile_s = loading cached code + post-processing",
        ),
        (
            "package nutpie (second fit, new data)",
            df2,
            "nutpie",
            True,
            "includes log-lik/PPC/summary",
        ),
        (
            "package nutpie-c (C backend, disk cache)",
            df,
            "nutpie-c",
            True,
            "PyTensor C modules cached on disk",
        ),
        (
            "nutpie PyTensor/numba compile (FAST_LOGP=False)",
            df,
            "nutpie",
            False,
            "nutpie's own numba compile, first fit in the process",
        ),
    ]
    for label, data, sampler, fast, note in runs:
        samplers_mod.FAST_LOGP = fast
        try:
            t = time.perf_counter()
            f = M.fit(
                MODEL,
                data,
                draws=draws,
                tune=tune,
                chains=chains,
                seed=seed,
                sampler=sampler,
                progress=False,
            )
            tot = time.perf_counter() - t
        finally:
            samplers_mod.FAST_LOGP = True
        out.append(
            row(
                label,
                tot - f.timings["sample_s"],
                f.timings["sample_s"],
                _min_ess(f.idata.posterior),
                f.diagnostics["divergences"],
                note,
            )
        )
    return out


def bench_pymc(df, draws, tune, chains, seed) -> dict:
    from cst_bayes.bayes import models as M

    t = time.perf_counter()
    f = M.fit(
        MODEL, df, draws=draws, tune=tune, chains=chains, seed=seed, sampler="pymc", progress=False
    )
    tot = time.perf_counter() - t
    # PyMC compiles inside pm.sample: its own sampling_time attribute separates the two
    st = float(f.idata.posterior.attrs.get("sampling_time", f.timings["sample_s"]))
    return row(
        "PyMC default NUTS (same model)",
        tot - st,
        st,
        _min_ess(f.idata.posterior),
        f.diagnostics["divergences"],
    )


def bench_bambi(df, draws, tune, chains, seed) -> dict | None:
    try:
        import bambi as bmb
    except ImportError:
        print("bambi: NOT INSTALLED (pip install '.[bench]'); skipped", file=sys.stderr)
        return None
    import arviz as az

    d = df.copy()
    d["stratum"] = d["stratum"].astype(str)
    d = d.astype({a: int for a in APPROACHES}).astype({"any_cst": int})
    t = time.perf_counter()
    m = bmb.Model("any_cst ~ " + " + ".join(APPROACHES) + " + (1|stratum)", d, family="bernoulli")
    idata = m.fit(draws=draws, tune=tune, chains=chains, random_seed=seed, progressbar=False)
    tot = time.perf_counter() - t
    st = float(idata.posterior.attrs.get("sampling_time", tot))
    ess = float(min(az.ess(idata.posterior[[a]], method="bulk")[a] for a in APPROACHES))
    div = int(idata.sample_stats["diverging"].sum())
    return row(
        f"bambi {bmb.__version__} default",
        tot - st,
        st,
        ess,
        div,
        "1,306 rows, non-centered (1|stratum)",
    )


def bench_scale(draws, tune, chains, seed) -> pd.DataFrame:
    from cst_bayes.bayes import models as M
    from cst_bayes.data.simulate import simulate

    rows = []
    for scale in (1, 10, 100):
        df, _ = simulate(seed + scale, scale=scale)
        t = time.perf_counter()
        f = M.fit(
            MODEL,
            df,
            draws=draws,
            tune=tune,
            chains=chains,
            seed=seed,
            sampler="nutpie",
            progress=False,
            pointwise=False,
        )
        rows.append(
            dict(
                rows=len(df),
                patterns=int(f.idata.posterior.attrs["n_patterns"]),
                wall_s=round(time.perf_counter() - t, 2),
                sample_s=round(f.timings["sample_s"], 2),
                min_ess_bulk=round(_min_ess(f.idata.posterior)),
            )
        )
    return pd.DataFrame(rows)


def md_table(df: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    for r in df.itertuples(index=False):
        lines.append("| " + " | ".join("" if v != v else str(v) for v in r) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="A B rounds of the whole-process part")
    ap.add_argument(
        "--parts",
        nargs="+",
        default=["whole"],
        choices=["whole", "inprocess", "scale"],
        help="what to measure (default: whole)",
    )
    ap.add_argument(
        "--data", type=Path, default=DATA, help="microdata file for the whole-process part"
    )
    ap.add_argument(
        "--no-r", action="store_true", help="leave rstanarm out of the whole-process part"
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 round, 2 chains x 200 + 200; writes nothing unless --md",
    )
    ap.add_argument(
        "--md",
        type=Path,
        default=None,
        help="generated Markdown file (default docs/generated/samplers.md; none with --quick)",
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--code", default=None, help="what code is measured (default: this checkout's commit)"
    )
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    md = a.md if a.md is not None else (None if a.quick else GENERATED / "samplers.md")
    chains, draws, tune = (2, 200, 200) if a.quick else (4, 1000, 1000)
    settings = (chains, draws, tune) if a.quick else None
    settings_txt = f"{chains} chains x {draws} draws after {tune} tuning"
    rounds = 1 if a.quick else a.rounds
    sections: dict[str, str] = {}
    csv_rows: list[pd.DataFrame] = []

    if "whole" in a.parts:
        why_not = None if a.no_r else rstanarm_available()
        note = (
            "rstanarm left out (--no-r)."
            if a.no_r
            else (f"rstanarm NOT run: {why_not}." if why_not else "")
        )
        if a.quick:
            note += " Quick smoke run: not the benchmark."
        print(f"whole process, {rounds} round(s), {settings_txt}, load {load():.1f}", flush=True)
        runs, info = bench_whole(
            a.data, rounds, settings, a.seed, with_r=not a.no_r and not why_not, code=a.code
        )
        s = whole_summary(runs)
        sections["whole"] = whole_markdown(runs, info, s, a.data, settings_txt, note.strip())
        csv_rows.append(runs.assign(part="whole", date=info["date"]))
        print(target_line(s))
        if "ratio_cpu" in s:
            print(
                f"whole-process CPU: median {s['cli_median_cpu_s']:.1f} s; rstanarm/CLI {s['ratio_cpu']:.1f} x"
            )

    if "inprocess" in a.parts or "scale" in a.parts:
        from cst_bayes.data.simulate import simulate

        date, l0 = stamp(), load()
        head = (
            f"Measured {date} on {os.cpu_count()} cores (load average {l0:.1f} at the start); "
            f"code {a.code or code_version()}; SYNTHETIC data (simulated with the study's stratum sizes, "
            f"seed 20240101); {settings_txt}."
        )
        if "inprocess" in a.parts:
            df, _ = simulate(20240101)
            df2, _ = simulate(20240102)
            rows = bench_package(df, df2, draws, tune, chains, a.seed)
            rows.append(bench_pymc(df, draws, tune, chains, a.seed))
            if not a.quick and (b := bench_bambi(df, draws, tune, chains, a.seed)):
                rows.append(b)
            res = pd.DataFrame(rows)
            with pd.option_context("display.width", 250, "display.max_columns", 20):
                print(res.to_string(index=False))
            sections["inprocess"] = "\n".join(
                [
                    "## Fits inside one Python process (`cst_bayes.bayes.models.fit`)",
                    "",
                    head,
                    "Wall: the `fit()` call (set-up/compile, sampling, agency-level log-likelihood, "
                    "posterior predictive, summary); no Python start-up or imports.",
                    "",
                    md_table(res),
                ]
            )
            csv_rows.append(res.assign(part="inprocess", date=date))
        if "scale" in a.parts:
            sc = bench_scale(draws, tune, chains, a.seed)
            print(sc.to_string(index=False))
            sections["scale"] = "\n".join(
                [
                    "## Cost growth with rows (package nutpie, no pointwise groups)",
                    "",
                    head,
                    "Rows simulated at 1 x, 10 x and 100 x the study's stratum sizes.",
                    "",
                    md_table(sc),
                ]
            )
            csv_rows.append(sc.assign(part="scale", date=date))

    if md is not None:
        write_sections(
            md,
            "benchmarks/samplers.py",
            "Sampler benchmarks",
            ["whole", "inprocess", "scale"],
            sections,
        )
        if not a.quick:
            from cst_bayes.core.fileio import write_csv

            (HERE / "results").mkdir(exist_ok=True)
            write_csv(
                HERE / "results" / "samplers.csv",
                pd.concat(csv_rows, ignore_index=True),
                status="SYNTHETIC",
                notes=f"benchmarks/samplers.py, {stamp()}",
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
