"""Audit checks of Figure 1 and of the figures the article gives in its running text."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cst_bayes.audit.base import (
    TEXT,
    _Checks,
    _fmt,
    _round_half_up,
)
from cst_bayes.audit.tables import _feasible_counts
from cst_bayes.core.config import APPROACHES, OUTCOME
from cst_bayes.data.published import PublishedTables


# --------------------------------------------------------------------------- Figure 1 and text
def _figure1(t1: pd.DataFrame, out: _Checks) -> None:
    from scipy.stats import chi2_contingency

    f = TEXT["fig1_offense_code"]
    y = t1[(t1["variable"] == OUTCOME) & (t1["stratum"] == "all")].iloc[0]
    oc = t1[(t1["variable"] == "offense_code") & (t1["stratum"] == "all")].iloc[0]
    n_case, n_no = int(y["n_yes"]), int(y["n_stratum"] - y["n_yes"])
    ok = n_case == f["n_case"] and n_no == f["n_no_case"]
    out.add(
        "fig1.n",
        "figure1",
        "Figure 1 group sizes (1,088 without a case, 218 with) agree with Table 1",
        "pass" if ok else "fail",
        f"{f['n_no_case']} + {f['n_case']}",
        f"{n_no} + {n_case} (Table 1 any_cst)",
    )
    k_no, _ = _feasible_counts(f["pct_no_case"], f["n_no_case"], 1)
    k_case, _ = _feasible_counts(f["pct_case"], f["n_case"], 1)
    for key, ks, pct, n in (
        ("no_case", k_no, f["pct_no_case"], f["n_no_case"]),
        ("case", k_case, f["pct_case"], f["n_case"]),
    ):
        out.add(
            f"fig1.offense_code.grim_{key}",
            "figure1",
            f"GRIM: text's {pct}% with an offense code is possible for n={n}",
            "pass" if ks else "fail",
            f"some k/{n} = {pct}%",
            f"k in {ks}" if ks else "none",
        )
    sums = sorted({a + b for a in k_no for b in k_case})
    total = int(oc["n_yes"])
    out.add(
        "fig1.offense_code.total",
        "figure1",
        "text's offense-code counts (54.7% of 1,088 + 49.5% of 218) add up to Table 1's total",
        "pass" if total in sums else "flag",
        f"{total} (Table 1)",
        f"possible sums {sums}",
    )
    if k_no and k_case:
        ps = []
        for a in k_no:
            for b in k_case:
                tab = np.array([[a, f["n_no_case"] - a], [b, f["n_case"] - b]])
                ps.append(float(chi2_contingency(tab, correction=False).pvalue))
        out.add(
            "fig1.offense_code.chisq",
            "figure1",
            "text: offense code not significantly related to having a case (2x2 chi-square from the text's figures)",
            "pass" if min(ps) >= 0.05 else "flag",
            "p >= 0.05",
            f"p in [{_fmt(min(ps))}, {_fmt(max(ps))}] (no continuity correction)",
        )


def _text(tabs: PublishedTables, out: _Checks) -> None:
    sf, t1, t2, t3 = tabs.sampling_frames, tabs.table1, tabs.table2, tabs.table3
    sampled = int(sf["sampled"].sum())
    out.add(
        "text.sampled",
        "text",
        "total sampled: frames sum to the text's 3,591",
        "pass" if sampled == TEXT["sampled"] else "fail",
        TEXT["sampled"],
        sampled,
    )
    out.add(
        "text.sampled_alt",
        "text",
        "the text also gives 3,564 as the sample size",
        "flag" if TEXT["sampled_alt"] != sampled else "pass",
        f"{sampled} (sum of frames)",
        f"{TEXT['sampled_alt']} in one sentence (difference {sampled - TEXT['sampled_alt']})",
    )
    inel = sum(TEXT["ineligible"].values())
    out.add(
        "text.ineligible",
        "text",
        "ineligible reasons (151 + 52 + 42) sum to 245",
        "pass" if inel == TEXT["ineligible_total"] else "flag",
        TEXT["ineligible_total"],
        inel,
    )
    elig = sampled - TEXT["ineligible_total"]
    out.add(
        "text.eligible",
        "text",
        "eligible = sampled - ineligible = 3,346",
        "pass" if elig == TEXT["eligible"] else "flag",
        TEXT["eligible"],
        elig,
    )
    resp = int(sf["respondents"].sum())
    rr = 100 * resp / TEXT["eligible"]
    out.add(
        "text.response_rate",
        "text",
        "response rate 1,306 / 3,346 prints as 39%",
        "pass" if _round_half_up(rr, 0) == TEXT["response_rate_pct"] else "flag",
        f"{TEXT['response_rate_pct']}%",
        f"{resp}/{TEXT['eligible']} = {rr:.2f}%",
    )
    for r in sf.to_dict("records"):
        if r["selection"].startswith("random"):
            printed = float(r["selection"].split()[-1].rstrip("%"))
            frac = 100 * r["sampled"] / r["population"]
            out.add(
                f"frames.fraction.{r['stratum']}",
                "sampling_frames",
                f"sampling fraction of frame {r['frame']} ({r['stratum']}) prints as {r['selection'].split()[-1]}",
                "pass" if _round_half_up(frac, 0) == printed else "flag",
                f"{printed:.0f}%",
                f"{r['sampled']}/{r['population']} = {frac:.2f}%",
            )
        else:
            out.add(
                f"frames.fraction.{r['stratum']}",
                "sampling_frames",
                f"certainty frame {r['frame']} ({r['stratum']}) is sampled whole",
                "pass" if r["sampled"] == r["population"] else "flag",
                r["population"],
                r["sampled"],
            )
    # At least one approach: 97.5% of 1,306. Within each stratum at least the most common
    # approach's agencies have one, and at most all agencies (or the sum of the nine counts).
    g = t1[t1["variable"].isin(APPROACHES) & (t1["stratum"] != "all")]
    lo = int(g.groupby("stratum")["n_yes"].max().sum())
    hi = int(
        sum(
            min(int(x.sum()), int(n))
            for (_, x), n in zip(
                g.groupby("stratum")["n_yes"], g.groupby("stratum")["n_stratum"].first()
            )
        )
    )
    k, _ = _feasible_counts(TEXT["any_approach_pct"], resp, 1)
    ok = any(lo <= kk <= hi for kk in k)
    out.add(
        "text.any_approach",
        "text",
        "97.5% used at least one approach: possible given Table 1's margins",
        "pass" if ok else "fail",
        f"k/1306 = 97.5%, k in {k}",
        f"attainable {lo}..{hi} agencies",
    )
    r30 = t2[np.isclose(t2["r"], 0.30)]
    pairs = ", ".join(f"{a}/{b}" for a, b in zip(r30["row"], r30["col"]))
    out.add(
        "text.r30",
        "text",
        'a correlation is printed in the text as "r=30" (not a correlation)',
        "flag",
        "r = .30 (Table 2 has 0.30 for " + (pairs or "no pair") + ")",
        '"r=30" as printed',
    )
    oc = t3[(t3["term"] == "offense_code") & (t3["adjusted_for_size"] == "yes")].iloc[0]
    out.add(
        "text.offense_code_adjusted",
        "text",
        "text: prosecutor and MDT lose significance after adjustment; offense code's adjusted CI includes 1 yet p = .05",
        "flag",
        "CI excluding 1 iff p < .05",
        f"offense code adjusted OR {oc['or']} [{oc['ci_low']}, {oc['ci_high']}], p {oc['p_value_printed']} (not named in the text)",
    )
    tr = t3[
        (t3["term"] == "training") & (t3["adjusted_for_size"] == "no") & (t3["analysis"] == 1)
    ].iloc[0]
    out.add(
        "text.training_unadjusted",
        "text",
        "text's list of unadjusted non-significant approaches omits training",
        "flag" if tr["p_value"] >= 0.05 else "pass",
        "training listed as non-significant (p >= .05)",
        f"training unadjusted OR {tr['or']} [{tr['ci_low']}, {tr['ci_high']}], p {tr['p_value_printed']}",
    )
