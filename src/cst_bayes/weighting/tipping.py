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

import numpy as np
import pandas as pd

from cst_bayes.core.config import APPROACHES, OUTCOME, STRATA, STRATUM
from cst_bayes.weighting.design import Design
from cst_bayes.weighting.williams_savitsky import fit_pseudo_posterior

DELTA_GRID: np.ndarray = np.round(np.linspace(-2.0, 2.0, 41), 10)
CURVE_COLUMNS = ["quantity", "delta", "median", "ci_low", "ci_high", "p_positive"]
TIPPING_COLUMNS = ["claim", "quantity", "published", "delta_low", "delta_high", "holds_at_zero"]
BOUND_COLUMNS = ["bound", "estimate"]
#: Posterior probability a directional claim needs.
P_HOLDS: float = 0.975


def _expit(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


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
    rows = []

    def add(q: str, d: float, v: np.ndarray) -> None:
        lo, med, hi = np.quantile(v, [0.025, 0.5, 0.975])
        rows.append(
            {
                "quantity": q,
                "delta": d,
                "median": med,
                "ci_low": lo,
                "ci_high": hi,
                "p_positive": float(np.mean(v > 0)),
            }
        )

    eta = th @ X.T  # (draws, n)
    eff = {}
    for a in APPROACHES:
        k = names.index(a)
        X1, X0 = X.copy(), X.copy()
        X1[:, k], X0[:, k] = 1.0, 0.0
        e1 = th @ X1.T
        p0 = _expit(th @ X0.T)
        eff[a] = (e1, [(_expit(e1[:, m]) - p0[:, m]).mean(axis=1) for m in masks], p0)
    for d in grid:
        prev = np.zeros(len(th))
        for j, m in enumerate(masks):
            resp = _expit(eta[:, m]).mean(axis=1)
            non = _expit(eta[:, m] + d).mean(axis=1)
            prev += share[j] * (rho[j] * resp + (1 - rho[j]) * non)
        add(OUTCOME, float(d), prev)
        for a in APPROACHES:
            e1, resp, p0 = eff[a]
            rd = np.zeros(len(th))
            for j, m in enumerate(masks):
                non = (_expit(e1[:, m] + d) - p0[:, m]).mean(axis=1)
                rd += share[j] * (rho[j] * resp[j] + (1 - rho[j]) * non)
            add(f"rd:{a}", float(d), rd)
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


def effect_claims(published_dir: object = None, alpha: float = 0.05) -> dict[str, str]:
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
    curves: pd.DataFrame, bounds: pd.DataFrame, path: object, *, synthetic: bool
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
