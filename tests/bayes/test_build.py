"""The PyMC model: formula versions of shipped specs are the same density; per-slot prior scales."""

from __future__ import annotations

import numpy as np
import pytest
from bayes_support import write_spec
from scipy import stats

from cst_bayes.bayes.build import build, prior_scales
from cst_bayes.bayes.spec import Prior, load_spec
from cst_bayes.core.config import APPROACHES, MODELS_DIR
from cst_bayes.core.errors import InputError

TERMS = " + ".join(APPROACHES)


def _as_formula(name: str, formula: str) -> str:
    """The shipped spec's TOML with predictors/stratum_intercepts/varying_slopes -> a formula."""
    out, done = [], False
    for line in (MODELS_DIR / f"{name}.toml").read_text().splitlines():
        if line.startswith(
            ("predictors =", "outcome =", "stratum_intercepts =", "varying_slopes =")
        ):
            continue
        out.append(line)
        if line.startswith("link =") and not done:  # the [model] table's link
            out.append(f'formula = "{formula}"')
            done = True
    return "\n".join(out) + "\n"


def _logp_at(model, point):
    vals = {}
    for rv in model.free_RVs:
        v = model.rvs_to_values[rv]
        x = np.asarray(point[rv.name], dtype=float)
        vals[v.name] = np.log(x) if v.name.endswith("_log__") else x
    return float(model.compile_logp()(vals))


@pytest.mark.parametrize(
    "name,formula",
    [
        ("logit_approaches_strata", f"any_cst ~ {TERMS} + (1 | stratum)"),
        ("logit_count", "any_cst ~ n_approaches"),
        ("logit_varying_slopes", f"any_cst ~ {TERMS} + ({TERMS} | stratum)"),
    ],
)
def test_formula_version_of_a_shipped_spec_is_the_same_density(sim_df, tmp_path, name, formula):
    legacy = load_spec(name)
    spec = load_spec(write_spec(tmp_path, _as_formula(name, formula), name))
    assert spec.formula and spec.stratum_intercepts == legacy.stratum_intercepts
    assert spec.varying_slopes == legacy.varying_slopes
    m_old, m_new = build(legacy, sim_df), build(spec, sim_df)
    assert [rv.name for rv in m_old.free_RVs] == [rv.name for rv in m_new.free_RVs]
    rng = np.random.default_rng(1)
    K = len(legacy.predictors)
    for _ in range(3):
        point = {
            "mu_stratum": rng.normal(-1, 0.5),
            "sigma_stratum": rng.uniform(0.5, 2),
            "alpha": rng.normal(-1.5, 1, 4),
            "intercept": rng.normal(-1.2, 0.3),
            "beta": rng.normal(0, 0.3, K),
            "sigma_slope": rng.uniform(0.2, 1),
            "z_slope": rng.normal(0, 1, (4, K)),
        }
        assert _logp_at(m_new, point) == pytest.approx(_logp_at(m_old, point), rel=1e-12)


def test_prior_scale_per_slot_scales_exactly_those_priors(sim_df):
    spec = load_spec("logit_count_strata")
    m = build(spec, sim_df, prior_scale={"sigma_stratum": 2.0, "intercept": 3.0})
    p = spec.priors
    point = {"mu_stratum": -0.7, "sigma_stratum": 1.3, "beta": 0.2}
    want = {
        "mu_stratum": stats.norm.logpdf(
            -0.7, p["intercept"].params["mu"], 3 * p["intercept"].params["sigma"]
        ),
        "sigma_stratum": stats.halfnorm.logpdf(1.3, scale=2 * p["sigma_stratum"].params["sigma"]),
        "beta": stats.norm.logpdf(0.2, 0, p["beta"].params["sigma"]),  # not scaled
    }
    import pymc as pm

    for name, w in want.items():
        got = pm.logp(m[name], np.asarray(point[name], dtype=float)).eval()
        assert float(np.sum(got)) == pytest.approx(w, rel=1e-6)
    assert prior_scales(2.0) == {**prior_scales(None), "beta": 2.0}
    with pytest.raises(InputError, match="unknown prior slot"):
        prior_scales({"betas": 2.0})
    with pytest.raises(InputError, match="positive"):
        prior_scales({"beta": -1})


