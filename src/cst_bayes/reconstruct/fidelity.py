"""Fidelity of a member: every published number recomputed with cst_bayes.frequentist."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from cst_bayes.core.config import (
    AGENCY_ID,
    APPROACHES,
    COUNT,
    STRATA,
    STRATUM,
)
from cst_bayes.reconstruct.targets import COLUMNS, FIG1_OFFENSE_CODE_CASES, Targets, load_targets

FIDELITY_COLUMNS = [
    "table",
    "item",
    "quantity",
    "published",
    "achieved",
    "lower",
    "upper",
    "forced",
    "agrees",
]

# --------------------------------------------------------------------------------------
# One member
# --------------------------------------------------------------------------------------


def _to_frame(V: np.ndarray, strat: np.ndarray) -> pd.DataFrame:
    from cst_bayes.data.microdata import stratum_dtype

    df = pd.DataFrame(V.astype(np.int8), columns=list(COLUMNS))
    df.insert(0, STRATUM, pd.Categorical([STRATA[s] for s in strat], dtype=stratum_dtype()))
    df.insert(0, AGENCY_ID, [f"S{i + 1:04d}" for i in range(len(df))])
    df[COUNT] = df[list(APPROACHES)].sum(axis=1).astype(np.int8)
    df.attrs.update(synthetic=True, restricted=False)
    return df


def fidelity(df: pd.DataFrame, tg: Targets | None = None) -> pd.DataFrame:
    """Every target recomputed with :mod:`cst_bayes.frequentist`, beside the published value.

    Returns
    -------
    pandas.DataFrame
        Columns ``table, item, quantity, published, achieved, lower, upper, forced, agrees``.
        ``lower``/``upper`` bound the accepted values (for Table 3 on the OR scale);
        ``forced`` is False for CI bounds of rows whose published numbers cannot hold
        together (reported, not forced).
    """
    from cst_bayes import frequentist as fq

    tg = tg or load_targets()
    rows: list[tuple] = []
    t1 = fq.table1(df).set_index(["variable", "stratum"])
    for s_i, s in enumerate(STRATA):
        for j, v in enumerate(COLUMNS):
            got = int(t1.loc[(v, s), "n_yes"])
            want = int(tg.counts[s_i, j])
            rows.append(("table1", f"{v}|{s}", "n_yes", want, got, want, want, True, got == want))
    t2 = fq.table2(df).set_index(["row", "col"])
    for r in tg.phi_rows:
        got_r = float(t2.loc[(r["row"], r["col"]), "r"])
        p = float(t2.loc[(r["row"], r["col"]), "p_value"])
        ok_r = abs(got_r - r["r"]) <= 0.005
        rows.append(
            (
                "table2",
                f"{r['row']}|{r['col']}",
                "r",
                r["r"],
                got_r,
                r["r"] - 0.005,
                r["r"] + 0.005,
                True,
                bool(ok_r),
            )
        )
        if r["stars"] is not None:
            stars = fq._stars(p)
            rows.append(
                (
                    "table2",
                    f"{r['row']}|{r['col']}",
                    "stars",
                    r["stars"],
                    stars,
                    np.nan,
                    np.nan,
                    True,
                    stars == r["stars"],
                )
            )
    f1 = fq.fig1(df).set_index("variable")
    for r in tg.fig1_rows:
        v = r["variable"]
        got = int(f1.loc[v, "n_case"])
        if v == "offense_code":
            rows.append(
                ("fig1", v, "n_case", FIG1_OFFENSE_CODE_CASES, got, 108, 108, True, got == 108)
            )
        else:
            p = float(f1.loc[v, "p_value"])
            ok = p < 0.05 and f1.loc[v, "pct_case"] > f1.loc[v, "pct_no_case"]
            rows.append(
                (
                    "fig1",
                    v,
                    "significant_more_common",
                    "yes",
                    "yes" if ok else "no",
                    np.nan,
                    np.nan,
                    True,
                    bool(ok),
                )
            )
    t3 = fq.table3(df, link="logit").set_index(["analysis", "term", "adjusted_for_size"])
    for r in tg.t3:
        rec = t3.loc[(r["analysis"], r["term"], r["adjusted_for_size"])]
        for k, (q, col) in enumerate(
            (("estimate", "estimate"), ("ci_low", "ci_low"), ("ci_high", "ci_high"))
        ):
            lo, hi = r["windows"][k]
            got = float(rec[col])
            ok = bool(np.isfinite(got) and lo - 1e-12 <= math.log(got) <= hi + 1e-12)
            rows.append(
                (
                    "table3",
                    f"{r['analysis']}|{r['term']}|{r['adjusted_for_size']}",
                    q,
                    float(r["printed"][k]),
                    got,
                    math.exp(lo),
                    math.exp(hi),
                    k == 0 or r["ci_forced"],
                    ok,
                )
            )
    out = pd.DataFrame(rows, columns=FIDELITY_COLUMNS)
    out["published"] = out["published"].astype(str)
    out["achieved"] = out["achieved"].astype(str)
    return out


def fidelity_summary(fid: pd.DataFrame) -> dict[str, Any]:
    """Targets hit per table: ``{table: {"met": int, "total": int}}`` plus failing items."""
    out: dict[str, Any] = {}
    for t, g in fid.groupby("table", sort=False):
        f = g[g["forced"]]
        out[str(t)] = dict(
            met=int(f["agrees"].sum()), total=len(f), reported_only=int((~g["forced"]).sum())
        )
    bad = fid[fid["forced"] & ~fid["agrees"]]
    out["failing"] = [f"{r.table}:{r.item}:{r.quantity}" for r in bad.itertuples(index=False)]
    out["all_forced_met"] = not len(bad)
    return out
