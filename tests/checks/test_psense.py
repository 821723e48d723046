"""Power-scaling sensitivity: priors' log densities against PyMC, the diagnosis rule, and a
diagnosis that fires on a conflicting informative prior and stays quiet on weak priors
(simulated data, known truth)."""

from __future__ import annotations

import numpy as np
import pytest

from cst_bayes.bayes.spec import Prior, load_spec, spec_from_text
from cst_bayes.checks import psense

PRIORS = [
    Prior("normal", {"mu": -1.5, "sigma": 2.5}, ""),
    Prior("student_t", {"nu": 3.0, "mu": 0.5, "sigma": 1.5}, ""),
    Prior("halfnormal", {"sigma": 1.0}, ""),
    Prior("halfstudent_t", {"nu": 4.0, "sigma": 2.0}, ""),
    Prior("exponential", {"lam": 2.0}, ""),
    Prior("gamma", {"alpha": 2.0, "beta": 0.1}, ""),
]


@pytest.mark.parametrize("prior", PRIORS, ids=lambda p: p.dist)
def test_prior_logpdf_equals_pymc(prior):
    import pymc as pm

    from cst_bayes.bayes.build import _prior_rv

    x = np.array([0.05, 0.3, 1.0, 2.7, 11.0])
    with pm.Model():
        rv = _prior_rv(pm, "v", prior)
    ref = pm.logp(rv, x).eval()
    # PyMC rounds its normalising constants at ~1e-8
    np.testing.assert_allclose(psense.prior_logpdf(prior, x), ref, rtol=1e-7)


def test_diagnosis_rule():
    assert psense.diagnosis(0.06, 0.2) == psense.CONFLICT
    assert psense.diagnosis(0.06, 0.01) == psense.STRONG_PRIOR
    assert psense.diagnosis(0.01, 0.2) == ""
    assert psense.diagnosis(0.01, 0.01) == ""


def _conflicting(spec, mu: float, sigma: float):
    text = spec.text.replace(
        '[priors.beta]\ndist = "normal"\nmu = 0.0\nsigma = 2.5',
        f'[priors.beta]\ndist = "normal"\nmu = {mu}\nsigma = {sigma}',
    )
    assert text != spec.text
    return spec_from_text(text, spec.name, "test")


@pytest.fixture(scope="module")
def fits(sim_df):
    from cst_bayes.bayes.models import fit

    spec = load_spec("logit_approaches")
    kw = dict(draws=500, tune=500, chains=2, seed=3, progress=False)
    weak = fit(spec, sim_df, **kw)
    # every approach's log OR a priori 2 +- 0.15 (OR 7.4): far from the simulated effects
    strong = _conflicting(spec, 2.0, 0.15)
    conflict = fit(strong, sim_df, **kw)
    return spec, weak, strong, conflict


@pytest.mark.slow
def test_log_prior_equals_pymc_compute_log_prior(fits, sim_df):
    import pymc as pm

    from cst_bayes.bayes.build import build

    spec, weak, _, _ = fits
    model = build(spec, sim_df)
    lp = pm.compute_log_prior(
        weak.idata.copy(), model=model, extend_inferencedata=False, progressbar=False
    )
    ref = sum(lp[v].to_numpy().reshape(*lp[v].shape[:2], -1).sum(-1) for v in lp.data_vars)
    np.testing.assert_allclose(psense.log_prior(spec, weak.idata), ref, rtol=1e-7)


@pytest.mark.slow
def test_weak_priors_are_not_flagged(fits, sim_df):
    spec, weak, _, _ = fits
    t = psense.power_scaling_table(weak, spec, sim_df)
    assert set(t.columns) == set(psense.PSENSE_COLUMNS)
    assert {"national_share", "pr", "term"} <= set(t["kind"])
    assert (t["prior_sensitivity"] < psense.THRESHOLD).all(), t
    assert (t["diagnosis"] == "").all()
    # the data inform every quantity
    assert (t["likelihood_sensitivity"] > psense.THRESHOLD).all(), t


@pytest.mark.slow
def test_conflicting_prior_is_flagged(fits, sim_df):
    _, _, strong, conflict = fits
    t = psense.power_scaling_table(conflict, strong, sim_df).set_index("quantity")
    terms = [a for a in strong.predictors]
    assert (t.loc[terms, "diagnosis"] == psense.CONFLICT).sum() >= 8, t
    assert (t.loc[terms, "prior_sensitivity"] > 0.1).all()


@pytest.mark.slow
def test_pooled_fit_member_by_member(fits, sim_df):
    from cst_bayes.bayes.pooling import stack_members

    spec, weak, _, _ = fits
    pooled = stack_members([weak.idata, weak.idata])
    one = psense.power_scaling_table(weak, spec, sim_df, derived=False)
    both = psense.power_scaling_table(pooled, spec, [sim_df, sim_df], derived=False)
    assert (both["n_members"] == 2).all()
    np.testing.assert_allclose(both["prior_sensitivity"], one["prior_sensitivity"])
    np.testing.assert_allclose(both["likelihood_sensitivity"], one["likelihood_sensitivity"])
    with pytest.raises(Exception, match="needs 2 data frames"):
        psense.power_scaling_table(pooled, spec, [sim_df], derived=False)


@pytest.mark.slow
def test_write_psense(fits, sim_df, tmp_path):
    import pandas as pd

    spec, weak, _, _ = fits
    psense.write_psense(weak, spec, sim_df, tmp_path, status="SYNTHETIC", derived=False)
    t = pd.read_csv(tmp_path / "psense.csv")
    assert (t["data_status"] == "SYNTHETIC").all()
    assert (tmp_path / "psense.meta.json").is_file()


def test_derived_quantities_carry_their_convergence_diagnostics():
    """R-hat and bulk ESS of each derived quantity, computed on its own draws (arviz)."""
    import arviz as az
    import numpy as np

    from cst_bayes.bayes import models
    from cst_bayes.checks import psense
    from cst_bayes.data.simulate import simulate

    df, _ = simulate(12)
    fit = models.fit(
        "logit_count_strata", df, draws=200, tune=200, chains=2, seed=5, progress=False
    )
    t = psense.power_scaling_table(fit, fit.spec, df).set_index("quantity")
    share = psense.derived_draws(fit.spec, fit.idata, df)["national_share"][1]
    assert t.loc["national_share", "r_hat"] == pytest.approx(float(az.rhat(share)))
    assert t.loc["national_share", "ess_bulk"] == pytest.approx(float(az.ess(share, method="bulk")))
    assert np.isfinite(t["r_hat"]).all() and (t["ess_bulk"] > 0).all()
