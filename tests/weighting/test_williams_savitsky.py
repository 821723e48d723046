"""Williams-Savitsky adjustment of the weighted pseudo-posterior.

References: R survey's ``svyglm`` SEs (``tests/reference/weights_survey_reference.csv``,
written by ``weights_survey.R``) and a coverage simulation with a known finite population.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cst_bayes.core.config import OUTCOME
from cst_bayes.data import microdata, published
from cst_bayes.weighting import weights as W
from cst_bayes.weighting import williams_savitsky as WS
from cst_bayes.weighting.coverage import binomial_band, coverage_simulation

REF_DIR = Path(__file__).parent.parent / "reference"


@pytest.fixture(scope="module")
def ref_df() -> pd.DataFrame:
    return microdata.load(REF_DIR / "weights_sim.csv")


def _r_se(scenario: str) -> dict[str, float]:
    ref = pd.read_csv(REF_DIR / "weights_survey_reference.csv", keep_default_na=False)
    r = ref[(ref["statistic"] == "glm_se") & (ref["scenario"] == scenario) & (ref["by"] == "yes")]
    return {
        (f"stratum[{t[len('stratum') :]}]" if t.startswith("stratum") else t): v
        for t, v in zip(r["term"], r["value"])
    }


def test_rotation_reaches_the_target_covariance():
    rng = np.random.default_rng(1)
    d = rng.standard_t(5, size=(2, 3000, 3)) @ np.array([[1, 0.3, 0], [0, 2, 0.5], [0, 0, 0.7]])
    target = np.array([[2.0, 0.4, 0.1], [0.4, 1.0, -0.2], [0.1, -0.2, 0.5]])
    c = np.array([1.0, -2.0, 0.5])
    out = WS.rotate(d, c, target)
    assert out.shape == d.shape
    np.testing.assert_allclose(np.cov(out.reshape(-1, 3), rowvar=False), target, rtol=1e-10)


@pytest.mark.parametrize("scenario", ["design", "eligibility_small"])
def test_laplace_adjusted_sd_equals_r_svyglm_se(ref_df, scenario):
    """With weak priors the sandwich at the mode is svyglm's: every log-OR SD within 3% of R."""
    sc = W.load_scenarios()[scenario]
    X, names = W.model_matrix(ref_df, True)
    post = WS.fit_pseudo_posterior(
        X,
        ref_df[OUTCOME].to_numpy(float),
        W.make_design(ref_df, sc),
        names,
        method="laplace",
        seed=1,
        draws=4000,
        prior_sd=100.0,
    )
    r = _r_se(scenario)
    sd = post.adjusted.reshape(-1, len(names)).std(axis=0)
    ratio = np.array([sd[j] / r[t] for j, t in enumerate(names) if t != "(Intercept)"])
    np.testing.assert_allclose(ratio, 1.0, atol=0.03)
    raw = post.raw.reshape(-1, len(names)).std(axis=0)
    # The raw pseudo-posterior is off for the stratum contrasts (the check can fail).
    assert raw[names.index("stratum[1000+]")] / r["stratum[1000+]"] > 1.5


@pytest.mark.slow
def test_mcmc_adjusted_sd_within_10pct_of_r_svyglm_se(ref_df):
    sc = W.load_scenarios()["design"]
    X, names = W.model_matrix(ref_df, True)
    post = WS.fit_pseudo_posterior(
        X,
        ref_df[OUTCOME].to_numpy(float),
        W.make_design(ref_df, sc),
        names,
        method="mcmc",
        seed=3,
        draws=1000,
        tune=500,
        chains=2,
        prior_sd=10.0,
    )
    r = _r_se("design")
    sd = post.adjusted.reshape(-1, len(names)).std(axis=0)
    ratio = {t: sd[j] / r[t] for j, t in enumerate(names) if t != "(Intercept)"}
    assert all(0.9 <= v <= 1.1 for v in ratio.values()), ratio
    raw = post.raw.reshape(-1, len(names)).std(axis=0)
    assert raw[names.index("stratum[1000+]")] / r["stratum[1000+]"] > 1.5


