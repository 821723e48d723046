"""Prior predictive checks: what a model's priors imply for the published tables.

Replicates are drawn from the prior predictive with NumPy, straight from the spec's priors
and the model's structure (stratum intercepts ``alpha_j ~ N(mu, sigma_stratum)`` with
``mu`` from the ``intercept`` slot, or one intercept; coefficients from ``beta`` on centred
predictors; stratum-specific slopes ``beta + sigma_slope * z``; the family's outcome given
the linear predictor), then go through the same statistics as the posterior predictive
checks (:func:`cst_bayes.checks.ppc.ppc_from_replicates`). Per-predictor prior overrides of
a spec are not applied here: every coefficient takes the ``beta`` slot.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cst_bayes.bayes import families as fam
from cst_bayes.bayes.design import model_matrix
from cst_bayes.core.config import APPROACHES, COUNT, OUTCOME, STRATA, STRATUM
from cst_bayes.core.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

N_TRIALS = len(APPROACHES)


def draw_prior(prior: Any, size: Any, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """Draws from one spec prior (``dist``, ``params``), its scale multiplied by ``scale``."""
    p = dict(prior.params)
    if "sigma" in p:
        p["sigma"] *= scale
    d = prior.dist
    if d == "normal":
        return rng.normal(p["mu"], p["sigma"], size)
    if d == "student_t":
        return p["mu"] + p["sigma"] * rng.standard_t(p["nu"], size)
    if d == "halfnormal":
        return np.abs(rng.normal(0.0, p["sigma"], size))
    if d == "halfstudent_t":
        return np.abs(p["sigma"] * rng.standard_t(p["nu"], size))
    if d == "exponential":
        return rng.exponential(scale / p["lam"], size)
    if d == "gamma":
        return rng.gamma(p["alpha"], scale / p["beta"], size)
    raise InputError(f"no prior predictive draws for prior {d!r}", column="dist")


def prior_replicates(
    spec: Any,
    df: pd.DataFrame,
    *,
    n_draws: int = 500,
    seed: int = 0,
    scales: Mapping[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Prior predictive outcomes (n_draws, agencies) and the mean outcome of each draw."""
    rng = np.random.default_rng([int(seed), 7])
    sc = dict(scales or {})
    R, n = n_draws, len(df)
    pri = spec.priors
    codes = pd.Categorical(df[STRATUM].astype(str), categories=list(STRATA)).codes
    if spec.stratum_intercepts == "partial_pooling":
        mu = draw_prior(pri["intercept"], R, rng, sc.get("intercept", 1.0))
        sd = draw_prior(pri["sigma_stratum"], R, rng, sc.get("sigma_stratum", 1.0))
        alpha = mu[:, None] + sd[:, None] * rng.standard_normal((R, len(STRATA)))
        eta = alpha[:, codes]
    else:
        eta = np.repeat(
            draw_prior(pri["intercept"], R, rng, sc.get("intercept", 1.0))[:, None], n, 1
        )
    X = model_matrix(spec, df)
    if X.shape[1]:
        Xc = X - X.mean(axis=0)
        K = X.shape[1]
        beta = draw_prior(pri["beta"], (R, K), rng, sc.get("beta", 1.0))
        if spec.varying_slopes:
            tau = draw_prior(pri["sigma_slope"], R, rng, sc.get("sigma_slope", 1.0))
            bs = beta[:, None, :] + tau[:, None, None] * rng.standard_normal((R, len(STRATA), K))
            eta = eta + np.einsum("rnk,nk->rn", bs[:, codes, :], Xc)
        else:
            eta = eta + beta @ Xc.T
    eta = np.clip(eta, -30, 30)
    kappa = None
    if spec.family == "betabinomial":
        kappa = draw_prior(pri["concentration"], R, rng, sc.get("concentration", 1.0))[:, None]
    # the family registry's rules, as the posterior replicates use them
    mean = fam.mean_from_eta(spec.family, spec.link, eta)
    return fam.draw_outcome(spec.family, spec.link, eta, rng, kappa), mean


