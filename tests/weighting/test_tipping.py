"""Nonresponse tipping point and Manski bounds on simulated data with known truth.

The tipping point of an effect claim is where the differential shift ``delta`` of
nonrespondents using the approach cancels the effect. From the generating parameters
(``cst_bayes.data.simulate``) the national marginal effect as a function of ``delta`` is
computed by hand here (true coefficients over the simulated agencies), so the place where
its sign changes is known; the estimated verdict must lose significance before it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq
from scipy.special import expit

from cst_bayes.core.config import APPROACHES, OUTCOME, STRATA, STRATUM
from cst_bayes.data import published
from cst_bayes.data.simulate import DEFAULT_BETA, simulate
from cst_bayes.weighting import tipping
from cst_bayes.weighting import weights as W

#: A strong effect (cannot be cancelled inside -2..2), a moderate one and a null one.
BETA = {**DEFAULT_BETA, "victim_service": 3.0, "task_force": 0.6, "child_welfare": 0.0}


@pytest.fixture(scope="module")
def frames() -> pd.DataFrame:
    return published.load_sampling_frames()


@pytest.fixture(scope="module")
def sim():
    return simulate(11, beta=BETA)


@pytest.fixture(scope="module")
def run(sim, frames):
    df, _ = sim
    sc = W.load_scenarios()["design"]
    steps = W.weights_table(df, [sc], frames)
    curves, bounds = tipping.delta_curves(df, steps, W.make_design(df, sc, frames), seed=5)
    claims = {
        "strong": "rd:victim_service|+",
        "moderate": "rd:task_force|+",
        "null": "rd:child_welfare|0",
    }
    tp = tipping.tipping_points(curves, claims).set_index("claim")
    return steps, curves, bounds, tp


def _true_rd(df: pd.DataFrame, alpha: dict, steps: pd.DataFrame, a: str, d: float) -> float:
    """National marginal effect of ``a`` at ``delta = d`` from the generating parameters."""
    t = steps.set_index("stratum")
    total = t["eligible_frame"].sum()
    b = np.array([BETA[x] for x in APPROACHES])
    k = list(APPROACHES).index(a)
    out = 0.0
    for h in STRATA:
        g = df[df[STRATUM] == h][list(APPROACHES)].to_numpy(float)
        x1, x0 = g.copy(), g.copy()
        x1[:, k], x0[:, k] = 1, 0
        e1, e0 = alpha[h] + x1 @ b, alpha[h] + x0 @ b
        rho = t.loc[h, "respondents"] / t.loc[h, "eligible"]
        resp = (expit(e1) - expit(e0)).mean()
        non = (expit(e1 + d) - expit(e0)).mean()
        out += t.loc[h, "eligible_frame"] / total * (rho * resp + (1 - rho) * non)
    return out


def test_strong_effect_never_flips_inside_the_grid(run):
    *_, tp = run
    r = tp.loc["strong"]
    assert r["holds_at_zero"]
    assert np.isnan(r["delta_low"]) and np.isnan(r["delta_high"])


def test_moderate_effect_flips_before_its_true_zero(sim, run):
    df, truth = sim
    steps, curves, _, tp = run
    r = tp.loc["moderate"]
    assert r["holds_at_zero"]
    # A positive shift of users only strengthens a positive effect.
    assert np.isnan(r["delta_high"])
    root = brentq(lambda d: _true_rd(df, truth.alpha, steps, "task_force", d), -2.0, 0.0)
    assert -2.0 < root < -0.3  # the truth does cross inside the grid
    # Significance is lost at or before the true zero crossing (one grid step of slack for
    # the estimate's error), and not at the first step away from 0.
    assert root - 0.3 <= r["delta_low"] < -0.1
    c = curves[curves["quantity"] == "rd:task_force"].set_index("delta")
    assert c.loc[r["delta_low"], "p_positive"] < tipping.P_HOLDS <= c.loc[0.0, "p_positive"]


def test_null_effect_flips_both_ways_near_zero(run):
    *_, tp = run
    r = tp.loc["null"]
    assert r["holds_at_zero"]
    assert -1.0 <= r["delta_low"] < 0 < r["delta_high"] <= 1.0


def test_manski_bounds_equal_the_hand_count(sim, run, frames):
    """Every nonrespondent without / with a case: counts expanded by the base weights N_h / n_h."""
    df, _ = sim
    _, curves, bounds, _ = run
    f = frames.set_index("stratum")
    N = f["population"].astype(float)
    n = f["sampled"].astype(float)
    cases = df.groupby(STRATUM, observed=True)[OUTCOME].sum().astype(float)
    r = df.groupby(STRATUM, observed=True).size().astype(float)
    lower = sum(cases[h] * N[h] / n[h] for h in STRATA) / N.sum()
    nonresp = sum((n[h] - r[h]) * N[h] / n[h] for h in STRATA) / N.sum()
    low, high = bounds["estimate"].to_numpy()
    assert low == pytest.approx(lower, rel=1e-12)
    assert high == pytest.approx(lower + nonresp, rel=1e-12)
    prev = curves[curves["quantity"] == OUTCOME].sort_values("delta")
    assert np.all(np.diff(prev["median"]) > 0)  # more cases among nonrespondents, more cases
    assert low < prev["ci_low"].min() and prev["ci_high"].max() < high


def test_manski_bounds_follow_the_eligibility_scenario(sim, frames):
    """All 245 ineligible among small agencies: that stratum's frame and nonrespondents shrink."""
    df, _ = sim
    sc = W.load_scenarios()["eligibility_small"]
    steps = W.weights_table(df, [sc], frames)
    _, bounds = tipping.delta_curves(
        df, steps, W.make_design(df, sc, frames), seed=5, grid=np.array([0.0]), draws=50
    )
    f = frames.set_index("stratum")
    N = f["population"].astype(float)
    n = f["sampled"].astype(float)
    inel = {"1-49": 245.0}
    cases = df.groupby(STRATUM, observed=True)[OUTCOME].sum().astype(float)
    r = df.groupby(STRATUM, observed=True).size().astype(float)
    Nstar = {h: N[h] * (n[h] - inel.get(h, 0)) / n[h] for h in STRATA}
    total = sum(Nstar.values())
    lower = sum(cases[h] * N[h] / n[h] for h in STRATA) / total  # base weights again
    non = sum((n[h] - inel.get(h, 0) - r[h]) * N[h] / n[h] for h in STRATA) / total
    np.testing.assert_allclose(bounds["estimate"], [lower, lower + non], rtol=1e-12)


