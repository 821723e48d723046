"""Bayesian weighting: multilevel regression and poststratification (MRP) and weighted pseudo-likelihood.

Two ways to carry the sample design into a Bayesian analysis, side by side:

* **MRP**: fit the model with stratum effects to the unweighted data, then poststratify its
  predictions to the frame (the 15,133 agencies by stratum, or the eligible frame a scenario
  implies). Within a stratum the respondents stand for the stratum's agencies (the same
  missing-at-random assumption the design weights make), so a stratum's predicted share is
  the mean posterior risk of its respondents. With ``fpc`` the estimand is the *finite
  population* share: the observed agencies count as observed and only the ``N*_h - r_h``
  unobserved ones are predicted (with binomial noise), which is the Bayesian counterpart of
  the finite population correction (a fully observed stratum has no uncertainty).
* **Weighted pseudo-likelihood** (Savitsky and Toth 2016): each agency's log-likelihood is
  multiplied by its weight normalised to sum to the sample size. This is
  :func:`cst_bayes.bayes.models.fit` with ``weights=``; posterior predictive draws and pointwise
  log-likelihood come out of the fit as usual (the log-likelihood is the unweighted one).

National shares of each approach use a conjugate Beta-Binomial model per stratum (exact:
no MCMC), poststratified the same way (:func:`approach_shares`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cst_bayes.core.config import APPROACHES, OUTCOME, STRATA, STRATUM
from cst_bayes.core.errors import InputError
from cst_bayes.core.options import DEFAULT_SEED

MRP_COLUMNS = ["scenario", "estimand", "median", "ci_low", "ci_high"]
#: Flat Beta(1, 1) prior of a stratum's share in the conjugate model.
FLAT_PRIOR: tuple[float, float] = (1.0, 1.0)


def median_interval(draws: np.ndarray, *, prob: float = 0.95) -> tuple[float, float, float]:
    """Posterior median and equal-tailed interval of 1-D draws."""
    a = (1 - prob) / 2
    lo, med, hi = np.quantile(np.asarray(draws, float), [a, 0.5, 1 - a])
    return float(med), float(lo), float(hi)


def stratum_index(df: pd.DataFrame) -> np.ndarray:
    """Integer code of each row's stratum in ``config.STRATA`` order."""
    return df[STRATUM].astype(str).map({s: i for i, s in enumerate(STRATA)}).to_numpy(int)


def stratum_means(p_draws: np.ndarray, df: pd.DataFrame) -> np.ndarray:
    """Mean of per-agency draws within each stratum: ``(draws, n) -> (draws, 4)``."""
    p_draws = np.asarray(p_draws, float)
    if p_draws.ndim != 2 or p_draws.shape[1] != len(df):
        raise InputError(f"expected draws of shape (draws, {len(df)}), got {p_draws.shape}")
    idx = stratum_index(df)
    out = np.empty((p_draws.shape[0], len(STRATA)))
    for j in range(len(STRATA)):
        m = idx == j
        if not m.any():
            raise InputError(f"no respondents in stratum {STRATA[j]}", column=STRATUM)
        out[:, j] = p_draws[:, m].mean(axis=1)
    return out


