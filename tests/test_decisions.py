"""Decision quantities (cst_bayes.bayes.decisions) against closed forms on normal draws."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from cst_bayes.bayes.decisions import DECISION_COLUMNS, decision_table, decisions
from cst_bayes.core.errors import InputError


@pytest.mark.parametrize("mu,sd", [(0.3, 0.2), (-0.1, 0.5), (0.0, 0.05)])
def test_probabilities_match_the_normal_closed_form(mu, sd):
    x = np.random.default_rng(1).normal(mu, sd, size=(4, 25_000))
    d = decisions(x)
    assert list(d) == list(DECISION_COLUMNS)
    assert d["p_gt_1"] == pytest.approx(stats.norm.cdf(mu / sd), abs=0.005)
    p_rope = stats.norm.cdf(np.log(1.25), mu, sd) - stats.norm.cdf(np.log(0.8), mu, sd)
    assert d["p_rope"] == pytest.approx(p_rope, abs=0.005)


def test_rope_is_an_option():
    x = np.random.default_rng(2).normal(0.0, 0.3, size=(2, 20_000))
    narrow = decisions(x, rope=(0.95, 1 / 0.95))["p_rope"]
    wide = decisions(x)["p_rope"]
    assert narrow == pytest.approx(2 * stats.norm.cdf(np.log(1 / 0.95), 0, 0.3) - 1, abs=0.01)
    assert narrow < wide
    with pytest.raises(InputError):
        decisions(x, rope=(1.2, 0.8))


def test_mcse_matches_the_iid_quantile_standard_error():
    # Independent normal draws: the MCSE of the q-quantile is sqrt(q(1-q)/n) / f(x_q)
    # on the log scale; on the ratio scale times exp(x_q) (delta method).
    mu, sd, n = 0.2, 0.4, 40_000
    x = np.random.default_rng(3).normal(mu, sd, size=(4, n // 4))
    d = decisions(x)
    for key, q in (("mcse_estimate", 0.5), ("mcse_ci_low", 0.025), ("mcse_ci_high", 0.975)):
        xq = stats.norm.ppf(q, mu, sd)
        exact = np.exp(xq) * np.sqrt(q * (1 - q) / n) / stats.norm.pdf(xq, mu, sd)
        assert d[key] == pytest.approx(exact, rel=0.25), key


def test_autocorrelated_draws_have_larger_mcse():
    rng = np.random.default_rng(4)
    e = rng.normal(size=(2, 4000))
    ar = np.zeros_like(e)
    for t in range(1, e.shape[1]):
        ar[:, t] = 0.95 * ar[:, t - 1] + np.sqrt(1 - 0.95**2) * e[:, t]
    assert decisions(ar)["mcse_estimate"] > 3 * decisions(e)["mcse_estimate"]


def test_bad_draws_and_table():
    with pytest.raises(InputError):
        decisions(np.array([0.1, np.nan, 0.2, 0.3, 0.4]))
    t = decision_table({"a": np.zeros((1, 10)) + 0.5, "b": -np.ones((1, 10))})
    assert t["a"]["p_gt_1"] == 1.0 and t["b"]["p_gt_1"] == 0.0
