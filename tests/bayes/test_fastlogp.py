"""Pieces of the numba density checked against scipy (independent implementations)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import betaln, digamma

from cst_bayes.bayes import fastlogp as F


@pytest.mark.parametrize("n", [1, 9, 30])
def test_beta_binomial_terms_equal_scipy(n):
    """Log of B(y + A, n - y + B) / B(A, B) with A = p kappa, B = (1 - p) kappa, and its
    derivatives in p and kappa from scipy's betaln and digamma, over counts 0..n, means from
    1e-6 to 1 - 1e-6 and concentrations from 0.01 to 1e4."""
    rng = np.random.default_rng(n)
    worst = np.zeros(3)
    for _ in range(3000):
        y = int(rng.integers(0, n + 1))
        p = 1.0 / (1.0 + np.exp(-rng.uniform(-14, 14)))
        k = float(np.exp(rng.uniform(np.log(0.01), np.log(1e4))))
        A, B = p * k, (1 - p) * k
        want_lp = betaln(y + A, n - y + B) - betaln(A, B)
        dA = digamma(y + A) - digamma(n + k) - digamma(A) + digamma(k)
        dB = digamma(n - y + B) - digamma(n + k) - digamma(B) + digamma(k)
        want = np.array([want_lp, k * (dA - dB), p * dA + (1 - p) * dB])
        got = np.array(F._betabinomial(y, n, p, 1 - p, k))
        worst = np.maximum(worst, np.abs(got - want) / (1 + np.abs(want)))
    # scipy's differences of digammas cancel: ~1e-13 of agreement is what float64 allows
    assert np.all(worst < 1e-10), worst


def test_beta_binomial_density_sums_to_one():
    """exp(lchoose + terms) over y = 0..n is a probability distribution."""
    from scipy.special import comb

    n = 9
    for p, k in [(0.3, 2.0), (0.97, 0.4), (1e-4, 50.0)]:
        probs = [comb(n, y) * np.exp(F._betabinomial(y, n, p, 1 - p, k)[0]) for y in range(n + 1)]
        assert sum(probs) == pytest.approx(1.0, abs=1e-12)
