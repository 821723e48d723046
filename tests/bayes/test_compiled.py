"""The C callbacks nutpie calls (fastlogp.c_functions over a packed buffer) and the nutpie model
built on them (cst_bayes.bayes.compiled)."""

from __future__ import annotations

import ctypes
import dataclasses
import itertools

import numpy as np
import pytest

from cst_bayes.bayes import fastlogp as F
from cst_bayes.bayes import samplers
from cst_bayes.bayes.design import collapse
from cst_bayes.bayes.spec import load_spec
from cst_bayes.core.errors import SamplerTrouble

S, K, P = 4, 3, 25
SCALE_PRIORS = [
    ("halfnormal", {"sigma": 1.3}),
    ("halfstudent_t", {"nu": 3.0, "sigma": 0.7}),
    ("exponential", {"lam": 2.0}),
    ("gamma", {"alpha": 2.0, "beta": 1.5}),
]
CASES = list(
    itertools.product(
        (F.NO_STRATA, F.CENTERED, F.NONCENTERED),
        (F.LOGISTIC, F.LOGLINEAR, F.BETABINOMIAL),
        SCALE_PRIORS,
    )
)
N_TRIALS = 9
SL = np.array([0, 2])  # design columns with stratum slopes
SLOPE_CASES = list(
    itertools.product(
        (F.CENTERED, F.NONCENTERED), (F.LOGISTIC, F.BETABINOMIAL), (F.CENTERED, F.NONCENTERED)
    )
)


def _dptr(a: np.ndarray) -> ctypes._Pointer:
    assert a.dtype == np.float64 and a.flags.c_contiguous
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))


