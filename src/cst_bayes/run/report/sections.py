"""The report's sections on the stages every run has: overview, data, frequentist tables, models
and diagnostics, results, posterior predictive checks, weighting, comparison, sweep, environment.

Each section function reads the run folder and returns a :class:`~cst_bayes.run.report.base.Section`;
a stage that did not run is named as *not available*, nothing is filled in for it.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cst_bayes.core import config
from cst_bayes.frequentist import reproduced_count
from cst_bayes.run.report.base import (
    RESTRICTED_NOTE,
    Block,
    Figures,
    Section,
    fmt,
    num,
    read_csv,
    read_json,
    stamp,
    true,
)

#: Shipped models that correspond to the four published Table 3 models: (analysis, adjusted).
TABLE3_MODELS: dict[str, tuple[int, str]] = {
    "logit_approaches": (1, "no"),
    "logit_approaches_strata": (1, "yes"),
    "logit_count": (2, "no"),
    "logit_count_strata": (2, "yes"),
}
#: The link each table's published numbers are expected to match: Table 3 prints logistic
#: odds ratios (the frequentist reproduction shows it), the log-link refit is the comparison.


# --------------------------------------------------------------------------- sections


def _section_overview(run: dict[str, Any], run_dir: Path) -> Section:
    sec = Section("overview", "Overview of the run")
    s = run.get("settings", {})
    sec.p(
        f"Profile <b>{run.get('profile')}</b>, seed {run.get('seed')}, "
        f"{len(run.get('datasets', []))} dataset(s) from <code>{html.escape(str(run.get('data_source', '')))}</code>; "
        f"chains {s.get('chains')} x {s.get('draws')} draws after {s.get('tune')} tuning steps "
        f"(sampler {s.get('sampler')}); {s.get('ppc_draws')} posterior predictive replicates."
    )
    units = pd.DataFrame(run.get("units", []))
    if len(units):
        units = units[["unit", "status", "seconds", "message"]].copy()
        units["seconds"] = units["seconds"].map(lambda x: f"{float(x):.1f}")
        sec.table(units, "Stage units: done in this run, reused from cache, or not available.")
    return sec


def _section_data(run: dict[str, Any], run_dir: Path, figs: Figures) -> Section:
    sec = Section("data", "Data and provenance")
    if run.get("synthetic"):
        sec.warn(
            config.SYNTHETIC_BANNER + ". Every estimate below describes what the published tables "
            "are consistent with, not the study's agencies; the spread across reconstructions shows "
            "what the tables cannot pin down."
        )
    if run.get("restricted"):
        sec.warn(RESTRICTED_NOTE)
    pub = run.get("published", {})
    if pub:
        sec.table(
            pd.DataFrame({"file": list(pub), "sha256": [h[:16] for h in pub.values()]}),
            "Published tables (transcribed from Mitchell et al. 2024, CC BY 4.0) and their hashes.",
        )
    audit = read_csv(run_dir / "audit" / "audit.csv")
    if audit is None:
        sec.warn("Stage audit not available: no audit of the published tables in this run.")
    else:
        counts = audit["status"].value_counts()
        sec.p(
            "Audit of the published numbers: "
            + ", ".join(f"{v} {k}" for k, v in counts.items())
            + "."
        )
        bad = audit[audit["status"] != "pass"]
        if len(bad):
            sec.table(
                bad,
                "Audit checks that did not pass (flag: inconsistent in the article; fail: error).",
            )
    ds = read_csv(run_dir / "data" / "datasets.csv")
    if ds is not None:
        ds = ds.assign(sha256=ds["sha256"].str[:16])
        sec.table(ds, "Datasets analysed (hash of values; no rows are copied into the run).")
    man = read_json(run_dir / "data" / "reconstruction_manifest.json")
    if man and man.get("method"):
        sec.p("Reconstruction method: " + html.escape(str(man["method"])))
    fid = read_csv(run_dir / "data" / "fidelity.csv")
    if fid is not None and len(fid) and {"table", "met", "total"} <= set(fid.columns):
        g = (
            fid.assign(met=num(fid["met"]), total=num(fid["total"]))
            .groupby("table", sort=False)[["met", "total"]]
            .sum()
        )
        g = g.reset_index().astype({"met": int, "total": int})
        sec.table(
            g,
            "Reconstruction fidelity: published targets met, summed over the ensemble members used "
            "(recomputed with the package's frequentist code when the ensemble was built).",
        )
    spread = read_csv(run_dir / "data" / "untargeted_spread.csv")
    if spread is not None and len(spread):
        sec.table(
            fmt(spread),
            "Spread across the whole shipped ensemble of statistics that no published table "
            "fixes: what the tables cannot tell us.",
        )
    return sec


def _section_tables(run: dict[str, Any], run_dir: Path) -> Section:
    sec = Section("frequentist", "Frequentist reproduction of the published tables")
    comp = read_csv(run_dir / "tables" / "comparison.csv")
    if comp is None:
        sec.warn("Stage tables not available.")
        return sec
    comp = comp.assign(_m=true(comp["matches"]))
    g = comp.groupby(["table", "link"], dropna=False)["_m"].agg(["sum", "size"]).reset_index()
    g["share"] = (g["sum"] / g["size"]).map(lambda x: f"{x:.0%}")
    g.columns = ["table", "link", "matched", "compared", "share"]
    sec.table(
        g, "Published numbers reproduced (rounds to the printed value), summed over datasets."
    )
    n_ok, n_all = reproduced_count(comp)
    sec.p(
        f"<b>{n_ok} of {n_all}</b> published numbers reproduced, counting each analysis only "
        "against the link it is expected to match (Table 3: logistic odds ratios; the log-link "
        "refit rows above are the comparison, not a second chance)."
    )
    t3 = g[g["table"] == "table3"].set_index("link")
    if {"logit", "log"} <= set(t3.index):
        lo, lg = int(t3["matched"]["logit"]), int(t3["matched"]["log"])
        sec.p(
            f"Table 3 is called Poisson regression in the article. Refitted both ways, {lo} published "
            f"numbers agree with logistic odds ratios and {lg} with Poisson risk ratios: "
            f"the printed figures behave like {'odds ratios' if lo > lg else 'risk ratios'}."
        )
    t1 = read_csv(run_dir / "tables" / "table1.csv")
    if t1 is not None:
        first = t1[t1["dataset"] == t1["dataset"].iloc[0]]
        cols = [
            c for c in ("variable", "stratum", "n_yes", "n_stratum", "pct", "p_value") if c in first
        ]
        sec.table(fmt(first[cols]), f"Table 1 recomputed on {first['dataset'].iloc[0]}.")
    return sec


def _load_table3_sources(run_dir: Path) -> pd.DataFrame:
    """Published, frequentist and Bayesian Table 3 ORs in one tidy frame."""
    rows = []
    pub = read_csv(run_dir / "data" / "published" / "table3_odds_ratios.csv")
    if pub is not None:
        for r in pub.to_dict("records"):
            rows.append(
                {
                    "analysis": int(r["analysis"]),
                    "adjusted_for_size": r["adjusted_for_size"],
                    "term": r["term"],
                    "source": "published",
                    "estimate": float(r["or"]),
                    "ci_low": float(r["ci_low"]),
                    "ci_high": float(r["ci_high"]),
                }
            )
    t3 = read_csv(run_dir / "tables" / "table3.csv")
    if t3 is not None:
        t3 = t3[t3["link"] == "logit"]
        for c in ("estimate", "ci_low", "ci_high"):
            t3[c] = num(t3[c])
        # across reconstructions: the median of each number (members differ only slightly)
        g = t3.groupby(["analysis", "adjusted_for_size", "term"], sort=False)[
            ["estimate", "ci_low", "ci_high"]
        ].median()
        for key, v in g.iterrows():
            assert isinstance(key, tuple)  # the three-level group index
            a, adj, term = key
            rows.append(
                {
                    "analysis": int(a),
                    "adjusted_for_size": adj,
                    "term": term,
                    "source": "frequentist",
                    **{str(k): x for k, x in v.to_dict().items()},
                }
            )
    for model, (a, adj) in TABLE3_MODELS.items():
        s = read_csv(run_dir / "models" / model / "summary.csv")
        if s is None:
            continue
        for r in s.to_dict("records"):
            rows.append(
                {
                    "analysis": a,
                    "adjusted_for_size": adj,
                    "term": r["term"],
                    "source": "Bayesian",
                    # blank where restricted mode hid a term
                    "estimate": pd.to_numeric(r["estimate"], errors="coerce"),
                    "ci_low": pd.to_numeric(r["ci_low"], errors="coerce"),
                    "ci_high": pd.to_numeric(r["ci_high"], errors="coerce"),
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "analysis",
            "adjusted_for_size",
            "term",
            "source",
            "estimate",
            "ci_low",
            "ci_high",
        ],
    )


def forest_figure(df: pd.DataFrame, *, synthetic: bool, restricted: bool) -> Any:
    """Forest plot of Table 3 ORs, one panel per published model, sources side by side."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    panels = sorted({(int(a), adj) for a, adj in zip(df["analysis"], df["adjusted_for_size"])})
    colors = {"published": "#222222", "frequentist": "#1f77b4", "Bayesian": "#d62728"}
    offsets = {"published": -0.22, "frequentist": 0.0, "Bayesian": 0.22}
    nterms = max(
        len(set(df[(df["analysis"] == a) & (df["adjusted_for_size"] == adj)]["term"]))
        for a, adj in panels
    )
    fig, axes = plt.subplots(
        1, len(panels), figsize=(3.4 * len(panels), 0.42 * nterms + 1.6), squeeze=False
    )
    for ax, (a, adj) in zip(axes[0], panels):
        d = df[(df["analysis"] == a) & (df["adjusted_for_size"] == adj)]
        terms = list(dict.fromkeys(d[d["source"] == "published"]["term"])) or list(
            dict.fromkeys(d["term"])
        )
        terms += [t for t in dict.fromkeys(d["term"]) if t not in terms]
        for src, g in d.groupby("source"):
            y = np.array([terms.index(t) for t in g["term"]]) + offsets.get(src, 0)
            ax.errorbar(
                g["estimate"],
                y,
                xerr=[g["estimate"] - g["ci_low"], g["ci_high"] - g["estimate"]],
                fmt="o",
                ms=3.5,
                lw=1,
                color=colors.get(src, "gray"),
                label=src,
            )
        ax.axvline(1.0, color="gray", lw=0.8, ls="--")
        ax.set_xscale("log")
        # plain numbers on the log axis: a narrow range (e.g. 1.1-1.5) gets unreadable 10^x labels
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_yticks(range(len(terms)), terms, fontsize=8)
        ax.set_ylim(
            len(terms) - 0.5, -0.5
        )  # fixed rows: one-term panels must not stretch the offsets
        ax.set_title(f"Analysis {a}, {'adjusted' if adj == 'yes' else 'unadjusted'}", fontsize=9)
        ax.set_xlabel("odds ratio (95% interval)", fontsize=8)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    stamp(fig, synthetic, restricted)
    return fig


