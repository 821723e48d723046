"""Refits with one prior slot scaled: a narrowed coefficient prior must pull the ratios to 1."""

from __future__ import annotations

import numpy as np

from cst_bayes.bayes import models
from cst_bayes.checks.prior_scales import prior_scale_table, slots_of, wide
from cst_bayes.data.simulate import simulate


def test_a_narrowed_coefficient_prior_shrinks_the_ratios_and_others_barely_move():
    from cst_bayes.data.simulate import DEFAULT_BETA

    df, _ = simulate(31, beta={**DEFAULT_BETA, "victim_service": 1.2, "mdt": 0.9})
    spec = models.load_spec("logit_approaches_strata")
    assert slots_of(spec) == ["intercept", "beta", "sigma_stratum"]
    t = prior_scale_table(spec, df, scales=(0.01,), draws=200, tune=200, chains=2, seed=3)
    assert set(zip(t["slot"], t["scale"], strict=True)) == {
        ("none", 1.0), ("intercept", 0.01), ("beta", 0.01), ("sigma_stratum", 0.01)
    }  # fmt: skip
    est = t.set_index(["slot", "term"])["estimate"]
    base = abs(np.log(est[("none", "victim_service")]))
    # beta's normal(0, 2.5) prior at x0.01 is normal(0, 0.025): the OR is held near 1
    assert abs(np.log(est[("beta", "victim_service")])) < base / 3
    # the stratum-variance prior does not act on the coefficients this strongly
    assert abs(np.log(est[("sigma_stratum", "victim_service")])) > base / 2
    w = wide(t)
    assert list(w.columns) == ["term", "x1", "intercept x0.01", "beta x0.01", "sigma_stratum x0.01"]
