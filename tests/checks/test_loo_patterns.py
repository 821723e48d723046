"""PSIS-LOO from distinct covariate rows equals ArviZ's az.loo on agency rows."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cst_bayes.bayes import models
from cst_bayes.checks import loo_patterns as LP
from cst_bayes.checks.comparison import loo_table

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fits(sim_df):
    kw = dict(draws=150, tune=150, chains=2, seed=11, progress=False, pointwise=True)
    return {
        name: models.fit(name, sim_df, **kw)
        for name in ("logit_approaches_strata", "poisson_count_strata", "logit_count")
    }


@pytest.mark.parametrize("name", ["logit_approaches_strata", "poisson_count_strata", "logit_count"])
def test_distinct_rows_loo_equals_az_loo_on_agencies(fits, sim_df, name):
    import arviz as az

    f = fits[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = az.loo(f.idata, pointwise=True)
    rows = LP.distinct_rows(f.spec, f.idata, sim_df)
    assert len(rows.counts) < len(sim_df) and rows.counts.sum() == len(sim_df)
    got = LP.loo_from_data(f.spec, f.idata, sim_df)
    # the stored log-likelihood is float32; this one is float64
    for key in ("elpd_loo", "se", "p_loo"):
        assert got[key] == pytest.approx(ref[key], rel=1e-5, abs=1e-4), key
    assert (got.n_data_points, got.n_samples, got.good_k) == (
        ref.n_data_points,
        ref.n_samples,
        ref.good_k,
    )
    assert bool(got.warning) == bool(ref.warning)
    np.testing.assert_allclose(np.asarray(got.loo_i), np.asarray(ref.loo_i), atol=1e-4)
    np.testing.assert_allclose(np.asarray(got.pareto_k), np.asarray(ref.pareto_k), atol=1e-3)


def test_loo_table_from_data_equals_the_stored_log_likelihood(fits, sim_df):
    stored = loo_table(fits)
    lean = {
        n: models.Fit(
            f.spec,
            groups={
                g: ds
                for g, ds in f.groups.items()
                if g not in ("log_likelihood", "posterior_predictive")
            },
        )
        for n, f in fits.items()
    }
    with pytest.raises(Exception, match="no log_likelihood group"):
        loo_table(lean)
    recomputed = loo_table(lean, data=sim_df)
    cols = ["elpd_loo", "se", "p_loo", "elpd_diff", "dse", "weight"]
    np.testing.assert_allclose(
        recomputed[cols].to_numpy(float), stored[cols].to_numpy(float), rtol=1e-4, atol=1e-3
    )
    assert list(recomputed["model"]) == list(stored["model"])


def test_a_wrong_dataset_changes_the_answer(fits, sim_df):
    # the recomputation reads the data it is given: another outcome vector, another elpd
    f = fits["logit_count"]
    flipped = sim_df.assign(any_cst=1 - sim_df["any_cst"])
    assert LP.loo_from_data(f.spec, f.idata, flipped)["elpd_loo"] < (
        LP.loo_from_data(f.spec, f.idata, sim_df)["elpd_loo"] - 50
    )