def _section_models(run: dict[str, Any], run_dir: Path, figs: Figures) -> tuple[Section, Section]:
    from cst_bayes.run.report.extra import prior_blocks
    from cst_bayes.run.report.quality import (
        EXTENSION_TEXT,
        THRESHOLDS_TEXT,
        model_diagnostics,
        weighting_diagnostics,
        weighting_failures,
    )

    sec = Section("models", "Models and priors")
    diag = Section("diagnostics", "Computation and diagnostics")
    mdir = run_dir / "models"
    names = (
        sorted(p.name for p in mdir.iterdir() if p.is_dir() and not p.name.startswith("."))
        if mdir.is_dir()
        else []
    )
    if not names:
        sec.warn("Stage models not available: no Bayesian model was fitted in this run.")
        diag.warn("Stage models not available: no sampler diagnostics.")
        return sec, diag
    s = run.get("settings", {})
    diag.p(
        f"Sampler {s.get('sampler')}, {s.get('chains')} chains x {s.get('draws')} draws after {s.get('tune')} "
        f"tuning steps, seed {run.get('seed')}. Thresholds: {THRESHOLDS_TEXT}."
    )
    if s.get("extend"):
        diag.p(EXTENSION_TEXT)
    for name in names:
        spec_file = mdir / name / "spec.toml"
        if spec_file.is_file():
            sec.pre(
                spec_file.read_text(encoding="utf-8"),
                f"Spec of {name} (priors with their reasons).",
            )
        else:
            sec.p(f"{name}: spec file not stored with the fit.")
        prior_blocks(sec, run, run_dir, name, figs)
    diag.table(
        model_diagnostics(run_dir, names),
        "Convergence per model (pooled over the reconstructions when there are several: the "
        "worst member). R-hat and ESS are the worst over the parameters and every reported term; "
        "'problems' names each threshold a model fails (after any extension); 'extended' "
        "names the fits sampled a second time and their thinning factor.",
    )
    wdiag = weighting_diagnostics(run_dir)
    if wdiag is not None and not wdiag.empty:
        wbad = weighting_failures(run_dir)
        diag.p(
            f"The weighting stage's MCMC fits (pseudo-posteriors and MRP models, "
            f"`weights/mcmc_diagnostics.csv`): {len(wdiag)} fits, "
            f"{int((num(wdiag['extended_thin']) > 1).sum())} extended, {len(wbad)} failing a threshold."
        )
        if not wbad.empty:
            diag.table(wbad, "Weighting-stage MCMC fits that fail a threshold.")
    return sec, diag


