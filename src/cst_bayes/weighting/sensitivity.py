"""Weighting sensitivity: the key estimands across every scenario and method, and what survives.

:func:`sensitivity_table` stacks, for every weighting scenario and method (``design``:
design-based; ``pseudo_likelihood``: weighted Bayesian fit; ``mrp``: multilevel regression
and poststratification), the national prevalence of ``any_cst`` and each approach's odds
ratio and marginal risk difference without and with adjustment for agency size. The
``unweighted`` scenario row of each method is the unweighted analysis (design-based under it
is the published frequentist analysis).

:func:`conclusions` checks the article's conclusions against every row and
:func:`conclusions_text` says in words which survive every scenario; nothing is hard-coded:
the claims are read from the published tables.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cst_bayes.core.config import APPROACHES, OUTCOME, SYNTHETIC_BANNER
from cst_bayes.core.fileio import atomic_path

SENSITIVITY_COLUMNS = [
    "scenario",
    "method",
    "estimand",
    "term",
    "adjusted_for_size",
    "estimate",
    "ci_low",
    "ci_high",
    "p_positive",
    "mcse_low",
    "mcse_high",
]
CONCLUSION_COLUMNS = [
    "claim",
    "published",
    "holds_in",
    "rows",
    "share",
    "survives",
    "reproduced_unweighted",
    "borderline",
    "detail",
]
METHODS: tuple[str, ...] = (
    "design",
    "pseudo_likelihood",
    "pseudo_likelihood_adjusted",
    "poststratified",
    "mrp",
)
#: A Bayesian row supports a direction when its posterior probability reaches this.
P_HOLDS: float = 0.975
Z95: float = 1.959963984540054


def _from_bayes(table: pd.DataFrame | None, method: str) -> list[dict[str, object]]:
    """Rows of a ``scenario, estimand, median, ci_low, ci_high[, method, p_positive, mcse_*]`` table.

    A ``method`` column, when present, names each row's method (else ``method``).
    """
    rows: list[dict[str, object]] = []
    if table is None or table.empty:
        return rows
    # Records, not itertuples: the values are the same Python scalars, typed by column use.
    for rec in table.to_dict("records"):
        est = str(rec["estimand"])
        if est == OUTCOME:
            kind, term, adj = "prevalence", OUTCOME, ""
        elif ":" in est:
            head, term = est.split(":", 1)
            kind, label = head.split("_", 1)
            adj = "yes" if label == "adjusted" else "no"
        else:
            continue  # approach shares are reported in mrp_estimates, not in the key estimands
        rows.append(
            {
                "scenario": rec["scenario"],
                "method": rec.get("method", method),
                "estimand": kind,
                "term": term,
                "adjusted_for_size": adj,
                "estimate": rec["median"],
                "ci_low": rec["ci_low"],
                "ci_high": rec["ci_high"],
                "p_positive": rec.get("p_positive", np.nan),
                "mcse_low": rec.get("mcse_low", np.nan),
                "mcse_high": rec.get("mcse_high", np.nan),
            }
        )
    return rows


def sensitivity_table(
    design_estimates: pd.DataFrame,
    design_models: pd.DataFrame,
    pseudo_likelihood: pd.DataFrame | None = None,
    mrp: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The key estimands across scenarios and methods (:data:`SENSITIVITY_COLUMNS`).

    ``estimand`` is ``prevalence`` (``term`` = ``any_cst``), ``or`` or ``rd`` (``term`` =
    approach); intervals are 95% (Wald/t for design-based, equal-tailed posterior otherwise).
    """
    rows: list[dict[str, object]] = []
    prev = design_estimates[design_estimates["estimand"] == OUTCOME]
    for p in prev.to_dict("records"):
        rows.append(
            {
                "scenario": p["scenario"],
                "method": "design",
                "estimand": "prevalence",
                "term": OUTCOME,
                "adjusted_for_size": "",
                "estimate": p["estimate"],
                "ci_low": p["estimate"] - Z95 * p["se"],
                "ci_high": p["estimate"] + Z95 * p["se"],
            }
        )
    mods = design_models[design_models["term"].isin(APPROACHES)]
    for r in mods.to_dict("records"):  # "or" is a keyword: no itertuples attribute
        rows.append(
            {
                "scenario": r["scenario"],
                "method": "design",
                "estimand": "or",
                "term": r["term"],
                "adjusted_for_size": r["adjusted_for_size"],
                "estimate": r["or"],
                "ci_low": r["ci_low"],
                "ci_high": r["ci_high"],
            }
        )
        rows.append(
            {
                "scenario": r["scenario"],
                "method": "design",
                "estimand": "rd",
                "term": r["term"],
                "adjusted_for_size": r["adjusted_for_size"],
                "estimate": r["rd"],
                "ci_low": r["rd_ci_low"],
                "ci_high": r["rd_ci_high"],
            }
        )
    rows += _from_bayes(pseudo_likelihood, "pseudo_likelihood")
    rows += _from_bayes(mrp, "poststratified")
    out = pd.DataFrame(rows, columns=SENSITIVITY_COLUMNS)
    order = {m: i for i, m in enumerate(METHODS)}
    scen = {s: i for i, s in enumerate(dict.fromkeys(out["scenario"]))}
    out = out.assign(
        _m=out["method"].map(order),
        _s=out["scenario"].map(scen),
        _e=out["estimand"].map({"prevalence": 0, "or": 1, "rd": 2}),
        _t=out["term"].map({t: i for i, t in enumerate((OUTCOME, *APPROACHES))}),
    )
    out = out.sort_values(["_e", "adjusted_for_size", "_t", "_s", "_m"], kind="stable")
    return out.drop(columns=["_m", "_s", "_e", "_t"]).reset_index(drop=True)


