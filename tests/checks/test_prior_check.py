"""Prior predictive checks (cst_bayes.checks.prior_check): prior draws against scipy, a check
that fires for a prior that contradicts the data and not for one centred on the truth, and
the CLI."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cst_bayes.checks import prior_check
from cst_bayes.core.config import COUNT


@pytest.mark.parametrize(
    "dist,params,ref",
    [
        ("normal", {"mu": -1.5, "sigma": 2.5}, stats.norm(-1.5, 2.5)),
        ("student_t", {"nu": 3, "mu": 0.5, "sigma": 2.0}, stats.t(3, 0.5, 2.0)),
        ("halfnormal", {"sigma": 2.0}, stats.halfnorm(0, 2.0)),
        ("halfstudent_t", {"nu": 4, "sigma": 1.0}, stats.halfcauchy(0, 1.0)),
        ("exponential", {"lam": 0.5}, stats.expon(0, 2.0)),
        ("gamma", {"alpha": 2.0, "beta": 0.1}, stats.gamma(2.0, 0, 10.0)),
    ],
)
def test_prior_draws_follow_scipy(dist, params, ref):
    from cst_bayes.bayes.models import Prior

    x = prior_check.draw_prior(Prior(dist, params, ""), 20_000, np.random.default_rng(0))
    if dist == "halfstudent_t":  # |t_nu| has no scipy frozen form: compare with |t| draws
        ref = stats.t(4, 0, 1.0)
        assert stats.ks_2samp(x, np.abs(ref.rvs(20_000, random_state=1))).pvalue > 1e-3
    else:
        assert stats.kstest(x, ref.cdf).pvalue > 1e-3


def _spec(intercept_mu: float, intercept_sd: float, beta_sd: float):
    from cst_bayes.bayes.models import Prior, load_spec

    s = load_spec("logit_approaches")
    pri = dict(s.priors)
    pri["intercept"] = Prior("normal", {"mu": intercept_mu, "sigma": intercept_sd}, "")
    pri["beta"] = Prior("normal", {"mu": 0.0, "sigma": beta_sd}, "")
    return dataclasses.replace(s, priors=pri)


def test_prior_check_fires_for_a_conflicting_prior_only(sim_df):
    # logit_approaches: one intercept for the centred predictors. A prior concentrated at
    # logit(0.17) (the data's case rate) is consistent with the observed case count; one at
    # logit(0.9) is not.
    good = prior_check.prior_check_table(_spec(-1.6, 0.1, 0.05), sim_df, n_draws=200, seed=1)
    bad = prior_check.prior_check_table(_spec(2.2, 0.1, 0.05), sim_df, n_draws=200, seed=1)
    row = lambda t: t[(t["statistic"] == "n_yes") & (t["stratum_or_term"] == "all")].iloc[0]  # noqa: E731
    assert not row(good)["flag"] and row(good)["ppp"] > 0.05
    assert row(bad)["flag"] and row(bad)["ppp"] < 0.01
    assert list(good.columns[:9]) == [
        "table",
        "statistic",
        "stratum_or_term",
        "observed",
        "published",
        "rep_median",
        "rep_low",
        "rep_high",
        "ppp",
    ]


def test_prior_replicates_of_every_shipped_family(sim_df):
    from cst_bayes.bayes.models import load_spec

    for name in ("logit_varying_slopes", "poisson_count_strata", "count_betabinomial_strata"):
        spec = load_spec(name)
        y, mean = prior_check.prior_replicates(spec, sim_df, n_draws=20, seed=0)
        assert y.shape == (20, len(sim_df)) and mean.shape == y.shape
        if spec.outcome == COUNT:
            assert y.min() >= 0 and y.max() <= 9
    a, _ = prior_check.prior_replicates(load_spec("logit_count"), sim_df, n_draws=5, seed=3)
    b, _ = prior_check.prior_replicates(load_spec("logit_count"), sim_df, n_draws=5, seed=3)
    np.testing.assert_array_equal(a, b)


def test_cli_writes_csv_and_figure(sim_df, tmp_path):
    from cst_bayes.cli import main
    from cst_bayes.core.fileio import write_microdata

    csv = write_microdata(tmp_path / "d.csv", sim_df.drop(columns=[COUNT]), synthetic=True)
    out = tmp_path / "out"
    args = ["prior-check", "logit_approaches_strata", "--data", str(csv), "--out", str(out)]
    assert main([*args, "--draws", "60"]) == 0
    assert {"prior_check.csv", "prior_check.png"} <= {p.name for p in out.iterdir()}
    t = pd.read_csv(out / "prior_check.csv")
    assert t["data_status"].eq("SYNTHETIC").all() and "fitted_by_model" in t
    assert main(["prior-check", "no_such_model", "--data", str(csv), "--out", str(out)]) == 2


def test_every_shipped_spec_has_a_prior_predictive_check():
    """Weak priors put some prior draws far in the tails (rates of e^20 and more): every family
    must still give valid replicates, and every statistic a replicated interval."""
    from cst_bayes.bayes import models
    from cst_bayes.checks.prior_check import prior_check_table
    from cst_bayes.data.simulate import simulate

    df, _ = simulate(8)
    for name in models.list_specs()["name"]:
        t = prior_check_table(models.load_spec(name), df, n_draws=40, seed=1)
        assert len(t) and t["rep_median"].notna().all(), name