def _section_results(run: dict[str, Any], run_dir: Path, figs: Figures) -> Section:
    sec = Section("results", "Results: published, frequentist refit and Bayesian, side by side")
    t3 = _load_table3_sources(run_dir)
    if t3.empty:
        sec.warn("No Table 3 estimates available.")
        return sec
    if not (t3["source"] == "Bayesian").any():
        sec.warn("Stage models not available: only the published and frequentist ORs are shown.")
    wide = t3.assign(
        cell=[
            "" if pd.isna(e) else f"{e:.2f} ({lo:.2f}, {hi:.2f})"
            for e, lo, hi in zip(t3["estimate"], t3["ci_low"], t3["ci_high"])
        ]
    )
    wide = wide.pivot_table(
        index=["analysis", "adjusted_for_size", "term"],
        columns="source",
        values="cell",
        aggfunc="first",
        sort=False,
    ).reset_index()
    wide.columns.name = None
    sec.table(
        wide,
        "Odds ratios with 95% intervals (Bayesian: posterior median and equal-tailed interval).",
    )
    fig = forest_figure(
        t3, synthetic=bool(run.get("synthetic")), restricted=bool(run.get("restricted"))
    )
    figs.add(
        sec,
        "forest_table3.png",
        fig,
        "Forest plot of the Table 3 odds ratios: published (black), "
        "frequentist refit (blue), Bayesian posterior (red)."
        + (" Synthetic data." if run.get("synthetic") else ""),
    )
    from cst_bayes.run.report.extra import decision_blocks

    decision_blocks(sec, run_dir)
    for name in (
        sorted(p.parent.name for p in (run_dir / "models").glob("*/summary.csv"))
        if (run_dir / "models").is_dir()
        else []
    ):
        if name in TABLE3_MODELS:
            continue
        s = read_csv(run_dir / "models" / name / "summary.csv")
        if s is not None:
            sec.table(fmt(s), f"Posterior summary of {name}.")
        b = read_csv(run_dir / "models" / name / "between.csv")
        if b is not None:
            sec.table(
                fmt(b),
                f"{name}: share of posterior variance from differences between reconstructions.",
            )
    for model in TABLE3_MODELS:
        b = read_csv(run_dir / "models" / model / "between.csv")
        if b is not None:
            sec.table(
                fmt(b),
                f"{model}: share of posterior variance from differences between reconstructions.",
            )
    return sec


