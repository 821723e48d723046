"""Checks outside the sufficient statistics, and which statistics a model has fitted.

A logistic (or Poisson log-link) model's posterior depends on the outcome only through
``Z'y``, ``Z`` its design (stratum intercepts, predictors, stratum x predictor columns for
varying slopes). Every published statistic of the any_cst tables is a function of ``Z'y``
for the main model (cases by stratum, approach x case totals, the Table 3 refits, whose
score equations are linear in ``y`` through columns inside the span of ``Z``), so the
posterior predictive reproduces them whatever the fit: a check on them cannot fail. The
statistics here are not functions of ``Z'y`` for the models without stratum-specific
slopes:

``approach_by_case``
    Per stratum and approach, cases among agencies with (``cases_with``) and without
    (``cases_without``) the approach: the case cells of the within-stratum 2 x 2 tables
    (their no-case cells follow from the fixed approach margins).
``rate_by_count``
    Case rate by number of approaches 0-9 (``rate_n_approaches=K``), pooled (``all``) and
    by stratum; NaN where no agency has K approaches.
``calibration``
    Cases per decile of the model's posterior mean risk (``cases``, ``decile=K``).
``loo_pit``
    ``ks``: the largest distance between the expected ECDF of the randomised LOO-PIT values
    and the uniform (PSIS weights from :func:`arviz.psislw`), one-sided; Bernoulli models.

:func:`fitted_by_model` marks, for a design ``Z``, which statistics depend on the outcome
only through linear functions of ``y`` inside the span of ``Z`` (the sufficient statistic).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cst_bayes.checks.tablestats import (
    TABLE1_STRATA,
    FrameDesign,
    Stat,
    frame_design,
)
from cst_bayes.core.config import APPROACHES, STRATA
from cst_bayes.core.errors import InputError

OUTSIDE_TABLES: tuple[str, ...] = ("approach_by_case", "rate_by_count", "calibration", "loo_pit")
N_DECILES = 10
#: Grid on which the LOO-PIT expected ECDF is compared with the uniform.
_PIT_GRID = np.linspace(0.0, 1.0, 201)


def outside_keys(tables: Sequence[str]) -> list[Stat]:
    """Keys of the statistics outside the published tables, in output order."""
    keys: list[Stat] = []
    if "approach_by_case" in tables:
        for s in STRATA:
            for a in APPROACHES:
                keys.append(Stat("approach_by_case", "cases_with", f"{a}[{s}]", "two"))
                keys.append(Stat("approach_by_case", "cases_without", f"{a}[{s}]", "two"))
    if "rate_by_count" in tables:
        for s in TABLE1_STRATA:
            keys += [
                Stat("rate_by_count", f"rate_n_approaches={k}", s, "two")
                for k in range(len(APPROACHES) + 1)
            ]
    if "calibration" in tables:
        keys += [
            Stat("calibration", "cases", f"decile={k}", "two") for k in range(1, N_DECILES + 1)
        ]
    if "loo_pit" in tables:
        keys.append(Stat("loo_pit", "ks", "all", "upper"))
    return keys


def risk_deciles(risk: np.ndarray) -> np.ndarray:
    """Decile (1-10) of each agency's posterior mean risk, right-closed bins as pandas.qcut."""
    risk = np.asarray(risk, dtype=float)
    edges = np.quantile(risk, np.linspace(0, 1, N_DECILES + 1)[1:-1])
    return np.searchsorted(edges, risk, side="left") + 1


