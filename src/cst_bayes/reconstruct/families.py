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
from cst_bayes.core.errors import InputError
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


#: Generating families. ``copula``: one latent Gaussian copula strength for all strata;
#: ``copula_strata``: each stratum its own shrinkage, one-factor weight and outcome-slope
#: scatter, so the split of the pooled Table 2 dependence across strata varies;
#: ``latent_class``: each stratum a mixture of 2-4 approach profiles (agencies of a class share
#: approach probabilities), a structure no Gaussian copula produces.
FAMILIES: tuple[str, ...] = ("copula", "copula_strata", "latent_class")


def _published_slopes() -> np.ndarray:
    tg = load_targets()
    return np.array([math.log(float(r["printed"][0])) for r in tg.t3 if r["model"] == 1][:K])


def draw_dependence(rng: np.random.Generator, family: str = "copula") -> dict[str, Any]:
    """Draw one member's within-stratum dependence (what the tables do not fix).

    ``copula``: per stratum a latent correlation matrix, the tetrachoric Table 2 shrunk by a
    factor ``shrink`` (pooling over strata inflates correlations) and mixed with weight
    ``omega`` with a one-factor matrix of random loadings; per stratum slopes of the outcome
    score, scattered (SD ``beta_sd``) around the published adjusted log-ORs. One ``shrink``,
    ``omega`` and ``beta_sd`` for all strata. ``copula_strata``: the same with each stratum
    its own (wider) ``shrink``, ``omega`` and ``beta_sd``. ``latent_class``: see
    :data:`FAMILIES`. ``summary`` holds the draws the manifest records.
    """
    if family not in FAMILIES:
        raise InputError(f"family must be one of {FAMILIES}, got {family!r}", column="family")
    if family == "latent_class":
        return _draw_latent_class(rng)
    R0 = tetrachoric_table2()
    per = family == "copula_strata"
    ns = len(STRATA)
    shrink = rng.uniform(0.3, 1.0, ns) if per else np.full(ns, rng.uniform(0.55, 1.0))
    omega = rng.uniform(0.0, 0.8, ns) if per else np.full(ns, rng.uniform(0.0, 0.6))
    beta_sd = rng.uniform(0.1, 0.6, ns) if per else np.full(ns, rng.uniform(0.1, 0.5))
    b_pub = _published_slopes()
    mats, slopes, loads = [], [], []
    for s in range(ns):
        lam = rng.uniform(0.1, 0.8, size=K)
        F = np.outer(lam, lam)
        np.fill_diagonal(F, 1.0)
        R = (1 - omega[s]) * (shrink[s] * R0 + (1 - shrink[s]) * np.eye(K)) + omega[s] * F
        mats.append(_nearest_corr(R))
        slopes.append(b_pub + rng.normal(0.0, beta_sd[s], size=K))
        loads.append(lam)
    if per:
        summary = dict(
            family=family,
            shrink=[round(float(x), 4) for x in shrink],
            omega=[round(float(x), 4) for x in omega],
            beta_sd=[round(float(x), 4) for x in beta_sd],
        )
    else:
        summary = dict(
            family=family,
            shrink=float(shrink[0]),
            omega=float(omega[0]),
            beta_sd=float(beta_sd[0]),
        )
    return dict(
        family=family,
        shrink=float(shrink.mean()),
        omega=float(omega.mean()),
        beta_sd=float(beta_sd.mean()),
        corr=mats,
        slopes=slopes,
        loadings=loads,
        summary=summary,
    )


def _draw_latent_class(rng: np.random.Generator) -> dict[str, Any]:
    """Per stratum 2-4 classes with Dirichlet weights and approach profiles around the margins.

    A class's log-odds of approach j is the stratum's margin log-odds plus N(0, ``spread``^2);
    the outcome score adds a class effect N(0, 0.7^2) to the scattered published slopes.
    """
    tg = load_targets()
    b_pub = _published_slopes()
    classes, summary = [], dict(family="latent_class", n_classes=[], spread=[], beta_sd=[])
    for s in range(len(STRATA)):
        g = int(rng.integers(2, 5))
        spread = float(rng.uniform(0.5, 2.5))
        beta_sd = float(rng.uniform(0.1, 0.6))
        p = np.clip(tg.counts[s, :K] / tg.n_by_stratum[s], 0.01, 0.99)
        base = np.log(p / (1 - p))
        classes.append(
            dict(
                weights=rng.dirichlet(np.full(g, 1.5)),
                profiles=base + rng.normal(0.0, spread, size=(g, K)),
                effects=rng.normal(0.0, 0.7, size=g),
                slopes=b_pub + rng.normal(0.0, beta_sd, size=K),
            )
        )
        summary["n_classes"].append(g)
        summary["spread"].append(round(spread, 4))
        summary["beta_sd"].append(round(beta_sd, 4))
    return dict(
        family="latent_class",
        classes=classes,
        shrink=float("nan"),
        omega=float("nan"),
        beta_sd=float(np.mean(summary["beta_sd"])),
        summary=summary,
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
    lc = dep.get("family") == "latent_class"
    for s, ns in enumerate(tg.n_by_stratum):
        ns = int(ns)
        if lc:
            cl = dep["classes"][s]
            g = rng.choice(len(cl["weights"]), size=ns, p=cl["weights"])
            Z = cl["profiles"][g] + rng.logistic(size=(ns, K))
        else:
            Z = rng.standard_normal((ns, K)) @ np.linalg.cholesky(dep["corr"][s]).T
        V = np.zeros((ns, K + 1), dtype=np.int8)
        for j in range(K):
            V[np.argsort(-Z[:, j], kind="stable")[: tg.counts[s, j]], j] = 1
        # outcome by rank of a logistic score (Gumbel-top-k draw without replacement)
        if lc:
            score = V[:, :K] @ cl["slopes"] + cl["effects"][g] + rng.logistic(size=ns)
        else:
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
