"""Posterior predictive checks: regenerate the published tables, and check beyond them.

For a fitted model and its data we draw replicated outcomes from the posterior predictive
and, for every replicate, recompute the statistics the article publishes
(:mod:`cst_bayes.checks.tablestats`: ``table1``, ``fig1``, ``table3``, ``count``) and
statistics outside the model's sufficient statistics (:mod:`cst_bayes.checks.outside`:
``approach_by_case``, ``rate_by_count``, ``calibration``, ``loo_pit``). The column
``fitted_by_model`` marks statistics that are functions of the checked model's sufficient
statistic: the posterior reproduces those whatever the fit, so they are left out of the
count of statistics outside the replicated interval (:func:`n_outside`).

Design. The core, :func:`ppc_from_replicates`, takes a data frame, a ``(draws, agencies)``
array of replicated outcomes and optional NumPy inputs (per-draw probabilities, the model's
design); only :func:`ppc_tables` knows about fitted models.

The posterior predictive p-value is Gelman, Meng & Stern's (1996):
``ppp = 2 * min(P(T_rep >= T_obs), P(T_rep <= T_obs))`` capped at 1 (two-sided), or the
one-sided upper tail for chi-square, F and distance statistics, where only large values
signal misfit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from cst_bayes.bayes.design import model_matrix
from cst_bayes.checks.fits import (
    _as_fit,
    _member_of,
    _MemberFit,
    check_fitted_on,
    is_pooled,
    model_outcome,
)
from cst_bayes.checks.outside import (
    OUTSIDE_TABLES,
    fitted_by_model,
    loo_probabilities,
    outside_keys,
    outside_statistics,
)
from cst_bayes.checks.tablestats import (
    MAX_COUNT,
    TABLE1_STRATA,
    FrameDesign,
    Stat,
    batched_glm,
    batched_statistics,
    frequentist_statistics,
    published_values,
    statistic_keys,
    table3_designs,
)
from cst_bayes.core.blas import one_blas_thread
from cst_bayes.core.config import COUNT, OUTCOME, STRATUM
from cst_bayes.core.errors import InputError

__all__ = [
    "ALL_TABLES",
    "MAX_COUNT",
    "PPC_COLUMNS",
    "TABLE1_STRATA",
    "batched_glm",
    "batched_statistics",
    "frequentist_statistics",
    "n_outside",
    "ppc_from_replicates",
    "ppc_tables",
    "ppp_values",
    "published_values",
    "statistic_keys",
    "table3_designs",
]

TableName = Literal[
    "table1",
    "fig1",
    "table3",
    "count",
    "approach_by_case",
    "rate_by_count",
    "calibration",
    "loo_pit",
]
ALL_TABLES: tuple[str, ...] = get_args(TableName)
PUBLISHED_TABLES: tuple[str, ...] = ("table1", "fig1", "table3", "count")
#: The fixed columns of ``ppc.csv``, then the extra columns we add after them.
PPC_COLUMNS: tuple[str, ...] = (
    "table",
    "statistic",
    "stratum_or_term",
    "observed",
    "published",
    "rep_median",
    "rep_low",
    "rep_high",
    "ppp",
)
EXTRA_COLUMNS: tuple[str, ...] = (
    "flag",
    "n_rep",
    "sided",
    "observed_min",
    "observed_max",
    "fitted_by_model",
)
_Stat = Stat  # the name older callers import


# ----------------------------------------------------------------------------- helpers
def _allowed_tables(outcome: str) -> tuple[str, ...]:
    if outcome == COUNT:
        return ("count", "calibration")
    return (
        "table1",
        "fig1",
        "table3",
        "approach_by_case",
        "rate_by_count",
        "calibration",
        "loo_pit",
    )


def _check_tables(
    tables: Sequence[str] | None, outcome: str, *, risk: bool = False, loo: bool = False
) -> tuple[str, ...]:
    """The tables to check: the given ones, validated, or every one the inputs allow."""
    allowed = _allowed_tables(outcome)
    if tables is None:
        return tuple(t for t in allowed if (t != "calibration" or risk) and (t != "loo_pit" or loo))
    tables = tuple(tables)
    bad = [t for t in tables if t not in ALL_TABLES]
    if bad:
        raise InputError(
            f"unknown PPC table(s) {bad}; allowed: {list(ALL_TABLES)}", column="tables"
        )
    wrong = [t for t in tables if t not in allowed]
    if wrong:
        raise InputError(
            f"table(s) {wrong} cannot be checked for a model of {outcome!r} (allowed: {list(allowed)})",
            column="tables",
        )
    if "calibration" in tables and not risk:
        raise InputError(
            "the calibration check needs per-draw predictions (p_draws)", column="tables"
        )
    if "loo_pit" in tables and not loo:
        raise InputError(
            "the LOO-PIT check needs per-draw probabilities of a Bernoulli model (p_draws)",
            column="tables",
        )
    return tables


# ----------------------------------------------------------------------------- ppp
def ppp_values(
    t_rep: np.ndarray, t_obs: np.ndarray, sided: Sequence[str] | str = "two"
) -> np.ndarray:
    """Gelman-Meng-Stern posterior predictive p-values, one per statistic.

    Parameters
    ----------
    t_rep
        (R, S) replicated statistics; NaN replicates (e.g. a refit without a finite MLE)
        are left out of that statistic's count.
    t_obs
        (S,) observed statistics, or (R, S): each replicate compared with its own observed
        value (pooling over reconstructions, where every member has its own data).
    sided
        Per statistic (or one for all): ``"two"`` gives
        ``min(1, 2 * min(P(T_rep >= T_obs), P(T_rep <= T_obs)))``; ``"upper"`` gives
        ``P(T_rep >= T_obs)`` (chi-square and F, where only large values mean misfit).

    Returns
    -------
    numpy.ndarray
        (S,) p-values, NaN where the observed statistic or every replicate is undefined.
    """
    t_rep = np.atleast_2d(np.asarray(t_rep, dtype=float))
    t_obs = np.asarray(t_obs, dtype=float)
    sided_arr = np.broadcast_to(np.asarray(sided, dtype=object), t_rep.shape[1:])
    bad = [s for s in set(sided_arr.tolist()) if s not in ("two", "upper")]
    if bad:
        raise InputError(f"sided must be 'two' or 'upper', got {bad}")
    valid = ~np.isnan(t_rep) & ~np.isnan(t_obs)
    n = valid.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ge = np.where(valid, t_rep >= t_obs, False).sum(axis=0) / n
        le = np.where(valid, t_rep <= t_obs, False).sum(axis=0) / n
    two = np.minimum(1.0, 2.0 * np.minimum(ge, le))
    out = np.where(sided_arr == "upper", ge, two).astype(float)
    out[n == 0] = np.nan
    return out


# ----------------------------------------------------------------------------- core
def _binary_replicates(y_rep: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """0/1 replicates of any_cst, and the per-replicate number of values above 1.

    A Poisson working likelihood for the 0/1 outcome (the article's "Poisson regression")
    replicates counts 2, 3, ... that the data cannot show. The published statistics are
    computed on ``min(y, 1)`` (the agency had at least one case), and the count of
    impossible values is checked as a statistic of its own (observed: 0).
    """
    y_rep = np.atleast_2d(np.asarray(y_rep))
    if (y_rep < 0).any() or not np.array_equal(y_rep, np.round(y_rep)):
        raise InputError(
            "replicated any_cst must be non-negative integers (0/1, or counts of a Poisson model)"
        )
    above = (y_rep > 1).sum(axis=1).astype(float)
    if not above.any():
        return y_rep, None
    return np.minimum(y_rep, 1), above


def _prepare(
    df: pd.DataFrame,
    y_rep: np.ndarray,
    outcome: str,
    tables: Sequence[str] | None,
    observed: np.ndarray | None = None,
    *,
    p_draws: np.ndarray | None = None,
    design: np.ndarray | None = None,
    frame: FrameDesign | None = None,
) -> tuple[list[Stat], np.ndarray, np.ndarray, np.ndarray]:
    """Keys, replicated and observed statistics of one dataset, and which are fitted.

    ``frame`` is ``df``'s :class:`FrameDesign`, if the caller has built it already. BLAS runs
    on one thread (:func:`cst_bayes.core.blas.one_blas_thread`).
    """
    with one_blas_thread():
        risk = None if p_draws is None else np.asarray(p_draws, dtype=float).mean(axis=0)
        bernoulli = (
            p_draws is not None
            and outcome == OUTCOME
            and bool(((np.asarray(p_draws) >= 0) & (np.asarray(p_draws) <= 1)).all())
        )
        tabs = _check_tables(tables, outcome, risk=risk is not None, loo=bernoulli)
        y_rep = np.atleast_2d(np.asarray(y_rep))
        above = None
        if outcome == OUTCOME:
            y_rep, above = _binary_replicates(y_rep)
        pub = tuple(t for t in tabs if t in PUBLISHED_TABLES)
        out = tuple(t for t in tabs if t in OUTSIDE_TABLES)
        fd = frame if frame is not None else FrameDesign(df)
        keys = statistic_keys(df, pub) + outside_keys(out)
        loo_q = loo_probabilities(p_draws) if "loo_pit" in out else None
        y_obs = df[outcome].to_numpy(dtype=float)[None, :]
        t_rep = np.column_stack(
            [
                batched_statistics(fd, y_rep, tables=pub),
                outside_statistics(fd, y_rep, tables=out, risk=risk, loo_q=loo_q),
            ]
        )
        t_obs = (
            np.concatenate(
                [
                    frequentist_statistics(df, tables=pub),
                    outside_statistics(fd, y_obs, tables=out, risk=risk, loo_q=loo_q)[0],
                ]
            )
            if observed is None
            else np.asarray(observed, float)
        )
        if above is not None:
            keys.append(Stat("table1", "n_above_1", "all", "two"))
            t_rep = np.column_stack([t_rep, above])
            t_obs = np.append(t_obs, 0.0)
        fitted = fitted_by_model(fd, keys, design, risk=risk)
        return keys, t_rep, t_obs, fitted


def _check_common(outcome: str, prob: float) -> None:
    if outcome not in (OUTCOME, COUNT):
        raise InputError(
            f"outcome must be {OUTCOME!r} or {COUNT!r}, got {outcome!r}", column="outcome"
        )
    if not 0 < prob < 1:
        raise InputError(f"prob must be in (0, 1), got {prob}", column="prob")


def ppc_from_replicates(
    df: pd.DataFrame,
    y_rep: np.ndarray,
    *,
    outcome: Literal["any_cst", "n_approaches"] = OUTCOME,
    tables: Sequence[TableName] | None = None,
    prob: float = 0.95,
    observed: np.ndarray | None = None,
    p_draws: np.ndarray | None = None,
    design: np.ndarray | None = None,
) -> pd.DataFrame:
    """Posterior predictive checks from replicated outcomes (the model-free core).

    Parameters
    ----------
    df
        The data the model was fitted on (microdata contract).
    y_rep
        (R, n) replicated values of ``outcome`` for the ``n`` rows of ``df``.
    outcome
        ``"any_cst"`` (checks Table 1's outcome row, Figure 1, Table 3, the within-stratum
        approach x case counts and the case rate by approach count) or ``"n_approaches"``
        (the count distribution, means, SDs and ANOVA F).
    tables
        A subset of the tables allowed for the outcome (default: all the inputs allow).
    prob
        Width of the central posterior predictive interval (default 95%).
    observed
        Observed statistics, if already computed; by default they are computed from ``df``
        (the published ones by the frequentist code).
    p_draws
        (S, n) per-draw mean outcome of the checked model (P(y = 1) for a Bernoulli model).
        Enables ``calibration`` (deciles of its mean over draws) and, for probabilities of a
        0/1 outcome, ``loo_pit``.
    design
        (n, p) design ``Z`` of a canonical-link model (see
        :func:`cst_bayes.checks.outside.fitted_by_model`); marks ``fitted_by_model``.

    Returns
    -------
    pandas.DataFrame
        Columns ``table, statistic, stratum_or_term, observed, published, rep_median,
        rep_low, rep_high, ppp``, then ``flag`` (observed outside the interval), ``n_rep``
        (replicates where the statistic is defined), ``sided`` (``two`` or ``upper``),
        ``observed_min``, ``observed_max`` (equal to ``observed`` for one dataset) and
        ``fitted_by_model``.
    """
    _check_common(outcome, prob)
    keys, t_rep, t_obs, fitted = _prepare(
        df, y_rep, outcome, tables, observed, p_draws=p_draws, design=design
    )
    out = _summarise(keys, t_rep, t_obs[None, :], prob=prob)
    out["fitted_by_model"] = fitted
    return _drop_undefined(out)


def _drop_undefined(out: pd.DataFrame) -> pd.DataFrame:
    """Leave out case rates of approach counts no agency has (undefined in every replicate)."""
    keep = ~((out["table"] == "rate_by_count") & (out["n_rep"] == 0))
    return out[keep].reset_index(drop=True).__finalize__(out)


def n_outside(ppc: pd.DataFrame) -> tuple[int, int]:
    """Statistics outside the replicated interval, and statistics checked, not counting those
    the model has fitted (``fitted_by_model``: they cannot fall outside)."""
    flag = ppc["flag"].astype(str).str.lower().isin(["true", "1"])
    if "fitted_by_model" in ppc:
        keep = ~ppc["fitted_by_model"].astype(str).str.lower().isin(["true", "1"])
    else:
        keep = pd.Series(True, index=ppc.index)
    return int((flag & keep).sum()), int(keep.sum())


def _summarise(
    keys: list[_Stat], t_rep: np.ndarray, t_obs: np.ndarray, *, prob: float
) -> pd.DataFrame:
    """The PPC table from (R, S) replicated and (M, S) observed statistics (M datasets).

    With several datasets (an ensemble), ``t_obs`` rows are the members' observed values
    and ``t_rep`` rows are ordered member by member in equal blocks; each replicate is
    compared with its own member's observed value in the ppp, and ``observed`` is the
    members' median.
    """
    import warnings

    a = (1 - prob) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN
        q = np.nanquantile(t_rep, [0.5, a, 1 - a], axis=0)
        obs_med = np.nanmedian(t_obs, axis=0)
        obs_min, obs_max = np.nanmin(t_obs, axis=0), np.nanmax(t_obs, axis=0)
    M, R = t_obs.shape[0], t_rep.shape[0]
    if R % M:
        raise InputError(f"{R} replicates cannot be shared equally among {M} datasets")
    sided = [k.sided for k in keys]
    p = ppp_values(t_rep, np.repeat(t_obs, R // M, axis=0), sided)
    out = pd.DataFrame(
        {
            "table": [k.table for k in keys],
            "statistic": [k.statistic for k in keys],
            "stratum_or_term": [k.stratum_or_term for k in keys],
            "observed": obs_med,
            "published": published_values(keys),
            "rep_median": q[0],
            "rep_low": q[1],
            "rep_high": q[2],
            "ppp": p,
        }
    )
    out["flag"] = (out["observed"] < out["rep_low"]) | (out["observed"] > out["rep_high"])
    out["n_rep"] = (~np.isnan(t_rep)).sum(axis=0)
    out["sided"] = sided
    out["observed_min"] = obs_min
    out["observed_max"] = obs_max
    return out


def _thin(draws: np.ndarray, n: int) -> np.ndarray:
    if draws.shape[0] <= n:
        return draws
    return draws[np.linspace(0, draws.shape[0] - 1, n).round().astype(int)]


_CANONICAL = {("bernoulli", "logit"), ("binomial", "logit"), ("poisson", "log")}


def model_design(
    spec: Any, df: pd.DataFrame, *, frame: FrameDesign | None = None
) -> np.ndarray | None:
    """The design ``Z`` whose ``Z'y`` is sufficient for ``spec`` on ``df``; None if no such.

    Stratum indicators (or an intercept), the predictors, and predictor x stratum columns
    with varying slopes. Only canonical-link exponential families have it (Bernoulli and
    binomial logit, Poisson log); the beta-binomial does not. ``frame`` is ``df``'s
    :class:`FrameDesign`, if already built.
    """
    if (spec.family, spec.link) not in _CANONICAL:
        return None
    oh = (frame if frame is not None else FrameDesign(df)).onehot
    cols = [oh if spec.stratum_intercepts != "none" else np.ones((len(df), 1))]
    X = model_matrix(spec, df)
    if X.shape[1]:
        cols.append(X)
        if spec.varying_slopes:
            cols += [X * oh[:, [j]] for j in range(oh.shape[1])]
    return np.column_stack(cols)


def ppc_tables(
    fit_or_idata: Any,
    df: pd.DataFrame | Sequence[pd.DataFrame],
    *,
    n_draws: int = 500,
    seed: int = 0,
    prob: float = 0.95,
    tables: Sequence[TableName] | None = None,
    max_draws: int = 1000,
) -> pd.DataFrame:
    """Posterior predictive checks of the published tables and beyond for a fitted model.

    Parameters
    ----------
    fit_or_idata
        A :class:`cst_bayes.bayes.models.Fit`, a fit file path, its InferenceData, or a pooled
        fit (:class:`cst_bayes.bayes.pooling.PooledFit`, or its stacked InferenceData).
    df
        The data the model was fitted on; for a pooled fit, the list of ensemble members
        in the order they were fitted (or one member: the check then uses that member's
        posterior, found by its data hash).
    n_draws
        Posterior predictive replicates (>= 500 for the published check; fewer in tests).
        For a pooled fit they are shared equally among the members (rounded up).
    seed
        Seed of the replicate draws: the same seed gives the same table.
    prob
        Width of the replicated interval.
    tables
        Subset of tables (default: every table the model's outcome allows).
    max_draws
        Posterior draws (evenly thinned) behind the mean risk of ``calibration`` and the
        PSIS weights of ``loo_pit``.

    Returns
    -------
    pandas.DataFrame
        See :func:`ppc_from_replicates`. For a pooled fit, each member's replicates come
        from that member's own posterior and covariates and are compared with that member's
        observed statistics (``observed`` is then the members' median and
        ``observed_min``/``observed_max`` their range).
    """
    from cst_bayes.bayes import models

    if n_draws < 1:
        raise InputError(f"n_draws must be >= 1, got {n_draws}", column="n_draws")
    fit = _as_fit(fit_or_idata)
    outcome = model_outcome(fit)
    _check_common(outcome, prob)
    frames = [df] if isinstance(df, pd.DataFrame) else list(df)
    if is_pooled(fit):
        from cst_bayes.bayes.pooling import member_idata

        n_members = int(np.unique(fit.idata.posterior["reconstruction"].values).size)
        if len(frames) == n_members:
            members = list(range(1, n_members + 1))
        elif len(frames) == 1:
            members = [_member_of(fit, frames[0])]
        else:
            raise InputError(
                f"the pooled fit has {n_members} reconstructions but {len(frames)} datasets were given"
            )
        per = -(-n_draws // len(frames))
        fits = [
            _MemberFit(
                fit.spec,
                member_idata(fit.idata, m),
                model_matrix(fit.spec, d).mean(axis=0),
            )
            for m, d in zip(members, frames)
        ]
    else:
        if len(frames) != 1:
            raise InputError(
                "a single (not pooled) fit takes one dataset; fit the ensemble with fit_ensemble"
            )
        check_fitted_on(fit, frames)
        per = n_draws
        fits = [fit]
    seeds = np.random.SeedSequence(seed).spawn(len(frames))
    results = []
    for f, d, ss in zip(fits, frames, seeds):
        y_rep = models.replicate(f, d, n_draws=per, seed=int(ss.generate_state(1)[0]))
        p_draws = _thin(models.predict_risk(f, d), max_draws)
        fd = FrameDesign(d)
        design = model_design(f.spec, d, frame=fd)
        results.append(
            _prepare(d, y_rep, outcome, tables, p_draws=p_draws, design=design, frame=fd)
        )
    # Only the trailing n_above_1 check (Poisson working likelihood) can be missing for a
    # member whose replicates happened to stay within 0/1: there it is 0.
    keys_all = max((r[0] for r in results), key=len)
    width = len(keys_all)
    reps = [
        t if t.shape[1] == width else np.column_stack([t, np.zeros(len(t))])
        for _, t, _, _ in results
    ]
    obs = [o if o.size == width else np.append(o, 0.0) for _, _, o, _ in results]
    fitted = np.logical_and.reduce(
        [np.append(fb, False) if fb.size < width else fb for _, _, _, fb in results]
    )
    out = _summarise(keys_all, np.vstack(reps), np.vstack(obs), prob=prob)
    out["fitted_by_model"] = fitted
    out = _drop_undefined(out)
    synthetic = any(bool(d.attrs.get("synthetic", False)) for d in frames)
    sizes = frames[0][STRATUM].astype(str).value_counts()
    out.attrs.update(
        synthetic=synthetic,
        outcome=outcome,
        n_draws=per * len(frames),
        seed=seed,
        members=len(frames),
        model=getattr(fit.spec, "name", ""),
        n_by_stratum={**{str(k): int(v) for k, v in sizes.items()}, "all": len(frames[0])},
    )
    return out