def _args(structure: int, family: int, scale_prior: tuple, seed: int = 0, slopes: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    rows = [
        F.prior_row("student_t", {"mu": 0.2, "sigma": 2.5, "nu": 4.0}),
        F.prior_row(*scale_prior),
        *[F.prior_row("normal", {"mu": 0.0, "sigma": 1.0 + k}) for k in range(K - 1)],
        F.prior_row("student_t", {"mu": -0.1, "sigma": 1.0, "nu": 7.0}),
    ]
    if slopes:
        rows.append(F.prior_row("exponential", {"lam": 1.5}))  # sigma_slope
    if family == F.BETABINOMIAL:
        rows.append(F.prior_row("gamma", {"alpha": 2.0, "beta": 0.1}))
    bb = family == F.BETABINOMIAL
    extra = dict(sl=SL, slope_structure=slopes) if slopes else {}
    return dict(
        structure=structure,
        family=family,
        n_strata=S,
        priors=np.vstack(rows),
        sidx=rng.integers(0, S, P),
        Xc=rng.normal(size=(P, K)),
        a=rng.integers(0, N_TRIALS + 1, P).astype(float) if bb else rng.uniform(0, 6, P),
        b=rng.uniform(0, 6, P),
        const=rng.normal(),
        n_trials=N_TRIALS if bb else 0,
        **extra,
    )


def _n_dim(structure: int, family: int = F.LOGISTIC, slopes: int = 0) -> int:
    base = 1 + K if structure == F.NO_STRATA else 2 + S + K
    return base + (1 + S * len(SL) if slopes else 0) + (family == F.BETABINOMIAL)


def _call_logp(buf: np.ndarray, x: np.ndarray, dim: int | None = None) -> tuple:
    logp_c, _ = F.c_functions()
    x = np.ascontiguousarray(x, dtype=np.float64)
    g, lp = np.full(len(x), np.nan), np.full(1, np.nan)
    rc = logp_c.ctypes(
        len(x) if dim is None else dim, _dptr(x), _dptr(g), _dptr(lp), buf.ctypes.data
    )
    return rc, lp[0], g


def _call_expand(buf: np.ndarray, x: np.ndarray, n_out: int) -> tuple:
    _, expand_c = F.c_functions()
    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.full(n_out, np.nan)
    rc = expand_c.ctypes(len(x), n_out, _dptr(x), _dptr(out), buf.ctypes.data)
    return rc, out


@pytest.mark.parametrize("structure,family,scale_prior", CASES)
def test_c_density_equals_logp_grad(structure, family, scale_prior):
    args = _args(structure, family, scale_prior)
    buf = F.pack(**args)
    rng = np.random.default_rng(1)
    for _ in range(5):
        x = rng.normal(0, 1.5, _n_dim(structure, family))
        want_lp, want_g = F.logp_grad(x, *args.values())
        rc, lp, g = _call_logp(buf, x)
        assert rc == 0
        assert np.isfinite(want_lp)
        np.testing.assert_allclose(lp, want_lp, rtol=1e-13)
        np.testing.assert_allclose(g, want_g, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("structure,family,slopes", SLOPE_CASES)
def test_c_density_equals_logp_grad_with_varying_slopes(structure, family, slopes):
    args = _args(structure, family, SCALE_PRIORS[1], slopes=slopes)
    buf = F.pack(**args)
    rng = np.random.default_rng(4)
    for _ in range(5):
        x = rng.normal(0, 1.0, _n_dim(structure, family, slopes))
        want_lp, want_g = F.logp_grad(x, *args.values())
        rc, lp, g = _call_logp(buf, x)
        assert rc == 0 and np.isfinite(want_lp)
        np.testing.assert_allclose(lp, want_lp, rtol=1e-13)
        np.testing.assert_allclose(g, want_g, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("structure,family,slopes", SLOPE_CASES)
def test_expand_writes_the_slope_variables_in_order(structure, family, slopes):
    args = _args(structure, family, SCALE_PRIORS[0], slopes=slopes)
    buf = F.pack(**args)
    x = np.random.default_rng(3).normal(size=_n_dim(structure, family, slopes))
    L = len(SL)
    mu, sig, v = x[0], np.exp(x[1]), x[2 : 2 + S]
    beta = x[2 + S : 2 + S + K]
    tau, blk = np.exp(x[2 + S + K]), x[3 + S + K : 3 + S + K + S * L]
    # mu_stratum, sigma_stratum, alpha or z_stratum, beta, sigma_slope, z_slope or beta_stratum
    want = [mu, sig, *v, *beta, tau, *blk]
    if family == F.BETABINOMIAL:
        want.append(np.exp(x[-1]))  # concentration
    if structure == F.NONCENTERED:
        want += list(mu + sig * v)  # alpha
    if slopes == F.NONCENTERED:
        want += list((beta[SL][None, :] + tau * blk.reshape(S, L)).ravel())  # beta_stratum
    n_out = F.n_expanded(structure, S, len(x), L, slopes)
    assert n_out == len(want)
    rc, out = _call_expand(buf, x, n_out)
    assert rc == 0
    np.testing.assert_allclose(out, want, rtol=1e-15)


def test_pack_rejects_slopes_outside_the_design():
    args = _args(F.CENTERED, F.LOGISTIC, SCALE_PRIORS[0], slopes=F.NONCENTERED)
    args["sl"] = np.array([0, K])
    with pytest.raises(ValueError, match="columns of the design"):
        F.pack(**args)


@pytest.mark.parametrize("structure", [F.CENTERED, F.NONCENTERED])
def test_c_density_reports_non_finite_points_as_recoverable(structure):
    """exp(log sigma) overflows: logp_grad gives -inf, the callback a positive code (nutpie
    turns that step into a divergence); NaN input likewise."""
    args = _args(structure, F.LOGISTIC, SCALE_PRIORS[0])
    buf = F.pack(**args)
    for u in (800.0, np.nan):
        x = np.ones(_n_dim(structure))
        x[1] = u
        assert F.logp_grad(x, *args.values())[0] == -np.inf
        rc, lp, _ = _call_logp(buf, x)
        assert rc in (3, 4) and not np.isfinite(lp)


def test_c_callbacks_refuse_a_wrong_dimension():
    args = _args(F.NONCENTERED, F.LOGISTIC, SCALE_PRIORS[0])
    buf = F.pack(**args)
    n = _n_dim(F.NONCENTERED)
    assert _call_logp(buf, np.zeros(n), dim=n - 1)[0] == -1
    assert _call_expand(buf, np.zeros(n), n)[0] == -1  # alpha is missing from the output


@pytest.mark.parametrize("family", [F.LOGISTIC, F.BETABINOMIAL])
@pytest.mark.parametrize("structure", [F.NO_STRATA, F.CENTERED, F.NONCENTERED])
def test_expand_writes_the_variables_in_order(structure, family):
    args = _args(structure, family, SCALE_PRIORS[0])
    buf = F.pack(**args)
    x = np.random.default_rng(2).normal(size=_n_dim(structure, family))
    bb = family == F.BETABINOMIAL
    free, conc = (x[:-1], [np.exp(x[-1])]) if bb else (x, [])
    if structure == F.NO_STRATA:
        want = [*free, *conc]  # intercept, beta, [concentration]
    else:
        mu, sig, v, beta = free[0], np.exp(free[1]), free[2 : 2 + S], free[2 + S :]
        # mu_stratum, sigma_stratum, alpha or z_stratum, beta, [concentration]
        want = [mu, sig, *v, *beta, *conc]
        if structure == F.NONCENTERED:
            want += list(mu + sig * v)  # alpha
    rc, out = _call_expand(buf, x, F.n_expanded(structure, S, len(x)))
    assert rc == 0
    np.testing.assert_allclose(out, want, rtol=1e-15)


def test_pack_rejects_arrays_of_different_lengths():
    args = _args(F.CENTERED, F.LOGISTIC, SCALE_PRIORS[0])
    args["b"] = args["b"][:-1]
    with pytest.raises(ValueError, match="disagree"):
        F.pack(**args)
    args = _args(F.CENTERED, F.BETABINOMIAL, SCALE_PRIORS[0])
    args["priors"] = args["priors"][:-1]  # no concentration prior
    with pytest.raises(ValueError, match="disagree"):
        F.pack(**args)


@pytest.mark.parametrize("bad", [2.5, -1.0, 10.0])
def test_pack_rejects_beta_binomial_counts_outside_the_trials(bad):
    """The beta-binomial density sums over 0..count-1: it is exact for integer counts only."""
    args = _args(F.CENTERED, F.BETABINOMIAL, SCALE_PRIORS[0])
    args["a"][3] = bad
    with pytest.raises(ValueError, match="integers from 0 to 9"):
        F.pack(**args)


def _sample(sim_df, seed: int):
    spec = load_spec("logit_count_strata")
    idata, _ = samplers.sample(
        spec,
        collapse(spec, sim_df),
        draws=100,
        tune=100,
        chains=2,
        seed=seed,
        sampler="nutpie",
        prior_scale=1.0,
        progress=False,
    )
    return idata["posterior"]


def test_same_seed_same_draws(sim_df):
    a, b, c = _sample(sim_df, 3), _sample(sim_df, 3), _sample(sim_df, 4)
    for v in ("mu_stratum", "sigma_stratum", "alpha", "beta"):
        np.testing.assert_array_equal(a[v].to_numpy(), b[v].to_numpy())
    assert not np.array_equal(a["beta"].to_numpy(), c["beta"].to_numpy())


def test_a_density_failing_everywhere_is_sampler_trouble(sim_df, monkeypatch):
    """A non-recoverable code at every initial point (here: a buffer that claims another
    dimension) makes nutpie raise; the caller gets SamplerTrouble, not a hang or a crash."""
    real = samplers._compile_nutpie_fast

    def corrupt(*a):
        model = real(*a)
        buf = model.user_data.copy()
        buf[7] += 1
        return dataclasses.replace(model, user_data=buf)

    monkeypatch.setattr(samplers, "_compile_nutpie_fast", corrupt)
    with pytest.raises(SamplerTrouble, match="failed"):
        _sample(sim_df, 0)
