"""Report pieces that render when their files exist: prior predictive checks and power-scaling
sensitivity per model, decision quantities, stacked predictions, what the published tables
leave open (reconstruction bounds) and the nonresponse tipping point.

Compute tables, then render: figures take tables and return matplotlib Figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cst_bayes.core import config
from cst_bayes.run.report.base import Figures, Section, num, read_csv, stamp

PRIOR_CHECK_COLUMNS = [
    "table",
    "statistic",
    "stratum_or_term",
    "published",
    "rep_low",
    "rep_median",
    "rep_high",
    "ppp",
]
DECISION_SHOWN = [
    "term",
    "estimate",
    "ci_low",
    "ci_high",
    "p_gt_1",
    "p_rope",
    "mcse_estimate",
    "mcse_ci_low",
    "mcse_ci_high",
]


# --------------------------------------------------------------------------- per model


def prior_check_table(t: pd.DataFrame) -> pd.DataFrame:
    """The published statistics against the prior predictive: Table 1 counts and Table 3 ORs,
    with whether the printed number lies inside the prior 95% interval."""
    keep = ((t["table"] == "table1") & (t["statistic"] == "n_yes")) | (
        (t["table"] == "table3") & t["statistic"].str.endswith("_OR")
    )
    d = t.loc[keep, [c for c in PRIOR_CHECK_COLUMNS if c in t]].copy()
    pub, lo, hi = num(d["published"]), num(d["rep_low"]), num(d["rep_high"])
    d["published_inside"] = np.where(
        pub.isna(), "", np.where((pub >= lo) & (pub <= hi), "yes", "no")
    )
    return d.reset_index(drop=True)


def prior_blocks(
    sec: Section, run: dict[str, Any], run_dir: Path, name: str, figs: Figures
) -> None:
    """Prior predictive check and power-scaling sensitivity of one model (or "not done")."""
    pc = read_csv(run_dir / "prior_check" / name / "prior_check.csv")
    if pc is None:
        sec.p(f"{name}: prior predictive check not done (no prior_check/{name}/prior_check.csv).")
    else:
        d = prior_check_table(pc)
        inside = int((d["published_inside"] == "yes").sum())
        shown = int((d["published_inside"] != "").sum())
        sec.table(
            d,
            f"{name}: prior predictive check. The published number lies inside the 95% interval "
            f"of what the priors imply in {inside} of {shown} statistics (ppp: two-sided tail "
            "probability of the observed statistic under the prior predictive).",
        )
        png = run_dir / "prior_check" / name / "prior_check.png"
        if png.is_file():
            figs.add_png(
                sec,
                f"prior_check_{name}.png",
                png.read_bytes(),
                f"{name}: published Table 1 shares and Table 3 ORs against the prior predictive.",
            )
    pscale = read_csv(run_dir / "prior_scale" / name / "prior_scale.csv")
    if pscale is not None:
        from cst_bayes.checks.prior_scales import wide

        for c in ("scale", "estimate", "ci_low", "ci_high"):
            pscale[c] = pd.to_numeric(pscale[c])
        sec.table(
            wide(pscale),
            f"{name}: posterior medians [95% intervals] with each prior slot's scale at x0.5 "
            "and x2 (refits on the first dataset, same seed), beside x1.",
        )
    ps = read_csv(run_dir / "psense" / name / "psense.csv")
    if ps is None:
        sec.p(f"{name}: power-scaling prior sensitivity not done (no psense/{name}/psense.csv).")
        return
    cols = [
        c
        for c in (
            "quantity",
            "kind",
            "prior_sensitivity",
            "likelihood_sensitivity",
            "diagnosis",
            "n_members",
        )
        if c in ps
    ]
    diag = ps["diagnosis"].fillna("") if "diagnosis" in ps else pd.Series("", index=ps.index)
    n_conf = int((diag == "prior-data conflict").sum())
    n_strong = int((diag == "strong prior / weak likelihood").sum())
    sec.table(
        ps[cols],
        f"{name}: power-scaling sensitivity (Kallioinen et al. 2023; arviz.psens). Prior-data "
        f"conflict in {n_conf} and strong prior / weak likelihood in {n_strong} of {len(ps)} "
        "quantities (threshold 0.05 on both sensitivities; ratios on the log scale; pooled fits: "
        "the largest over members).",
    )


def decision_blocks(sec: Section, run_dir: Path) -> None:
    """P(ratio > 1), P(ratio in the ROPE) and Monte Carlo errors where summaries carry them."""
    mdir = run_dir / "models"
    found = False
    for p in sorted(mdir.glob("*/summary.csv")) if mdir.is_dir() else []:
        s = read_csv(p)
        if s is None or "p_gt_1" not in s:
            continue
        found = True
        sec.table(
            s[[c for c in DECISION_SHOWN if c in s]],
            f"{p.parent.name}: decisions. p_gt_1 = P(ratio > 1); p_rope = P(0.8 < ratio < 1.25), "
            "the region of practical equivalence; mcse_* = Monte Carlo standard errors of the "
            "median and the interval ends.",
        )
    if not found:
        sec.p(
            "Decision quantities (P(ratio > 1), ROPE probability, Monte Carlo errors) not done: "
            "no model summary carries p_gt_1."
        )


def stacked_blocks(sec: Section, run_dir: Path) -> None:
    """Stacked (LOO stacking weights) predictions written by compare, or "not done"."""
    t = read_csv(run_dir / "compare" / "stacked.csv")
    if t is None:
        sec.p("Stacked predictions not done (compare wrote no stacked.csv).")
        return
    sec.table(
        t,
        "Stacked predictions: each model's posterior predictive summaries weighted by its LOO "
        "stacking weight (Yao et al. 2018), for the national share and the approaches' "
        "marginal effects.",
    )


# --------------------------------------------------------------------------- bounds


def bounds_source(run_dir: Path) -> Path | None:
    """The run's copy of ``bounds.csv``, else the shipped ``data/bounds.csv``."""
    for p in (run_dir / "data" / "bounds.csv", config.DATA_DIR / "bounds.csv"):
        if p.is_file():
            return p
    return None


