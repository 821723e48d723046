"""Reconstruct agency-level datasets that agree with every published table (SYNTHETIC).

The study's microdata are restricted. The article publishes Table 1 (exact counts by
stratum), Table 2 (36 phi correlations, two decimals, significance stars), Table 3 (the ORs
and 95% CIs of four logistic models, one decimal) and one Figure 1 figure (108 of the 218
agencies with a case had an offense code). This module builds 1,306-row datasets in the
microdata contract that reproduce *all* of those numbers after rounding, and an ensemble of
them whose members differ where the tables are silent.

Method (one member)
-------------------
1. **Targets as integer windows.** The margins of every 0/1 column are fixed by Table 1, so
   each printed correlation (and its stars) becomes a window of allowed counts ``n11`` of
   the pair; Figure 1 fixes ``t_offense_code = 108`` (approach among cases) and its
   significance statements give windows for the other ``t_j``. The Table 3 targets are
   windows on the log scale: the estimate's rounding interval, and for each CI bound the
   union of its rounding interval and +/-1% (log scale). A row whose windows cannot hold
   together for any (estimate, SE) is *reported, not forced*.
2. **Member-specific start.** Per stratum, a latent Gaussian copula with a correlation matrix
   drawn around the tetrachoric version of Table 2 (shrunk towards a within-stratum level and
   mixed with a random one-factor structure whose weight and loadings are drawn per member),
   thresholded by rank so every Table 1 count is exact; ``any_cst`` is then drawn by rank
   from a logistic score with stratum-specific slopes scattered around the published
   adjusted log-ORs. These draws are what the tables do not pin down: they make members
   differ in the within-stratum dependence, not just in the seed.
3. **Simulated annealing** (numba) with moves that swap one column's values between two rows
   of the same stratum, so every stratum margin stays exact at every step (Table 1 is a hard
   constraint). Correlations and ``t_j`` are tracked exactly as integer counts. The four
   logistic fits are tracked incrementally: one Newton step from the current coefficients
   with the inverse information updated by Sherman-Morrison for the changed rows, and exact
   Newton refits periodically and whenever the energy is near zero. Windows are shrunk by a
   safety margin during the run; the run stops as soon as every forced target is inside its
   shrunk window after an exact refit, so the member keeps as much of its own start as the
   targets allow.
4. The member is then checked with :mod:`cst_bayes.frequentist` (statsmodels), which gives the
   fidelity table.

Every file written here says SYNTHETIC (:data:`cst_bayes.core.config.SYNTHETIC_BANNER`).
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cst_bayes.core.config import (
    AGENCY_ID,
    APPROACHES,
    COUNT,
    N_BY_STRATUM,
    OUTCOME,
    PUBLISHED_DIR,
    STRATA,
    STRATUM,
    SYNTHETIC_BANNER,
)
from cst_bayes.core.errors import InputError

#: Columns of the annealer's state: nine approaches then the outcome.
COLUMNS: tuple[str, ...] = (*APPROACHES, OUTCOME)
K = len(APPROACHES)
Y = K  # column index of any_cst in the state matrix
#: The four Table 3 models: (analysis, adjusted_for_size) -> model index in the kernel.
MODELS: tuple[tuple[int, str], ...] = ((1, "no"), (1, "yes"), (2, "no"), (2, "yes"))
N_PARAMS = np.array([1 + K, 1 + K + 3, 2, 5], dtype=np.int64)
PMAX = 1 + K + 3
Z95 = 1.959963984540054
#: Figure 1 (text of the article): agencies with a case that had an offense code.
FIG1_OFFENSE_CODE_CASES = 108
FIDELITY_COLUMNS = [
    "table",
    "item",
    "quantity",
    "published",
    "achieved",
    "lower",
    "upper",
    "forced",
    "agrees",
]
METHOD = (
    "latent Gaussian copula per stratum (member-specific dependence drawn around the "
    "tetrachoric Table 2) + simulated annealing with within-stratum single-column swaps "
    "(Table 1 exact by construction), integer windows for Table 2 and Figure 1, incremental "
    "Newton/Sherman-Morrison tracking of the four logistic models with exact refits"
)


# --------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------


@dataclass
class Targets:
    """Every published number a member must reproduce, as windows the annealer can use.

    Attributes
    ----------
    counts
        ``(4, 10)`` int: count of each column (nine approaches, ``any_cst``) per stratum
        (``config.STRATA`` order).
    n_by_stratum
        ``(4,)`` int.
    phi_lo, phi_hi
        ``(9, 9)`` int windows for the pair counts ``n11`` (symmetric; diagonal unused).
    t_lo, t_hi
        ``(9,)`` int windows for ``t_j``, the count of approach *j* among agencies with a case.
    t3
        Table 3 rows: one dict per published row with model index, coefficient index, the
        log-scale windows of estimate/ci_low/ci_high and whether the CI is forced.
    phi_rows
        Table 2 rows with their windows (for the fidelity report).
    """

    counts: np.ndarray
    n_by_stratum: np.ndarray
    phi_lo: np.ndarray
    phi_hi: np.ndarray
    t_lo: np.ndarray
    t_hi: np.ndarray
    t3: list[dict[str, Any]]
    phi_rows: list[dict[str, Any]] = field(default_factory=list)
    fig1_rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.n_by_stratum.sum())


def _read(name: str) -> pd.DataFrame:
    """A published CSV as printed text (the frequentist module's reader: one source of truth)."""
    from cst_bayes.frequentist import _read_published

    return _read_published(name)


def _pearson_p(n11: np.ndarray, a: int, b: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Phi and the two-sided p-value of Pearson's r (t test, n-2 df), as scipy.stats.pearsonr."""
    from scipy.stats import t as tdist

    r = (n * n11 - a * b) / math.sqrt(a * (n - a) * b * (n - b))
    with np.errstate(divide="ignore", invalid="ignore"):
        tt = r * np.sqrt((n - 2) / np.maximum(1e-300, 1 - r * r))
    return r, 2 * tdist.sf(np.abs(tt), n - 2)


def _stars_ok(stars: str, p: np.ndarray) -> np.ndarray:
    """Which p-values give the printed stars, with a 2% safety margin on the p thresholds.

    The frequentist comparison prints ``*`` for p < .05, so a legible blank means p >= .05.
    """
    if stars == "***":
        return p < 0.001 * 0.98
    if stars == "**":
        return (p >= 0.001 * 1.02) & (p < 0.01 * 0.98)
    if stars == "*":
        return (p >= 0.01 * 1.02) & (p < 0.05 * 0.98)
    return p >= 0.05 * 1.02


def _window(mask: np.ndarray, grid: np.ndarray, what: str) -> tuple[int, int]:
    idx = np.flatnonzero(mask)
    if len(idx) == 0:
        raise InputError(f"no integer count reproduces {what}", path=PUBLISHED_DIR)
    if np.any(np.diff(idx) != 1):  # windows of a monotone statistic are intervals
        raise InputError(f"allowed counts for {what} are not an interval", path=PUBLISHED_DIR)
    return int(grid[idx[0]]), int(grid[idx[-1]])


def _log_window(printed: str, rel: float | None) -> tuple[float, float]:
    """Log-scale interval of a number printed with its decimals (closed rounding interval).

    ``rel`` widens it to +/- ``rel`` on the log scale (the "within 1%" rule for CI bounds).
    """
    v = float(printed)
    dec = len(printed.split(".")[1]) if "." in printed else 0
    half = 0.5 * 10.0 ** (-dec)
    lo, hi = math.log(max(v - half, 1e-12)), math.log(v + half)
    if rel is not None:
        lo, hi = min(lo, math.log(v) - rel), max(hi, math.log(v) + rel)
    return lo, hi


@functools.lru_cache(maxsize=1)
def load_targets(ci_rel: float = 0.01) -> Targets:
    """Read the published tables (``config.PUBLISHED_DIR``) and turn them into windows.

    Parameters
    ----------
    ci_rel
        Tolerance of a CI bound on the log scale beyond its rounding interval (0.01 = 1%).

    Returns
    -------
    Targets
    """
    from scipy.stats import chi2_contingency

    t1 = _read("table1_approaches_by_stratum.csv")
    counts = np.zeros((len(STRATA), len(COLUMNS)), dtype=np.int64)
    nst = np.zeros(len(STRATA), dtype=np.int64)
    for rec in t1.itertuples(index=False):
        if rec.stratum == "all":
            continue
        if rec.variable not in COLUMNS or rec.stratum not in STRATA:
            raise InputError(
                f"unknown variable/stratum {rec.variable}/{rec.stratum}",
                path=PUBLISHED_DIR / "table1_approaches_by_stratum.csv",
                column="variable",
            )
        s = STRATA.index(rec.stratum)
        counts[s, COLUMNS.index(rec.variable)] = int(rec.n_yes)
        nst[s] = int(rec.n_stratum)
    if dict(zip(STRATA, nst.tolist())) != N_BY_STRATUM:
        raise InputError(
            "stratum sizes disagree with config.N_BY_STRATUM",
            path=PUBLISHED_DIR / "table1_approaches_by_stratum.csv",
            column="n_stratum",
        )
    n = int(nst.sum())
    tot = counts.sum(axis=0)

    # Table 2: windows of n11 from the rounding interval of r and the stars.
    t2 = _read("table2_phi_correlations.csv")
    phi_lo = np.zeros((K, K), dtype=np.int64)
    phi_hi = np.full((K, K), n, dtype=np.int64)
    phi_rows = []
    for rec in t2.itertuples(index=False):
        i, j = APPROACHES.index(rec.row), APPROACHES.index(rec.col)
        a, b = int(tot[i]), int(tot[j])
        grid = np.arange(max(0, a + b - n), min(a, b) + 1)
        r, p = _pearson_p(grid.astype(float), a, b, n)
        v = float(rec.r)
        # strict inside the rounding interval: r exactly on x.xx5 would be a coin toss
        ok = (r > v - 0.005 + 1e-9) & (r < v + 0.005 - 1e-9)
        legible = rec.stars_legible.strip().lower() == "yes"
        if legible:
            ok &= _stars_ok(rec.stars.strip(), p)
        lo, hi = _window(ok, grid, f"Table 2 {rec.row}-{rec.col} r={rec.r}{rec.stars}")
        phi_lo[i, j] = phi_lo[j, i] = lo
        phi_hi[i, j] = phi_hi[j, i] = hi
        phi_rows.append(
            dict(
                row=rec.row,
                col=rec.col,
                r=v,
                stars=rec.stars.strip() if legible else None,
                lo=lo,
                hi=hi,
            )
        )

    # Figure 1: offense code among cases = 108 (text); every other approach significantly
    # (Pearson chi-square, p < .05) more common among agencies with a case.
    ncase = int(tot[Y])
    t_lo = np.zeros(K, dtype=np.int64)
    t_hi = np.zeros(K, dtype=np.int64)
    fig1_rows = []
    for j, a_name in enumerate(APPROACHES):
        a = int(tot[j])
        grid = np.arange(max(0, a + ncase - n), min(a, ncase) + 1)
        if a_name == "offense_code":
            ok = grid == FIG1_OFFENSE_CODE_CASES
            what = "offense code among cases = 108 (not significant)"
        else:
            ok = np.zeros(len(grid), dtype=bool)
            for q, t in enumerate(grid):
                tab = np.array([[a - t, n - ncase - (a - t)], [t, ncase - t]], dtype=float)
                if (tab.sum(0) > 0).all() and (tab.sum(1) > 0).all():
                    pv = chi2_contingency(tab, correction=False).pvalue
                    ok[q] = (t / ncase > (a - t) / (n - ncase)) and pv < 0.05 * 0.98
            what = "significantly more common among agencies with a case"
        lo, hi = _window(ok, grid, f"Figure 1 {a_name}")
        t_lo[j], t_hi[j] = lo, hi
        fig1_rows.append(dict(variable=a_name, lo=lo, hi=hi, what=what))

    # Table 3: log-scale windows; CI rows whose windows cannot hold together are not forced.
    t3df = _read("table3_odds_ratios.csv")
    terms_by_model = {
        0: list(APPROACHES),
        1: [*APPROACHES, "stratum[50-999]", "stratum[state]", "stratum[1000+]"],
        2: [COUNT],
        3: [COUNT, "stratum[50-999]", "stratum[state]", "stratum[1000+]"],
    }
    t3 = []
    for rec in t3df.itertuples(index=False):
        m = MODELS.index((int(rec.analysis), rec.adjusted_for_size))
        c = 1 + terms_by_model[m].index(rec.term)
        est = _log_window(rec[3], None)
        lo = _log_window(rec.ci_low, ci_rel)
        hi = _log_window(rec.ci_high, ci_rel)
        # (b - z se, b + z se) in (lo, hi) with b in est needs (lo + hi)/2 to meet est.
        mid_lo, mid_hi = (lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2
        width = min(est[1], mid_hi) - max(est[0], mid_lo)
        ci_forced = width > 0.1 * (est[1] - est[0])
        t3.append(
            dict(
                analysis=int(rec.analysis),
                term=rec.term,
                adjusted_for_size=rec.adjusted_for_size,
                model=m,
                coef=c,
                printed=(rec[3], rec.ci_low, rec.ci_high),
                windows=(est, lo, hi),
                ci_forced=bool(ci_forced),
            )
        )
    return Targets(
        counts=counts,
        n_by_stratum=nst,
        phi_lo=phi_lo,
        phi_hi=phi_hi,
        t_lo=t_lo,
        t_hi=t_hi,
        t3=t3,
        phi_rows=phi_rows,
        fig1_rows=fig1_rows,
    )


def _kernel_targets(tg: Targets, margin: float) -> tuple[np.ndarray, ...]:
    """Table 3 targets as arrays for the kernel, windows shrunk by ``margin`` of their width.

    Returns model index, coefficient index, windows ``(n, 3, 2)`` and weights ``(n, 3)``
    (0 weight = reported only) and forced flags ``(n, 3)``.
    """
    nt = len(tg.t3)
    tm = np.zeros(nt, np.int64)
    tc = np.zeros(nt, np.int64)
    win = np.zeros((nt, 3, 2))
    forced = np.zeros((nt, 3), np.bool_)
    for q, row in enumerate(tg.t3):
        tm[q], tc[q] = row["model"], row["coef"]
        for k, (lo, hi) in enumerate(row["windows"]):
            w = hi - lo
            # tiny windows (OR 47.5 -> 0.002 on the log scale) get a smaller absolute margin
            d = min(margin * w, 0.25 * w)
            win[q, k] = (lo + d, hi - d)
            forced[q, k] = k == 0 or row["ci_forced"]
    return tm, tc, win, forced


# --------------------------------------------------------------------------------------
# The numba kernel
# --------------------------------------------------------------------------------------


def _kernel() -> dict[str, Any]:
    """The compiled kernel (numba, loaded from its on-disk cache after the first compile)."""
    from cst_bayes.reconstruct import kernel as rk

    return dict(
        anneal=rk.anneal, refit=rk.refit, count_energy=rk.count_energy, model_energy=rk.model_energy
    )


# --------------------------------------------------------------------------------------
# Member-specific start
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def tetrachoric_table2() -> np.ndarray:
    """The latent (tetrachoric) correlation matrix implied by Table 2 and the pooled margins."""
    from scipy.optimize import brentq
    from scipy.stats import multivariate_normal, norm

    tg = load_targets()
    n = tg.n
    p = tg.counts.sum(axis=0)[:K] / n
    R = np.eye(K)
    t2 = _read("table2_phi_correlations.csv")
    for rec in t2.itertuples(index=False):
        i, j = APPROACHES.index(rec.row), APPROACHES.index(rec.col)
        p11 = p[i] * p[j] + float(rec.r) * math.sqrt(p[i] * (1 - p[i]) * p[j] * (1 - p[j]))
        hi, hj = norm.ppf(p[i]), norm.ppf(p[j])

        def f(rho: float) -> float:
            return multivariate_normal([0, 0], [[1, rho], [rho, 1]]).cdf([hi, hj]) - p11

        R[i, j] = R[j, i] = brentq(f, -0.95, 0.95, xtol=1e-6)
    return R


def _nearest_corr(R: np.ndarray, floor: float = 0.02) -> np.ndarray:
    w, v = np.linalg.eigh((R + R.T) / 2)
    R = (v * np.maximum(w, floor)) @ v.T
    d = np.sqrt(np.diag(R))
    return R / np.outer(d, d)


def draw_dependence(rng: np.random.Generator) -> dict[str, Any]:
    """Draw one member's within-stratum dependence (what the tables do not fix).

    Returns per stratum a latent correlation matrix: the tetrachoric Table 2 shrunk by a
    factor ``shrink`` (pooling over strata inflates correlations) and mixed with weight
    ``omega`` with a one-factor matrix of random loadings; and per stratum slopes of the
    outcome score, scattered (SD ``beta_sd``) around the published adjusted log-ORs.
    """
    R0 = tetrachoric_table2()
    shrink = float(rng.uniform(0.55, 1.0))
    omega = float(rng.uniform(0.0, 0.6))
    beta_sd = float(rng.uniform(0.1, 0.5))
    tg = load_targets()
    b_pub = np.array([math.log(float(r["printed"][0])) for r in tg.t3 if r["model"] == 1][:K])
    mats, slopes, loads = [], [], []
    for _ in STRATA:
        lam = rng.uniform(0.1, 0.8, size=K)
        F = np.outer(lam, lam)
        np.fill_diagonal(F, 1.0)
        R = (1 - omega) * (shrink * R0 + (1 - shrink) * np.eye(K)) + omega * F
        mats.append(_nearest_corr(R))
        slopes.append(b_pub + rng.normal(0.0, beta_sd, size=K))
        loads.append(lam)
    return dict(
        shrink=shrink, omega=omega, beta_sd=beta_sd, corr=mats, slopes=slopes, loadings=loads
    )


def initial_state(
    rng: np.random.Generator, dep: dict[str, Any], tg: Targets | None = None
) -> np.ndarray:
    """A start with every Table 1 count exact: ``(n, 10)`` int8, rows ordered by stratum.

    Each column is thresholded by rank within its stratum (the top ``n_yes`` latent values
    get a 1), so counts are exact whatever the latent draw.
    """
    tg = tg or load_targets()
    blocks = []
    for s, ns in enumerate(tg.n_by_stratum):
        ns = int(ns)
        Z = rng.standard_normal((ns, K)) @ np.linalg.cholesky(dep["corr"][s]).T
        V = np.zeros((ns, K + 1), dtype=np.int8)
        for j in range(K):
            V[np.argsort(-Z[:, j], kind="stable")[: tg.counts[s, j]], j] = 1
        # outcome by rank of a logistic score (Gumbel-top-k draw without replacement)
        score = V[:, :K] @ dep["slopes"][s] + rng.logistic(size=ns)
        V[np.argsort(-score, kind="stable")[: tg.counts[s, Y]], Y] = 1
        blocks.append(V)
    return np.vstack(blocks)


def swap_move(V: np.ndarray, strat: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One annealing move (pure Python reference, used by the property tests).

    Swaps one column's values between two rows of one stratum; returns a new array.
    """
    V = V.copy()
    c = int(rng.integers(V.shape[1]))
    s = int(rng.integers(len(STRATA)))
    rows = np.flatnonzero(strat == s)
    ones = rows[V[rows, c] == 1]
    zeros = rows[V[rows, c] == 0]
    if len(ones) and len(zeros):
        a, b = rng.choice(ones), rng.choice(zeros)
        V[a, c], V[b, c] = 0, 1
    return V


# --------------------------------------------------------------------------------------
# One member
# --------------------------------------------------------------------------------------


def _to_frame(V: np.ndarray, strat: np.ndarray) -> pd.DataFrame:
    from cst_bayes.data.microdata import stratum_dtype

    df = pd.DataFrame(V.astype(np.int8), columns=list(COLUMNS))
    df.insert(0, STRATUM, pd.Categorical([STRATA[s] for s in strat], dtype=stratum_dtype()))
    df.insert(0, AGENCY_ID, [f"S{i + 1:04d}" for i in range(len(df))])
    df[COUNT] = df[list(APPROACHES)].sum(axis=1).astype(np.int8)
    df.attrs.update(synthetic=True, restricted=False)
    return df


def fidelity(df: pd.DataFrame, tg: Targets | None = None) -> pd.DataFrame:
    """Every target recomputed with :mod:`cst_bayes.frequentist`, beside the published value.

    Returns
    -------
    pandas.DataFrame
        Columns ``table, item, quantity, published, achieved, lower, upper, forced, agrees``.
        ``lower``/``upper`` bound the accepted values (for Table 3 on the OR scale);
        ``forced`` is False for CI bounds of rows whose published numbers cannot hold
        together (reported, not forced).
    """
    from cst_bayes import frequentist as fq

    tg = tg or load_targets()
    rows: list[tuple] = []
    t1 = fq.table1(df).set_index(["variable", "stratum"])
    for s_i, s in enumerate(STRATA):
        for j, v in enumerate(COLUMNS):
            got = int(t1.loc[(v, s), "n_yes"])
            want = int(tg.counts[s_i, j])
            rows.append(("table1", f"{v}|{s}", "n_yes", want, got, want, want, True, got == want))
    t2 = fq.table2(df).set_index(["row", "col"])
    for r in tg.phi_rows:
        got_r = float(t2.loc[(r["row"], r["col"]), "r"])
        p = float(t2.loc[(r["row"], r["col"]), "p_value"])
        ok_r = abs(got_r - r["r"]) <= 0.005
        rows.append(
            (
                "table2",
                f"{r['row']}|{r['col']}",
                "r",
                r["r"],
                got_r,
                r["r"] - 0.005,
                r["r"] + 0.005,
                True,
                bool(ok_r),
            )
        )
        if r["stars"] is not None:
            stars = fq._stars(p)
            rows.append(
                (
                    "table2",
                    f"{r['row']}|{r['col']}",
                    "stars",
                    r["stars"],
                    stars,
                    np.nan,
                    np.nan,
                    True,
                    stars == r["stars"],
                )
            )
    f1 = fq.fig1(df).set_index("variable")
    for r in tg.fig1_rows:
        v = r["variable"]
        got = int(f1.loc[v, "n_case"])
        if v == "offense_code":
            rows.append(
                ("fig1", v, "n_case", FIG1_OFFENSE_CODE_CASES, got, 108, 108, True, got == 108)
            )
        else:
            p = float(f1.loc[v, "p_value"])
            ok = p < 0.05 and f1.loc[v, "pct_case"] > f1.loc[v, "pct_no_case"]
            rows.append(
                (
                    "fig1",
                    v,
                    "significant_more_common",
                    "yes",
                    "yes" if ok else "no",
                    np.nan,
                    np.nan,
                    True,
                    bool(ok),
                )
            )
    t3 = fq.table3(df, link="logit").set_index(["analysis", "term", "adjusted_for_size"])
    for r in tg.t3:
        rec = t3.loc[(r["analysis"], r["term"], r["adjusted_for_size"])]
        for k, (q, col) in enumerate(
            (("estimate", "estimate"), ("ci_low", "ci_low"), ("ci_high", "ci_high"))
        ):
            lo, hi = r["windows"][k]
            got = float(rec[col])
            ok = bool(np.isfinite(got) and lo - 1e-12 <= math.log(got) <= hi + 1e-12)
            rows.append(
                (
                    "table3",
                    f"{r['analysis']}|{r['term']}|{r['adjusted_for_size']}",
                    q,
                    float(r["printed"][k]),
                    got,
                    math.exp(lo),
                    math.exp(hi),
                    k == 0 or r["ci_forced"],
                    ok,
                )
            )
    out = pd.DataFrame(rows, columns=FIDELITY_COLUMNS)
    out["published"] = out["published"].astype(str)
    out["achieved"] = out["achieved"].astype(str)
    return out


#: Annealing stages (T start, T end, log-OR scale of one energy unit, proposals): the Table 3
#: tolerances tighten from 0.05 to 0.005 log units per energy unit while the temperature falls.
STAGES: tuple[tuple[float, float, float, int], ...] = (
    (1.0, 0.3, 0.05, 300_000),
    (0.3, 0.1, 0.02, 300_000),
    (0.2, 0.05, 0.01, 300_000),
)
#: The final stage, repeated (a fresh cooling each time) until every forced target holds.
FINAL_STAGE: tuple[float, float, float, int] = (0.1, 0.003, 0.005, 300_000)
#: Reheating between final stages when one stalls.
REHEAT_STAGE: tuple[float, float, float, int] = (0.3, 0.05, 0.01, 200_000)
#: Energy of one count outside a Table 2 / Figure 1 window (Table 3: one unit per ``scale``).
COUNT_WEIGHT = 2.0


def _anneal_member(
    Vi: np.ndarray,
    strat: np.ndarray,
    tg: Targets,
    rng: np.random.Generator,
    *,
    max_rounds: int,
    margin: float,
    p_target: float,
    steps_scale: float = 1.0,
) -> tuple[np.ndarray, int, int, int, float, int]:
    """Run the stage schedule on one start; returns (state, status, steps, accepted, energy, stages)."""
    k = _kernel()
    sstart = np.concatenate([[0], np.cumsum(tg.n_by_stratum)[:-1]]).astype(np.int64)
    send = np.cumsum(tg.n_by_stratum).astype(np.int64)
    # Small strata carry the stratum ORs: propose there more often than their share of rows.
    sw = tg.n_by_stratum.astype(float) ** 0.6
    scum = np.cumsum(sw / sw.sum())
    scum[-1] = 1.0
    cw = np.full(K + 1, 0.7 / K)
    cw[Y] = 0.3
    ccum = np.cumsum(cw)
    ccum[-1] = 1.0
    C = Vi.T @ Vi
    tm, tc, win, forced = _kernel_targets(tg, margin)
    betas = np.zeros((4, 13))
    hinvs = np.zeros((4, 13, 13))
    for m in range(4):
        betas[m, 0] = math.log(tg.counts[:, Y].sum() / (tg.n - tg.counts[:, Y].sum()))
    status, steps, acc, energy = 0, 0, 0, math.inf
    # When the final stage stalls (typically one count off by one, which no single move can
    # fix without pushing an OR out), go back to a coarser tolerance and cool again.
    stages = list(STAGES)
    for r in range(max_rounds):
        stages += [FINAL_STAGE, FINAL_STAGE] if r == 0 else [REHEAT_STAGE, FINAL_STAGE]
    n_stages = 0
    for n_stages, (T0, T1, scale, n_steps) in enumerate(stages, start=1):
        n_steps = max(1, int(n_steps * steps_scale))
        status, st, ac, energy, _ = k["anneal"](
            Vi,
            strat,
            sstart,
            send,
            scum,
            ccum,
            C,
            tg.phi_lo,
            tg.phi_hi,
            tg.t_lo,
            tg.t_hi,
            betas,
            hinvs,
            tm,
            tc,
            win,
            forced,
            0.2,
            scale,
            T0,
            T1,
            n_steps,
            200,
            1e-9,
            p_target,
            COUNT_WEIGHT,
            int(rng.integers(2**31 - 1)),
        )
        steps += st
        acc += ac
        # Success counts only at the final tolerance (an early stage's zero is at a coarser one).
        if status == 1 and scale == FINAL_STAGE[2]:
            break
    return Vi, int(status), int(steps), int(acc), float(energy), n_stages


def reconstruct_one(
    seed: int | np.random.SeedSequence,
    *,
    max_rounds: int = 2,
    max_starts: int = 6,
    margin: float = 0.05,
    p_target: float = 0.5,
    steps_scale: float = 1.0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reconstruct one SYNTHETIC 1,306-row dataset that agrees with the published tables.

    Parameters
    ----------
    seed
        Integer or :class:`numpy.random.SeedSequence`; the same seed gives the same data.
    max_rounds
        Reheat-and-cool cycles (:data:`REHEAT_STAGE` then :data:`FINAL_STAGE`) before a start
        is abandoned.
    max_starts
        Fresh starts (a new dependence draw) before giving up; the member is then returned
        with ``attrs['reconstruction']['converged'] = False`` and a fidelity table that says
        which targets fail. Abandoned starts are listed in ``attrs['reconstruction']['starts']``:
        some within-stratum dependence draws are ruled out by the tables (e.g. the spread of
        the approach count within strata moves the count model's stratum ORs).
    margin
        Share of each Table 3 window's width kept free on each side during the run (a guard
        against the tiny difference between the kernel's Newton fit and statsmodels').
    p_target
        Probability that a proposal is aimed at a violated Table 2 / Figure 1 count.
    steps_scale
        Multiplies the proposals of every stage (tests use a tiny value for speed; such a
        member does not converge but keeps Table 1 exact).

    Returns
    -------
    (DataFrame, DataFrame)
        The member (microdata contract plus ``agency_id``, ``attrs['synthetic']=True`` and
        ``attrs['reconstruction']`` with seeds, dependence draw, steps and seconds) and its
        fidelity table (:func:`fidelity`).
    """
    if not 0 <= margin < 0.5:
        raise InputError(f"margin must be in [0, 0.5), got {margin}")
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
    rng = np.random.default_rng(ss)
    tg = load_targets()
    strat = np.repeat(np.arange(len(STRATA)), tg.n_by_stratum).astype(np.int64)
    steps = acc = 0
    starts = []
    for start in range(1, max_starts + 1):
        dep = draw_dependence(rng)
        Vi, status, st, ac, energy, n_stages = _anneal_member(
            initial_state(rng, dep, tg).astype(np.int64),
            strat,
            tg,
            rng,
            max_rounds=max_rounds,
            margin=margin,
            p_target=p_target,
            steps_scale=steps_scale,
        )
        steps += st
        acc += ac
        starts.append(
            dict(
                shrink=round(dep["shrink"], 4),
                omega=round(dep["omega"], 4),
                beta_sd=round(dep["beta_sd"], 4),
                converged=bool(status == 1),
                stages=n_stages,
                final_energy=round(float(energy), 4),
            )
        )
        if status == 1:
            break
    df = _to_frame(Vi, strat)
    fid = fidelity(df, tg)
    elapsed = time.perf_counter() - t_start
    df.attrs["reconstruction"] = dict(
        seed_entropy=str(ss.entropy),
        spawn_key=list(ss.spawn_key),
        starts=starts,
        steps=int(steps),
        accepted=int(acc),
        converged=bool(status == 1),
        seconds=round(elapsed, 2),
        cpu_seconds=round(time.process_time() - cpu_start, 2),
        dependence=dict(shrink=dep["shrink"], omega=dep["omega"], beta_sd=dep["beta_sd"]),
        forced_targets=int(fid["forced"].sum()),
        forced_targets_met=int((fid["forced"] & fid["agrees"]).sum()),
    )
    return df, fid


# --------------------------------------------------------------------------------------
# Statistics no target fixes, and the ensemble
# --------------------------------------------------------------------------------------

#: Three-way patterns reported for the ensemble spread: share of agencies with all three.
TRIPLES: tuple[tuple[str, str, str], ...] = (
    ("court", "prosecutor", "mdt"),
    ("victim_service", "child_welfare", "task_force"),
    ("training", "task_force", "advocates"),
    ("prosecutor", "victim_service", "offense_code"),
)
UNTARGETED_COLUMNS = ["statistic", "stratum", "value"]


def untargeted_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Statistics of a member that no published number fixes.

    Per stratum (and ``all``): mean and SD of the approach count, the share of agencies with
    each count 0-9, the share with all three approaches of each :data:`TRIPLES` pattern,
    and the number of distinct approach patterns. The mean count is fixed by Table 1 (a
    check); everything else is free, so its spread across members shows what the tables
    cannot tell us.

    Returns
    -------
    pandas.DataFrame
        Columns ``statistic, stratum, value``.
    """
    x = df[list(APPROACHES)].to_numpy(dtype=np.int64)
    cnt = x.sum(axis=1)
    strata = df[STRATUM].astype(str).to_numpy()
    rows = []
    for s in ("all", *STRATA):
        m = np.ones(len(df), bool) if s == "all" else strata == s
        c = cnt[m]
        rows.append(("count_mean", s, float(c.mean())))
        rows.append(("count_sd", s, float(c.std(ddof=1))))
        for v in range(K + 1):
            rows.append((f"count_share_{v}", s, float(np.mean(c == v))))
        for tri in TRIPLES:
            idx = [APPROACHES.index(a) for a in tri]
            rows.append((f"all3_{'+'.join(tri)}", s, float(np.mean(x[m][:, idx].all(axis=1)))))
        patterns = x[m] @ (1 << np.arange(K))
        rows.append(("distinct_patterns", s, float(len(np.unique(patterns)))))
    return pd.DataFrame(rows, columns=UNTARGETED_COLUMNS)


def ensemble_spread(members: list[pd.DataFrame]) -> pd.DataFrame:
    """Spread of :func:`untargeted_stats` across members.

    Returns
    -------
    pandas.DataFrame
        Columns ``statistic, stratum, mean, sd, min, max, n_members``.
    """
    if not members:
        raise InputError("no members to summarise")
    allstats = pd.concat([untargeted_stats(m).assign(member=i) for i, m in enumerate(members)])
    g = allstats.groupby(["statistic", "stratum"], sort=False)["value"]
    out = g.agg(["mean", "std", "min", "max", "size"]).reset_index()
    return out.rename(columns={"std": "sd", "size": "n_members"})


def member_filename(i: int) -> str:
    """File name of member ``i`` (1-based): ``reconstruction-001.csv``."""
    return f"reconstruction-{i:03d}.csv"


def _member_job(
    i: int, ss: np.random.SeedSequence, kwargs: dict[str, Any]
) -> tuple[int, pd.DataFrame, pd.DataFrame, dict]:
    # Worker processes must not oversubscribe the cores with BLAS threads.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    df, fid = reconstruct_one(ss, **kwargs)
    return i, df, fid, dict(df.attrs["reconstruction"])


def fidelity_summary(fid: pd.DataFrame) -> dict[str, Any]:
    """Targets hit per table: ``{table: {"met": int, "total": int}}`` plus failing items."""
    out: dict[str, Any] = {}
    for t, g in fid.groupby("table", sort=False):
        f = g[g["forced"]]
        out[str(t)] = dict(
            met=int(f["agrees"].sum()), total=len(f), reported_only=int((~g["forced"]).sum())
        )
    bad = fid[fid["forced"] & ~fid["agrees"]]
    out["failing"] = [f"{r.table}:{r.item}:{r.quantity}" for r in bad.itertuples(index=False)]
    out["all_forced_met"] = not len(bad)
    return out


def build_ensemble(
    n: int,
    seed: int,
    out_dir: str | Path,
    jobs: int | None = None,
    progress: bool = True,
    **kwargs: Any,
) -> dict[str, Any]:
    """Reconstruct ``n`` SYNTHETIC members in parallel and write them with a manifest.

    Member seeds are ``numpy.random.SeedSequence(seed).spawn(n)``, so the same ``seed`` gives
    the same ensemble whatever ``jobs`` is.

    Parameters
    ----------
    n
        Number of members (>= 1).
    seed
        Master seed.
    out_dir
        Folder for ``reconstruction-001.csv`` ..., ``fidelity-001.csv`` ... and ``manifest.json``.
    jobs
        Worker processes (default: the available cores).
    progress
        Show a tqdm progress bar.
    **kwargs
        Passed to :func:`reconstruct_one`.

    Returns
    -------
    dict
        The manifest (also written to ``out_dir/manifest.json``).
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from cst_bayes import __version__
    from cst_bayes.core.fileio import sha256_file, write_csv, write_json, write_microdata

    if int(n) < 1:
        raise InputError(f"--n must be at least 1, got {n}", column="n")
    n = int(n)
    jobs = max(1, min(int(jobs or len(os.sched_getaffinity(0)) or 1), n))
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("output path exists and is not a folder", path=out_dir)
    t0 = time.perf_counter()
    load_targets()  # fail fast on a bad published table, before spawning workers
    _kernel()  # compile once here so the workers load numba's cache instead of compiling
    seeds = np.random.SeedSequence(int(seed)).spawn(n)
    results: dict[int, tuple[pd.DataFrame, pd.DataFrame, dict]] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc="reconstructing (synthetic)", unit="member")
    if jobs == 1:
        for i, ss in enumerate(seeds, start=1):
            _, df, fid, info = _member_job(i, ss, kwargs)
            results[i] = (df, fid, info)
            if bar is not None:
                bar.update(1)
    else:
        with ProcessPoolExecutor(max_workers=jobs) as ex:
            futs = [ex.submit(_member_job, i, ss, kwargs) for i, ss in enumerate(seeds, start=1)]
            for fut in as_completed(futs):
                i, df, fid, info = fut.result()
                results[i] = (df, fid, info)
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()

    out_dir.mkdir(parents=True, exist_ok=True)
    # The manifest goes first and comes back last: a crash while writing leaves members
    # without a manifest (which readers notice), never a manifest describing other files.
    # A previous, larger ensemble in the same folder would otherwise leave stale members.
    for old in [
        out_dir / "manifest.json",
        *out_dir.glob("reconstruction-*.csv"),
        *out_dir.glob("fidelity-*.csv"),
    ]:
        old.unlink(missing_ok=True)
    members = []
    for i in range(1, n + 1):
        df, fid, info = results[i]
        name = member_filename(i)
        note = (
            f"SYNTHETIC member {i} of {n}; master seed {seed}; "
            f"cst_bayes {__version__}; see manifest.json for its fidelity to the published tables"
        )
        cols = [AGENCY_ID, STRATUM, *APPROACHES, OUTCOME]
        write_microdata(out_dir / name, df[cols], synthetic=True, note=note)
        fname = f"fidelity-{i:03d}.csv"
        write_csv(
            out_dir / fname, fid, status="SYNTHETIC", notes=f"fidelity of SYNTHETIC member {i}"
        )
        members.append(
            dict(
                member=i,
                file=name,
                fidelity_file=fname,
                sha256=sha256_file(out_dir / name),
                spawn_key=info["spawn_key"],
                seconds=info["seconds"],
                cpu_seconds=info.get("cpu_seconds"),
                steps=info["steps"],
                converged=info["converged"],
                starts=info["starts"],
                dependence=info["dependence"],
                targets=fidelity_summary(fid),
            )
        )
    spread = ensemble_spread([results[i][0] for i in range(1, n + 1)])
    import numba
    import scipy

    manifest = dict(
        synthetic=True,
        banner=SYNTHETIC_BANNER,
        method=METHOD,
        package="cst_bayes",
        package_version=__version__,
        versions=dict(
            numpy=np.__version__,
            pandas=pd.__version__,
            scipy=scipy.__version__,
            numba=numba.__version__,
        ),
        master_seed=int(seed),
        n_members=n,
        jobs=jobs,
        member_seeds="numpy.random.SeedSequence(master_seed).spawn(n_members)",
        settings=dict(
            stages=[list(s) for s in STAGES],
            final_stage=list(FINAL_STAGE),
            reheat_stage=list(REHEAT_STAGE),
            count_weight=COUNT_WEIGHT,
            **kwargs,
        ),
        seconds_total=round(time.perf_counter() - t0, 1),
        all_members_agree=all(m["targets"]["all_forced_met"] for m in members),
        members=members,
        untargeted_spread=spread.round(4).to_dict(orient="records"),
    )
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def manifest_table(manifest: dict[str, Any]) -> pd.DataFrame:
    """One row per member: seconds, starts and targets met per table (for printing)."""
    rows = []
    for m in manifest["members"]:
        t = m["targets"]
        row = dict(
            member=m["member"],
            seconds=m["seconds"],
            cpu_seconds=m.get("cpu_seconds"),
            starts=len(m["starts"]),
        )
        for tab in ("table1", "table2", "fig1", "table3"):
            if tab in t:
                row[tab] = f"{t[tab]['met']}/{t[tab]['total']}"
        row["agrees"] = "yes" if t["all_forced_met"] else "NO"
        rows.append(row)
    return pd.DataFrame(rows)
