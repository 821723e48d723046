"""Tests of the log-link reading of Table 3 (cst_bayes.reconstruct.loglink and the kernel's link=1).

The kernel's Poisson fit and HC0 sandwich errors are checked against statsmodels.
"""

from __future__ import annotations

import numpy as np
import pytest

from cst_bayes import reconstruct as rc
from cst_bayes.core.config import RECONSTRUCTED_DIR, STRATA
from cst_bayes.reconstruct import kernel as K
from cst_bayes.reconstruct.bounds import _state


@pytest.fixture(scope="module")
def member():
    return rc.load_ensemble(RECONSTRUCTED_DIR, n=1)[0]


def test_kernel_poisson_fit_and_sandwich_equal_statsmodels(member):
    import statsmodels.api as sm

    tg = rc.load_targets()
    V = _state(member)
    strat = np.repeat(np.arange(len(STRATA)), tg.n_by_stratum).astype(np.int64)
    for m, p in ((0, 10), (1, 13), (2, 2), (3, 5)):
        beta = np.zeros(13)
        beta[0] = np.log(V[:, 9].mean())
        hinv = np.zeros((13, 13))
        meat = np.zeros((13, 13))
        assert K.refit(m, V, strat, beta, hinv, 50, 1, meat)
        X = np.zeros((len(V), 13))
        for i in range(len(V)):
            K.design_row(m, V[i].astype(float), strat[i], X[i])
        res = sm.GLM(V[:, 9], X[:, :p], family=sm.families.Poisson()).fit(cov_type="HC0")
        assert np.allclose(beta[:p], res.params, atol=1e-8)
        # refit's hinv is at the last-but-one iterate; at convergence the difference is tiny
        se = np.sqrt(np.diag(hinv[:p, :p] @ meat[:p, :p] @ hinv[:p, :p]))
        assert np.allclose(se, res.bse, rtol=1e-6)


def test_log_misses_are_zero_inside_and_positive_outside(member):
    from cst_bayes.reconstruct.loglink import table3_log_misses

    t = table3_log_misses(member)
    assert len(t) == 78 and (t["distance_log"] >= 0).all()
    # the logistic members miss the stratum prevalence ratios of the log reading by far
    big = t[t["target"].str.contains(r"stratum\[1000\+\]") & (t["quantity"] == "estimate")]
    assert (big["distance_log"] > 0.5).all()


def test_short_loglink_attempt_reports_its_energy(member):
    from cst_bayes.reconstruct.loglink import ATTEMPT_COLUMNS, loglink_attempts

    attempts, per_target = loglink_attempts(2, 3, members=[member], steps_scale=0.005, max_rounds=1)
    assert list(attempts.columns) == ATTEMPT_COLUMNS and len(attempts) == 2
    assert attempts["start"].str.startswith("family").iloc[0]
    assert attempts["start"].str.startswith("logit member").iloc[1]
    assert (attempts["energy"] > 0).all() and not attempts["converged"].any()
    assert per_target["attempts_missed"].max() == 2