def bounds_table(bounds: pd.DataFrame, values: pd.DataFrame | None) -> pd.DataFrame:
    """Bounds beside the members' range and the share of the bound interval they cover."""
    b = bounds.copy()
    for c in ("lower", "upper"):
        b[c] = num(b[c])
    if values is not None and len(values):
        v = values.assign(value=num(values["value"]))
        agg = v.groupby(["statistic", "stratum"])["value"].agg(member_min="min", member_max="max")
        b = b.drop(columns=[c for c in ("member_min", "member_max") if c in b]).merge(
            agg.reset_index(), on=["statistic", "stratum"], how="left"
        )
    if {"member_min", "member_max"} <= set(b.columns):
        lo, hi = num(b["member_min"]), num(b["member_max"])
        width = (b["upper"] - b["lower"]).where(lambda w: w > 0)
        b["span_share"] = ((hi - lo) / width).clip(upper=1.0)
    cols = ["statistic", "stratum", "lower", "upper", "member_min", "member_max", "span_share"]
    return b[[c for c in cols if c in b.columns]]


def bounds_figure(
    table: pd.DataFrame, values: pd.DataFrame | None, *, statistics: list[str]
) -> Any:
    """Bars: the bounds; dots: the members (or their min and max when only those are known)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(statistics), figsize=(3.2 * len(statistics), 3.4), squeeze=False
    )
    for ax, name in zip(axes[0], statistics):
        sub = table[table["statistic"] == name].reset_index(drop=True)
        for i, r in sub.iterrows():
            ax.plot([r["lower"], r["upper"]], [i, i], lw=8, color="0.8", solid_capstyle="butt")
            if values is not None:
                v = values[(values["statistic"] == name) & (values["stratum"] == r["stratum"])]
                x = num(v["value"]).to_numpy()
            elif "member_min" in sub:
                x = num(pd.Series([r["member_min"], r["member_max"]])).to_numpy()
            else:
                x = np.array([])
            ax.plot(x, np.full(len(x), i), "o", ms=3, color="C0", alpha=0.7)
        ax.set_yticks(range(len(sub)), sub["stratum"])
        ax.set_title(name, fontsize=9)
        ax.invert_yaxis()
    fig.suptitle(
        "What the published tables leave open: bounds (bars) and ensemble members (dots)",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def section_bounds(run: dict[str, Any], run_dir: Path, figs: Figures) -> Section:
    sec = Section("bounds", "What the tables leave open")
    src = bounds_source(run_dir)
    b = read_csv(src) if src is not None else None
    if b is None or not {"statistic", "stratum", "lower", "upper"} <= set(b.columns):
        sec.warn(
            "Not done: no reconstruction bounds (data/bounds.csv; `cst-bayes reconstruct --bounds`)."
        )
        return sec
    values = read_csv(run_dir / "data" / "bounds_members.csv")
    t = bounds_table(b, values)
    where = "this run" if src.parent == run_dir / "data" else f"the shipped {src.name}"
    sec.p(
        "SYNTHETIC: the smallest and largest value of statistics that no published number fixes, "
        "over datasets that meet every published target (attained, so the true range is at least "
        f"this wide), from {where}; span_share is the part of that range the ensemble members "
        "used here cover."
    )
    sec.table(t, "Bounds of statistics the published tables leave open, and the members' range.")
    pick = [
        s
        for s in ("count_sd", "count_share_0", "count_share_5", "count_share_9")
        if s in set(t["statistic"])
    ]
    pick = pick or list(dict.fromkeys(t["statistic"]))[:4]
    if values is not None:
        from cst_bayes.reconstruct.bounds import plot_bounds

        vals = values.assign(value=num(values["value"]))
        fig = plot_bounds(t, vals, statistics=pick)
    else:
        fig = bounds_figure(t, None, statistics=pick)
    stamp(fig, True, False)
    figs.add(sec, "bounds.png", fig, "SYNTHETIC: bounds (bars) and ensemble members (dots).")
    return sec


# --------------------------------------------------------------------------- tipping point


def section_tipping(run: dict[str, Any], run_dir: Path, figs: Figures) -> Section:
    sec = Section("tipping", "Nonresponse tipping point")
    t = read_csv(run_dir / "weights" / "tipping_point.csv")
    if t is None:
        sec.warn("Not done: the weighting stage wrote no weights/tipping_point.csv.")
        return sec
    sec.p(
        "Nonrespondents' log-odds of a case shifted by delta against respondents like them: "
        "delta_low and delta_high are the nearest shifts below and above 0 at which a published "
        "claim's verdict (P >= 0.975 for a direction) changes; empty where it holds over the "
        "whole grid."
    )
    sec.table(t, "Where each published claim tips.")
    png = run_dir / "weights" / "tipping_point.png"
    if png.is_file():
        figs.add_png(
            sec,
            "tipping_point.png",
            png.read_bytes(),
            "National prevalence (with Manski bounds) and the marginal effects against delta.",
        )
    return sec