def _sign(lo: float, hi: float, null: float) -> str:
    if lo > null:
        return "+"
    if hi < null:
        return "-"
    return "0"


def _row_verdict(s: Mapping[Hashable, Any], null: float) -> tuple[str, bool]:
    """A row's direction and whether it is borderline.

    Bayesian rows (with ``p_positive``): ``+``/``-`` when P(effect > 0) or P(effect < 0)
    reaches :data:`P_HOLDS`; borderline when an interval end lies within 2 MCSE of the null.
    Design-based rows: the 95% interval (p < .05); never borderline (no Monte Carlo error).
    """
    p = s.get("p_positive", np.nan)
    if p is None or not np.isfinite(p):
        return _sign(s["ci_low"], s["ci_high"], null), False
    v = "+" if p >= P_HOLDS else "-" if 1 - p >= P_HOLDS else "0"
    m_lo, m_hi = s.get("mcse_low", np.nan), s.get("mcse_high", np.nan)
    scale_lo = s["ci_low"] if null == 0 else np.log(s["ci_low"])
    scale_hi = s["ci_high"] if null == 0 else np.log(s["ci_high"])
    # MCSEs are on the scale the draws were summarised on (log-OR for ORs).
    border = bool(
        (np.isfinite(m_lo) and abs(scale_lo) < 2 * m_lo)
        or (np.isfinite(m_hi) and abs(scale_hi) < 2 * m_hi)
    )
    return v, border