def _section_ppc(run: dict[str, Any], run_dir: Path, figs: Figures) -> Section:
    sec = Section("ppc", "Posterior predictive checks of the published tables")
    pdir = run_dir / "ppc"
    names = sorted(p.parent.name for p in pdir.glob("*/ppc.csv")) if pdir.is_dir() else []
    if not names:
        sec.warn("Stage ppc not available: no posterior predictive checks in this run.")
        return sec
    rows = []
    for name in names:
        t = read_csv(pdir / name / "ppc.csv")
        assert t is not None  # the glob above found it
        flag = t["flag"].str.lower().isin(["true", "1"]) if "flag" in t else t["table"] == ""
        fitted = (
            t["fitted_by_model"].str.lower().isin(["true", "1"])
            if "fitted_by_model" in t
            else t["table"] == ""
        )
        # statistics the model has fitted (functions of its sufficient statistic) cannot
        # fall outside the band: they are counted apart, not as evidence of fit
        flagged = t[flag & ~fitted]
        rows.append(
            {
                "model": name,
                "statistics checked": int((~fitted).sum()),
                "outside 95% interval": len(flagged),
                "fitted by the model (not counted)": int(fitted.sum()),
            }
        )
        if len(flagged):
            cols = [
                c
                for c in (
                    "table",
                    "statistic",
                    "stratum_or_term",
                    "observed",
                    "published",
                    "rep_median",
                    "rep_low",
                    "rep_high",
                    "ppp",
                )
                if c in flagged
            ]
            sec.table(
                fmt(flagged[cols]), f"{name}: statistics outside the replicated 95% interval."
            )
        png = pdir / name / "ppc.png"
        if png.is_file():
            figs.add_png(
                sec,
                f"ppc_{name}.png",
                png.read_bytes(),
                f"{name}: observed (dot) and published (diamond) statistics against the replicated "
                "95% band [-1, 1] on a standardised axis.",
            )
    sec.blocks.insert(
        0,
        Block("table", table=pd.DataFrame(rows), caption="Posterior predictive checks per model."),
    )
    return sec


