"""Power-scaling prior and likelihood sensitivity (Kallioinen, Paananen, Burkner & Vehtari 2023).

Raising the prior (or the likelihood) to a power ``alpha`` near 1 and re-weighting the stored
draws by Pareto-smoothed importance sampling shows, without refitting, how much each
posterior quantity moves: the derivative of the cumulative Jensen-Shannon distance at
``alpha = 1`` (:func:`arviz.psens`). The diagnosis is priorsense's rule with its threshold
0.05:

* both sensitivities above the threshold: ``prior-data conflict`` (the prior and the data pull
  the quantity in different directions);
* only the prior sensitivity above it: ``strong prior / weak likelihood``;
* otherwise nothing is flagged (empty cell).

The log prior is priorsense's ``lprior``: the sum of the spec's slot priors (``intercept`` or
the mean of the stratum intercepts, ``sigma_stratum``, each coefficient's prior, ``sigma_slope``,
``concentration``) at each draw, with the prior scales the fit was made with; the standardised
hierarchical deviations are part of the model structure and are not power-scaled. The log
likelihood is the agency-level log-density of the observed outcome (times the survey weights of
a weighted fit), recomputed from the data so pooled fits work member by member.

Quantities: every reported term on its log-ratio scale (coefficients, stratum contrasts,
stratum-specific slopes), and for models of ``any_cst`` with predictors the national share
(frame-weighted mean predicted risk) and the g-computation prevalence ratio of every
switchable term (log scale).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from cst_bayes.core.config import APPROACHES, COUNT, OUTCOME, STRATUM
from cst_bayes.core.errors import InputError
from cst_bayes.core.options import DataStatus

#: priorsense's threshold on both sensitivities.
THRESHOLD = 0.05
CONFLICT = "prior-data conflict"
STRONG_PRIOR = "strong prior / weak likelihood"
PSENSE_COLUMNS = [
    "quantity",
    "kind",
    "prior_sensitivity",
    "likelihood_sensitivity",
    "diagnosis",
    "r_hat",
    "ess_bulk",
    "n_members",
]


def prior_logpdf(prior: Any, x: np.ndarray) -> np.ndarray:
    """Log density of one spec prior (``dist``, ``params``) at ``x`` (scipy)."""
    from scipy import stats

    p = prior.params
    d = prior.dist
    x = np.asarray(x, dtype=float)
    if d == "normal":
        return stats.norm.logpdf(x, p["mu"], p["sigma"])
    if d == "student_t":
        return stats.t.logpdf(x, p["nu"], p["mu"], p["sigma"])
    if d == "halfnormal":
        return stats.halfnorm.logpdf(x, scale=p["sigma"])
    if d == "halfstudent_t":
        return np.where(x >= 0, np.log(2.0) + stats.t.logpdf(x, p["nu"], 0.0, p["sigma"]), -np.inf)
    if d == "exponential":
        return stats.expon.logpdf(x, scale=1.0 / p["lam"])
    if d == "gamma":
        return stats.gamma.logpdf(x, p["alpha"], scale=1.0 / p["beta"])
    raise InputError(f"no log density for prior {d!r}", column="dist")


def _scales(idata: Any) -> dict[str, float]:
    raw = idata.posterior.attrs.get("prior_scales", "{}")
    try:
        return {str(k): float(v) for k, v in json.loads(str(raw)).items()}
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        return {}


def log_prior(spec: Any, idata: Any) -> np.ndarray:
    """priorsense's ``lprior`` at every draw: (chain, draw)."""
    from cst_bayes.bayes.build import column_priors, slot_prior
    from cst_bayes.bayes.fit import fit_columns

    post = idata.posterior
    sc = _scales(idata)
    lp = np.zeros((post.sizes["chain"], post.sizes["draw"]))

    def add(slot: str, var: str) -> None:
        nonlocal lp
        if var in post:
            lp = lp + prior_logpdf(slot_prior(spec, slot, sc), post[var].to_numpy())

    if spec.pooled_strata:
        add("intercept", "mu_stratum")
        add("sigma_stratum", "sigma_stratum")
    else:
        add("intercept", "intercept")
    cols = fit_columns(idata)
    if cols:
        b = post["beta"].to_numpy()
        for k, pr in enumerate(column_priors(spec, cols, sc)):
            lp = lp + prior_logpdf(pr, b[..., k])
    if spec.varying_slopes:
        add("sigma_slope", "sigma_slope")
    if spec.family == "betabinomial":
        add("concentration", "concentration")
    return lp


