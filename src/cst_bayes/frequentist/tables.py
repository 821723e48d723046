"""The five tables of Mitchell et al. (2024), computed from any agency-level dataset.

Each function takes a frame in the microdata contract (:func:`cst_bayes.data.microdata.load` or
:func:`cst_bayes.data.simulate.simulate`) and returns a tidy DataFrame in the shape of the
published table:

* :func:`table1` -- each approach and the outcome by stratum, with the Pearson chi-square
  test of the 2 x 4 table (Table 1);
* :func:`anova` -- one-way ANOVA of the approach count by stratum (text of the article);
* :func:`table2` -- phi (Pearson on 0/1) correlations of the nine approaches, 36 pairs in
  the published order (Table 2);
* :func:`fig1` -- each approach by ``any_cst``, chi-square of the 2 x 2 table (Figure 1);
* :func:`table3` -- the four models of ``any_cst`` (nine approaches; nine + stratum;
  ``n_approaches``; ``n_approaches`` + stratum), fitted as logistic regression (odds
  ratios, link ``logit``) and as Poisson regression with HC0 sandwich errors (risk ratios,
  link ``log``; Zou 2004's "modified Poisson"), because the article calls its models
  Poisson but reports odds ratios (Table 3).

:func:`compare` puts every reproduced number beside the printed one, with a ``matches``
flag (:mod:`cst_bayes.frequentist.published`); :func:`reproduce` runs all five tables at once. All tests and fits are scipy and
statsmodels calls; nothing here re-implements them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Literal, get_args

import numpy as np
import pandas as pd

from cst_bayes.core.blas import one_blas_thread
from cst_bayes.core.config import (
    APPROACHES,
    COUNT,
    OUTCOME,
    REFERENCE_STRATUM,
    STRATA,
    STRATUM,
)
from cst_bayes.core.errors import InputError

Link = Literal["logit", "log"]
LINKS: tuple[Link, ...] = get_args(Link)

#: Stratum order of the published Table 1 rows (``all`` first, then the frames 1-4).
TABLE1_STRATA: tuple[str, ...] = ("all", "1000+", "state", "50-999", "1-49")
TABLE1_COLUMNS = ["variable", "stratum", "n_yes", "n_stratum", "pct", "chi2", "dof", "p_value"]
ANOVA_COLUMNS = ["term", "group", "n", "mean", "sd", "df_num", "df_den", "F", "p_value"]
TABLE2_COLUMNS = ["row", "col", "r", "p_value"]
FIG1_COLUMNS = [
    "variable",
    "pct_no_case",
    "pct_case",
    "n_no_case",
    "n_case",
    "total_no_case",
    "total_case",
    "chi2",
    "p_value",
]
TABLE3_COLUMNS = [
    "analysis",
    "term",
    "adjusted_for_size",
    "link",
    "estimate",
    "ci_low",
    "ci_high",
    "p_value",
]
COMPARISON_COLUMNS = ["table", "item", "quantity", "link", "published", "reproduced", "matches"]
#: Non-reference strata as Table 3 names their terms (reference 1-49 omitted).
STRATUM_TERMS: tuple[str, ...] = tuple(f"stratum[{s}]" for s in STRATA if s != REFERENCE_STRATUM)
#: Two-sided 95% normal quantile for the Wald intervals.
Z95: float = 1.959963984540054


def _check_frame(df: pd.DataFrame, columns: Iterable[str]) -> None:
    columns = tuple(columns)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(
            f"frame lacks columns {missing}; pass data through cst_bayes.data.microdata.validate first",
            path=df.attrs.get("source"),
            column=missing[0],
        )
    if len(df) == 0:
        raise InputError("the frame has no rows", path=df.attrs.get("source"))
    # Cheap guards against frames that bypassed microdata.validate: an unknown stratum label
    # would silently drop out of every table, a 2 would be counted as "yes".
    src = df.attrs.get("source")
    if STRATUM in columns:
        bad = ~df[STRATUM].astype(str).isin(STRATA).to_numpy()
        if bad.any():
            raise InputError(
                f"unknown stratum labels {sorted(set(df[STRATUM].astype(str)[bad]))[:5]}",
                path=src,
                column=STRATUM,
                rows=list(np.flatnonzero(bad) + 1),
            )
    for c in columns:
        if c in (*APPROACHES, OUTCOME):
            bad = ~np.isin(df[c].to_numpy(), (0, 1))
            if bad.any():
                raise InputError(
                    "values other than 0/1", path=src, column=c, rows=list(np.flatnonzero(bad) + 1)
                )


def _strata(df: pd.DataFrame) -> pd.Series:
    """``stratum`` as plain strings (works for categorical or object input)."""
    return df[STRATUM].astype(str)


def _pearson_chi2(table: np.ndarray) -> tuple[float, int, float]:
    """Pearson chi-square (no continuity correction) of a contingency table.

    Empty columns (a stratum absent from the data) are dropped first because they carry no
    information and make scipy's expected frequencies zero; a table left with one row or one
    column has no test and gives NaN.
    """
    from scipy.stats import chi2_contingency

    table = np.asarray(table, dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    table = table[table.sum(axis=1) > 0, :]
    if table.shape[0] < 2 or table.shape[1] < 2:
        return math.nan, 0, math.nan
    res = chi2_contingency(table, correction=False)
    return float(res.statistic), int(res.dof), float(res.pvalue)


def table1(df: pd.DataFrame) -> pd.DataFrame:
    """Table 1: each approach and ``any_cst`` by stratum, with the 2 x 4 chi-square test.

    Parameters
    ----------
    df
        Agency-level frame (microdata contract).

    Returns
    -------
    pandas.DataFrame
        Columns ``variable, stratum, n_yes, n_stratum, pct, chi2, dof, p_value``; one row per
        variable (nine approaches, then ``any_cst``) and stratum (``all``, ``1000+``,
        ``state``, ``50-999``, ``1-49``). ``pct`` is 100 * n_yes / n_stratum (NaN for an empty
        stratum). The chi-square is Pearson's without continuity correction (the article's
        printed p-values are reproduced this way), repeated on every row of a variable.
    """
    variables = (*APPROACHES, OUTCOME)
    _check_frame(df, (STRATUM, *variables))
    strata = _strata(df)
    n_by = strata.value_counts().reindex(list(STRATA), fill_value=0)
    rows = []
    for var in variables:
        yes = df[var].astype(int).groupby(strata).sum().reindex(list(STRATA), fill_value=0)
        chi2, dof, p = _pearson_chi2(np.vstack([yes.to_numpy(), (n_by - yes).to_numpy()]))
        for s in TABLE1_STRATA:
            n_yes = int(yes.sum()) if s == "all" else int(yes[s])
            n_s = int(n_by.sum()) if s == "all" else int(n_by[s])
            pct = 100.0 * n_yes / n_s if n_s else math.nan
            rows.append((var, s, n_yes, n_s, pct, chi2, dof, p))
    return pd.DataFrame(rows, columns=TABLE1_COLUMNS)


def anova(df: pd.DataFrame) -> pd.DataFrame:
    """One-way ANOVA of ``n_approaches`` by stratum, with the group means and SDs.

    Returns
    -------
    pandas.DataFrame
        Columns ``term, group, n, mean, sd, df_num, df_den, F, p_value``: one row per stratum
        (Table 1 order) and one for ``all``; ``term`` is ``stratum``; the F test
        (:func:`scipy.stats.f_oneway` over the non-empty strata) is repeated on every row.
        ``sd`` is the sample SD (ddof=1).
    """
    from scipy.stats import f_oneway

    _check_frame(df, (STRATUM, COUNT))
    strata = _strata(df)
    y = df[COUNT].astype(float)
    groups = [y[strata == s].to_numpy() for s in STRATA]
    present = [g for g in groups if len(g)]
    k, n = len(present), len(y)
    if k >= 2 and n > k:
        res = f_oneway(*present)
        f, p = float(res.statistic), float(res.pvalue)
    else:
        f = p = math.nan
    rows = []
    for s in TABLE1_STRATA:
        g = y.to_numpy() if s == "all" else groups[STRATA.index(s)]
        sd = float(np.std(g, ddof=1)) if len(g) > 1 else math.nan
        mean = float(np.mean(g)) if len(g) else math.nan
        rows.append(("stratum", s, len(g), mean, sd, k - 1, n - k, f, p))
    return pd.DataFrame(rows, columns=ANOVA_COLUMNS)


def table2_pairs() -> list[tuple[str, str]]:
    """The 36 (row, col) pairs of Table 2 in printed order (lower triangle, by row)."""
    return [(APPROACHES[i], APPROACHES[j]) for i in range(1, len(APPROACHES)) for j in range(i)]


def table2(df: pd.DataFrame) -> pd.DataFrame:
    """Table 2: phi correlations (Pearson on 0/1) of the nine approaches with p-values.

    Returns
    -------
    pandas.DataFrame
        Columns ``row, col, r, p_value``; the 36 pairs in Table 2 order. A constant
        approach (no variation in the data) gives NaN.
    """
    from scipy.stats import pearsonr

    _check_frame(df, APPROACHES)
    x = {a: df[a].to_numpy(dtype=float) for a in APPROACHES}
    rows = []
    for r, c in table2_pairs():
        if np.ptp(x[r]) == 0 or np.ptp(x[c]) == 0:
            rows.append((r, c, math.nan, math.nan))
            continue
        res = pearsonr(x[r], x[c])
        rows.append((r, c, float(res.statistic), float(res.pvalue)))
    return pd.DataFrame(rows, columns=TABLE2_COLUMNS)


def fig1(df: pd.DataFrame, *, correction: bool = False) -> pd.DataFrame:
    """Figure 1: each approach in agencies without and with a CST case, 2 x 2 chi-square.

    Parameters
    ----------
    df
        Agency-level frame.
    correction
        Yates continuity correction. Default False: Pearson's chi-square, as for Table 1
        (the article does not say; the one printed figure, offense code "not significant",
        holds either way on the study's margins).

    Returns
    -------
    pandas.DataFrame
        Columns ``variable, pct_no_case, pct_case, n_no_case, n_case, total_no_case,
        total_case, chi2, p_value``. ``n_*`` count agencies *with the approach* in each
        group and ``total_*`` the group sizes, so ``pct_* = 100 * n_* / total_*``.
    """
    from scipy.stats import chi2_contingency

    _check_frame(df, (*APPROACHES, OUTCOME))
    case = df[OUTCOME].to_numpy().astype(bool)
    tot_case, tot_no = int(case.sum()), int((~case).sum())
    rows = []
    for a in APPROACHES:
        x = df[a].to_numpy().astype(bool)
        n_case, n_no = int((x & case).sum()), int((x & ~case).sum())
        table = np.array([[n_no, tot_no - n_no], [n_case, tot_case - n_case]], dtype=float)
        if (table.sum(axis=0) > 0).all() and (table.sum(axis=1) > 0).all():
            res = chi2_contingency(table, correction=correction)
            chi2, p = float(res.statistic), float(res.pvalue)
        else:
            chi2 = p = math.nan
        rows.append(
            (
                a,
                100.0 * n_no / tot_no if tot_no else math.nan,
                100.0 * n_case / tot_case if tot_case else math.nan,
                n_no,
                n_case,
                tot_no,
                tot_case,
                chi2,
                p,
            )
        )
    return pd.DataFrame(rows, columns=FIG1_COLUMNS)


def _design(
    df: pd.DataFrame,
) -> tuple[np.ndarray, dict[tuple[int, str], tuple[np.ndarray, list[str]]]]:
    """Outcome and the four design matrices of Table 3, keyed by (analysis, adjusted)."""
    strata = _strata(df).to_numpy()
    dummies = np.column_stack(
        [(strata == s).astype(float) for s in STRATA if s != REFERENCE_STRATUM]
    )
    ones = np.ones((len(df), 1))
    approaches = df[list(APPROACHES)].to_numpy(dtype=float)
    count = df[[COUNT]].to_numpy(dtype=float)
    designs = {
        (1, "no"): (np.hstack([ones, approaches]), list(APPROACHES)),
        (1, "yes"): (np.hstack([ones, approaches, dummies]), [*APPROACHES, *STRATUM_TERMS]),
        (2, "no"): (np.hstack([ones, count]), [COUNT]),
        (2, "yes"): (np.hstack([ones, count, dummies]), [COUNT, *STRATUM_TERMS]),
    }
    return df[OUTCOME].to_numpy(dtype=float), designs


def _fit(y: np.ndarray, x: np.ndarray, link: str) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Coefficients and standard errors of one Table 3 model (intercept first).

    ``logit``: maximum likelihood logistic regression (statsmodels ``Logit``, Newton).
    ``log``: Poisson GLM with HC0 sandwich errors (statsmodels ``GLM``), the robust
    "modified Poisson" estimator of a risk ratio for a binary outcome.
    Returns NaNs and a message instead of raising when a fit is impossible (e.g. perfect
    separation in a small simulated dataset), because replicate-level callers (posterior
    predictive checks) need a row for every replicate.
    """
    import statsmodels.api as sm

    k = x.shape[1]
    nan = np.full(k, np.nan)
    # Columns without variation (an absent stratum, an approach everyone has) are not
    # identified; statsmodels would return a pinv solution that looks like an estimate.
    if np.linalg.matrix_rank(x) < k:
        return nan, nan, "design matrix is rank deficient (a term has no variation)"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if link == "logit":
                res = sm.Logit(y, x).fit(disp=0, method="newton", maxiter=100)
                converged = bool(res.mle_retvals.get("converged", True))
            else:
                res = sm.GLM(y, x, family=sm.families.Poisson()).fit(cov_type="HC0")
                converged = bool(getattr(res, "converged", True))
            params, bse = np.asarray(res.params, float), np.asarray(res.bse, float)
        except Exception as exc:
            return nan, nan, f"{type(exc).__name__}: {exc}"
    msg = None
    sep = [w for w in caught if "separation" in str(w.message).lower()]
    if sep or not converged:
        msg = str(sep[0].message) if sep else "did not converge (separation? estimates diverge)"
    if not np.all(np.isfinite(bse)):
        msg = msg or "non-finite standard errors"
    return params, bse, msg


def table3(df: pd.DataFrame, link: Link | Iterable[Link] = LINKS) -> pd.DataFrame:
    """Table 3: the four models of ``any_cst`` as odds ratios and/or robust risk ratios.

    Parameters
    ----------
    df
        Agency-level frame.
    link
        ``"logit"`` (logistic regression, odds ratios), ``"log"`` (Poisson GLM with HC0
        sandwich errors, risk ratios) or a sequence of both (default, logit first).

    Returns
    -------
    pandas.DataFrame
        Columns ``analysis, term, adjusted_for_size, link, estimate, ci_low, ci_high,
        p_value``. ``analysis`` 1 is the nine approaches, 2 the count ``n_approaches``;
        ``adjusted_for_size`` ``no``/``yes`` adds the stratum dummies (reference ``1-49``,
        terms ``stratum[50-999]``, ``stratum[state]``, ``stratum[1000+]``). Estimates are
        exponentiated coefficients with 95% Wald intervals exp(b +/- 1.96 se) and two-sided
        normal p-values. Intercepts are not reported (as in the article). Models that
        cannot be fitted give NaN rows; their messages are in ``attrs['warnings']``.
    """
    from scipy.stats import norm

    links = (link,) if isinstance(link, str) else tuple(link)
    bad = [lk for lk in links if lk not in LINKS]
    if bad or not links:
        raise InputError(f"link must be one of {LINKS} (or a sequence of them), got {link!r}")
    _check_frame(df, (STRATUM, *APPROACHES, OUTCOME, COUNT))
    y, designs = _design(df)
    rows: list[tuple[object, ...]] = []
    notes: list[str] = []
    fits = {}
    with one_blas_thread():
        for lk in links:
            for key, (x, _terms) in designs.items():
                fits[(lk, key)] = _fit(y, x, lk)
    for lk in links:
        for (analysis, adjusted), (_x, terms) in designs.items():
            params, bse, msg = fits[(lk, (analysis, adjusted))]
            if msg:
                notes.append(f"analysis {analysis}, adjusted {adjusted}, link {lk}: {msg}")
            b, se = params[1:], bse[1:]
            with np.errstate(invalid="ignore", over="ignore"):
                z = b / se
                p = 2.0 * norm.sf(np.abs(z))
                est, lo, hi = np.exp(b), np.exp(b - Z95 * se), np.exp(b + Z95 * se)
            rows.extend(
                (analysis, t, adjusted, lk, est[i], lo[i], hi[i], p[i]) for i, t in enumerate(terms)
            )
    out = pd.DataFrame(rows, columns=TABLE3_COLUMNS)
    out.attrs["warnings"] = notes
    return out


def reproduce(df: pd.DataFrame, *, link: Link | Iterable[Link] = LINKS) -> dict[str, pd.DataFrame]:
    """All five tables at once: keys ``table1, anova, table2, fig1, table3``."""
    return {
        "table1": table1(df),
        "anova": anova(df),
        "table2": table2(df),
        "fig1": fig1(df),
        "table3": table3(df, link=link),
    }
