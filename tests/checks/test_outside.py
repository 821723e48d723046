"""Checks outside the sufficient statistics (cst_bayes.checks.outside).

References: pandas crosstabs on fixed replicates, swaps of outcomes that leave Z'y unchanged
(a statistic the model has fitted must not move), the closed-form leave-one-out predictive of
a conjugate beta-Bernoulli model, and fits to data simulated with stratum-specific effects.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cst_bayes.checks import outside, ppc
from cst_bayes.checks.tablestats import statistic_keys
from cst_bayes.core.config import APPROACHES, OUTCOME, STRATA
from cst_bayes.data.simulate import simulate


def stratum_specific(seed: int) -> pd.DataFrame:
    """Simulated data whose approach effects differ in sign between the two large strata."""
    df, truth = simulate(seed)
    beta = {s: dict(truth.beta) for s in STRATA}
    beta["1-49"].update(prosecutor=1.5, victim_service=-1.2, task_force=1.5)
    beta["50-999"].update(prosecutor=-1.5, victim_service=1.5, task_force=-1.0)
    s = df["stratum"].astype(str).to_numpy()
    X = df[list(APPROACHES)].to_numpy(float)
    B = np.array([[beta[k][a] for a in APPROACHES] for k in s])
    eta = np.array([truth.alpha[k] for k in s]) + (X * B).sum(axis=1)
    rng = np.random.default_rng(seed + 1000)
    df[OUTCOME] = (rng.random(len(df)) < 1 / (1 + np.exp(-eta))).astype(np.int8)
    return df


def test_outside_statistics_equal_pandas_on_fixed_replicates(sim_df):
    rng = np.random.default_rng(3)
    y_rep = (rng.random((4, len(sim_df))) < 0.3).astype(np.int8)
    risk = rng.random(len(sim_df))
    tabs = ("approach_by_case", "rate_by_count", "calibration")
    keys = outside.outside_keys(tabs)
    got = outside.outside_statistics(sim_df, y_rep, tables=tabs, risk=risk)
    col = {(k.table, k.statistic, k.stratum_or_term): i for i, k in enumerate(keys)}
    dec = pd.qcut(risk, 10, labels=False) + 1
    for r in range(len(y_rep)):
        d = sim_df.assign(y=y_rep[r], dec=dec)
        d["stratum"] = d["stratum"].astype(str)
        ct = d.groupby(["stratum", "prosecutor"])["y"].sum()
        assert got[r, col[("approach_by_case", "cases_with", "prosecutor[1-49]")]] == ct["1-49", 1]
        assert got[r, col[("approach_by_case", "cases_without", "mdt[state]")]] == (
            d[(d["stratum"] == "state") & (d["mdt"] == 0)]["y"].sum()
        )
        rate = d.groupby("n_approaches")["y"].mean()
        assert got[r, col[("rate_by_count", "rate_n_approaches=5", "all")]] == pytest.approx(
            rate[5]
        )
        rate_s = d[d["stratum"] == "50-999"].groupby("n_approaches")["y"].mean()
        assert got[r, col[("rate_by_count", "rate_n_approaches=7", "50-999")]] == pytest.approx(
            rate_s[7]
        )
        by_dec = d.groupby("dec")["y"].sum()
        for k in (1, 5, 10):
            assert got[r, col[("calibration", "cases", f"decile={k}")]] == by_dec[k]


def _design(df, varying):
    from cst_bayes.bayes import models

    spec = models.load_spec("logit_varying_slopes" if varying else "logit_approaches_strata")
    return ppc.model_design(spec, df)


@pytest.mark.parametrize("varying", [False, True])
def test_fitted_statistics_do_not_move_when_zy_does_not(sim_df, varying):
    # Move the outcome along a direction d with Z'd = 0: Z'y is unchanged, so every statistic
    # marked fitted_by_model (a function of linear functionals of y inside the span of Z) must
    # stay where it is, and the statistics not marked must move (else the marking says
    # nothing). The statistics accept a fractional outcome (the GLM refits as quasi-likelihood).
    from cst_bayes.checks.tablestats import batched_statistics

    Z = _design(sim_df, varying)
    y = sim_df[OUTCOME].to_numpy(float)
    u, sv, _ = np.linalg.svd(Z, full_matrices=False)
    Q = u[:, sv > 1e-10 * sv.max()]
    r = np.random.default_rng(7).standard_normal(len(y))
    d = r - Q @ (Q.T @ r)
    y2 = y + 0.2 * d / np.abs(d).max()
    np.testing.assert_allclose(Z.T @ y, Z.T @ y2, atol=1e-9)
    tabs = ("table1", "fig1", "table3")
    otabs = ("approach_by_case", "rate_by_count")
    keys = statistic_keys(sim_df, tabs) + outside.outside_keys(otabs)
    both = np.vstack([y, y2])
    t = np.column_stack(
        [
            batched_statistics(sim_df, both, tables=tabs),
            outside.outside_statistics(sim_df, both, tables=otabs),
        ]
    )
    fitted = outside.fitted_by_model(sim_df, keys, Z)
    same = np.isclose(t[0], t[1], rtol=1e-6, atol=1e-9) | (np.isnan(t[0]) & np.isnan(t[1]))
    assert same[fitted].all()
    assert (~same[~fitted]).sum() >= 0.8 * (~fitted).sum() - 10
    abc = np.array([k.table == "approach_by_case" for k in keys])
    # the within-stratum 2 x 2 counts are sufficient only with stratum-specific slopes (without
    # them, only cells that coincide with a stratum total: every agency of a stratum, or none,
    # has the approach)
    assert fitted[abc].all() if varying else fitted[abc].mean() < 0.15
    pub = np.array([k.table in tabs for k in keys])
    assert fitted[pub].all()


def test_fitted_by_model_without_a_design_marks_nothing(sim_df):
    keys = statistic_keys(sim_df, ("table1",))
    assert not outside.fitted_by_model(sim_df, keys, None).any()


def test_loo_probabilities_match_the_beta_bernoulli_closed_form():
    # One group, y ~ Bernoulli(theta), theta ~ Beta(1, 1): the posterior is Beta(1 + k, 1 + n - k)
    # and the exact leave-one-out predictive P(y_i = 1 | y_-i) is k/(n+1) when y_i = 1 and
    # (k+1)/(n+1) when y_i = 0.
    n, k = 60, 21
    rng = np.random.default_rng(5)
    theta = rng.beta(1 + k, 1 + n - k, size=8000)
    p = np.repeat(theta[:, None], 3, axis=1)
    q1, q0 = outside.loo_probabilities(p)
    np.testing.assert_allclose(q1, k / (n + 1), atol=0.006)
    np.testing.assert_allclose(q0, (k + 1) / (n + 1), atol=0.006)


def test_loo_pit_distance_closed_form_and_power():
    q = np.full(400, 0.5)
    # every outcome 0 with q = 0.5: PIT uniform on (0, 0.5), ECDF 2x, largest gap 0.5 at x = 0.5
    assert outside.loo_pit_distance(np.zeros(400), q, q)[0] == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    q = rng.uniform(0.05, 0.95, 4000)
    good = (rng.random(4000) < q).astype(float)
    bad = (rng.random(4000) < np.clip(q + 0.25, 0, 1)).astype(float)  # under-predicted risk
    d_good, d_bad = outside.loo_pit_distance(np.vstack([good, bad]), q, q)
    assert d_good < 0.03 < 0.08 < d_bad


def test_ppc_from_replicates_with_p_draws_adds_calibration_and_loo_pit(sim):
    df, truth = sim
    eta = np.array([truth.alpha[s] for s in df["stratum"].astype(str)])
    eta = eta + df[list(APPROACHES)].to_numpy(float) @ np.array([truth.beta[a] for a in APPROACHES])
    rng = np.random.default_rng(1)
    p_draws = 1 / (1 + np.exp(-(eta[None, :] + 0.1 * rng.standard_normal((200, 1)))))
    y_rep = (rng.random((100, len(df))) < p_draws[:100]).astype(np.int8)
    out = ppc.ppc_from_replicates(df, y_rep, p_draws=p_draws, design=_design(df, False))
    assert {"calibration", "loo_pit", "approach_by_case", "rate_by_count"} <= set(out["table"])
    assert out["fitted_by_model"].dtype == bool
    n_out, n_checked = ppc.n_outside(out)
    assert n_checked == (~out["fitted_by_model"]).sum() and n_out <= n_checked
    # the true model: the replicated intervals hold the observed values
    assert out.loc[~out["fitted_by_model"], "flag"].mean() < 0.1


@pytest.mark.slow
def test_new_checks_flag_the_main_model_on_stratum_specific_data():
    from cst_bayes.bayes import models

    df = stratum_specific(3)
    res = {}
    for name in ("logit_approaches_strata", "logit_varying_slopes"):
        f = models.fit(name, df, draws=200, tune=300, chains=2, seed=1, progress=False)
        res[name] = ppc.ppc_tables(f, df, n_draws=300, seed=0)
    main, vs = res["logit_approaches_strata"], res["logit_varying_slopes"]
    published = main["table"].isin(["table1", "fig1", "table3"])
    # the published tables are all fitted by the main model: they cannot flag it
    assert main.loc[published, "fitted_by_model"].all()
    assert main.loc[published, "ppp"].min() > 0.05
    assert vs.loc[vs["table"].isin(["table1", "fig1", "table3"]), "ppp"].min() > 0.05
    # the checks outside its sufficient statistics do
    new_main = main.loc[~main["fitted_by_model"], "ppp"]
    new_vs = vs.loc[~vs["fitted_by_model"], "ppp"]
    assert (new_main < 0.01).sum() >= 3
    assert (new_vs < 0.01).sum() <= 1
    assert ppc.n_outside(main)[0] >= 3 * max(1, ppc.n_outside(vs)[0])


def _loo_probabilities_per_agency(p_draws):
    """The reference: az.psislw on every agency's column, as the check first did it."""
    import warnings

    import arviz as az

    p = np.clip(np.asarray(p_draws, dtype=float), 1e-12, 1 - 1e-12)
    out = []
    for ll in (np.log(p), np.log1p(-p)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lw, _ = az.psislw(-ll.T)
        out.append((np.exp(lw) * p.T).sum(axis=1))
    return out[0], out[1]


def test_distinct_columns_expand_back_to_the_array():
    rng = np.random.default_rng(2)
    base = rng.random((5, 4))
    idx = np.array([2, 0, 2, 3, 0, 0, 1, 3])
    a = base[:, idx]
    first, inverse = outside.distinct_columns(a)
    np.testing.assert_array_equal(first, [0, 1, 3, 6])  # first appearance, in order
    np.testing.assert_array_equal(a[:, first[inverse]], a)
    assert len({a[:, j].tobytes() for j in first}) == len(first)


def test_loo_probabilities_from_distinct_columns_equal_per_agency_psis():
    # Per-draw probabilities of a logistic model on a shipped member: agencies with the same
    # stratum and approaches share a column, and the answer must be that of PSIS on every
    # agency's column (the laid-out arrays are the same, so to the last bit).
    from pathlib import Path

    from cst_bayes.data.ensemble import load_frames

    shipped = Path(__file__).resolve().parents[2] / "data" / "reconstructed"
    df = load_frames(shipped)[0]
    rng = np.random.default_rng(8)
    X = np.column_stack(
        [(df["stratum"].astype(str).to_numpy() == s) for s in STRATA]
        + [df[a].to_numpy() for a in APPROACHES]
    ).astype(float)
    S = 400
    coef = rng.normal(0, 0.3, (S, X.shape[1])) + np.r_[[-2.0, -1.0, 0.0, 0.5], 0.2 * rng.random(9)]
    p = 1 / (1 + np.exp(-(coef @ X.T)))  # (S, n)
    n_distinct = len(outside.distinct_columns(p)[0])
    assert n_distinct < len(df) / 3
    q1, q0 = outside.loo_probabilities(p)
    r1, r0 = _loo_probabilities_per_agency(p)
    np.testing.assert_array_equal(q1, r1)
    np.testing.assert_array_equal(q0, r0)
    # and on inputs laid out otherwise: thinned (non-contiguous), Fortran order
    for other in (p[::2, ::3], np.asfortranarray(p)):
        q1, q0 = outside.loo_probabilities(other)
        r1, r0 = _loo_probabilities_per_agency(other)
        np.testing.assert_array_equal(q1, r1)
        np.testing.assert_array_equal(q0, r0)
