"""Nonresponse tipping point: how far must nonrespondents differ before a conclusion flips?

Pattern-mixture delta adjustment within stratum. A stratum's eligible frame ``N*_h`` splits
into a responding share ``rho_h = r_h / (n_h - i_h)`` and the rest; respondents' risks come
from the size-adjusted Table 3 model, nonrespondents' from the same model with their
log-odds shifted by ``delta``:

* **national prevalence**: every nonrespondent's odds of any_cst x ``exp(delta)``; with the
  Manski bounds (every nonrespondent 0 / every nonrespondent 1);
* **an approach's national marginal effect**: the shift applies to nonrespondents *using*
  the approach (their odds x ``exp(delta)``, non-users unchanged). A shift common to users
  and non-users cannot change an effect's sign (``expit(a + b + d) - expit(a + d)`` has the
  sign of ``b`` for every ``d``), so only this differential shift can tip an effect claim.

Uncertainty: draws of the coefficients from the Williams-Savitsky-adjusted pseudo-posterior
(normal approximation, :func:`williams_savitsky.fit_pseudo_posterior`). A positive claim
holds at ``delta`` when ``P(effect > 0) >= 0.975`` (negative claims alike; a "not
significant" claim when neither direction reaches 0.975). :func:`tipping_points` gives per
claim the nearest ``delta`` below and above 0 at which the verdict differs from the verdict
at 0 (NaN when it never does on the grid).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from cst_bayes.core.config import APPROACHES, OUTCOME, STRATA, STRATUM
from cst_bayes.weighting.design import Design
from cst_bayes.weighting.williams_savitsky import Patterns, expit, fit_pseudo_posterior

DELTA_GRID: np.ndarray = np.round(np.linspace(-2.0, 2.0, 41), 10)
CURVE_COLUMNS = ["quantity", "delta", "median", "ci_low", "ci_high", "p_positive"]
TIPPING_COLUMNS = ["claim", "quantity", "published", "delta_low", "delta_high", "holds_at_zero"]
BOUND_COLUMNS = ["bound", "estimate"]
#: Posterior probability a directional claim needs.
P_HOLDS: float = 0.975


def delta_curves(
    df: pd.DataFrame,
    steps: pd.DataFrame,
    design: Design,
    *,
    grid: np.ndarray = DELTA_GRID,
    draws: int = 400,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """National prevalence and each approach's marginal effect as functions of ``delta``.

    ``steps``: one scenario's rows of :func:`weights.weights_table` (eligible frame,
    eligible sampled, respondents by stratum). Returns ``(curves, manski_bounds)``.
    """
    from cst_bayes.weighting.weights import model_matrix

    X, names = model_matrix(df, True)
    y = df[OUTCOME].to_numpy(float)
    post = fit_pseudo_posterior(
        X, y, design, names, method="laplace", draws=draws, chains=1, seed=seed
    )
    th = post.adjusted.reshape(-1, len(names))
    t = steps.set_index("stratum").loc[list(STRATA)]
    Nstar = t["eligible_frame"].to_numpy(float)
    rho = (t["respondents"] / t["eligible"]).to_numpy(float)
    share = Nstar / Nstar.sum()
    s = df[STRATUM].astype(str).to_numpy()
    masks = [s == h for h in STRATA]
    # Each agency's weight in the national average as a respondent (its stratum's share x
    # rho_h / n_h) and as a stand-in for the nonrespondents; agencies with the same design row
    # share their risks, so risks are computed once per covariate pattern.
    code = np.select(masks, range(len(STRATA)), -1)
    n_h = np.array([m.sum() for m in masks], float)
    with np.errstate(divide="ignore", invalid="ignore"):
        w_resp = np.where(code >= 0, (share * rho / n_h)[code], 0.0)
        w_non = np.where(code >= 0, (share * (1 - rho) / n_h)[code], 0.0)
    cols = [names.index(a) for a in APPROACHES]
    pat = Patterns.of(X, cols)
    # Columns: prevalence, then each approach's effect. Respondents' part (fixed) and
    # nonrespondents' part (shifted by delta): risk with the approach minus without, where
    # only the risk with it is shifted (a nonrespondent user's odds x exp(delta)).
    fixed = np.column_stack(
        [pat.weights(pat.observed, w_resp)]
        + [
            pat.weights(pat.set1[c], w_resp) - pat.weights(pat.set0[c], w_resp + w_non)
            for c in range(len(cols))
        ]
    )
    moved = np.column_stack(
        [pat.weights(pat.observed, w_non)]
        + [pat.weights(pat.set1[c], w_non) for c in range(len(cols))]
    )
    used = np.flatnonzero(np.any(moved != 0, axis=1))
    eta = th @ pat.rows.T
    base = expit(eta) @ fixed
    with np.errstate(over="ignore"):
        e = np.exp(-eta[:, used])  # expit(x + d) = 1 / (1 + exp(-x) exp(-d))
    grid = np.asarray(grid, float)
    v = np.stack([base + (1.0 / (1.0 + e * math.exp(-d))) @ moved[used] for d in grid])
    lo, med, hi = np.quantile(v, [0.025, 0.5, 0.975], axis=1)  # (grid, quantities)
    pos = np.mean(v > 0, axis=1)
    quantities = [OUTCOME, *(f"rd:{a}" for a in APPROACHES)]
    rows = [
        {
            "quantity": q,
            "delta": float(d),
            "median": med[g, c],
            "ci_low": lo[g, c],
            "ci_high": hi[g, c],
            "p_positive": float(pos[g, c]),
        }
        for g, d in enumerate(grid)
        for c, q in enumerate(quantities)
    ]
    yes = np.array([y[m].mean() for m in masks])
    low = float(share @ (rho * yes))
    bounds = pd.DataFrame(
        [
            {"bound": "lower (every nonrespondent without a case)", "estimate": low},
            {
                "bound": "upper (every nonrespondent with a case)",
                "estimate": low + float(share @ (1 - rho)),
            },
        ],
        columns=BOUND_COLUMNS,
    )
    return pd.DataFrame(rows, columns=CURVE_COLUMNS), bounds


def verdict(p_positive: float) -> str:
    """``+`` / ``-`` when P(effect > 0) or P(effect < 0) reaches :data:`P_HOLDS`, else ``0``."""
    if p_positive >= P_HOLDS:
        return "+"
    if 1 - p_positive >= P_HOLDS:
        return "-"
    return "0"


def tipping_points(curves: pd.DataFrame, claims: dict[str, str]) -> pd.DataFrame:
    """Per claim (``{claim text: "rd:<approach>" + "|" + published sign}``) where it flips.

    ``claims`` maps a claim's text to ``"<quantity>|<sign>"``. ``holds_at_zero`` compares the
    verdict at ``delta = 0`` with the published sign; ``delta_low``/``delta_high`` are the
    nearest grid values below/above 0 whose verdict differs from the one at 0.
    """
    rows = []
    for claim, spec in claims.items():
        q, pub = spec.split("|")
        c = curves[curves["quantity"] == q].sort_values("delta")
        v = np.array([verdict(p) for p in c["p_positive"]])
        d = c["delta"].to_numpy()
        at0 = v[np.argmin(np.abs(d))]
        below = [x for x, vv in zip(d, v) if x < 0 and vv != at0]
        above = [x for x, vv in zip(d, v) if x > 0 and vv != at0]
        rows.append(
            {
                "claim": claim,
                "quantity": q,
                "published": pub,
                "delta_low": max(below) if below else np.nan,
                "delta_high": min(above) if above else np.nan,
                "holds_at_zero": bool(at0 == pub),
            }
        )
    return pd.DataFrame(rows, columns=TIPPING_COLUMNS)


def effect_claims(published_dir: str | Path | None = None, alpha: float = 0.05) -> dict[str, str]:
    """The article's size-adjusted Table 3 claims as tipping-point quantities."""
    from cst_bayes.data.published import load_table3

    t3 = load_table3(published_dir)
    t3 = t3[
        (t3["analysis"] == 1) & t3["term"].isin(APPROACHES) & (t3["adjusted_for_size"] == "yes")
    ]
    out = {}
    for r in t3.to_dict("records"):
        sig = (r["p_value"] < alpha) or (r["p_op"] == "<" and r["p_value"] <= alpha)
        pub = ("+" if r["or"] > 1 else "-") if sig else "0"
        words = {"+": "positive", "-": "negative", "0": "not significant"}[pub]
        out[f"Table 3: {r['term']} OR size-adjusted is {words}"] = f"rd:{r['term']}|{pub}"
    return out


def plot_tipping(
    curves: pd.DataFrame, bounds: pd.DataFrame, path: str | Path, *, synthetic: bool
) -> None:
    """Prevalence (with Manski bounds) and each marginal effect against delta (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cst_bayes.core.fileio import atomic_path

    fig, axes = plt.subplots(2, 5, figsize=(18, 7), sharex=True)
    for ax, q in zip(axes.ravel(), [OUTCOME, *(f"rd:{a}" for a in APPROACHES)]):
        c = curves[curves["quantity"] == q]
        ax.fill_between(c["delta"], c["ci_low"], c["ci_high"], alpha=0.3)
        ax.plot(c["delta"], c["median"])
        if q == OUTCOME:
            for b in bounds["estimate"]:
                ax.axhline(b, color="grey", ls=":", lw=0.8)
        else:
            ax.axhline(0, color="grey", ls="--", lw=0.7)
        ax.axvline(0, color="grey", lw=0.5)
        ax.set_title(q, fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("delta (log-odds shift of nonrespondents)")
    title = "Nonresponse tipping point: national prevalence and marginal effects vs delta (95%)"
    fig.suptitle(("SYNTHETIC DATA - " if synthetic else "") + title)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
