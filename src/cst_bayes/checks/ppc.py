"""Table-level posterior predictive checks: regenerate the published tables from the model.

For a fitted model and its data we draw replicated outcomes from the posterior predictive
and, for every replicate, recompute the statistics the article publishes:

``table1``
    Cases (``any_cst``) by stratum and the chi-square of the 2 x 4 table.
``fig1``
    For each approach: the share with the approach among agencies without and with a
    case, and the chi-square of the 2 x 2 table.
``table3``
    The four published models (nine approaches / approach count, without and with agency
    size) refitted on the replicate, both as logistic (OR) and Poisson (log link, PR)
    regressions.
``count``
    For models of the approach count (outcome ``n_approaches``): the distribution of the
    count 0-9 by stratum, its mean and SD by stratum, and the one-way ANOVA F.

Design. The core, :func:`ppc_from_replicates`, takes a data frame and a ``(draws, agencies)``
array of replicated outcomes; only :func:`ppc_tables` knows about fitted models. The
observed column is computed by the package's frequentist code
(:mod:`cst_bayes.frequentist`), exactly as the reproduction reports it. Recomputing it with
pandas/statsmodels for each of >= 500 replicates would take minutes, so the replicates go
through a vectorised path (closed-form counts and chi-squares, batched Newton-Raphson over
all replicates at once for the GLM refits, since the design matrix is fixed and only the
outcome changes); ``tests/test_ppc.py`` shows both paths agree on fixed replicates.

The posterior predictive p-value is Gelman, Meng & Stern's (1996):
``ppp = 2 * min(P(T_rep >= T_obs), P(T_rep <= T_obs))`` capped at 1 (two-sided), or the
one-sided upper tail for chi-square and F statistics, where only large values signal misfit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import pandas as pd

from cst_bayes.core.config import APPROACHES, COUNT, OUTCOME, STRATA, STRATUM
from cst_bayes.core.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

TableName = Literal["table1", "fig1", "table3", "count"]
ALL_TABLES: tuple[str, ...] = get_args(TableName)
#: The fixed columns of ``ppc.csv`` (issue 5), then the extra columns we add after them.
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
EXTRA_COLUMNS: tuple[str, ...] = ("flag", "n_rep", "sided")
#: Order of strata in the published Table 1 (and in our rows): total first, then by size.
TABLE1_STRATA: tuple[str, ...] = ("all", "1000+", "state", "50-999", "1-49")
MAX_COUNT = len(APPROACHES)
_DUMMIES = tuple(f"stratum[{s}]" for s in STRATA[1:])


# ----------------------------------------------------------------------------- helpers
def _check_tables(tables: Sequence[str] | None, outcome: str) -> tuple[str, ...]:
    default = ("count",) if outcome == COUNT else ("table1", "fig1", "table3")
    if tables is None:
        return default
    tables = tuple(tables)
    bad = [t for t in tables if t not in ALL_TABLES]
    if bad:
        raise InputError(
            f"unknown PPC table(s) {bad}; allowed: {list(ALL_TABLES)}", column="tables"
        )
    wrong = [t for t in tables if t not in default]
    if wrong:
        raise InputError(
            f"table(s) {wrong} cannot be checked for a model of {outcome!r} (allowed: {list(default)})",
            column="tables",
        )
    return tables


def _stratum_onehot(df: pd.DataFrame) -> np.ndarray:
    """(n, 4) indicator matrix of the strata, columns in ``config.STRATA`` order."""
    s = df[STRATUM].astype(str).to_numpy()
    return np.stack([(s == k) for k in STRATA], axis=1).astype(float)


def _pearson_chi2(obs: np.ndarray, *, yates: bool = False) -> np.ndarray:
    """Pearson chi-square of a batch of r x c tables ``obs[..., r, c]`` (scipy's formula).

    With ``yates`` (scipy's default for 2 x 2 tables) each ``|O - E|`` is reduced by
    ``min(0.5, |O - E|)``, exactly as :func:`scipy.stats.chi2_contingency` does. Tables with
    an empty row or column give NaN (the test is undefined there).
    """
    obs = np.asarray(obs, dtype=float)
    rows = obs.sum(axis=-1, keepdims=True)
    cols = obs.sum(axis=-2, keepdims=True)
    tot = obs.sum(axis=(-2, -1), keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        exp = rows * cols / tot
        diff = obs - exp
        if yates:
            diff = np.sign(diff) * np.maximum(np.abs(diff) - 0.5, 0.0)
        stat = (diff**2 / exp).sum(axis=(-2, -1))
    empty = (rows == 0).any(axis=(-2, -1)) | (cols == 0).any(axis=(-2, -1))
    return np.where(empty, np.nan, stat)


# ----------------------------------------------------------------------------- batched GLMs
def batched_glm(
    X: np.ndarray,
    Y: np.ndarray,
    *,
    link: Literal["logit", "log"] = "logit",
    max_iter: int = 100,
    tol: float = 1e-10,
) -> np.ndarray:
    """Maximum-likelihood coefficients of one GLM per row of ``Y``, all at once.

    Newton-Raphson (= IRLS for these canonical links) vectorised over replicates: the
    design ``X`` is shared, so each iteration is two einsums and one batched solve.

    Parameters
    ----------
    X
        (n, p) design matrix with an intercept column.
    Y
        (R, n) binary outcomes (logit) or counts (log link: Poisson likelihood).
    link
        ``"logit"`` (binomial) or ``"log"`` (Poisson, the article's "Poisson regression").
    max_iter, tol
        Newton iterations and the convergence tolerance on the largest coefficient step.

    Returns
    -------
    numpy.ndarray
        (R, p) coefficients; rows that did not converge (separation, an all-0 outcome: the
        MLE does not exist) are NaN.
    """
    if link not in ("logit", "log"):
        raise InputError(f"link must be 'logit' or 'log', got {link!r}", column="link")
    X = np.asarray(X, dtype=float)
    Y = np.atleast_2d(np.asarray(Y, dtype=float))
    R, p = Y.shape[0], X.shape[1]
    ybar = np.clip(Y.mean(axis=1), 1e-3, 1 - 1e-3 if link == "logit" else np.inf)
    beta = np.zeros((R, p))
    # Warm start: the fit to the average replicate (a fractional outcome is a valid
    # quasi-likelihood target), itself started at the intercept-only MLE. Every replicate's
    # MLE is close to it, so Newton needs a handful of steps and rarely any damping.
    ybar_all = Y.mean(axis=0, keepdims=True)
    if R > 1:
        b0 = batched_glm(X, ybar_all, link=link, max_iter=max_iter, tol=tol)
        if np.isfinite(b0).all():
            beta[:] = b0
        else:
            beta[:, 0] = np.log(ybar / (1 - ybar)) if link == "logit" else np.log(ybar)
    else:
        beta[:, 0] = np.log(ybar / (1 - ybar)) if link == "logit" else np.log(ybar)
    done = np.zeros(R, dtype=bool)
    # Outer products of the design rows, once: the batched Hessian X' diag(w_r) X is then a
    # single matrix product (R, n) @ (n, p*p), which BLAS does far faster than an einsum.
    xx = (X[:, :, None] * X[:, None, :]).reshape(X.shape[0], p * p)

    def loglik(b: np.ndarray, y: np.ndarray) -> np.ndarray:
        eta = np.clip(b @ X.T, -50.0, 50.0)
        if link == "logit":
            return (y * eta - np.logaddexp(0.0, eta)).sum(axis=1)
        return (y * eta - np.exp(eta)).sum(axis=1)

    ll = loglik(beta, Y)
    for _ in range(max_iter):
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        b, y = beta[act], Y[act]
        eta = np.clip(b @ X.T, -50.0, 50.0)  # (r, n)
        if link == "logit":
            mu = 1.0 / (1.0 + np.exp(-eta))
            w = mu * (1.0 - mu)
        else:
            mu = np.exp(eta)
            w = mu
        grad = (y - mu) @ X  # (r, p)
        hess = (w @ xx).reshape(-1, p, p)
        try:
            step = np.linalg.solve(hess, grad[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = np.stack([np.linalg.lstsq(h, g, rcond=None)[0] for h, g in zip(hess, grad)])
        # Damped Newton: halve the step until the log-likelihood does not fall. A full
        # Newton step from the intercept-only start overshoots for designs with large
        # stratum effects (ORs ~ 50), as in the article's adjusted models.
        ll0 = ll[act]
        t = np.ones(act.size)
        ll1 = loglik(b + step, y)
        for _h in range(30):
            worse = ~(ll1 >= ll0 - 1e-12 * np.abs(ll0))
            if not worse.any():
                break
            t[worse] *= 0.5
            ll1[worse] = loglik(b[worse] + t[worse, None] * step[worse], y[worse])
        step = t[:, None] * step
        ll[act] = ll1
        beta[act] = b + step
        small = np.max(np.abs(step), axis=1) < tol * (1.0 + np.max(np.abs(b), axis=1))
        # Coefficients running off to infinity: (quasi-)separation, no finite MLE; stop.
        diverged = np.max(np.abs(beta[act]), axis=1) > 25
        done[act[small | diverged]] = True
    out = beta.copy()
    # Not converged or running off to infinity: quasi-separation, no finite MLE.
    bad = ~done | (np.abs(beta) > 25).any(axis=1) | ~np.isfinite(beta).all(axis=1)
    out[bad] = np.nan
    return out


def table3_designs(df: pd.DataFrame) -> dict[tuple[str, str], tuple[np.ndarray, list[str]]]:
    """Design matrices of the four published Table 3 models.

    Returns ``{(analysis, adjusted_for_size): (X, terms)}`` with ``X`` including an
    intercept as its first column and ``terms`` naming the other columns as in
    :func:`cst_bayes.frequentist.table3` (``stratum[LABEL]`` dummies, reference ``1-49``).
    """
    oh = _stratum_onehot(df)[:, 1:]
    ones = np.ones((len(df), 1))
    xa = df[list(APPROACHES)].to_numpy(dtype=float)
    xc = df[[COUNT]].to_numpy(dtype=float)
    return {
        ("1", "no"): (np.hstack([ones, xa]), list(APPROACHES)),
        ("1", "yes"): (np.hstack([ones, xa, oh]), [*APPROACHES, *_DUMMIES]),
        ("2", "no"): (np.hstack([ones, xc]), [COUNT]),
        ("2", "yes"): (np.hstack([ones, xc, oh]), [COUNT, *_DUMMIES]),
    }


def _t3_statistic(analysis: str, adjusted: str, link: str) -> str:
    return f"analysis{analysis}_{'adjusted' if adjusted == 'yes' else 'unadjusted'}_{'OR' if link == 'logit' else 'PR'}"


# ----------------------------------------------------------------------------- statistics
@dataclass
class _Stat:
    table: str
    statistic: str
    stratum_or_term: str
    sided: str  # "two" or "upper"


def statistic_keys(df: pd.DataFrame, tables: Sequence[str]) -> list[_Stat]:
    """The statistics checked for ``tables``, in output order."""
    keys: list[_Stat] = []
    if "table1" in tables:
        keys += [_Stat("table1", "n_yes", s, "two") for s in TABLE1_STRATA]
        keys.append(_Stat("table1", "chi2", "all", "upper"))
    if "fig1" in tables:
        for a in APPROACHES:
            keys += [
                _Stat("fig1", "pct_no_case", a, "two"),
                _Stat("fig1", "pct_case", a, "two"),
                _Stat("fig1", "chi2", a, "upper"),
            ]
    if "table3" in tables:
        designs = table3_designs(df)
        for link in ("logit", "log"):
            for (an, adj), (_, terms) in designs.items():
                keys += [_Stat("table3", _t3_statistic(an, adj, link), t, "two") for t in terms]
    if "count" in tables:
        for s in STRATA:
            keys += [_Stat("count", f"n_count={k}", s, "two") for k in range(MAX_COUNT + 1)]
        keys += [_Stat("count", "mean", s, "two") for s in STRATA]
        keys += [_Stat("count", "sd", s, "two") for s in STRATA]
        keys.append(_Stat("count", "anova_F", "all", "upper"))
    return keys


def batched_statistics(
    df: pd.DataFrame,
    y_rep: np.ndarray,
    *,
    tables: Sequence[str],
    yates: bool = False,
) -> np.ndarray:
    """The checked statistics of every replicate, vectorised: an (R, S) array.

    Columns follow :func:`statistic_keys`. ``y_rep`` replaces the outcome column
    (``any_cst`` for the table1/fig1/table3 statistics, ``n_approaches`` for ``count``);
    every covariate is taken from ``df``. ``yates`` applies the continuity correction to the
    2 x 2 chi-squares of Figure 1; off by default, as in :func:`cst_bayes.frequentist.fig1`.
    """
    Y = np.atleast_2d(np.asarray(y_rep, dtype=float))
    if Y.shape[1] != len(df):
        raise InputError(f"replicates have {Y.shape[1]} agencies but the data have {len(df)} rows")
    oh = _stratum_onehot(df)
    n_s = oh.sum(axis=0)
    cols: list[np.ndarray] = []
    if "table1" in tables:
        yes = Y @ oh  # (R, 4) in STRATA order
        by = {s: yes[:, j] for j, s in enumerate(STRATA)}
        by["all"] = yes.sum(axis=1)
        cols += [by[s] for s in TABLE1_STRATA]
        obs = np.stack([yes, n_s[None, :] - yes], axis=1)  # (R, 2, 4)
        cols.append(_pearson_chi2(obs))
    if "fig1" in tables:
        n_case = Y.sum(axis=1)
        n_no = len(df) - n_case
        for a in APPROACHES:
            x = df[a].to_numpy(dtype=float)
            a_case = Y @ x
            a_no = x.sum() - a_case
            with np.errstate(divide="ignore", invalid="ignore"):
                cols.append(100.0 * a_no / n_no)
                cols.append(100.0 * a_case / n_case)
            # rows: approach no/yes; columns: no case / case (orientation does not matter)
            tab = np.stack(
                [
                    np.stack([n_no - a_no, n_case - a_case], axis=-1),
                    np.stack([a_no, a_case], axis=-1),
                ],
                axis=1,
            )
            cols.append(_pearson_chi2(tab, yates=yates))
    if "table3" in tables:
        designs = table3_designs(df)
        for link in ("logit", "log"):
            for X, terms in designs.values():
                beta = batched_glm(X, Y, link=link)
                cols += [np.exp(beta[:, 1 + i]) for i in range(len(terms))]
    if "count" in tables:
        counts = np.stack(
            [(k == Y).astype(float) @ oh for k in range(MAX_COUNT + 1)], axis=-1
        )  # (R,4,10)
        for j in range(len(STRATA)):
            cols += [counts[:, j, k] for k in range(MAX_COUNT + 1)]
        sums = Y @ oh
        means = sums / n_s
        ss = (Y**2) @ oh - n_s * means**2  # within-stratum sum of squares
        with np.errstate(divide="ignore", invalid="ignore"):
            sds = np.sqrt(np.maximum(ss, 0.0) / (n_s - 1))
        cols += [means[:, j] for j in range(len(STRATA))]
        cols += [sds[:, j] for j in range(len(STRATA))]
        grand = Y.mean(axis=1, keepdims=True)
        ssb = ((means - grand) ** 2 * n_s).sum(axis=1)
        ssw = ss.sum(axis=1)
        k, n = len(STRATA), len(df)
        with np.errstate(divide="ignore", invalid="ignore"):
            cols.append((ssb / (k - 1)) / (ssw / (n - k)))
    return np.stack(cols, axis=1) if cols else np.empty((Y.shape[0], 0))


def frequentist_statistics(df: pd.DataFrame, *, tables: Sequence[str]) -> np.ndarray:
    """The checked statistics of one dataset computed by :mod:`cst_bayes.frequentist`.

    This is the code the reproduction reports with; the observed column of the PPC comes
    from here. Returns a vector ordered like :func:`statistic_keys`.
    """
    from cst_bayes import frequentist as fq

    keys = statistic_keys(df, tables)
    val: dict[tuple[str, str, str], float] = {}
    if "table1" in tables:
        t1 = fq.table1(df)
        t1 = t1[t1["variable"] == OUTCOME]
        for _, r in t1.iterrows():
            val[("table1", "n_yes", str(r["stratum"]))] = float(r["n_yes"])
        val[("table1", "chi2", "all")] = float(t1["chi2"].iloc[0])
    if "fig1" in tables:
        f1 = fq.fig1(df).set_index("variable")
        for a in APPROACHES:
            for c in ("pct_no_case", "pct_case", "chi2"):
                val[("fig1", c, a)] = float(f1.loc[a, c])
    if "table3" in tables:
        t3 = fq.table3(df)
        for _, r in t3.iterrows():
            stat = _t3_statistic(str(r["analysis"]), str(r["adjusted_for_size"]), str(r["link"]))
            val[("table3", stat, str(r["term"]))] = float(r["estimate"])
    if "count" in tables:
        y = df[COUNT].to_numpy()
        s = df[STRATUM].astype(str).to_numpy()
        for st in STRATA:
            ys = y[s == st]
            for k in range(MAX_COUNT + 1):
                val[("count", f"n_count={k}", st)] = float((ys == k).sum())
        an = fq.anova(df)
        val[("count", "anova_F", "all")] = float(an["F"].iloc[0])
        means, sds = _anova_groups(an)
        for st in STRATA:
            val[("count", "mean", st)] = means[st]
            val[("count", "sd", st)] = sds[st]
    return np.array([val.get((k.table, k.statistic, k.stratum_or_term), np.nan) for k in keys])


def _anova_groups(an: pd.DataFrame) -> tuple[dict[str, float], dict[str, float]]:
    """Group means and SDs (ddof=1) as :func:`frequentist.anova` reports them."""
    g = an.set_index("group")
    return (
        {s: float(g.loc[s, "mean"]) for s in STRATA},
        {s: float(g.loc[s, "sd"]) for s in STRATA},
    )


def published_values(keys: Sequence[_Stat]) -> np.ndarray:
    """The article's printed value for each statistic, NaN where it prints none.

    Table 1 outcome counts, Table 3 ORs (the article prints one number per term; we set it
    beside both links, since the question is which one it agrees with), and the one
    Figure 1 figure given in the text (offense code: 54.7% without, 49.5% with a case).
    """
    from cst_bayes.data import published

    t1 = published.load_table1()
    t1 = t1[t1["variable"] == OUTCOME].set_index("stratum")["n_yes"]
    t3 = published.load_table3()
    pub: dict[tuple[str, str, str], float] = {}
    for s, v in t1.items():
        pub[("table1", "n_yes", str(s))] = float(v)
    for _, r in t3.iterrows():
        for link in ("logit", "log"):
            stat = _t3_statistic(str(r["analysis"]), str(r["adjusted_for_size"]), link)
            pub[("table3", stat, r["term"])] = float(r["or"])
    pub[("fig1", "pct_no_case", "offense_code")] = 54.7
    pub[("fig1", "pct_case", "offense_code")] = 49.5
    return np.array([pub.get((k.table, k.statistic, k.stratum_or_term), np.nan) for k in keys])


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
) -> tuple[list[_Stat], np.ndarray, np.ndarray]:
    """Keys, replicated and observed statistics of one dataset."""
    tabs = _check_tables(tables, outcome)
    y_rep = np.atleast_2d(np.asarray(y_rep))
    above = None
    if outcome == OUTCOME:
        y_rep, above = _binary_replicates(y_rep)
    keys = statistic_keys(df, tabs)
    t_rep = batched_statistics(df, y_rep, tables=tabs)
    t_obs = (
        frequentist_statistics(df, tables=tabs) if observed is None else np.asarray(observed, float)
    )
    if above is not None:
        keys.append(_Stat("table1", "n_above_1", "all", "two"))
        t_rep = np.column_stack([t_rep, above])
        t_obs = np.append(t_obs, 0.0)
    return keys, t_rep, t_obs


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
) -> pd.DataFrame:
    """Table-level PPC from replicated outcomes (the model-free core).

    Parameters
    ----------
    df
        The data the model was fitted on (microdata contract).
    y_rep
        (R, n) replicated values of ``outcome`` for the ``n`` rows of ``df``.
    outcome
        ``"any_cst"`` (checks Table 1's outcome row, Figure 1 and Table 3) or
        ``"n_approaches"`` (checks the count distribution, means, SDs and ANOVA F).
    tables
        A subset of the tables allowed for the outcome (default: all of them).
    prob
        Width of the central posterior predictive interval (default 95%).
    observed
        Observed statistics, if already computed; by default the frequentist code computes
        them from ``df``.

    Returns
    -------
    pandas.DataFrame
        Columns ``table, statistic, stratum_or_term, observed, published, rep_median,
        rep_low, rep_high, ppp``, then ``flag`` (observed outside the interval), ``n_rep``
        (replicates where the statistic is defined), ``sided`` (``two`` or ``upper``),
        ``observed_min``, ``observed_max`` (equal to ``observed`` for one dataset).
    """
    _check_common(outcome, prob)
    keys, t_rep, t_obs = _prepare(df, y_rep, outcome, tables, observed)
    return _summarise(keys, t_rep, t_obs[None, :], prob=prob)


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


# ----------------------------------------------------------------------------- model glue
def model_outcome(fit: Any) -> str:
    """The outcome a fitted model (Fit, PooledFit or InferenceData) describes."""
    spec = getattr(fit, "spec", None)
    if spec is not None and getattr(spec, "outcome", None):
        return str(spec.outcome)
    idata = getattr(fit, "idata", fit)
    attrs: dict[str, Any] = {}
    post = getattr(idata, "posterior", None)
    if post is not None:
        attrs = dict(post.attrs)
    if attrs.get("outcome"):
        return str(attrs["outcome"])
    if attrs.get("spec_toml"):
        import tomllib

        try:
            return str(tomllib.loads(str(attrs["spec_toml"]))["model"]["outcome"])
        except (tomllib.TOMLDecodeError, KeyError):
            pass
    for group in ("observed_data", "log_likelihood"):
        ds = getattr(idata, group, None)
        if ds is not None:
            names = [str(v) for v in ds.data_vars]
            if COUNT in names:
                return COUNT
            if OUTCOME in names:
                return OUTCOME
    raise InputError("cannot tell the model's outcome (no spec, no 'outcome' attribute)")


def _as_fit(fit_or_idata: Any) -> Any:
    """A models.Fit (or PooledFit) from a Fit, PooledFit, path or InferenceData."""
    from cst_bayes.bayes import models

    if hasattr(fit_or_idata, "idata") and hasattr(fit_or_idata, "spec"):
        return fit_or_idata
    if isinstance(fit_or_idata, (str, Path)):
        return models.read_fit(fit_or_idata)
    if hasattr(fit_or_idata, "posterior"):
        # models.fit embeds the spec's TOML text; read_fit rebuilds the spec the same way
        attrs = fit_or_idata.posterior.attrs
        if "spec_toml" not in attrs:
            raise InputError("the InferenceData has no embedded model spec (spec_toml attribute)")
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / f"{attrs.get('model', 'model')}.toml"
            p.write_text(str(attrs["spec_toml"]), encoding="utf-8")
            spec = models.load_spec(p)
        return _MemberFit(spec=spec, idata=fit_or_idata, xbar_=None)
    raise InputError(f"cannot use a {type(fit_or_idata).__name__} as a fitted model")


@dataclass
class _MemberFit:
    """What :func:`cst_bayes.bayes.models.replicate` needs of a fit: spec, idata, centring means."""

    spec: Any
    idata: Any
    xbar_: np.ndarray | None

    @property
    def xbar(self) -> np.ndarray:
        if self.xbar_ is not None:
            return self.xbar_
        return np.asarray(self.idata.constant_data["xbar"].to_numpy(), dtype=float)


def _member_of(fit: Any, df: pd.DataFrame) -> int:
    """The ensemble member (1-based) a pooled fit was fitted on ``df`` as, by data hash."""
    from cst_bayes.bayes.models import _data_hash

    hashes = str(fit.idata.posterior.attrs.get("member_data_hashes", "")).split(",")
    h = _data_hash(df, fit.spec)
    if h not in hashes:
        raise InputError(
            "these data are not one of the reconstructions the pooled fit was fitted on; "
            "pass the whole ensemble (the folder) instead",
            path=df.attrs.get("source"),
        )
    return hashes.index(h) + 1


def is_pooled(fit: Any) -> bool:
    """Whether a fit (or InferenceData) is stacked over reconstructions."""
    idata = getattr(fit, "idata", fit)
    return "reconstruction" in getattr(idata, "posterior", {}).coords


def ppc_tables(
    fit_or_idata: Any,
    df: pd.DataFrame | Sequence[pd.DataFrame],
    *,
    n_draws: int = 500,
    seed: int = 0,
    prob: float = 0.95,
    tables: Sequence[TableName] | None = None,
) -> pd.DataFrame:
    """Posterior predictive checks of the published tables for a fitted model.

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
                d[list(fit.spec.predictors)].to_numpy(float).mean(axis=0)
                if fit.spec.predictors
                else np.zeros(0),
            )
            for m, d in zip(members, frames)
        ]
    else:
        if len(frames) != 1:
            raise InputError(
                "a single (not pooled) fit takes one dataset; fit the ensemble with fit_ensemble"
            )
        per = n_draws
        fits = [fit]
    seeds = np.random.SeedSequence(seed).spawn(len(frames))
    results = []
    for f, d, ss in zip(fits, frames, seeds):
        y_rep = models.replicate(f, d, n_draws=per, seed=int(ss.generate_state(1)[0]))
        results.append(_prepare(d, y_rep, outcome, tables))
    # Only the trailing n_above_1 check (Poisson working likelihood) can be missing for a
    # member whose replicates happened to stay within 0/1: there it is 0.
    keys_all = max((r[0] for r in results), key=len)
    width = len(keys_all)
    reps = [
        t if t.shape[1] == width else np.column_stack([t, np.zeros(len(t))]) for _, t, _ in results
    ]
    obs = [o if o.size == width else np.append(o, 0.0) for _, _, o in results]
    out = _summarise(keys_all, np.vstack(reps), np.vstack(obs), prob=prob)
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


def suppress_small_cells(
    ppc: pd.DataFrame,
    *,
    threshold: int | None = None,
    n_by_stratum: dict[str, int] | None = None,
) -> pd.DataFrame:
    """Restricted-data mode: hide observed values that disclose fewer than 5 agencies.

    An observed agency count (``n_yes``, ``n_count=K``) is replaced by ``"<5"`` when it or
    its complement in the group (``n - count``, which discloses the few agencies *without*
    the attribute as surely) is below the threshold. A Figure 1 percentage is blanked when
    the count it implies (share x group size, group sizes from the ``n_yes`` row of
    ``all``) or its complement is small. The same holds for ``observed_min`` and
    ``observed_max``. Replicated quantiles come from the model, not from rows of data, and
    stay.

    Parameters
    ----------
    ppc
        Output of :func:`ppc_tables`.
    threshold
        Default :data:`cst_bayes.core.config.SMALL_CELL`.
    n_by_stratum
        Agencies per stratum (and ``all``); default ``ppc.attrs['n_by_stratum']``.
    """
    from cst_bayes.core.config import SMALL_CELL

    thr = SMALL_CELL if threshold is None else threshold
    sizes = dict(n_by_stratum or ppc.attrs.get("n_by_stratum") or {})
    out = ppc.copy()
    stat, where = out["statistic"], out["stratum_or_term"]
    is_count = (stat == "n_yes") | stat.str.startswith("n_count=")
    total = where.map(lambda g: sizes.get(str(g), np.inf)).astype(float)
    # Figure 1 shares: implied counts need the group sizes (agencies with / without a case)
    n_case = out.loc[(stat == "n_yes") & (where == "all"), "observed"]
    n_all = sizes.get("all", np.nan)
    if len(n_case):
        case = float(n_case.iloc[0])
        total = total.where(stat != "pct_case", case).where(stat != "pct_no_case", n_all - case)
    is_pct = stat.isin(["pct_case", "pct_no_case"])
    for col in ("observed", "observed_min", "observed_max"):
        if col not in out:
            continue
        v = pd.to_numeric(out[col], errors="coerce")
        count = v.where(~is_pct, v * total / 100.0).round()
        small = (is_count | is_pct) & ((count < thr) | (total - count < thr))
        # an unknown group size (NaN) cannot be checked: suppress the share to be safe
        small |= is_pct & total.isna()
        vals = out[col].astype(object)
        vals[small & is_count] = f"<{thr}"
        vals[small & is_pct] = np.nan
        out[col] = vals
    out.attrs["suppressed_cells"] = int(
        ((out["observed"] == f"<{thr}") | (is_pct & out["observed"].isna())).sum()
    )
    return out


# ----------------------------------------------------------------------------- plotting
_TITLES = {
    "table1": "Table 1: cases by stratum, chi-square",
    "fig1": "Figure 1: approach by any case",
    "table3": "Table 3: refitted ORs (logit) / PRs (log link)",
    "count": "Approach count by stratum, ANOVA F",
}


def plot_ppc_tables(
    ppc: pd.DataFrame, *, title: str | None = None, synthetic: bool | None = None
) -> Figure:
    """Observed vs replicated statistics, one panel per table.

    Every statistic is drawn on a common standardised axis, ``(value - rep_median) /
    ((rep_high - rep_low) / 2)``, so the replicated 95% interval is the band [-1, 1]
    whatever the statistic's units; the observed value (dot; red when flagged) and the
    published value (open diamond) are placed on the same axis.

    Parameters
    ----------
    ppc
        Output of :func:`ppc_tables` / :func:`ppc_from_replicates`.
    title
        Figure title (e.g. the model name).
    synthetic
        Whether the data are synthetic reconstructions (default: ``ppc.attrs['synthetic']``);
        then the title says so.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    synthetic = bool(ppc.attrs.get("synthetic", False)) if synthetic is None else synthetic
    tables = [t for t in ALL_TABLES if t in set(ppc["table"])]
    if not tables:
        raise InputError("nothing to plot: the PPC table is empty")
    heights = [max(2.0, 0.16 * (ppc["table"] == t).sum()) for t in tables]
    fig, axes = plt.subplots(
        len(tables),
        1,
        figsize=(8.5, sum(heights) + 1.2),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for ax, t in zip(axes[:, 0], tables):
        d = ppc[ppc["table"] == t].reset_index(drop=True)
        half = (d["rep_high"] - d["rep_low"]) / 2
        half = half.where(half > 0, 1.0)
        obs = pd.to_numeric(d["observed"], errors="coerce")
        z_obs = ((obs - d["rep_median"]) / half).clip(-4, 4)
        z_pub = ((d["published"] - d["rep_median"]) / half).clip(-4, 4)
        yy = np.arange(len(d))[::-1]
        ax.axvspan(-1, 1, color="0.88", zorder=0, label="replicated 95% interval")
        ax.axvline(0, color="0.5", lw=0.8)
        flag = d["flag"].to_numpy(dtype=bool)
        ax.scatter(z_obs[~flag], yy[~flag], s=14, color="tab:blue", zorder=3, label="observed")
        ax.scatter(
            z_obs[flag], yy[flag], s=18, color="tab:red", zorder=3, label="observed (flagged)"
        )
        ax.scatter(
            z_pub,
            yy,
            s=26,
            marker="D",
            facecolors="none",
            edgecolors="k",
            zorder=4,
            label="published",
        )
        ax.set_yticks(yy)
        ax.set_yticklabels(
            [f"{s} | {r}" for s, r in zip(d["statistic"], d["stratum_or_term"])], fontsize=5.5
        )
        ax.set_xlim(-4.2, 4.2)
        ax.set_title(_TITLES.get(t, t), fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    axes[-1, 0].set_xlabel(
        "(value - replicated median) / half-width of the replicated 95% interval "
        "(values beyond +/-4 drawn at the edge)",
        fontsize=8,
    )
    axes[0, 0].legend(fontsize=6, loc="lower right")
    head = title or "Posterior predictive check of the published tables"
    if synthetic:
        head = f"SYNTHETIC DATA (reconstruction) - {head}"
    fig.suptitle(head, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    return fig


# ----------------------------------------------------------------------------- files
def summary_text(ppc: pd.DataFrame) -> str:
    """A few lines: how many statistics, which fall outside the replicated interval."""
    head = f"{len(ppc)} statistics, {int(ppc['flag'].sum())} outside the replicated 95% interval"
    if ppc.attrs.get("synthetic"):
        head = "SYNTHETIC data (reconstruction): " + head
    lines = [head]
    for r in ppc[ppc["flag"]].itertuples(index=False):
        lines.append(
            f"  {r.table:<7} {r.statistic:<24} {r.stratum_or_term:<16} observed {r.observed:.4g} "
            f"replicated [{r.rep_low:.4g}, {r.rep_high:.4g}] ppp {r.ppp:.3f}"
        )
    return "\n".join(lines)


def write_ppc(
    fit_path: str | Path,
    data: str | Path,
    out_dir: str | Path,
    *,
    n_draws: int = 500,
    seed: int = 0,
    prob: float = 0.95,
) -> dict[str, Any]:
    """Run :func:`ppc_tables` for a fit file and write ``ppc.csv`` and ``ppc.png``.

    Parameters
    ----------
    fit_path
        ``MODEL.nc`` from ``cst-bayes fit`` (one dataset, or pooled over an ensemble).
    data
        The data file it was fitted on, or the ensemble folder for a pooled fit (a pooled
        fit with one member's file checks that member).
    out_dir
        Output folder (created if missing); files are written atomically.
    n_draws, seed, prob
        See :func:`ppc_tables`.

    Returns
    -------
    dict
        ``table`` (as written), ``paths``, ``summary_text``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cst_bayes.bayes import models
    from cst_bayes.core.config import SYNTHETIC_BANNER
    from cst_bayes.core.fileio import atomic_path, write_csv
    from cst_bayes.data.ensemble import load_frames

    fit = models.read_fit(fit_path)
    frames = load_frames(data)
    if Path(data).is_dir() and not is_pooled(fit):
        raise InputError(
            "an ensemble folder needs a fit pooled over it (cst-bayes fit MODEL --data DIR)",
            path=data,
        )
    table = ppc_tables(
        fit, frames if Path(data).is_dir() else frames[0], n_draws=n_draws, seed=seed, prob=prob
    )
    restricted = any(
        bool(d.attrs.get("restricted", False)) and not d.attrs.get("synthetic") for d in frames
    )
    written = suppress_small_cells(table) if restricted else table
    head = [
        f"cst-bayes ppc of {Path(fit_path).name} on {data}: {table.attrs['n_draws']} replicates, seed {seed}"
    ]
    if table.attrs.get("synthetic"):
        head.insert(0, SYNTHETIC_BANNER)
    if restricted:
        head.append("restricted microdata: observed counts below 5 suppressed as '<5'")
    out = Path(out_dir)
    paths = {"ppc": write_csv(out / "ppc.csv", written, header_comment="\n".join(head))}
    fig = plot_ppc_tables(
        written,
        title=f"{fit.spec.name}: observed vs replicated",
        synthetic=bool(table.attrs.get("synthetic")),
    )
    with atomic_path(out / "ppc.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    paths["figure"] = out / "ppc.png"
    return {"table": written, "paths": paths, "summary_text": summary_text(table)}
