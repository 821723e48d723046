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
