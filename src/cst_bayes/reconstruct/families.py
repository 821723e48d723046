"""Generating families: member-specific starts with every Table 1 count exact (SYNTHETIC)."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from cst_bayes.core.config import (
    APPROACHES,
    STRATA,
)
from cst_bayes.reconstruct.targets import K, Targets, Y, _read, load_targets

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

        def f(rho: float, hi=hi, hj=hj, p11=p11) -> float:
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