def conclusions(
    sens: pd.DataFrame,
    tests: pd.DataFrame,
    *,
    published_dir: str | Path | None = None,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Check the article's conclusions in every scenario x method.

    Claims, read from the published tables:

    * Table 3 (Analysis 1): for each approach, unadjusted and size-adjusted, whether its OR is
      significantly above 1 (``+``), below 1 (``-``) or not significant (``0``; printed
      p >= 0.05). A row agrees when its 95% interval gives the same verdict.
    * Table 1: whether each approach (and ``any_cst``) differs by agency size (printed
      p < 0.05), against the Rao-Scott test of each scenario (design-based only).
    * Figure 1: each approach by ``any_cst`` -- every approach but the offense code was
      significantly more common in agencies with a case (the article's text); a row agrees
      when its Rao-Scott p < 0.05 and the weighted difference is positive.

    Returns
    -------
    pandas.DataFrame
        :data:`CONCLUSION_COLUMNS`: ``holds_in``/``rows`` count agreeing rows, ``survives`` is
        True when every row agrees, ``detail`` names the disagreeing scenario/method pairs.
    """
    from cst_bayes.data.published import load_table1, load_table3

    out: list[dict[str, object]] = []
    t3 = load_table3(published_dir)
    t3 = t3[(t3["analysis"] == 1) & t3["term"].isin(APPROACHES)]
    ors: dict[tuple[object, object], list[dict[Hashable, Any]]] = {}
    for s in sens[sens["estimand"] == "or"].to_dict("records"):  # one pass, rows in order
        ors.setdefault((s["term"], s["adjusted_for_size"]), []).append(s)
    for r3 in t3.to_dict("records"):  # "or" is a keyword: no itertuples attribute
        sig = (r3["p_value"] < alpha) or (r3["p_op"] == "<" and r3["p_value"] <= alpha)
        pub = ("+" if r3["or"] > 1 else "-") if sig else "0"
        verdicts = []
        for s in ors.get((r3["term"], r3["adjusted_for_size"]), []):
            v, border = _row_verdict(s, 1.0)
            verdicts.append((v, f"{s['scenario']}/{s['method']}", border))
        adj = "size-adjusted" if r3["adjusted_for_size"] == "yes" else "unadjusted"
        words = {"+": "positive", "-": "negative", "0": "not significant"}[pub]
        _add(out, f"Table 3: {r3['term']} OR {adj} is {words}", pub, verdicts)
    t1 = load_table1(published_dir)
    t1 = t1[t1["stratum"] == "all"]
    for r1 in t1.to_dict("records"):
        sig = (r1["p_value"] < alpha) or (r1["p_op"] == "<" and r1["p_value"] <= alpha)
        pub = "+" if sig else "0"
        sub = tests[(tests["by"] == "stratum") & (tests["variable"] == r1["variable"])]
        verdicts = [
            ("+" if t["p_value"] < alpha else "0", f"{t['scenario']}/design", False)
            for t in sub.to_dict("records")
        ]
        _add(
            out,
            f"Table 1: {r1['variable']} {'differs' if sig else 'does not differ'} by agency size",
            pub,
            verdicts,
        )
    for a in APPROACHES:
        pub = "0" if a == "offense_code" else "+"
        sub = tests[(tests["by"] == OUTCOME) & (tests["variable"] == a)]
        verdicts = [
            (
                ("+" if t["difference"] > 0 else "-") if t["p_value"] < alpha else "0",
                f"{t['scenario']}/design",
                False,
            )
            for t in sub.to_dict("records")
        ]
        _add(
            out,
            f"Figure 1: {a} {'is not' if pub == '0' else 'is'} more common in agencies with a case",
            pub,
            verdicts,
        )
    return pd.DataFrame(out, columns=CONCLUSION_COLUMNS)


def _add(
    out: list[dict[str, object]], claim: str, pub: str, verdicts: list[tuple[str, str, bool]]
) -> None:
    bad = [w for v, w, _ in verdicts if v != pub]
    unweighted = [v for v, w, _ in verdicts if w.startswith("unweighted/")]
    out.append(
        {
            "claim": claim,
            "published": pub,
            "holds_in": len(verdicts) - len(bad),
            "rows": len(verdicts),
            "share": (len(verdicts) - len(bad)) / len(verdicts) if verdicts else np.nan,
            "survives": bool(verdicts) and not bad,
            "reproduced_unweighted": bool(unweighted) and all(v == pub for v in unweighted),
            "borderline": sum(b for _, _, b in verdicts),
            "detail": "; ".join(bad[:8]) + (" ..." if len(bad) > 8 else ""),
        }
    )


def conclusions_text(concl: pd.DataFrame, sens: pd.DataFrame, *, synthetic: bool) -> str:
    """A paragraph saying which of the article's conclusions survive every scenario and method.

    Claims are split three ways: hold everywhere; hold in the unweighted analysis of these
    data but not under some weighting (the weighting matters); and not reproduced even
    unweighted (a property of the data, not of the weights).
    """
    scen = list(dict.fromkeys(sens["scenario"]))
    meth = list(dict.fromkeys(sens["method"]))
    lines = []
    if synthetic:
        lines.append(
            f"{SYNTHETIC_BANNER}. The statements below describe these data, not the study's agencies.\n"
        )
    lines.append(f"Scenarios: {', '.join(scen)}. Methods: {', '.join(meth)}.\n")
    prev = sens[sens["estimand"] == "prevalence"]
    if not prev.empty:
        lo, hi = prev["estimate"].min(), prev["estimate"].max()
        un = prev[prev["scenario"] == "unweighted"]["estimate"]
        unw = f" (unweighted {un.iloc[0]:.1%})" if len(un) else ""
        lines.append(
            f"National share of agencies with any CST case: {lo:.1%} to {hi:.1%} across scenarios and "
            f"methods{unw}.\n"
        )
    if "borderline" in concl and concl["borderline"].sum():
        lines.append(
            f"{int((concl['borderline'] > 0).sum())} claims have Bayesian rows within 2 Monte Carlo "
            f"standard errors of the null ({int(concl['borderline'].sum())} rows): more draws could "
            "change their verdicts.\n"
        )
    surv = concl[concl["survives"]]
    fragile = concl[~concl["survives"] & concl["reproduced_unweighted"]]
    other = concl[~concl["survives"] & ~concl["reproduced_unweighted"]]
    lines.append(
        f"{len(surv)} of {len(concl)} conclusions of the article hold in every scenario and method:"
    )
    lines += [f"  - {c}" for c in surv["claim"]]
    lines.append(
        f"\n{len(fragile)} {'holds' if len(fragile) == 1 else 'hold'} in the unweighted analysis "
        "but not under every weighting (disagreeing scenario/method):"
    )
    lines += [
        f"  - {r.claim}: holds in {r.holds_in} of {r.rows} ({r.detail})"
        for r in fragile.itertuples(index=False)
    ]
    if len(other):
        lines.append(
            f"\n{len(other)} {'is' if len(other) == 1 else 'are'} not reproduced by every method even "
            "unweighted, so weighting is not what decides them:"
        )
        lines += [
            f"  - {r.claim}: holds in {r.holds_in} of {r.rows}"
            for r in other.itertuples(index=False)
        ]
    return "\n".join(lines) + "\n"


def plot_sensitivity(sens: pd.DataFrame, path: str | Path, *, synthetic: bool) -> Path:
    """One figure: prevalence, OR and RD (unadjusted, adjusted) by approach, scenario and method (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scen = list(dict.fromkeys(sens["scenario"]))
    meth = [m for m in METHODS if m in set(sens["method"])]
    combos = [(s, m) for s in scen for m in meth]
    colours = plt.get_cmap("tab10")
    markers = {
        "design": "o",
        "pseudo_likelihood": "s",
        "pseudo_likelihood_adjusted": "D",
        "poststratified": "v",
        "mrp": "^",
    }
    panels = [("prevalence", ""), ("or", "no"), ("or", "yes"), ("rd", "no"), ("rd", "yes")]
    titles = {
        ("prevalence", ""): "National share with any CST case",
        ("or", "no"): "OR, unadjusted",
        ("or", "yes"): "OR, size-adjusted",
        ("rd", "no"): "Marginal RD, unadjusted",
        ("rd", "yes"): "Marginal RD, size-adjusted",
    }
    fig, axes = plt.subplots(
        1,
        5,
        figsize=(20, max(7.0, 3 + 0.45 * len(combos))),
        sharey=False,
        gridspec_kw={"width_ratios": [1, 1.4, 1.4, 1.4, 1.4]},
    )
    terms = list(APPROACHES)
    offsets = np.linspace(-0.38, 0.38, max(len(combos), 1))
    for ax, (est, adj) in zip(axes, panels):
        sub = sens[(sens["estimand"] == est) & (sens["adjusted_for_size"] == adj)]
        ylabels = [OUTCOME] if est == "prevalence" else terms
        for k, (s, m) in enumerate(combos):
            rows = sub[(sub["scenario"] == s) & (sub["method"] == m)].set_index("term")
            rows = rows.reindex([t for t in ylabels if t in rows.index])
            if rows.empty:
                continue
            # One artist per scenario x method and panel (not per point): drawing stays fast.
            y = np.array([ylabels.index(t) for t in rows.index]) + offsets[k]
            colour = colours(scen.index(s) % 10)
            ax.hlines(y, rows["ci_low"], rows["ci_high"], color=colour, lw=0.8)
            ax.plot(
                rows["estimate"],
                y,
                markers.get(m, "o"),
                color=colour,
                ms=3.5,
                ls="none",
                label=f"{s} / {m}",
            )
        if est == "or":
            from matplotlib.ticker import FixedLocator, NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_locator(FixedLocator([0.25, 0.5, 1, 2, 4, 8]))
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.axvline(1.0, color="grey", lw=0.7, ls="--")
        elif est == "rd":
            ax.axvline(0.0, color="grey", lw=0.7, ls="--")
        ax.set_yticks(range(len(ylabels)))
        ax.set_yticklabels(ylabels)
        ax.invert_yaxis()
        ax.set_title(titles[(est, adj)], fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="lower center", ncol=min(len(combos), 6), fontsize=7, frameon=False
    )
    title = (
        "Weighting sensitivity: estimates (95% intervals) by scenario (colour) and method (marker)"
    )
    if synthetic:
        title = "SYNTHETIC DATA - " + title
    fig.suptitle(title, fontsize=12)
    fig.tight_layout(rect=(0, 0.08 + 0.02 * (len(combos) // 6), 1, 0.95))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