def _design(spec: Any, idata: Any, df: pd.DataFrame) -> Any:
    from cst_bayes.bayes.design import design
    from cst_bayes.bayes.fit import fit_columns, fit_levels

    nd = df
    if COUNT not in nd.columns and set(APPROACHES) <= set(nd.columns):
        nd = nd.assign(**{COUNT: nd[list(APPROACHES)].sum(axis=1)})
    dz = design(spec, nd, fit_levels(idata))
    if dz.columns != fit_columns(idata):
        raise InputError(
            f"the data give design columns {list(dz.columns)}, the fit has "
            f"{list(fit_columns(idata))}",
            path=df.attrs.get("source"),
        )
    return dz


def _eta(spec: Any, idata: Any, df: pd.DataFrame, xbar: np.ndarray) -> np.ndarray:
    from cst_bayes.bayes.fit import linear_predictor

    dz = _design(spec, idata, df)
    return linear_predictor(spec, idata, dz.codes, dz.X, xbar, dz.columns)


def log_likelihood(spec: Any, idata: Any, df: pd.DataFrame, weights: Any = None) -> np.ndarray:
    """Summed (weighted) agency-level log-likelihood at every draw: (chain, draw)."""
    from cst_bayes.bayes import families as fam
    from cst_bayes.bayes.design import outcome
    from cst_bayes.bayes.fit import _kappa, fit_columns, linear_predictor

    post = idata.posterior
    nc, nd = post.sizes["chain"], post.sizes["draw"]
    dz = _design(spec, idata, df)
    xbar = dz.X.mean(axis=0) if dz.X.shape[1] else np.zeros(0)
    y = np.asarray(outcome(spec, df))
    w = np.ones(len(df)) if weights is None else np.asarray(weights, dtype=float)
    # agencies with the same stratum, design row and outcome share their log-likelihood
    first, inverse = _distinct(dz.codes, dz.X, y)
    eta = linear_predictor(spec, idata, dz.codes[first], dz.X[first], xbar, fit_columns(idata))
    ll = fam.pointwise_loglik(
        spec.family, spec.link, spec.outcome, eta, y[first], _kappa(spec, idata)
    )
    return (ll @ np.bincount(inverse, weights=w, minlength=len(first))).reshape(nc, nd)