def poststratify(
    stratum_p: np.ndarray,
    frame: Mapping[str, float],
    *,
    observed: Mapping[str, tuple[float, float]] | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """National share from stratum shares, weighted by the frame.

    Parameters
    ----------
    stratum_p
        ``(draws, 4)`` posterior draws of each stratum's share (``config.STRATA`` order).
    frame
        Agencies per stratum that the estimate is for (``eligible_frame`` of a scenario).
    observed
        For the finite-population estimand: ``{stratum: (yes, respondents)}`` observed. The
        ``frame - respondents`` unobserved agencies of a stratum are then predicted as
        ``Binomial(round(M), p)`` around ``M p`` (``M`` may be fractional: an estimated
        eligible frame). ``None`` gives the superpopulation share ``sum_h N_h p_h / N``.
    rng
        Generator for the binomial noise (needed with ``observed``).

    Returns
    -------
    numpy.ndarray
        ``(draws,)`` national shares.
    """
    P = np.asarray(stratum_p, float)
    N = np.array([float(frame[s]) for s in STRATA])
    if observed is None:
        return P @ N / N.sum()
    if rng is None:
        raise InputError("poststratify(observed=...) needs an rng for the unobserved agencies")
    tot = np.zeros(P.shape[0])
    for j, s in enumerate(STRATA):
        yes, r = observed[s]
        M = N[j] - r
        if M < -1e-9:
            raise InputError(
                f"stratum {s}: frame {N[j]:g} is smaller than its {r:g} respondents", column=STRATUM
            )
        M = max(M, 0.0)
        k = round(M)
        noise = rng.binomial(k, np.clip(P[:, j], 0, 1)) - k * P[:, j] if k > 0 else 0.0
        tot += yes + M * P[:, j] + noise
    return tot / N.sum()


def beta_binomial_draws(
    df: pd.DataFrame,
    variable: str,
    *,
    draws: int,
    rng: np.random.Generator,
    prior: tuple[float, float] = FLAT_PRIOR,
) -> np.ndarray:
    """``(draws, 4)`` draws of each stratum's share of ``variable`` (conjugate Beta posterior)."""
    return _beta_draws(stratum_index(df), df[variable].to_numpy(float), draws, rng, prior)


def _beta_draws(
    idx: np.ndarray,
    y: np.ndarray,
    draws: int,
    rng: np.random.Generator,
    prior: tuple[float, float],
) -> np.ndarray:
    out = np.empty((draws, len(STRATA)))
    for j in range(len(STRATA)):
        m = idx == j
        out[:, j] = rng.beta(prior[0] + y[m].sum(), prior[1] + (1 - y[m]).sum(), size=draws)
    return out


def observed_counts(df: pd.DataFrame, variable: str) -> dict[str, tuple[float, float]]:
    """``{stratum: (yes, respondents)}`` of a 0/1 variable."""
    return _observed(stratum_index(df), df[variable].to_numpy(float))


def _observed(idx: np.ndarray, y: np.ndarray) -> dict[str, tuple[float, float]]:
    return {s: (float(y[idx == j].sum()), float((idx == j).sum())) for j, s in enumerate(STRATA)}


def approach_shares(
    df: pd.DataFrame,
    frame: Mapping[str, float],
    *,
    fpc: bool,
    draws: int,
    seed: int,
    variables: Sequence[str] = APPROACHES,
    prior: tuple[float, float] = FLAT_PRIOR,
) -> dict[str, np.ndarray]:
    """National share using each approach (Beta-Binomial per stratum, poststratified).

    Returns ``{variable: (draws,) national shares}``. Same seed, same draws.
    """
    rng = np.random.default_rng(seed)
    idx = stratum_index(df)
    out = {}
    for v in variables:
        y = df[v].to_numpy(float)
        P = _beta_draws(idx, y, draws, rng, prior)
        out[v] = poststratify(P, frame, observed=_observed(idx, y) if fpc else None, rng=rng)
    return out


@dataclass
class RiskDraws:
    """Posterior risk of every agency as observed and with each approach set to 1 and to 0."""

    observed: np.ndarray  #: (draws, n)
    set1: dict[str, np.ndarray]  #: approach -> (draws, n)
    set0: dict[str, np.ndarray]


def risk_draws(fit: object, df: pd.DataFrame, *, max_draws: int | None = None) -> RiskDraws:
    """Posterior predicted risks from a fitted logistic model (``cst_bayes.bayes.models.predict_risk``).

    ``max_draws`` thins evenly to bound memory (draws x agencies x 19 arrays).
    """
    from cst_bayes.bayes import models

    def pr(newdata: pd.DataFrame) -> np.ndarray:
        p = np.asarray(models.predict_risk(fit, newdata), float)
        if max_draws is not None and p.shape[0] > max_draws:
            p = p[np.linspace(0, p.shape[0] - 1, max_draws).round().astype(int)]
        return p

    set1, set0 = {}, {}
    for a in APPROACHES:
        d1 = df.copy()
        d1[a] = np.int8(1)
        d0 = df.copy()
        d0[a] = np.int8(0)
        set1[a] = pr(d1)
        set0[a] = pr(d0)
    return RiskDraws(observed=pr(df), set1=set1, set0=set0)


def mrp_summaries(
    scenario: str,
    df: pd.DataFrame,
    frame: Mapping[str, float],
    *,
    fpc: bool,
    seed: int,
    risk_adjusted: RiskDraws | None,
    risk_unadjusted: RiskDraws | None = None,
    or_adjusted: Mapping[str, np.ndarray] | None = None,
    or_unadjusted: Mapping[str, np.ndarray] | None = None,
    share_draws: int = 4000,
) -> pd.DataFrame:
    """MRP estimates under one scenario (``scenario, estimand, median, ci_low, ci_high``).

    Estimands: ``any_cst`` (national share with any CST case, from the stratum model),
    ``any_cst_saturated`` (the same from the saturated stratum model, conjugate, no MCMC),
    each approach name (national share using it, conjugate), ``rd_adjusted:<approach>`` and
    ``rd_unadjusted:<approach>`` (national-average marginal risk difference: mean over the
    frame of risk with the approach minus without, by the model with / without stratum
    effects), and ``or_adjusted:<approach>`` / ``or_unadjusted:<approach>`` (the model's odds
    ratio: a conditional effect, the same under every scenario).
    """
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []

    def add(est: str, d: np.ndarray) -> None:
        med, lo, hi = median_interval(d)
        rows.append(
            {"scenario": scenario, "estimand": est, "median": med, "ci_low": lo, "ci_high": hi}
        )

    # The saturated stratum model of any_cst (conjugate): the MRP counterpart of the
    # design-based share, computed without MCMC.
    sat = approach_shares(
        df, frame, fpc=fpc, draws=share_draws, seed=seed + 2, variables=[OUTCOME]
    )[OUTCOME]
    add(f"{OUTCOME}_saturated", sat)
    if risk_adjusted is not None:
        P = stratum_means(risk_adjusted.observed, df)
        add(
            OUTCOME,
            poststratify(P, frame, observed=observed_counts(df, OUTCOME) if fpc else None, rng=rng),
        )
    for v, d in approach_shares(df, frame, fpc=fpc, draws=share_draws, seed=seed + 1).items():
        add(v, d)
    for label, risk in (("adjusted", risk_adjusted), ("unadjusted", risk_unadjusted)):
        if risk is None:
            continue
        for a in APPROACHES:
            diff = stratum_means(risk.set1[a] - risk.set0[a], df)
            add(f"rd_{label}:{a}", poststratify(diff, frame))
    for label, ors in (("adjusted", or_adjusted), ("unadjusted", or_unadjusted)):
        for a, d in (ors or {}).items():
            add(f"or_{label}:{a}", d)
    return pd.DataFrame(rows, columns=MRP_COLUMNS)


def weighted_average(draws: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``(draws, n) -> (draws,)`` weighted average over agencies."""
    w = np.asarray(w, float)
    return np.asarray(draws, float) @ w / w.sum()


#: Models used by the Bayesian weighting (Table 3 Analysis 1 without / with agency size).
MODEL_UNADJUSTED = "logit_approaches"
MODEL_ADJUSTED = "logit_approaches_strata"
#: Sampler for the weighting fits: nutpie with the package's disk-cached numba log-densities;
#: the weights enter as data, so the ten weighted fits share one compiled model per spec.
DEFAULT_SAMPLER: str = "nutpie"


def _or_from_summary(fit: object) -> dict[str, tuple[float, float, float]]:
    """``{approach: (median OR, ci_low, ci_high)}`` from a Fit's summary table."""
    s = fit.summary.set_index("term")  # type: ignore[attr-defined]
    return {
        a: (float(s.loc[a, "estimate"]), float(s.loc[a, "ci_low"]), float(s.loc[a, "ci_high"]))
        for a in APPROACHES
        if a in s.index
    }


def poststratified(
    df: pd.DataFrame,
    targets: Mapping[str, tuple[Mapping[str, float], bool]],
    *,
    mcmc: bool = True,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 2,
    seed: int = DEFAULT_SEED,
    sampler: str | None = DEFAULT_SAMPLER,
    max_risk_draws: int = 1000,
    extend: bool = False,
    diagnostics: dict[str, dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """The stratum model poststratified to each scenario's eligible frame (method ``poststratified``).

    ``targets`` maps a scenario name to ``(eligible frame by stratum, fpc)``. The two models
    (:data:`MODEL_UNADJUSTED`, :data:`MODEL_ADJUSTED`) are fitted once, unweighted; their
    common-slope risks are poststratified. With the four design strata as the only
    poststratifier this is the stratified estimator, so its agreement with the design-based
    results is built in (hence the name). Without ``mcmc`` only the conjugate estimands.
    ``extend`` and ``diagnostics`` (model name -> the fit's diagnostics, filled in): see
    :func:`cst_bayes.bayes.fit.fit`.
    """
    base: dict[str, tuple[object, RiskDraws]] = {}
    ors: dict[str, dict[str, tuple[float, float, float]]] = {}
    if mcmc:
        from cst_bayes.bayes import models

        kw: dict[str, object] = dict(
            draws=draws, tune=tune, chains=chains, seed=seed, progress=False, extend=extend
        )
        if sampler is not None:
            kw["sampler"] = sampler
        for label, name in (("unadjusted", MODEL_UNADJUSTED), ("adjusted", MODEL_ADJUSTED)):
            f = models.fit(name, df, **kw)
            if diagnostics is not None:
                diagnostics[name] = f.diagnostics
            base[label] = (f, risk_draws(f, df, max_draws=max_risk_draws))
            ors[label] = _or_from_summary(f)
    tables = []
    for name, (frame, fpc) in targets.items():
        m = mrp_summaries(
            name,
            df,
            frame,
            fpc=fpc,
            seed=seed,
            risk_adjusted=base["adjusted"][1] if base else None,
            risk_unadjusted=base["unadjusted"][1] if base else None,
        )
        extra = [
            {
                "scenario": name,
                "estimand": f"or_{label}:{a}",
                "median": v[0],
                "ci_low": v[1],
                "ci_high": v[2],
            }
            for label, o in ors.items()
            for a, v in o.items()
        ]
        tables.append(pd.concat([m, pd.DataFrame(extra, columns=MRP_COLUMNS)], ignore_index=True))
    return pd.concat(tables, ignore_index=True).assign(method="poststratified")


MODEL_VARYING = "logit_varying_slopes"


def mrp_varying_slopes(
    df: pd.DataFrame,
    targets: Mapping[str, tuple[Mapping[str, float], bool]],
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 2,
    seed: int = DEFAULT_SEED,
    sampler: str | None = DEFAULT_SAMPLER,
    max_risk_draws: int = 1000,
    extend: bool = False,
    diagnostics: dict[str, dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """MRP over ``logit_varying_slopes`` (method ``mrp``): national effects from stratum-specific slopes.

    Each stratum's marginal risk difference uses its own slopes; poststratifying them to the
    frame weights the strata by their agencies, not by their respondents. ``extend`` and
    ``diagnostics``: as in :func:`poststratified`.
    """
    from cst_bayes.bayes import models

    kw: dict[str, object] = dict(
        draws=draws, tune=tune, chains=chains, seed=seed, progress=False, extend=extend
    )
    if sampler is not None:
        kw["sampler"] = sampler
    f = models.fit(MODEL_VARYING, df, **kw)
    if diagnostics is not None:
        diagnostics[MODEL_VARYING] = f.diagnostics
    risk = risk_draws(f, df, max_draws=max_risk_draws)
    tables = []
    for name, (frame, fpc) in targets.items():
        m = mrp_summaries(name, df, frame, fpc=fpc, seed=seed, risk_adjusted=risk)
        tables.append(
            m[~m["estimand"].isin(APPROACHES) & (m["estimand"] != f"{OUTCOME}_saturated")]
        )
    return pd.concat(tables, ignore_index=True).assign(method="mrp")