def prior_check_table(
    spec: Any,
    df: pd.DataFrame,
    *,
    n_draws: int = 500,
    seed: int = 0,
    prob: float = 0.95,
    scales: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """The PPC table (same columns as ``ppc.csv``) with replicates from the prior."""
    from cst_bayes.checks.ppc import model_design, ppc_from_replicates

    y_rep, _ = prior_replicates(spec, df, n_draws=n_draws, seed=seed, scales=scales)
    tables = ("count",) if spec.outcome == COUNT else ("table1", "fig1", "table3", "rate_by_count")
    out = ppc_from_replicates(
        df, y_rep, outcome=spec.outcome, tables=tables, prob=prob, design=model_design(spec, df)
    )
    sizes = df[STRATUM].astype(str).value_counts()
    out.attrs.update(
        synthetic=bool(df.attrs.get("synthetic", False)),
        model=spec.name,
        n_draws=n_draws,
        seed=seed,
        n_by_stratum={**{str(k): int(v) for k, v in sizes.items()}, "all": len(df)},
    )
    return out


def plot_prior_check(table: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Published statistics against the prior predictive: Table 1 case shares, Table 3 ORs."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    sizes = table.attrs.get("n_by_stratum", {})
    t1 = table[(table["table"] == "table1") & (table["statistic"] == "n_yes")]
    t3 = table[(table["table"] == "table3") & table["statistic"].str.endswith("_OR")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.22 * max(len(t3), 10) + 1.5), squeeze=False)
    ax = axes[0, 0]
    if len(t1):
        n = np.array([sizes.get(s, np.nan) for s in t1["stratum_or_term"]], dtype=float)
        y = np.arange(len(t1))[::-1]
        ax.hlines(y, t1["rep_low"] / n, t1["rep_high"] / n, color="0.6", lw=4, label="prior 95%")
        ax.plot(t1["rep_median"] / n, y, "|", color="k", ms=10, label="prior median")
        ax.plot(t1["published"] / n, y, "D", mfc="none", mec="tab:red", label="published")
        ax.set_yticks(y, t1["stratum_or_term"])
        ax.set_xlim(0, 1)
        ax.legend(fontsize=7)
    ax.set_title("Table 1: share of agencies with a case", fontsize=9)
    ax = axes[0, 1]
    if len(t3):
        y = np.arange(len(t3))[::-1]
        lo = t3["rep_low"].clip(1e-3, 1e3)
        hi = t3["rep_high"].clip(1e-3, 1e3)
        ax.hlines(y, lo, hi, color="0.6", lw=3)
        ax.plot(t3["rep_median"].clip(1e-3, 1e3), y, "|", color="k", ms=8)
        ax.plot(t3["published"], y, "D", mfc="none", mec="tab:red")
        ax.set_xscale("log")
        labels = [
            f"{s.replace('analysis', 'A').replace('_OR', '')} | {t}"
            for s, t in zip(t3["statistic"], t3["stratum_or_term"])
        ]
        ax.set_yticks(y, labels, fontsize=5.5)
        ax.axvline(1, color="0.5", lw=0.8, ls="--")
    ax.set_title("Table 3 ORs refitted on prior replicates (clipped to 1e-3..1e3)", fontsize=9)
    head = title or "Prior predictive check"
    if table.attrs.get("synthetic"):
        head = f"SYNTHETIC DATA (reconstruction) - {head}"
    fig.suptitle(head, fontsize=10)
    fig.tight_layout()
    return fig


def write_prior_check(
    model: str | Path,
    data: str | Path,
    out_dir: str | Path,
    *,
    n_draws: int = 500,
    seed: int = 0,
    prob: float = 0.95,
) -> dict[str, Any]:
    """Write ``prior_check.csv`` and ``prior_check.png`` for a spec on one data file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cst_bayes.bayes.models import load_spec
    from cst_bayes.core.fileio import atomic_path, write_csv
    from cst_bayes.core.provenance import status_of
    from cst_bayes.data.ensemble import load_frames

    spec = load_spec(model)
    if n_draws < 1:
        raise InputError(f"draws must be >= 1, got {n_draws}", column="draws")
    df = load_frames(data)[0]
    if spec.outcome == OUTCOME and OUTCOME not in df:
        raise InputError(f"the data have no {OUTCOME} column", path=data, column=OUTCOME)
    table = prior_check_table(spec, df, n_draws=n_draws, seed=seed, prob=prob)
    out = Path(out_dir)
    notes = [
        f"cst-bayes prior-check {spec.name} on {data}: {n_draws} prior predictive replicates "
        f"(NumPy draws from the spec's priors), seed {seed}"
    ]
    paths = {
        "prior_check": write_csv(out / "prior_check.csv", table, status=status_of(df), notes=notes)
    }
    fig = plot_prior_check(table, title=f"{spec.name}: published vs prior predictive")
    with atomic_path(out / "prior_check.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    paths["figure"] = out / "prior_check.png"
    t1 = table[(table["table"] == "table1") & (table["statistic"] == "n_yes")]
    inside = int(((t1["published"] >= t1["rep_low"]) & (t1["published"] <= t1["rep_high"])).sum())
    text = (
        f"{spec.name}: the published Table 1 case count lies inside the prior predictive 95% "
        f"interval in {inside} of {len(t1)} strata"
    )
    return {"table": table, "paths": paths, "summary_text": text}