def test_curves_equal_the_per_agency_definition(sim, run, frames):
    """Risks per covariate pattern give the module docstring's per-stratum agency means."""
    from cst_bayes.weighting.williams_savitsky import fit_pseudo_posterior

    df, _ = sim
    steps, curves, _, _ = run
    sc = W.load_scenarios()["design"]
    X, names = W.model_matrix(df, True)
    # the same normal-approximation draws delta_curves takes (seed 5, 400 draws, one chain)
    post = fit_pseudo_posterior(
        X,
        df[OUTCOME].to_numpy(float),
        W.make_design(df, sc, frames),
        names,
        method="laplace",
        draws=400,
        chains=1,
        seed=5,
    )
    th = post.adjusted.reshape(-1, len(names))
    t = steps.set_index("stratum").loc[list(STRATA)]
    share = (t["eligible_frame"] / t["eligible_frame"].sum()).to_numpy()
    rho = (t["respondents"] / t["eligible"]).to_numpy()
    masks = [(df[STRATUM].astype(str) == h).to_numpy() for h in STRATA]
    eta = th @ X.T
    for d in (-1.5, 0.0, 0.7):
        got = curves[np.isclose(curves["delta"], d)].set_index("quantity")
        prev = sum(
            share[j]
            * (rho[j] * expit(eta[:, m]).mean(1) + (1 - rho[j]) * expit(eta[:, m] + d).mean(1))
            for j, m in enumerate(masks)
        )
        want = {OUTCOME: prev}
        for a in APPROACHES:
            X1, X0 = X.copy(), X.copy()
            k = names.index(a)
            X1[:, k], X0[:, k] = 1.0, 0.0
            e1, p0 = th @ X1.T, expit(th @ X0.T)
            want[f"rd:{a}"] = sum(
                share[j]
                * (
                    rho[j] * (expit(e1[:, m]) - p0[:, m]).mean(1)
                    + (1 - rho[j]) * (expit(e1[:, m] + d) - p0[:, m]).mean(1)
                )
                for j, m in enumerate(masks)
            )
        for q, v in want.items():
            lo, med, hi = np.quantile(v, [0.025, 0.5, 0.975])
            np.testing.assert_allclose(
                got.loc[q, ["ci_low", "median", "ci_high"]].to_numpy(float),
                [lo, med, hi],
                rtol=1e-10,
                atol=1e-15,
            )
            assert got.loc[q, "p_positive"] == np.mean(v > 0)