def _distinct(codes: np.ndarray, X: np.ndarray, *more: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First row of each distinct (stratum, design row, ...) and each row's distinct index."""
    from cst_bayes.bayes.design import unique_rows

    key = np.column_stack([codes.astype(float), X, *(np.asarray(m, dtype=float) for m in more)])
    _, first, inverse = unique_rows(key)
    return first, inverse


def derived_draws(spec: Any, idata: Any, df: pd.DataFrame) -> dict[str, tuple[str, np.ndarray]]:
    """Every quantity the report prints, as {name: (kind, draws (chain, draw))}.

    ``kind``: ``term`` (log ratio of a reported term), ``national_share`` (frame-weighted mean
    risk), ``pr`` (log g-computation prevalence ratio over the national frame).
    """
    from cst_bayes.bayes import families as fam
    from cst_bayes.bayes.effects import frame_populations
    from cst_bayes.bayes.fit import fit_columns, linear_predictor, term_draws

    out = {t: ("term", d) for t, d in term_draws(spec, idata).items()}
    if spec.outcome != OUTCOME or not fit_columns(idata):
        return out
    post = idata.posterior
    shape = (post.sizes["chain"], post.sizes["draw"])
    dz = _design(spec, idata, df)
    xbar = dz.X.mean(axis=0)
    pops = frame_populations()
    s = df[STRATUM].astype(str)
    counts = s.value_counts()
    if set(s) - set(pops):
        return out
    w = s.map(lambda v: pops[v] / counts[v]).to_numpy(dtype=float)
    w = w / w.sum()

    def risk(d: pd.DataFrame) -> np.ndarray:
        # frame-weighted mean risk, once per distinct (stratum, design row)
        dd = _design(spec, idata, d)
        first, inverse = _distinct(dd.codes, dd.X)
        eta = linear_predictor(spec, idata, dd.codes[first], dd.X[first], xbar, dd.columns)
        wu = np.bincount(inverse, weights=w, minlength=len(first))
        return fam.mean_from_eta(spec.family, spec.link, eta) @ wu

    # Without a formula each term is one design column: a counterfactual changes that column
    # only, so the distinct rows of the observed design (and their frame weights) serve every
    # counterfactual; a formula (interactions) rebuilds the design of each counterfactual frame.
    by_rows = not spec.formula and all(t in dz.columns for t in spec.predictors)
    first, inverse = _distinct(dz.codes, dz.X)
    codes_u, X_u = dz.codes[first], dz.X[first]
    w_u = np.bincount(inverse, weights=w, minlength=len(first))

    def risk_rows(X: np.ndarray) -> np.ndarray:
        eta = linear_predictor(spec, idata, codes_u, X, xbar, dz.columns)
        return fam.mean_from_eta(spec.family, spec.link, eta) @ w_u

    national = risk_rows(X_u) if by_rows else risk(df)
    out["national_share"] = ("national_share", national.reshape(shape))
    base = df.assign(**{COUNT: df[list(APPROACHES)].sum(axis=1)}) if COUNT not in df else df
    for term in spec.predictors:
        binary = term in df.columns and set(pd.unique(df[term].dropna())) <= {0, 1}
        if by_rows and (term == COUNT or binary):
            j = dz.columns.index(term)
            X1, X0 = X_u.copy(), X_u.copy()
            if term == COUNT:
                X1[:, j] += 1
            else:
                X1[:, j], X0[:, j] = 1.0, 0.0
            out[f"PR {term}"] = ("pr", np.log(risk_rows(X1) / risk_rows(X0)).reshape(shape))
            continue
        if term == COUNT:
            d1, d0 = base.assign(**{COUNT: base[COUNT] + 1}), base
        elif term in df.columns and set(pd.unique(df[term].dropna())) <= {0, 1}:
            d1, d0 = df.assign(**{term: 1}), df.assign(**{term: 0})
        else:
            continue
        out[f"PR {term}"] = ("pr", np.log(risk(d1) / risk(d0)).reshape(shape))
    return out


def diagnosis(prior: float, likelihood: float, threshold: float = THRESHOLD) -> str:
    """priorsense's diagnosis of one quantity ("" when nothing is flagged)."""
    if prior >= threshold and likelihood >= threshold:
        return CONFLICT
    if prior >= threshold:
        return STRONG_PRIOR
    return ""


def _member_table(
    spec: Any, idata: Any, df: pd.DataFrame, *, derived: bool, delta: float
) -> pd.DataFrame:
    import arviz as az
    import xarray as xr

    post = idata.posterior
    dims = ("chain", "draw")
    coords = {"chain": post["chain"].to_numpy(), "draw": post["draw"].to_numpy()}
    from cst_bayes.bayes.fit import term_draws

    q = (
        derived_draws(spec, idata, df)
        if derived
        else {t: ("term", d) for t, d in term_draws(spec, idata).items()}
    )
    if not q:
        raise InputError(f"model {spec.name} reports no quantity to check", column="model")
    names = list(q)
    ds = xr.Dataset({f"q{i}": (dims, q[n][1]) for i, n in enumerate(names)}, coords=coords)
    weights = None
    if int(post.attrs.get("weighted", 0)) and "constant_data" in idata.groups():
        cd = idata.constant_data
        weights = cd["weight"].to_numpy() if "weight" in cd else None
    lp = log_prior(spec, idata)
    ll = log_likelihood(spec, idata, df, weights)
    data = az.InferenceData(
        posterior=ds,
        log_prior=xr.Dataset({"lprior": (dims, lp)}, coords=coords),
        log_likelihood=xr.Dataset({"loglik": (dims, ll)}, coords=coords),
    )
    ps = az.psens(data, component="prior", delta=delta)
    ls = az.psens(data, component="likelihood", delta=delta)
    # the derived quantities' own convergence: a PR is a nonlinear function of every draw
    rhat = az.rhat(ds)
    ess = az.ess(ds, method="bulk")
    return pd.DataFrame(
        {
            "quantity": names,
            "kind": [q[n][0] for n in names],
            "prior_sensitivity": [float(ps[f"q{i}"]) for i in range(len(names))],
            "likelihood_sensitivity": [float(ls[f"q{i}"]) for i in range(len(names))],
            "r_hat": [float(rhat[f"q{i}"]) for i in range(len(names))],
            "ess_bulk": [float(ess[f"q{i}"]) for i in range(len(names))],
        }
    )


def power_scaling_table(
    fit_or_idata: Any,
    spec: Any,
    df: pd.DataFrame | Sequence[pd.DataFrame],
    *,
    derived: bool = True,
    delta: float = 0.01,
    threshold: float = THRESHOLD,
) -> pd.DataFrame:
    """Prior and likelihood power-scaling sensitivity of every reported quantity.

    Parameters
    ----------
    fit_or_idata
        A Fit, PooledFit or InferenceData (a pooled one holds the members as chains with a
        ``reconstruction`` coordinate; then ``df`` is the list of member frames in order).
    spec
        The model's spec (:func:`cst_bayes.bayes.spec.load_spec`).
    df
        The data the model was fitted on (one frame, or the members' frames of a pooled fit).
    derived
        Also the national share and prevalence ratios (models of ``any_cst`` with predictors).
    delta, threshold
        Power-scaling step (``alpha = 1 / (1 + delta)`` and ``1 + delta``) and the threshold
        of the diagnosis (priorsense: 0.05).

    Returns
    -------
    DataFrame[quantity, kind, prior_sensitivity, likelihood_sensitivity, diagnosis, n_members]
        For a pooled fit each sensitivity is the largest over members (a conflict in any member
        shows) and ``n_members`` counts members; else ``n_members`` is 1.
    """
    idata = getattr(fit_or_idata, "idata", fit_or_idata)
    if "posterior" not in idata.groups():
        raise InputError("no posterior to power-scale")
    post = idata.posterior
    if "reconstruction" in post.coords:
        from cst_bayes.bayes.pooling import member_idata

        frames = list(df) if isinstance(df, Sequence) and not isinstance(df, pd.DataFrame) else []
        members = sorted(int(m) for m in np.unique(post["reconstruction"].to_numpy()))
        if len(frames) != len(members):
            raise InputError(
                f"a pooled fit of {len(members)} members needs {len(members)} data frames, "
                f"got {len(frames)}",
                column="data",
            )
        parts = [
            _member_table(spec, member_idata(idata, m), f, derived=derived, delta=delta)
            for m, f in zip(members, frames, strict=True)
        ]
        allm = pd.concat(parts, ignore_index=True)
        out = (
            allm.groupby(["quantity", "kind"], sort=False)
            .agg(
                prior_sensitivity=("prior_sensitivity", "max"),
                likelihood_sensitivity=("likelihood_sensitivity", "max"),
                r_hat=("r_hat", "max"),  # the worst member
                ess_bulk=("ess_bulk", "min"),
            )
            .reset_index()
        )
        out["n_members"] = len(parts)
    else:
        one = df if isinstance(df, pd.DataFrame) else next(iter(df))
        out = _member_table(spec, idata, one, derived=derived, delta=delta)
        out["n_members"] = 1
    out["diagnosis"] = [
        diagnosis(p, q, threshold)
        for p, q in zip(out["prior_sensitivity"], out["likelihood_sensitivity"])
    ]
    out.attrs.update(threshold=threshold, delta=delta, model=spec.name)
    return out[PSENSE_COLUMNS]


def write_psense(
    fit_or_idata: Any,
    spec: Any,
    df: pd.DataFrame | Sequence[pd.DataFrame],
    out_dir: Any,
    *,
    status: DataStatus,
    derived: bool = True,
) -> pd.DataFrame:
    """Write ``psense.csv`` (one row per quantity) into ``out_dir``; returns the table."""
    from pathlib import Path

    from cst_bayes.core.fileio import write_csv

    table = power_scaling_table(fit_or_idata, spec, df, derived=derived)
    n_conf = int((table["diagnosis"] == CONFLICT).sum())
    n_strong = int((table["diagnosis"] == STRONG_PRIOR).sum())
    write_csv(
        Path(out_dir) / "psense.csv",
        table,
        status=status,
        notes=[
            f"power-scaling sensitivity of {spec.name} (arviz.psens, delta 0.01; priorsense "
            f"threshold {THRESHOLD}): {n_conf} prior-data conflict, {n_strong} strong prior / "
            "weak likelihood; log scale for ratios"
        ],
    )
    return table
