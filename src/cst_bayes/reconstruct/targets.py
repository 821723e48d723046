"""Published targets as windows the annealer can use (Tables 1-3 and Figure 1)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cst_bayes.core.config import (
    APPROACHES,
    COUNT,
    N_BY_STRATUM,
    OUTCOME,
    STRATA,
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


def _published_dir():
    """The folder of the published tables (data.published owns where it is)."""
    from cst_bayes.data.published import _dir

    return _dir(None)


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
        raise InputError(f"no integer count reproduces {what}", path=_published_dir())
    if np.any(np.diff(idx) != 1):  # windows of a monotone statistic are intervals
        raise InputError(f"allowed counts for {what} are not an interval", path=_published_dir())
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
    """Read the published tables (``data/published``, located by :mod:`cst_bayes.data.published`) and turn them into windows.

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
    for rec in t1.to_dict("records"):
        if rec["stratum"] == "all":
            continue
        if rec["variable"] not in COLUMNS or rec["stratum"] not in STRATA:
            raise InputError(
                f"unknown variable/stratum {rec['variable']}/{rec['stratum']}",
                path=_published_dir() / "table1_approaches_by_stratum.csv",
                column="variable",
            )
        s = STRATA.index(rec["stratum"])
        counts[s, COLUMNS.index(rec["variable"])] = int(rec["n_yes"])
        nst[s] = int(rec["n_stratum"])
    if dict(zip(STRATA, nst.tolist())) != N_BY_STRATUM:
        raise InputError(
            "stratum sizes disagree with config.N_BY_STRATUM",
            path=_published_dir() / "table1_approaches_by_stratum.csv",
            column="n_stratum",
        )
    n = int(nst.sum())
    tot = counts.sum(axis=0)

    # Table 2: windows of n11 from the rounding interval of r and the stars.
    t2 = _read("table2_phi_correlations.csv")
    phi_lo = np.zeros((K, K), dtype=np.int64)
    phi_hi = np.full((K, K), n, dtype=np.int64)
    phi_rows = []
    for rec in t2.to_dict("records"):
        i, j = APPROACHES.index(rec["row"]), APPROACHES.index(rec["col"])
        a, b = int(tot[i]), int(tot[j])
        grid = np.arange(max(0, a + b - n), min(a, b) + 1)
        r, p = _pearson_p(grid.astype(float), a, b, n)
        v = float(rec["r"])
        # strict inside the rounding interval: r exactly on x.xx5 would be a coin toss
        ok = (r > v - 0.005 + 1e-9) & (r < v + 0.005 - 1e-9)
        legible = rec["stars_legible"].strip().lower() == "yes"
        if legible:
            ok &= _stars_ok(rec["stars"].strip(), p)
        lo, hi = _window(ok, grid, f"Table 2 {rec['row']}-{rec['col']} r={rec['r']}{rec['stars']}")
        phi_lo[i, j] = phi_lo[j, i] = lo
        phi_hi[i, j] = phi_hi[j, i] = hi
        phi_rows.append(
            dict(
                row=rec["row"],
                col=rec["col"],
                r=v,
                stars=rec["stars"].strip() if legible else None,
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
    for rec in t3df.to_dict("records"):
        m = MODELS.index((int(rec["analysis"]), rec["adjusted_for_size"]))
        c = 1 + terms_by_model[m].index(rec["term"])
        est = _log_window(rec["or"], None)
        ci_lo = _log_window(rec["ci_low"], ci_rel)
        ci_hi = _log_window(rec["ci_high"], ci_rel)
        # (b - z se, b + z se) in (lo, hi) with b in est needs (lo + hi)/2 to meet est.
        mid_lo, mid_hi = (ci_lo[0] + ci_hi[0]) / 2, (ci_lo[1] + ci_hi[1]) / 2
        width = min(est[1], mid_hi) - max(est[0], mid_lo)
        ci_forced = width > 0.1 * (est[1] - est[0])
        t3.append(
            dict(
                analysis=int(rec["analysis"]),
                term=rec["term"],
                adjusted_for_size=rec["adjusted_for_size"],
                model=m,
                coef=c,
                printed=(rec["or"], rec["ci_low"], rec["ci_high"]),
                windows=(est, ci_lo, ci_hi),
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