@pytest.mark.slow
def test_adjusted_intervals_cover_at_their_nominal_rate(ref_df):
    """200 stratified samples with fpc from a known finite population (normal approximation)."""
    cov = coverage_simulation(
        ref_df, published.load_sampling_frames(), replicates=200, method="laplace", seed=3
    )
    adj = cov[cov["interval"] == "adjusted"].set_index("term")["coverage"]
    raw = cov[cov["interval"] == "raw"].set_index("term")["coverage"]
    lo, hi = binomial_band(200, 0.9, 0.99)
    assert lo <= adj["all"] <= hi
    blo, bhi = binomial_band(200, 0.9, 1 - 0.01 / (len(adj) - 1))  # Bonferroni over terms
    assert adj.drop("all").between(blo, bhi).all(), adj
    # The raw pseudo-posterior over-covers the stratum contrasts: the simulation tells them apart.
    assert raw["stratum[1000+]"] > bhi


def _mcse_arrays() -> list[np.ndarray]:
    """Independent, autocorrelated, tied, constant, heavy-tailed and NaN-holding draws."""
    rng = np.random.default_rng(3)
    out = []
    for c, n in [(2, 500), (4, 250), (1, 7), (3, 101)]:
        ar = np.zeros((c, n))
        e = rng.normal(size=(c, n))
        for t in range(1, n):
            ar[:, t] = 0.9 * ar[:, t - 1] + e[:, t]
        nan = rng.normal(size=(c, n))
        nan[0, 1] = np.nan
        out += [
            rng.normal(size=(c, n)),
            ar,
            rng.integers(0, 3, size=(c, n)).astype(float),
            np.full((c, n), 2.0),
            np.exp(3 * rng.normal(size=(c, n))),
            nan,
        ]
    return out


@pytest.mark.parametrize("prob", [0.025, 0.5, 0.975])
def test_batched_quantile_mcse_equals_arviz(prob):
    """The batched MCSE is arviz's ``mcse(method="quantile")``, to the last bit."""
    import arviz as az

    arrays = _mcse_arrays()
    ref = np.array([float(az.mcse(a, method="quantile", prob=prob)) for a in arrays])
    one = np.array([WS.mcse_quantile(a, prob) for a in arrays])
    np.testing.assert_array_equal(one, ref)
    for shape in {a.shape for a in arrays}:
        idx = [i for i, a in enumerate(arrays) if a.shape == shape]
        batch = WS.mcse_quantiles(np.stack([arrays[i] for i in idx]), prob)
        np.testing.assert_array_equal(batch, ref[idx])
    assert np.isfinite(ref).sum() >= 12 and (ref > 0).sum() >= 8  # not a vacuous comparison


def test_summaries_of_a_batch_equal_one_at_a_time():
    rng = np.random.default_rng(4)
    d = rng.normal(0.3, 1.0, size=(5, 2, 300))
    many = WS.summarise_many(d)
    for i in range(5):
        flat = d[i].ravel()
        a = (1 - 0.95) / 2  # as summarise_draws (not the literal 0.025)
        lo, med, hi = np.quantile(flat, [a, 0.5, 1 - a])
        assert (many["ci_low"][i], many["median"][i], many["ci_high"][i]) == (lo, med, hi)
        assert many["p_positive"][i] == np.mean(flat > 0)
        assert WS.summarise_draws(d[i]) == {k: float(v[i]) for k, v in many.items()}


@pytest.mark.parametrize("max_draws", [1000, 120])
def test_derived_draws_equal_the_average_over_agencies(ref_df, max_draws):
    """Risks computed once per covariate pattern give the per-agency standardised averages."""
    from scipy.special import expit

    from cst_bayes.core.config import APPROACHES

    X, names = W.model_matrix(ref_df, True)
    post = WS.fit_pseudo_posterior(
        X,
        ref_df[OUTCOME].to_numpy(float),
        W.make_design(ref_df, W.load_scenarios()["design"]),
        names,
        method="laplace",
        seed=2,
        draws=300,
    )
    cols = [names.index(a) for a in APPROACHES]
    der = WS.derived_draws(post, adjusted=True, columns=cols, max_draws=max_draws)
    keep = np.linspace(0, 299, min(300, max_draws)).round().astype(int)
    th = post.adjusted[:, keep]
    w = post.weights / post.weights.sum()
    np.testing.assert_allclose(der["prevalence"], expit(th @ X.T) @ w, rtol=1e-12)
    for j in cols:
        X1, X0 = X.copy(), X.copy()
        X1[:, j], X0[:, j] = 1.0, 0.0
        rd = (expit(th @ X1.T) - expit(th @ X0.T)) @ w
        np.testing.assert_allclose(der[j], rd, rtol=1e-10, atol=1e-15)
    assert np.ptp(der[cols[0]]) > 0.01  # draws that differ: the comparison is not of constants
