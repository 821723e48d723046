"""Coverage of the raw and Williams-Savitsky-adjusted pseudo-posterior in repeated sampling.

A synthetic finite population of the frame's size (15,133 agencies, the published stratum
sizes) is built by resampling a data set's agencies within their stratum; its census
logistic regression (Table 3 Analysis 1, size-adjusted) gives the population coefficients.
Each replicate draws a stratified simple random sample of the published respondent counts
without replacement, weights ``N_h / r_h``, fpc ``N_h``, fits the pseudo-posterior and asks
whether each 90% interval (raw and adjusted) covers the population coefficient.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from cst_bayes.core.config import OUTCOME, STRATA, STRATUM
from cst_bayes.weighting.design import Design
from cst_bayes.weighting.williams_savitsky import Method, fit_pseudo_posterior

COVERAGE_COLUMNS = [
    "term",
    "interval",
    "covered",
    "replicates",
    "coverage",
    "band_low",
    "band_high",
]


def synthetic_population(df: pd.DataFrame, frames: pd.DataFrame, seed: int) -> pd.DataFrame:
    """``sum N_h`` agencies: each stratum's rows of ``df`` resampled with replacement to ``N_h``."""
    rng = np.random.default_rng(seed)
    N = frames.set_index("stratum")["population"]
    parts = []
    for s in STRATA:
        rows = df[df[STRATUM].astype(str) == s]
        parts.append(rows.iloc[rng.integers(0, len(rows), int(N[s]))])
    return pd.concat(parts, ignore_index=True)


def population_coefficients(pop: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Census logistic regression (unweighted over the whole finite population)."""
    from cst_bayes.weighting.weights import model_matrix

    X, names = model_matrix(pop, True)
    y = pop[OUTCOME].to_numpy(float)
    b = np.zeros(X.shape[1])
    for _ in range(50):
        mu = 1 / (1 + np.exp(-(X @ b)))
        step = np.linalg.solve(X.T @ (X * (mu * (1 - mu))[:, None]), X.T @ (y - mu))
        b += step
        if np.max(np.abs(step)) < 1e-12:
            break
    return b, names


def binomial_band(n: int, p: float = 0.9, level: float = 0.99) -> tuple[float, float]:
    """Central ``level`` range of the coverage share of ``n`` independent intervals of coverage ``p``."""
    a = (1 - level) / 2
    return float(stats.binom.ppf(a, n, p) / n), float(stats.binom.isf(a, n, p) / n)


def coverage_simulation(
    df: pd.DataFrame,
    frames: pd.DataFrame,
    *,
    replicates: int = 200,
    method: Method = "laplace",
    seed: int = 0,
    prob: float = 0.9,
    prior_sd: float = 10.0,
    draws: int = 1000,
    tune: int = 500,
) -> pd.DataFrame:
    """Share of replicates whose raw / adjusted ``prob`` interval covers each population coefficient.

    Returns :data:`COVERAGE_COLUMNS`; ``term`` ``all`` pools the coefficients (its band is the
    single-coefficient band: a mean of correlated indicators varies no more than one).
    """
    from cst_bayes.weighting.weights import model_matrix

    pop = synthetic_population(df, frames, seed)
    beta, names = population_coefficients(pop)
    r = frames.set_index("stratum")["respondents"]
    N = frames.set_index("stratum")["population"]
    rng = np.random.default_rng(seed + 1)
    idx_by = {s: np.flatnonzero(pop[STRATUM].astype(str).to_numpy() == s) for s in STRATA}
    a = (1 - prob) / 2
    hits = {k: np.zeros(len(names) - 1) for k in ("raw", "adjusted")}
    for i in range(replicates):
        take = np.concatenate([rng.choice(idx_by[s], int(r[s]), replace=False) for s in STRATA])
        smp = pop.iloc[take].reset_index(drop=True)
        s = smp[STRATUM].astype(str)
        design = Design(
            weights=s.map(N / r).to_numpy(float),
            strata=s.map({lab: j for j, lab in enumerate(STRATA)}).to_numpy(int),
            fpc=s.map(N).to_numpy(float),
        )
        X, _ = model_matrix(smp, True)
        post = fit_pseudo_posterior(
            X,
            smp[OUTCOME].to_numpy(float),
            design,
            names,
            method=method,
            seed=seed + 2 + i,
            prior_sd=prior_sd,
            draws=draws,
            tune=tune,
        )
        for k in hits:
            d = post.draws(k == "adjusted").reshape(-1, len(names))[:, 1:]
            lo, hi = np.quantile(d, [a, 1 - a], axis=0)
            hits[k] += (lo <= beta[1:]) & (beta[1:] <= hi)
    band = binomial_band(replicates, prob)
    rows = []
    for k, h in hits.items():
        for t, c in zip([*names[1:], "all"], [*h, h.mean()]):
            rows.append(
                {
                    "term": t,
                    "interval": k,
                    "covered": float(c),
                    "replicates": replicates,
                    "coverage": float(c) / replicates,
                    "band_low": band[0],
                    "band_high": band[1],
                }
            )
    return pd.DataFrame(rows, columns=COVERAGE_COLUMNS)