def distinct_columns(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct columns of a 2-D array, bit for bit: ``(first, inverse)`` with
    ``a[:, first[inverse]]`` equal to ``a`` (``first`` in order of first appearance)."""
    cols = np.ascontiguousarray(np.asarray(a).T)
    index: dict[bytes, int] = {}
    first: list[int] = []
    inverse = np.empty(len(cols), dtype=np.intp)
    for i, c in enumerate(cols):
        j = index.setdefault(c.tobytes(), len(first))
        if j == len(first):
            first.append(i)
        inverse[i] = j
    return np.asarray(first, dtype=np.intp), inverse


def loo_probabilities(p_draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LOO predictive P(y_i = 1) when agency i's outcome is 1 and when it is 0.

    ``p_draws`` is (S, n): P(y_i = 1 | draw s) of a Bernoulli model. The leave-one-out
    posterior reweights the draws by ``1 / p(y_i | draw)`` (PSIS-smoothed by
    :func:`arviz.psislw`); the weights depend on ``y_i`` only, so two sets cover every
    replicate. Returns ``(q_if_1, q_if_0)``, each (n,).

    PSIS smooths each agency's weights on their own, so agencies with the same column of
    probabilities (the same stratum and design row: on the shipped data a few hundred
    patterns among 1,306 agencies) get the same weights: each distinct column is smoothed
    once and the result expanded to its agencies.
    """
    import warnings

    import arviz as az

    p_all = np.clip(np.asarray(p_draws, dtype=float), 1e-12, 1 - 1e-12)
    first, inverse = distinct_columns(p_all)
    # (S, U) in p_all's memory order: the products below then have the layout they would
    # have on every agency, and their sums are the same to the last bit
    fortran = p_all.flags.f_contiguous and not p_all.flags.c_contiguous
    p = np.asarray(p_all[:, first], order="F" if fortran else "C")
    out = []
    for ll in (np.log(p), np.log1p(-p)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # large k: reported by the comparison stage
            lw, _ = az.psislw(-ll.T)  # (U, S), normalised log weights
        out.append((np.exp(lw) * p.T).sum(axis=1)[inverse])
    return out[0], out[1]


def loo_pit_distance(y: np.ndarray, q1: np.ndarray, q0: np.ndarray) -> np.ndarray:
    """Largest |expected ECDF - uniform| of the randomised LOO-PIT, per row of ``y``.

    For a 0/1 outcome with LOO probability ``q`` the randomised PIT is uniform on
    ``(0, 1 - q)`` when ``y = 0`` and on ``(1 - q, 1)`` when ``y = 1``, and uniform on (0, 1)
    under the model. Averaging the PIT's CDF over agencies (instead of drawing the
    randomisation) makes the statistic deterministic.
    """
    Y = np.atleast_2d(np.asarray(y, dtype=float))
    x = _PIT_GRID[:, None]  # (G, 1)
    c0 = 1.0 - q0[None, :]  # F(0) when y_i = 0
    c1 = 1.0 - q1[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        cdf0 = np.clip(np.where(c0 > 0, x / c0, 1.0), 0, 1)  # (G, n)
        cdf1 = np.clip(np.where(c1 < 1, (x - c1) / (1 - c1), 0.0), 0, 1)
    # mean over agencies of the PIT CDF: y-weighted mix of the two
    ecdf = (Y @ cdf1.T + (1 - Y) @ cdf0.T) / Y.shape[1]  # (R, G)
    return np.max(np.abs(ecdf - _PIT_GRID[None, :]), axis=1)


def outside_statistics(
    df: pd.DataFrame | FrameDesign,
    y_rep: np.ndarray,
    *,
    tables: Sequence[str],
    risk: np.ndarray | None = None,
    loo_q: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The statistics of :func:`outside_keys` for every row of ``y_rep``: an (R, S) array.

    ``risk`` (n,) is needed for ``calibration``, ``loo_q`` (from :func:`loo_probabilities`)
    for ``loo_pit``. ``df`` may be the frame's :class:`~cst_bayes.checks.tablestats.FrameDesign`.
    """
    fd = frame_design(df)
    Y = np.atleast_2d(np.asarray(y_rep, dtype=float))
    if Y.shape[1] != fd.n:
        raise InputError(f"replicates have {Y.shape[1]} agencies but the data have {fd.n} rows")
    oh = fd.onehot
    cols: list[np.ndarray] = []
    if "approach_by_case" in tables:
        for j in range(len(STRATA)):
            for a in APPROACHES:
                x = fd.column(a) * oh[:, j]
                cols.append(Y @ x)
                cols.append(Y @ ((1.0 - fd.column(a)) * oh[:, j]))
    if "rate_by_count" in tables:
        k_of = fd.counts
        groups = np.column_stack([np.ones(fd.n), oh])  # all, then STRATA order
        order = {s: (0 if s == "all" else 1 + STRATA.index(s)) for s in TABLE1_STRATA}
        for s in TABLE1_STRATA:
            g = groups[:, order[s]]
            for k in range(len(APPROACHES) + 1):
                m = g * (k_of == k)
                n = m.sum()
                cols.append(Y @ m / n if n else np.full(Y.shape[0], np.nan))
    if "calibration" in tables:
        if risk is None:
            raise InputError("the calibration check needs the posterior mean risk", column="risk")
        dec = risk_deciles(risk)
        cols += [Y @ (dec == k).astype(float) for k in range(1, N_DECILES + 1)]
    if "loo_pit" in tables:
        if loo_q is None:
            raise InputError(
                "the LOO-PIT check needs per-draw probabilities of a Bernoulli model",
                column="p_draws",
            )
        cols.append(loo_pit_distance(np.minimum(Y, 1), *loo_q))
    return np.stack(cols, axis=1) if cols else np.empty((Y.shape[0], 0))


# ----------------------------------------------------------------------------- sufficiency
def _dependence(
    df: pd.DataFrame | FrameDesign,
    key: Stat,
    risk: np.ndarray | None,
    deciles: np.ndarray | None = None,
) -> np.ndarray | None:
    """(n, k) vectors v with the statistic a function of v'y only; None when not linear in y.

    ``deciles`` are ``risk_deciles(risk)``, if already computed.
    """
    fd = frame_design(df)
    oh = fd.onehot
    ones = np.ones((fd.n, 1))
    t, stat, where = key.table, key.statistic, key.stratum_or_term
    if t == "table1":
        if stat == "n_yes":
            return ones if where == "all" else oh[:, [STRATA.index(where)]]
        if stat == "chi2":
            return oh
        return None  # n_above_1: values above 1 are not linear in y
    if t == "fig1":
        return np.column_stack([ones, fd.column(where)])
    if t == "table3":
        an = stat[len("analysis")]
        adj = "no" if "_unadjusted_" in stat else "yes"
        return fd.table3[(an, adj)][0]
    if t == "count":
        if stat == "mean":
            return oh[:, [STRATA.index(where)]]
        return None  # count distribution, SDs, F: not linear in the count
    if t == "approach_by_case":
        a, s = where[:-1].split("[", 1)
        x = fd.column(a)
        x = x if stat == "cases_with" else 1.0 - x
        return (x * oh[:, STRATA.index(s)])[:, None]
    if t == "rate_by_count":
        k = int(stat.split("=")[1])
        g = ones[:, 0] if where == "all" else oh[:, STRATA.index(where)]
        return (g * (fd.counts == k))[:, None]
    if t == "calibration" and risk is not None:
        k = int(where.split("=")[1])
        dec = risk_deciles(risk) if deciles is None else deciles
        return (dec == k).astype(float)[:, None]
    return None


def fitted_by_model(
    df: pd.DataFrame | FrameDesign,
    keys: Sequence[Stat],
    design: np.ndarray | None,
    *,
    risk: np.ndarray | None = None,
) -> np.ndarray:
    """Whether each statistic is a function of the model's sufficient statistic ``Z'y``.

    ``design`` is ``Z`` (n, p) of a canonical-link exponential-family model; None (model
    unknown, or not of that kind) marks nothing. A statistic counts as fitted when every
    linear functional of ``y`` it depends on lies in the column span of ``Z`` (checked by
    projection, to 1e-8 relative).
    """
    out = np.zeros(len(keys), dtype=bool)
    if design is None:
        return out
    fd = frame_design(df)
    deciles = None if risk is None else risk_deciles(risk)
    Z = np.asarray(design, dtype=float)
    u, sv, _ = np.linalg.svd(Z, full_matrices=False)
    Q = u[:, sv > sv.max() * 1e-10]
    for i, k in enumerate(keys):
        v = _dependence(fd, k, risk, deciles)
        if v is None:
            continue
        resid = v - Q @ (Q.T @ v)
        out[i] = np.abs(resid).max() <= 1e-8 * max(1.0, np.abs(v).max())
    return out
