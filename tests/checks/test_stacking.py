"""Stacked predictions mix the models' draws by their stacking weights."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from cst_bayes.checks.stacking import stack_draws


def test_the_mixture_has_the_weights_quantiles():
    """0.25 N(0, 1) + 0.75 N(3, 1): its quantiles solve the mixture CDF (closed form)."""
    rng = np.random.default_rng(1)
    draws = {
        "a": {"national_share": rng.normal(0, 1, 20_000), "PR court": rng.normal(0, 1, 20_000)},
        "b": {"national_share": rng.normal(3, 1, 20_000), "PR court": rng.normal(3, 1, 20_000)},
    }
    out = stack_draws(draws, {"a": 0.25, "b": 0.75}, n_draws=40_000, seed=2).set_index("quantity")

    def cdf(x):
        return 0.25 * stats.norm.cdf(x, 0, 1) + 0.75 * stats.norm.cdf(x, 3, 1)

    from scipy.optimize import brentq

    for p, col in ((0.025, "ci_low"), (0.5, "estimate"), (0.975, "ci_high")):
        q = brentq(lambda x, p=p: cdf(x) - p, -10, 10)
        assert out.loc["national_share", col] == pytest.approx(q, abs=0.06)
        assert out.loc["PR court", col] == pytest.approx(np.exp(q), rel=0.06)
    # P(log PR > 0) of the mixture
    assert out.loc["PR court", "p_gt_1"] == pytest.approx(1 - cdf(0.0), abs=0.01)
    assert np.isnan(out.loc["national_share", "p_gt_1"])


def test_a_quantity_mixes_only_the_models_that_have_it():
    draws = {"a": {"PR court": np.zeros(100)}, "b": {"PR n_approaches": np.ones(100)}}
    out = stack_draws(draws, {"a": 0.4, "b": 0.6}, n_draws=500).set_index("quantity")
    assert out.loc["PR court", "models"] == "a 1.000"
    assert out.loc["PR n_approaches", "estimate"] == pytest.approx(np.e)


def test_a_model_with_zero_weight_contributes_nothing():
    draws = {"a": {"national_share": np.zeros(50)}, "b": {"national_share": np.ones(50)}}
    out = stack_draws(draws, {"a": 0.0, "b": 1.0}, n_draws=200)
    assert out["estimate"].item() == 1.0 and out["models"].item() == "b 1.000"