def _section_weights(run: dict[str, Any], run_dir: Path, figs: Figures) -> Section:
    sec = Section("weights", "Weighting sensitivity")
    wdir = run_dir / "weights"
    if not wdir.is_dir():
        sec.warn(
            "Stage weights not available: the unweighted analysis was not compared with weighted ones."
        )
        return sec
    sec.p(
        "The published analysis is unweighted. Eligibility and response by stratum were not published, "
        "so weighting is a set of named scenarios; the tables show how the key estimands move across them."
    )
    for name in ("sensitivity", "design_estimates", "mrp_estimates"):
        t = read_csv(wdir / f"{name}.csv")
        if t is not None:
            sec.table(fmt(t), name.replace("_", " ").capitalize() + ".")
    for png in sorted(p for p in wdir.glob("*.png") if p.stem != "tipping_point"):
        figs.add_png(
            sec, f"weights_{png.name}", png.read_bytes(), f"Weighting sensitivity ({png.stem})."
        )
    text = wdir / "sensitivity.md"
    if text.is_file():
        sec.pre(text.read_text(encoding="utf-8"), "What survives every scenario.")
    return sec


def _section_compare(run: dict[str, Any], run_dir: Path) -> Section:
    sec = Section("comparison", "Model comparison (PSIS-LOO)")
    t = read_csv(run_dir / "compare" / "loo.csv")
    if t is None:
        sec.warn("Stage compare not available: no PSIS-LOO comparison in this run.")
        return sec
    sec.table(
        fmt(t), "Expected log predictive density (elpd_loo), differences and Pareto-k diagnostics."
    )
    from cst_bayes.run.report.extra import stacked_blocks

    stacked_blocks(sec, run_dir)
    return sec


def _section_sweep(run_dir: Path, figs: Figures, run: dict[str, Any]) -> Section | None:
    sdir = run_dir / "sweep"
    t = read_csv(sdir / "summary.csv")
    if t is None:
        return None
    sec = Section("sweep", "Sensitivity sweep")
    sec.p(
        "A grid of reconstructions x weighting scenarios x prior scales x models, run as independent tasks "
        "on dask.distributed; each cell is cached by a hash of its inputs."
    )
    sec.table(fmt(t), "Sweep summary: spread of each estimate across the grid.")
    png = sdir / "sweep.png"
    if png.is_file():
        figs.add_png(sec, "sweep.png", png.read_bytes(), "Posterior medians across the sweep grid.")
    return sec


def _section_environment(run: dict[str, Any]) -> Section:
    sec = Section("environment", "Computational environment and reproducibility")
    env = run.get("environment", {})
    sec.p(
        f"cst_bayes {run.get('cst_bayes_version')}, Python {env.get('python')} on {env.get('platform')} "
        f"({env.get('cpus')} CPUs), git commit <code>{env.get('git_commit')}</code>, seed {run.get('seed')}."
    )
    pk = env.get("packages", {})
    sec.table(
        pd.DataFrame({"package": list(pk), "version": list(pk.values())}), "Package versions."
    )
    ds = run.get("datasets", [])
    if ds:
        sec.table(pd.DataFrame(ds), "Data hashes (SHA-256 of the validated frame).")
    specs = run.get("specs", {})
    if specs:
        sec.table(
            pd.DataFrame({"model": list(specs), "sha256": list(specs.values())}),
            "Model spec hashes.",
        )
    st = run.get("stage_seconds", {})
    if st:
        sec.table(
            pd.DataFrame({"stage": list(st), "seconds": [f"{v:.1f}" for v in st.values()]}),
            "Stage timings of the last run (cached stages take ~0 s).",
        )
    sec.p(
        "Rerun with: <code>cst-bayes reproduce --profile "
        f"{run.get('profile')} --seed {run.get('seed')}</code>; an unchanged stage is reused from its cache."
    )
    return sec
