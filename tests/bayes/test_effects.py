"""Derived quantities follow the formula: g-computation PRs with an interaction, file round trip."""

from __future__ import annotations

import numpy as np
import pytest

from cst_bayes.bayes.effects import predict_risk, prevalence_ratios, switchable_terms
from cst_bayes.bayes.fit import fit
from cst_bayes.bayes.io import read_fit, write_fit
from cst_bayes.core.config import STRATA

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def interaction_fit(sim_df, tmp_path_factory):
    from bayes_support import INTERACTION, write_spec

    p = write_spec(tmp_path_factory.mktemp("spec"), INTERACTION, "logit_interaction")
    return fit(p, sim_df, draws=300, tune=300, chains=2, seed=3, progress=False)


def _hand_risk(f, df, vs, move_product=True):
    """P(any_cst) by hand from the posterior draws: products and dummies built here in NumPy."""
    post = f.idata.posterior
    b = post["beta"].to_numpy().reshape(-1, 7)
    a = post["intercept"].to_numpy().ravel()
    court, tf = df["court"].to_numpy(float), df["task_force"].to_numpy(float)
    vs0 = df["victim_service"].to_numpy(float)
    s = df["stratum"].astype(str).to_numpy()
    dummies = [(s == k).astype(float) for k in STRATA[1:]]
    xbar = np.column_stack([court, vs0, tf, vs0 * tf, *dummies]).mean(0)  # centring: fit data
    v = np.full(len(df), float(vs))
    prod = v * tf if move_product else vs0 * tf
    X = np.column_stack([court, v, tf, prod, *dummies])
    eta = a[:, None] + b @ (X - xbar).T
    return 1 / (1 + np.exp(-eta))


def test_prevalence_ratio_moves_the_interaction(interaction_fit, sim_df):
    f = interaction_fit
    assert "victim_service:task_force" in set(f.summary["term"])
    assert switchable_terms(f, sim_df) == ["court", "task_force", "victim_service"]
    pr = prevalence_ratios(f, sim_df, terms=["victim_service"]).iloc[0]
    r1 = _hand_risk(f, sim_df, 1).mean(axis=1)
    r0 = _hand_risk(f, sim_df, 0).mean(axis=1)
    want = np.quantile(r1 / r0, [0.5, 0.025, 0.975])
    np.testing.assert_allclose([pr.estimate, pr.ci_low, pr.ci_high], want, rtol=1e-10)
    # switching only the main-effect column and leaving the product (the old bug) is different
    r1_bug = _hand_risk(f, sim_df, 1, move_product=False).mean(axis=1)
    r0_bug = _hand_risk(f, sim_df, 0, move_product=False).mean(axis=1)
    assert abs(np.median(r1_bug / r0_bug) - pr.estimate) > 0.01


def test_round_trip_keeps_every_term(interaction_fit, sim_df, tmp_path):
    import pandas as pd

    nc, csv = write_fit(interaction_fit, tmp_path)
    back = read_fit(nc)
    assert back.spec.formula == interaction_fit.spec.formula
    assert back.spec.term_prior("victim_service:task_force").dist == "student_t"
    pd.testing.assert_frame_equal(back.summary, interaction_fit.summary)
    np.testing.assert_array_equal(
        predict_risk(back, sim_df.head(50)), predict_risk(interaction_fit, sim_df.head(50))
    )
    status = "SYNTHETIC" if sim_df.attrs.get("synthetic") else "RESTRICTED"
    assert pd.read_csv(csv)["data_status"].eq(status).all()


def test_logbinomial_recovers_known_prevalence_ratios(sim_df, interaction_fit):
    """Data simulated from a log-binomial model with known PRs (risks 3-40%): the model's 95%
    intervals hold the true PRs; the comparison table puts them beside g-computation PRs."""
    from cst_bayes.bayes.effects import compare_prevalence_ratios
    from cst_bayes.core.config import APPROACHES

    rng = np.random.default_rng(11)
    true = dict.fromkeys(APPROACHES, 1.0) | {"court": 1.5, "victim_service": 1.8, "mdt": 0.7}
    base = {"1-49": 0.03, "50-999": 0.08, "state": 0.1, "1000+": 0.12}
    X = sim_df[list(APPROACHES)].to_numpy(float)
    risk = sim_df["stratum"].astype(str).map(base).to_numpy() * np.exp(
        X @ np.log([true[a] for a in APPROACHES])
    )
    assert risk.max() < 0.75
    df = sim_df.assign(any_cst=(rng.random(len(sim_df)) < risk).astype(int))
    f = fit(
        "logbinomial_approaches_strata", df, draws=400, tune=400, chains=2, seed=2, progress=False
    )
    s = f.summary.set_index("term")
    inside = [s.at[a, "ci_low"] <= true[a] <= s.at[a, "ci_high"] for a in APPROACHES]
    assert sum(inside) >= 8, s.loc[list(APPROACHES), ["estimate", "ci_low", "ci_high"]]
    assert s.at["victim_service", "p_gt_1"] > 0.95
    logit = fit(
        "logit_approaches_strata", df, draws=300, tune=300, chains=2, seed=2, progress=False
    )
    cmp = compare_prevalence_ratios(logit, f, df)
    assert list(cmp["term"]) == list(APPROACHES)
    # both estimate the same PRs here (small risks): medians within a factor 1.3
    ratio = cmp["gcomp_estimate"] / cmp["logbinomial_estimate"]
    assert ratio.between(1 / 1.3, 1.3).all(), cmp