@pytest.mark.parametrize(
    "dist,params,ref",
    [
        ("exponential", {"lam": 0.7}, lambda k: stats.expon(scale=k / 0.7)),
        ("gamma", {"alpha": 2.0, "beta": 1.5}, lambda k: stats.gamma(2.0, scale=k / 1.5)),
        ("halfnormal", {"sigma": 2.0}, lambda k: stats.halfnorm(scale=2.0 * k)),
    ],
)
def test_scaled_prior_is_the_law_of_k_times_the_parameter(dist, params, ref):
    """Prior.scaled(k): the distribution of k * X for X from the prior (scipy's scale family)."""
    import pymc as pm

    from cst_bayes.bayes.build import _prior_rv

    sc = Prior(dist, params, "r").scaled(2.5)
    with pm.Model() as m:
        _prior_rv(pm, "x", sc)
    x = np.array([0.3, 1.1, 4.0])
    got = [float(pm.logp(m["x"], v).eval()) for v in x]
    np.testing.assert_allclose(got, ref(2.5).logpdf(x), rtol=1e-6)


def test_logbinomial_density_equals_scipy_bernoulli(sim_df):
    """Bounded log link: P(y=1) = exp(-softplus(-eta)), the agency-level Bernoulli likelihood."""
    spec = load_spec("logbinomial_approaches_strata")
    m = build(spec, sim_df)
    rng = np.random.default_rng(2)
    point = {
        "mu_stratum": -1.6,
        "sigma_stratum": 1.1,
        "alpha": -1.6 + 1.1 * rng.normal(0, 1, 4),  # centered stratum intercepts
        "beta": rng.normal(0, 0.2, 9),
    }
    vals = {}
    for rv in m.free_RVs:
        v = m.rvs_to_values[rv]
        x = np.asarray(point[rv.name], dtype=float)
        vals[v.name] = np.log(x) if v.name.endswith("_log__") else x
    got = float(m.compile_logp(jacobian=False)(vals))
    alpha = point["alpha"]
    X = sim_df[list(APPROACHES)].to_numpy(float)
    eta = alpha[sim_df["stratum"].cat.codes.to_numpy()] + (X - X.mean(0)) @ point["beta"]
    p = np.exp(-np.logaddexp(0, -eta))
    ll = stats.bernoulli.logpmf(sim_df["any_cst"].to_numpy(), p).sum()
    pri = (
        stats.norm.logpdf(point["mu_stratum"], -1.8, 1.5)
        + stats.halfnorm.logpdf(point["sigma_stratum"], scale=1.5)
        + stats.norm.logpdf(alpha, point["mu_stratum"], point["sigma_stratum"]).sum()
        + stats.norm.logpdf(point["beta"], 0, 1.0).sum()
    )
    assert got == pytest.approx(ll + pri, rel=1e-9)


def test_prior_and_posterior_predictive_sampling_work(sim_df):
    """The observed variable makes PyMC's predictive sampling work; the prior predictive total
    of cases equals a NumPy simulation from the priors within Monte Carlo error."""
    import pymc as pm

    from cst_bayes.bayes.design import collapse

    spec = load_spec("logit_count_strata")
    m = build(spec, sim_df)
    pat = collapse(spec, sim_df)
    n = pat.n1 + pat.n0
    with m:
        pp = pm.sample_prior_predictive(draws=2000, random_seed=1)
    y = pp.prior_predictive["any_cst"].to_numpy().reshape(2000, -1)
    assert y.shape[1] == len(n) and (y <= n).all() and (y >= 0).all()
    rng = np.random.default_rng(2)
    D = 20000
    mu = rng.normal(-1.5, 2.5, D)
    sig = np.abs(rng.normal(0, 2.0, D))
    alpha = mu[:, None] + sig[:, None] * rng.normal(size=(D, 4))
    pr = spec.priors
    beta = rng.normal(pr["beta"].params["mu"], pr["beta"].params["sigma"], D)
    assert pr["intercept"].params == {"mu": -1.5, "sigma": 2.5}
    assert pr["sigma_stratum"].params == {"sigma": 2.0}
    eta = alpha[:, pat.stratum] + beta[:, None] * (pat.X[:, 0] - pat.xbar[0])[None, :]
    total = (n / (1 + np.exp(-eta))).sum(axis=1)
    se = np.sqrt(y.sum(1).var() / 2000 + total.var() / D)
    assert abs(y.sum(1).mean() - total.mean()) < 4 * se
    with m:
        idata = pm.sample(
            draws=100,
            tune=100,
            chains=1,
            random_seed=1,
            progressbar=False,
            compute_convergence_checks=False,
        )
        post = pm.sample_posterior_predictive(idata, random_seed=1, progressbar=False)
    yrep = post.posterior_predictive["any_cst"].to_numpy().reshape(100, -1)
    # the posterior predictive total of cases is centred near the observed total
    assert abs(yrep.sum(1).mean() - pat.n1.sum()) < 4 * yrep.sum(1).std()
