"""Bayesian models: specs, builder likelihood, fits, recovery, agreement with the MLE, files, CLI.

Expected values come from independent sources: scipy's densities (builder log-density),
statsmodels' MLE (posterior medians under weak priors), the known truth of simulated data
(coverage), and the published Table 3 CSV (comparison). Real sampling uses short chains; all
fitting tests share one xdist worker (``xdist_group``) so each model compiles once.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cst_bayes.bayes import models as M
from cst_bayes.core.config import APPROACHES, PUBLISHED_DIR, STRATA
from cst_bayes.core.errors import SamplerTrouble, SpecError
from cst_bayes.data.simulate import simulate

SHIPPED = [
    "logit_approaches",
    "logit_approaches_strata",
    "logit_count",
    "logit_count_strata",
    "logit_varying_slopes",
    "poisson_approaches_strata",
    "poisson_count_strata",
    "count_poisson_strata",
    "count_binomial_strata",
    "count_betabinomial_strata",
]
FAST = dict(draws=300, tune=300, chains=2, progress=False, sampler="nutpie-c")
fitting = pytest.mark.xdist_group("models-fits")


# ------------------------------------------------------------------------------------------------
# Specs
# ------------------------------------------------------------------------------------------------
def test_shipped_specs_load_and_list():
    listed = M.list_specs()
    assert set(SHIPPED) <= set(listed["name"])
    assert "weighting" not in set(listed["name"])  # the weighting scenarios are not a model
    for name in SHIPPED:
        s = M.load_spec(name)
        assert s.name == name
        assert all(p.reason for p in s.priors.values())
    assert M.load_spec("poisson_approaches_strata").note.startswith(
        "A Poisson likelihood on a 0/1 outcome"
    )
    assert M.load_spec("logit_varying_slopes").varying_slopes


def _write_variant(
    tmp_path: Path, old: str, new: str, base: str = "logit_approaches_strata"
) -> Path:
    text = (M.MODELS_DIR / f"{base}.toml").read_text()
    assert old in text
    p = tmp_path / "bad.toml"
    p.write_text(text.replace(old, new, 1))
    return p


@pytest.mark.parametrize(
    "old,new,key",
    [
        ('family = "bernoulli"', 'family = "gaussian"', "model.family"),
        ('link = "logit"', 'link = "probit"', "model.link"),
        ('"court",', '"courts",', "model.predictors"),
        ('dist = "halfnormal"', 'dist = "cauchy"', "priors.sigma_stratum.dist"),
        ("[priors.beta]", "[priors.betas]", "priors.betas"),
        ("varying_slopes = false", "varying_slopes = false\nshrinkage = 1", "hierarchy.shrinkage"),
        ("mu = 0.0\nsigma = 2.5", "mu = 0.0\nsigma = -2.5", "priors.beta.sigma"),
        ('link = "logit"', 'link = "log"', "model.link"),  # bernoulli-log is not offered
    ],
)
def test_bad_spec_names_file_and_key(tmp_path, old, new, key):
    p = _write_variant(tmp_path, old, new)
    with pytest.raises(SpecError) as e:
        M.load_spec(p)
    assert str(p) in str(e.value) and key in str(e.value)


def test_spec_needs_reason_and_no_unused_prior(tmp_path):
    text = (M.MODELS_DIR / "logit_approaches.toml").read_text()
    p = tmp_path / "x.toml"
    p.write_text(
        text + '\n[priors.sigma_stratum]\ndist = "halfnormal"\nsigma = 1.0\nreason = "x"\n'
    )
    with pytest.raises(SpecError, match="not used"):
        M.load_spec(p)
    import re

    p.write_text(re.sub(r'reason = "weakly[^\n]*"', 'reason = ""', text))
    with pytest.raises(SpecError, match=r"priors\.beta\.reason"):
        M.load_spec(p)
    with pytest.raises(SpecError, match="no such model spec"):
        M.load_spec("no_such_model")


# ------------------------------------------------------------------------------------------------
# Builder: the collapsed pattern likelihood equals the agency-level likelihood (scipy)
# ------------------------------------------------------------------------------------------------
def _scipy_logp(spec, df, point, prior_scale=1.0):
    """Prior + agency-level log-likelihood computed independently with scipy.stats."""
    pri = spec.priors
    lp = 0.0

    def prior(name, x):
        p = pri[name].params
        sc = prior_scale if name == "beta" else 1.0
        if pri[name].dist == "normal":
            return stats.norm.logpdf(x, p["mu"], p["sigma"] * sc).sum()
        if pri[name].dist == "halfnormal":
            return (np.log(2) + stats.norm.logpdf(x, 0, p["sigma"])).sum()
        if pri[name].dist == "gamma":
            return stats.gamma.logpdf(x, p["alpha"], scale=1 / p["beta"]).sum()
        raise AssertionError(pri[name].dist)

    codes = df["stratum"].cat.codes.to_numpy()
    if spec.pooled_strata:
        lp += prior("intercept", point["mu_stratum"]) + prior(
            "sigma_stratum", point["sigma_stratum"]
        )
        lp += stats.norm.logpdf(point["alpha"], point["mu_stratum"], point["sigma_stratum"]).sum()
        eta = point["alpha"][codes]
    else:
        lp += prior("intercept", point["intercept"])
        eta = np.full(len(df), point["intercept"])
    if spec.predictors:
        X = df[list(spec.predictors)].to_numpy(float)
        lp += prior("beta", point["beta"])
        eta = eta + (X - X.mean(0)) @ point["beta"]
    y = df[spec.outcome].to_numpy()
    if spec.family == "bernoulli":
        ll = stats.bernoulli.logpmf(y, 1 / (1 + np.exp(-eta)))
    elif spec.family == "poisson":
        ll = stats.poisson.logpmf(y, np.exp(eta))
    elif spec.family == "binomial":
        ll = stats.binom.logpmf(y, 9, 1 / (1 + np.exp(-eta)))
    else:
        k = point["concentration"]
        lp += prior("concentration", k)
        p = 1 / (1 + np.exp(-eta))
        ll = stats.betabinom.logpmf(y, 9, p * k, (1 - p) * k)
    return lp + ll.sum()


@pytest.mark.parametrize(
    "name",
    [
        "logit_approaches",
        "logit_count_strata",
        "poisson_approaches_strata",
        "count_poisson_strata",
        "count_binomial_strata",
        "count_betabinomial_strata",
    ],
)
def test_pattern_likelihood_matches_agency_level_scipy(sim_df, name):
    spec = M.load_spec(name)
    model = M.build(spec, sim_df, prior_scale=1.7)
    rng = np.random.default_rng(3)
    point = {
        "mu_stratum": -1.0,
        "sigma_stratum": 1.3,
        "alpha": rng.normal(-1.5, 1, 4),
        "intercept": -1.2,
        "beta": rng.normal(0, 0.3, len(spec.predictors)),
        "concentration": 7.5,
    }
    if spec.outcome == "n_approaches":
        point["alpha"] = rng.normal(0.2, 0.3, 4) + (1.4 if spec.family == "poisson" else 0)
    values = {}
    for rv in model.free_RVs:
        v = model.rvs_to_values[rv]
        x = np.asarray(point[rv.name], dtype=float)
        values[v.name] = np.log(x) if v.name.endswith("_log__") else x
    got = model.compile_logp(jacobian=False)(values)
    want = _scipy_logp(spec, sim_df, point, prior_scale=1.7)
    assert got == pytest.approx(want, rel=1e-7)  # scipy binom uses Loader's saddle-point form


def test_collapse_keeps_totals(sim_df):
    spec = M.load_spec("logit_approaches_strata")
    pat = M.collapse(spec, sim_df)
    assert pat.w1.sum() == sim_df["any_cst"].sum()
    assert pat.w0.sum() + pat.w1.sum() == len(sim_df)
    assert len(pat.w1) < len(sim_df) / 2  # the point of collapsing
    w = np.random.default_rng(1).uniform(0.5, 3, len(sim_df))
    wn = M.normalise_weights(w, len(sim_df))
    assert wn.sum() == pytest.approx(len(sim_df))
    pw = M.collapse(spec, sim_df, wn)
    assert pw.w1.sum() == pytest.approx((wn * sim_df["any_cst"]).sum())
    assert (M.normalise_weights(np.full(len(sim_df), 3.7), len(sim_df)) == 1.0).all()


# ------------------------------------------------------------------------------------------------
# Fits (short chains)
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def main_fit(sim_df):
    return M.fit("logit_approaches_strata", sim_df, seed=11, **FAST)


@fitting
@pytest.mark.slow
def test_fit_structure_and_provenance(main_fit, sim_df):
    f = main_fit
    assert list(f.summary.columns) == M.SUMMARY_COLUMNS
    assert list(f.summary["term"]) == [
        *APPROACHES,
        "stratum[50-999]",
        "stratum[state]",
        "stratum[1000+]",
    ]
    for g in (
        "posterior",
        "posterior_predictive",
        "log_likelihood",
        "observed_data",
        "sample_stats",
    ):
        assert g in f.idata.groups()
    assert f.idata.log_likelihood["any_cst"].shape == (2, 300, len(sim_df))
    assert set(f.idata.posterior["alpha"].coords["stratum"].to_numpy()) == set(STRATA)
    a = f.idata.posterior.attrs
    assert (
        a["seed"] == 11
        and a["sampler"] == "nutpie-c"
        and len(a["spec_hash"]) == 64
        and a["synthetic"] == 1
    )
    assert a["version_pymc"] and a["data_hash"]
    assert f.diagnostics["divergences"] == 0 and f.diagnostics["max_r_hat"] < 1.02
    # the summary's estimate is the posterior median of exp(beta)
    b = np.exp(f.idata.posterior["beta"].sel(approach="mdt").to_numpy())
    assert f.summary.set_index("term").loc["mdt", "estimate"] == pytest.approx(np.median(b))


@fitting
@pytest.mark.slow
def test_same_seed_same_numbers_and_equal_weights_reproduce(sim_df, main_fit):
    again = M.fit("logit_approaches_strata", sim_df, seed=11, **FAST)
    weighted = M.fit(
        "logit_approaches_strata", sim_df, seed=11, weights=np.full(len(sim_df), 2.5), **FAST
    )
    for other in (again, weighted):
        np.testing.assert_array_equal(
            other.idata.posterior["beta"].to_numpy(), main_fit.idata.posterior["beta"].to_numpy()
        )
        np.testing.assert_array_equal(
            other.idata.log_likelihood["any_cst"].to_numpy(),
            main_fit.idata.log_likelihood["any_cst"].to_numpy(),
        )
    other = M.fit("logit_approaches_strata", sim_df, seed=12, **FAST)
    assert not np.array_equal(
        other.idata.posterior["beta"].to_numpy(), main_fit.idata.posterior["beta"].to_numpy()
    )


@fitting
@pytest.mark.slow
def test_weighted_fit_moves_toward_weighted_mle(sim_df):
    """Up-weighting the agencies with a case must raise the intercepts (pseudo-likelihood acts)."""
    w = np.where(sim_df["any_cst"] == 1, 3.0, 1.0)
    # numba nutpie: the second fit re-uses the compiled model with new data (a model without strata)
    fast = {**FAST, "sampler": "nutpie"}
    f = M.fit("logit_count", sim_df, seed=1, weights=w, **fast)
    u = M.fit("logit_count", sim_df, seed=1, **fast)
    assert (
        float(f.idata.posterior["intercept"].mean())
        > float(u.idata.posterior["intercept"].mean()) + 0.5
    )
    assert "log_likelihood" in f.idata.groups() and "posterior_predictive" in f.idata.groups()


@fitting
@pytest.mark.slow
def test_weak_priors_agree_with_statsmodels_mle(sim_df, main_fit):
    import statsmodels.api as sm

    # (1) no strata: every coefficient; (2) strata: the approach coefficients and the size contrasts
    X = sm.add_constant(sim_df[list(APPROACHES)].astype(float))
    mle = sm.Logit(sim_df["any_cst"].astype(float), X).fit(disp=0).params
    f = M.fit("logit_approaches", sim_df, seed=3, prior_scale=10.0, **FAST)
    got = np.log(f.summary.set_index("term")["estimate"])
    for a in APPROACHES:
        assert abs(got[a] - mle[a]) < 0.1, (a, got[a], mle[a])
    d = pd.get_dummies(sim_df["stratum"], drop_first=True, dtype=float)
    X2 = sm.add_constant(pd.concat([sim_df[list(APPROACHES)].astype(float), d], axis=1))
    mle2 = sm.Logit(sim_df["any_cst"].astype(float), X2).fit(disp=0).params
    f2 = M.fit("logit_approaches_strata", sim_df, seed=3, prior_scale=10.0, **FAST)
    got2 = np.log(f2.summary.set_index("term")["estimate"])
    for a in APPROACHES:
        assert abs(got2[a] - mle2[a]) < 0.1, (a, got2[a], mle2[a])
    # size contrasts: partial pooling of four intercepts shrinks a little; the big strata stay close
    assert abs(got2["stratum[50-999]"] - mle2["50-999"]) < 0.1


@fitting
@pytest.mark.slow
def test_predict_replicate_and_prevalence_ratios(main_fit, sim_df, sim):
    f = main_fit
    risk = M.predict_risk(f, sim_df)
    assert risk.shape == (600, len(sim_df)) and ((risk > 0) & (risk < 1)).all()
    assert risk.mean(axis=1).mean() == pytest.approx(sim_df["any_cst"].mean(), abs=0.01)
    rep = M.replicate(f, sim_df, n_draws=200, seed=4)
    assert rep.shape == (200, len(sim_df)) and set(np.unique(rep)) <= {0, 1}
    np.testing.assert_array_equal(rep, M.replicate(f, sim_df, n_draws=200, seed=4))
    # replicated cases by stratum bracket the observed ones (the model fits its own data)
    codes = sim_df["stratum"].cat.codes.to_numpy()
    for j in range(4):
        obs = sim_df["any_cst"].to_numpy()[codes == j].sum()
        r = rep[:, codes == j].sum(axis=1)
        assert np.quantile(r, 0.005) <= obs <= np.quantile(r, 0.995)
    # g-computation PR: the interval covers the PR computed from the true parameters on the same agencies
    truth = sim[1]
    X = sim_df[list(APPROACHES)].to_numpy(float)
    alpha = np.array([truth.alpha[s] for s in STRATA])[codes]
    b = np.array([truth.beta[a] for a in APPROACHES])
    pr = M.prevalence_ratios(f, sim_df)
    assert list(pr.columns) == M.PR_COLUMNS
    covered = 0
    for k, a in enumerate(APPROACHES):
        x1, x0 = X.copy(), X.copy()
        x1[:, k], x0[:, k] = 1, 0
        p1 = 1 / (1 + np.exp(-(alpha + x1 @ b)))
        p0 = 1 / (1 + np.exp(-(alpha + x0 @ b)))
        row = pr.set_index("term").loc[a]
        covered += row.ci_low <= p1.mean() / p0.mean() <= row.ci_high
    assert covered >= 7  # 9 nominal-95% intervals
    # PR is closer to 1 than OR for a common outcome, and the frame PR differs from the sample PR
    prf = M.prevalence_ratios(f, sim_df, frame_weights=True)
    assert (prf["scope"] == "frame").all()
    assert not np.allclose(prf["estimate"], pr["estimate"])
    orr = f.summary.set_index("term").loc[list(APPROACHES), "estimate"].to_numpy()
    assert (np.abs(np.log(pr["estimate"].to_numpy())) <= np.abs(np.log(orr)) + 1e-9).all()


@fitting
@pytest.mark.slow
def test_count_models_fit_and_replicate(sim_df):
    f = M.fit("count_betabinomial_strata", sim_df, seed=2, **FAST)
    assert list(f.summary["term"]) == ["stratum[50-999]", "stratum[state]", "stratum[1000+]"]
    rep = M.replicate(f, sim_df, n_draws=100, seed=1)
    assert rep.min() >= 0 and rep.max() <= 9
    mean = M.predict_risk(f, sim_df).mean(axis=0)
    obs = sim_df.groupby("stratum", observed=True)["n_approaches"].mean()
    for j, s in enumerate(STRATA):
        assert mean[sim_df["stratum"].cat.codes.to_numpy() == j].mean() == pytest.approx(
            obs[s], abs=0.5
        )
    # overdispersion: correlated approaches make the concentration finite and small-ish
    assert float(f.idata.posterior["concentration"].median()) < 60
    import arviz as az

    assert np.isfinite(az.loo(f.idata).elpd_loo)


@fitting
@pytest.mark.slow
def test_write_read_roundtrip_and_comparison(main_fit, sim_df, tmp_path):
    nc, csv = M.write_fit(main_fit, tmp_path)
    assert (
        nc.name == "logit_approaches_strata.nc"
        and csv.name == "logit_approaches_strata-summary.csv"
    )
    assert not list(tmp_path.glob(".*.tmp"))
    back = M.read_fit(nc)
    pd.testing.assert_frame_equal(back.summary, main_fit.summary)
    assert back.spec.hash == main_fit.spec.hash
    s = pd.read_csv(csv, comment="#")
    assert list(s.columns) == [*M.SUMMARY_COLUMNS, "data_status"]
    assert s["data_status"].eq("SYNTHETIC").all()
    np.testing.assert_array_equal(
        M.replicate(back, sim_df, n_draws=50, seed=1),
        M.replicate(main_fit, sim_df, n_draws=50, seed=1),
    )
    cmp = M.compare_published(main_fit, sim_df)
    assert list(cmp.columns) == M.COMPARE_COLUMNS
    pub = pd.read_csv(PUBLISHED_DIR / "table3_odds_ratios.csv")
    pub = pub[(pub.analysis == 1) & (pub.adjusted_for_size == "yes")].set_index("term")
    c = cmp.set_index("term")
    assert c.loc["stratum[1000+]", "published_or"] == pub.loc["stratum[1000+]", "or"] == 47.5
    assert len(c) == 12
    # Bayesian medians and the frequentist logistic refit on the same data are close
    assert np.allclose(
        np.log(c.loc[list(APPROACHES), "bayes_estimate"]),
        np.log(c.loc[list(APPROACHES), "freq_estimate"]),
        atol=0.1,
    )


@fitting
@pytest.mark.slow
def test_cli_fit_models_and_errors(tmp_path, sim_df, capsys):
    from cst_bayes.cli import main

    data = tmp_path / "sim.csv"
    with open(data, "w") as fh:
        fh.write("# SYNTHETIC simulated test data\n")
        sim_df.to_csv(fh, index=False)
    assert main(["models"]) == 0
    assert "logit_varying_slopes" in capsys.readouterr().out
    out = tmp_path / "out"
    rc = main(
        [
            "fit",
            "logit_count_strata",
            "--data",
            str(data),
            "--out",
            str(out),
            "--draws",
            "200",
            "--tune",
            "300",
            "--chains",
            "2",
            "--sampler",
            "nutpie-c",
            "--quiet",
            "--compare-published",
        ]
    )
    assert rc == 0
    assert {p.name for p in out.iterdir()} >= {
        "logit_count_strata.nc",
        "logit_count_strata-summary.csv",
        "logit_count_strata-vs-published.csv",
    }
    assert main(["fit", "no_such", "--data", str(data), "--out", str(out)]) == 2
    assert (
        main(["fit", "logit_count", "--data", str(tmp_path / "missing.csv"), "--out", str(out)])
        == 2
    )
    # far too short a run fails the ESS threshold: a warning, and exit 3 under --strict
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(
            [
                "fit",
                "logit_count_strata",
                "--data",
                str(data),
                "--out",
                str(out),
                "--draws",
                "20",
                "--tune",
                "20",
                "--chains",
                "2",
                "--sampler",
                "nutpie-c",
                "--quiet",
                "--strict",
            ]
        )
    assert rc == 3
    assert "sampler trouble" in capsys.readouterr().err
    rc = main(
        [
            "fit",
            "logit_count_strata",
            "--data",
            str(data),
            "--out",
            str(out),
            "--draws",
            "20",
            "--tune",
            "20",
            "--chains",
            "2",
            "--sampler",
            "nutpie-c",
            "--quiet",
        ]
    )
    assert rc == 0 and "WARNING" in capsys.readouterr().err


@fitting
@pytest.mark.slow
def test_check_diagnostics_strict_raises(main_fit):
    bad = M.Fit(
        spec=main_fit.spec,
        idata=main_fit.idata,
        summary=main_fit.summary,
        diagnostics={**main_fit.diagnostics, "messages": ["3 divergent transitions"]},
    )
    with pytest.warns(M.SamplerWarning):
        M.check_diagnostics(bad)
    with pytest.raises(SamplerTrouble):
        M.check_diagnostics(bad, strict=True)


# ------------------------------------------------------------------------------------------------
# Parameter recovery with the study's stratum sizes
# ------------------------------------------------------------------------------------------------
@fitting
@pytest.mark.slow
def test_parameter_recovery_coverage():
    """90% intervals cover the truth at a rate consistent with 90% over >= 20 simulated datasets.

    Truth varies by replication (drawn from the priors' plausible range), the data have the
    study's stratum sizes (872/381/19/34). CST_BAYES_RECOVERY_REPS raises the replications.
    """
    reps = max(20, int(os.environ.get("CST_BAYES_RECOVERY_REPS", "20")))
    rng = np.random.default_rng(2024)
    hits = total = 0
    for r in range(reps):
        beta = dict(zip(APPROACHES, rng.normal(0, 0.5, len(APPROACHES))))
        alpha = tuple(np.sort(rng.normal(-1.8, 1.2, 4)))
        df, truth = simulate(1000 + r, alpha=alpha, beta=beta)
        f = M.fit(
            "logit_approaches_strata",
            df,
            draws=300,
            tune=300,
            chains=2,
            seed=r,
            progress=False,
            sampler="nutpie",
            pointwise=False,
        )
        post = f.idata.posterior
        b = post["beta"].to_numpy().reshape(-1, len(APPROACHES))
        lo, hi = np.quantile(b, [0.05, 0.95], axis=0)
        tb = np.array([truth.beta[a] for a in APPROACHES])
        hits += int(((lo <= tb) & (tb <= hi)).sum())
        total += len(APPROACHES)
        a = post["alpha"].to_numpy().reshape(-1, 4)
        d = a[:, 1:] - a[:, :1]
        lo, hi = np.quantile(d, [0.05, 0.95], axis=0)
        ta = np.array([truth.alpha[s] for s in STRATA])
        td = ta[1:] - ta[0]
        hits += int(((lo <= td) & (td <= hi)).sum())
        total += 3
    rate = hits / total
    # binomial band around 0.90 for `total` intervals (3.5 sd; intervals within a dataset are correlated)
    sd = np.sqrt(0.9 * 0.1 / total)
    assert 0.9 - 3.5 * sd <= rate <= 0.9 + 3.5 * sd, (rate, total)


def test_varying_slopes_builds_with_named_dims(sim_df):
    model = M.build("logit_varying_slopes", sim_df)
    names = {rv.name for rv in model.free_RVs}
    assert names == {"mu_stratum", "sigma_stratum", "alpha", "beta", "sigma_slope", "z_slope"}
    assert model.named_vars_to_dims["beta_stratum"] == ("stratum", "approach")
    assert list(model.coords["stratum"]) == list(STRATA) and list(model.coords["approach"]) == list(
        APPROACHES
    )


@fitting
@pytest.mark.slow
def test_poisson_working_model_matches_poisson_glm(sim_df):
    """The log-link model's PRs agree with statsmodels' Poisson GLM under weak priors; replicates exceed 1."""
    import statsmodels.api as sm

    d = pd.get_dummies(sim_df["stratum"], drop_first=True, dtype=float)
    X = sm.add_constant(pd.concat([sim_df["n_approaches"].astype(float), d], axis=1))
    glm = sm.GLM(sim_df["any_cst"].astype(float), X, family=sm.families.Poisson()).fit().params
    f = M.fit("poisson_count_strata", sim_df, seed=5, prior_scale=10.0, **FAST)
    got = np.log(f.summary.set_index("term")["estimate"])
    assert abs(got["n_approaches"] - glm["n_approaches"]) < 0.05
    assert abs(got["stratum[50-999]"] - glm["50-999"]) < 0.1
    rep = M.replicate(f, sim_df, n_draws=200, seed=0)
    assert rep.max() >= 2  # a Poisson on a 0/1 outcome is only a working likelihood


# ------------------------------------------------------------------------------------------------
# The hand-written numba density (cst_bayes.bayes.fastlogp) behind sampler="nutpie"
# ------------------------------------------------------------------------------------------------
_FAST_VARIANTS = {  # (base spec, replacements): every prior distribution and both parameterisations
    "noncentered_t_priors": (
        "logit_approaches_strata",
        [
            (
                'intercept_parameterisation = "centered"',
                'intercept_parameterisation = "noncentered"',
            ),
            (
                '[priors.intercept]\ndist = "normal"\nmu = -1.5',
                '[priors.intercept]\ndist = "student_t"\nnu = 4.0\nmu = -1.5',
            ),
            (
                '[priors.beta]\ndist = "normal"\nmu = 0.0',
                '[priors.beta]\ndist = "student_t"\nnu = 3.0\nmu = 0.0',
            ),
            ('dist = "halfnormal"\nsigma = 2.0', 'dist = "halfstudent_t"\nnu = 3.0\nsigma = 2.0'),
        ],
    ),
    "exponential_sigma": (
        "logit_approaches_strata",
        [('dist = "halfnormal"\nsigma = 2.0', 'dist = "exponential"\nlam = 0.7')],
    ),
    "gamma_sigma": (
        "logit_approaches_strata",
        [('dist = "halfnormal"\nsigma = 2.0', 'dist = "gamma"\nalpha = 2.0\nbeta = 1.5')],
    ),
}


def _fast_spec(tmp_path: Path, name: str) -> M.ModelSpec:
    if name not in _FAST_VARIANTS:
        return M.load_spec(name)
    base, reps = _FAST_VARIANTS[name]
    text = (M.MODELS_DIR / f"{base}.toml").read_text()
    for old, new in reps:
        assert old in text, old
        text = text.replace(old, new, 1)
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    return M.load_spec(p)


@pytest.mark.parametrize(
    "name",
    [
        "logit_approaches_strata",
        "logit_approaches",
        "logit_count",
        "poisson_approaches_strata",
        "count_poisson_strata",
        "count_binomial_strata",
        *_FAST_VARIANTS,
    ],
)
def test_fast_logp_and_gradient_equal_pymc(sim_df, tmp_path, name):
    """Log-density (with the log-Jacobian of sigma) and gradient equal the PyMC model's, with weights and prior_scale."""
    from cst_bayes.bayes import fastlogp as F

    spec = _fast_spec(tmp_path, name)
    assert M._fast_supported(spec)
    rng = np.random.default_rng(7)
    for prior_scale, w in ((1.0, None), (2.5, rng.uniform(0.3, 3.0, len(sim_df)))):
        pat = M.collapse(spec, sim_df, M.normalise_weights(w, len(sim_df)))
        model = M._build_from_patterns(spec, pat, prior_scale)
        logp, dlogp = model.compile_logp(), model.compile_dlogp()
        ip = model.initial_point()
        vals = [model.rvs_to_values[rv] for rv in model.free_RVs]
        x0 = M._fast_x0(spec, prior_scale)
        np.testing.assert_allclose(
            x0, np.concatenate([np.ravel(ip[v.name]) for v in vals]), rtol=1e-6
        )  # PyMC start
        a = M._fast_args(spec, pat, prior_scale)
        args = [
            a[k]
            for k in ("structure", "family", "n_strata", "priors", "sidx", "Xc", "a", "b", "const")
        ]
        offsets = []
        for _ in range(6):
            x = x0 + rng.normal(0, 0.8, len(x0))
            point, o = {}, 0
            for v in vals:
                sz = int(np.prod(ip[v.name].shape))
                point[v.name] = x[o : o + sz].reshape(ip[v.name].shape)
                o += sz
            lp, g = F.logp_grad(x, *args)
            want = logp(point)
            # PyMC's Gamma keeps its scale 1/beta in float32 (its slope is off by ~3e-8 relative; the fast
            # density matches scipy.stats.gamma), so that variant is compared at rtol 1e-7
            np.testing.assert_allclose(
                g, dlogp(point), rtol=1e-7 if name == "gamma_sigma" else 0, atol=1e-8
            )
            offsets.append(lp - want)
        # PyTensor stores a few constants in float32 (log sqrt(2 pi), gammaln(10)): PyMC's log-density is off
        # by a point-independent constant; the fast one equals it up to that constant to 1e-8. PyMC's StudentT
        # itself differs from scipy.stats.t by up to ~1.5e-8 per term (the fast one by 1e-16), hence 1e-7 there.
        # PyMC's Gamma's float32 scale makes its error grow with sigma (up to ~1e-6 here)
        assert np.ptp(offsets) < {"noncentered_t_priors": 1e-7, "gamma_sigma": 1e-6}.get(
            name, 1e-8
        ), offsets
        assert abs(offsets[0]) < 1e-7 * abs(want)


def test_fast_logp_equals_scipy_density(sim_df):
    """The fast log-density minus the log-Jacobian is the float64 scipy density (no float32 constants)."""
    from cst_bayes.bayes import fastlogp as F

    for name in ("logit_approaches_strata", "count_binomial_strata"):
        spec = M.load_spec(name)
        pat = M.collapse(spec, sim_df)
        a = M._fast_args(spec, pat, 1.0)
        args = [
            a[k]
            for k in ("structure", "family", "n_strata", "priors", "sidx", "Xc", "a", "b", "const")
        ]
        rng = np.random.default_rng(3)
        point = {
            "mu_stratum": -1.0,
            "sigma_stratum": 1.3,
            "alpha": rng.normal(-1.5, 1, 4),
            "beta": rng.normal(0, 0.3, len(spec.predictors)),
        }
        x = np.concatenate(
            [[point["mu_stratum"], np.log(point["sigma_stratum"])], point["alpha"], point["beta"]]
        )
        lp, _ = F.logp_grad(x, *args)
        assert lp - np.log(point["sigma_stratum"]) == pytest.approx(
            _scipy_logp(spec, sim_df, point), rel=1e-12, abs=1e-9
        )


@pytest.mark.parametrize(
    "dist,params,ref",
    [
        ("normal", dict(mu=-1.5, sigma=2.5), lambda x: stats.norm.logpdf(x, -1.5, 2.5)),
        ("student_t", dict(nu=3.0, mu=0.5, sigma=2.5), lambda x: stats.t.logpdf(x, 3.0, 0.5, 2.5)),
        ("halfnormal", dict(sigma=2.0), lambda x: stats.halfnorm.logpdf(x, scale=2.0)),
        (
            "halfstudent_t",
            dict(nu=3.0, sigma=2.0),
            lambda x: np.log(2) + stats.t.logpdf(x, 3.0, 0, 2.0),
        ),
        ("exponential", dict(lam=0.7), lambda x: stats.expon.logpdf(x, scale=1 / 0.7)),
        ("gamma", dict(alpha=2.0, beta=1.5), lambda x: stats.gamma.logpdf(x, 2.0, scale=1 / 1.5)),
    ],
)
def test_fast_priors_equal_scipy(dist, params, ref):
    """Each prior's log-density equals scipy's to 1e-12 and its derivative the central difference."""
    from cst_bayes.bayes import fastlogp as F

    row = F.prior_row(dist, params)
    for x in (0.05, 0.7, 2.3, 9.0):
        lp, d = F._prior(row, x)
        assert lp == pytest.approx(ref(x), rel=1e-12, abs=1e-12)
        h = 1e-6
        assert d == pytest.approx((ref(x + h) - ref(x - h)) / (2 * h), rel=1e-6, abs=1e-8)


def test_fast_path_covers_only_what_it_implements(tmp_path):
    import dataclasses

    spec = M.load_spec("count_betabinomial_strata")
    assert not M._fast_supported(dataclasses.replace(spec, family="negative_binomial"))
    for name in (
        "logit_varying_slopes",
        "count_betabinomial_strata",
        "logbinomial_approaches_strata",
        "logit_approaches_strata",
        "logit_approaches",
        "logit_count_strata",
        "poisson_count_strata",
        "count_poisson_strata",
        "count_binomial_strata",
    ):
        assert M._fast_supported(M.load_spec(name))


@fitting
@pytest.mark.slow
def test_fast_path_posterior_agrees_with_pytensor_path(sim_df, main_fit):
    """sampler='nutpie' (fast density) and 'nutpie-c' (PyMC/PyTensor graph) give the same posterior within MC error."""
    import arviz as az

    f = M.fit("logit_approaches_strata", sim_df, seed=11, **{**FAST, "sampler": "nutpie"})
    assert f.timings["compile_s"] < 5  # nothing to compile once numba's disk cache is warm
    assert set(f.idata.posterior.data_vars) == set(main_fit.idata.posterior.data_vars)
    assert f.diagnostics["divergences"] == 0
    for var in ("beta", "alpha", "mu_stratum", "sigma_stratum"):
        a, b = f.idata.posterior[var], main_fit.idata.posterior[var]
        se = np.sqrt(
            az.mcse(f.idata.posterior[[var]])[var].to_numpy() ** 2
            + az.mcse(main_fit.idata.posterior[[var]])[var].to_numpy() ** 2
        )
        diff = np.abs(a.mean(("chain", "draw")).to_numpy() - b.mean(("chain", "draw")).to_numpy())
        assert (diff < 4.5 * se).all(), (var, diff, se)
    again = M.fit("logit_approaches_strata", sim_df, seed=11, **{**FAST, "sampler": "nutpie"})
    np.testing.assert_array_equal(
        again.idata.posterior["beta"].to_numpy(), f.idata.posterior["beta"].to_numpy()
    )
