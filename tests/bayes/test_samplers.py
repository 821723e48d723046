"""Sampler back ends: the numba density on formula designs, its guards, panics, ArviZ names."""

from __future__ import annotations

import numpy as np
import nutpie
import pytest
from bayes_support import write_spec

from cst_bayes.bayes import fastlogp as F
from cst_bayes.bayes import samplers
from cst_bayes.bayes.build import build_from_patterns
from cst_bayes.bayes.design import collapse, normalise_weights
from cst_bayes.bayes.fit import fit
from cst_bayes.bayes.spec import load_spec
from cst_bayes.core.config import DATA_DIR, STRATA
from cst_bayes.core.errors import SamplerTrouble

ARGS = (
    "structure", "family", "n_strata", "priors", "sidx", "Xc", "a", "b", "const", "n_trials", "sl",
    "slope_structure",
)  # fmt: skip
#: varying slopes on two of three terms (a "slope" dimension of their own), any family
SLOPES = """
[model]
name = "{name}"
description = "slopes on a subset of the terms"
family = "{family}"
link = "logit"
formula = "{outcome} ~ court + training + victim_service + (1 | stratum) + (court | stratum) + (training | stratum)"

[hierarchy]
intercept_parameterisation = "{ip}"
slope_parameterisation = "{sp}"

[priors.intercept]
dist = "normal"
mu = -1.5
sigma = 2.5
reason = "r"

[priors.beta]
dist = "normal"
mu = 0.0
sigma = 2.5
reason = "r"

[priors.sigma_stratum]
dist = "halfnormal"
sigma = 2.0
reason = "r"

[priors.sigma_slope]
dist = "{slope_prior}"
{slope_params}
reason = "r"

[priors.concentration]
dist = "gamma"
alpha = 2.0
beta = 0.1
reason = "r"
"""
SLOPE_VARIANTS = {
    "slopes_logit_cc": ("bernoulli", "any_cst", "centered", "centered", "halfnormal", "sigma = 0.5"),
    "slopes_bb_nn": (
        "betabinomial", "n_approaches", "noncentered", "noncentered", "gamma", "alpha = 2.0\nbeta = 3.0"
    ),
    "slopes_bb_cc": (
        "betabinomial", "n_approaches", "centered", "centered", "exponential", "lam = 2.0"
    ),
}  # fmt: skip


def _load(name, tmp_path):
    """A shipped spec, a shipped spec with its parameterisations swapped, or a slopes variant."""
    import dataclasses

    if name == "logit_varying_slopes_swapped":
        spec = load_spec("logit_varying_slopes")
        return dataclasses.replace(
            spec, intercept_parameterisation="noncentered", slope_parameterisation="centered"
        )
    if name in SLOPE_VARIANTS:
        fam, out, ip, sp, prior, params = SLOPE_VARIANTS[name]
        text = SLOPES.format(
            name=name, family=fam, outcome=out, ip=ip, sp=sp, slope_prior=prior, slope_params=params
        )
        if fam != "betabinomial":
            text = text[: text.index("[priors.concentration]")]
        return load_spec(write_spec(tmp_path, text, name))
    return load_spec(name)


#: the C-function model, kept before any test replaces it in ``samplers``
C_MODEL = samplers._compile_nutpie_fast


def test_fast_density_equals_pymc_on_a_formula_design(interaction_spec, sim_df):
    """Interaction, fixed strata, a Student-t prior on one term, weights and per-slot scales."""
    spec = interaction_spec
    assert samplers.fast_supported(spec)
    rng = np.random.default_rng(5)
    w = normalise_weights(rng.uniform(0.3, 3.0, len(sim_df)), len(sim_df))
    pat = collapse(spec, sim_df, w)
    assert pat.columns == (
        "court",
        "victim_service",
        "task_force",
        "victim_service:task_force",
        "stratum[50-999]",
        "stratum[state]",
        "stratum[1000+]",
    )
    # the interaction column is the product, computed here independently of formulae
    Xraw = sim_df[["victim_service", "task_force"]].to_numpy(float)
    np.testing.assert_allclose(pat.xbar[3], (Xraw[:, 0] * Xraw[:, 1]).mean())
    scales = {"beta": 1.7, "intercept": 0.5}
    model = build_from_patterns(spec, pat, scales)
    logp, dlogp = model.compile_logp(), model.compile_dlogp()
    ip = model.initial_point()
    vals = [model.rvs_to_values[rv] for rv in model.free_RVs]
    x0 = samplers.fast_x0(spec, scales, pat.columns)
    np.testing.assert_allclose(x0, np.concatenate([np.ravel(ip[v.name]) for v in vals]))
    a = samplers.fast_args(spec, pat, scales)
    offsets = []
    for _ in range(5):
        x = x0 + rng.normal(0, 0.8, len(x0))
        point, o = {}, 0
        for v in vals:
            sz = int(np.prod(ip[v.name].shape))
            point[v.name] = x[o : o + sz].reshape(ip[v.name].shape)
            o += sz
        lp, g = F.logp_grad(x, *[a[k] for k in ARGS])
        # PyMC's per-term RVs come in the order of the design columns, as the fast layout
        np.testing.assert_allclose(g, dlogp(point), rtol=1e-7, atol=1e-8)
        offsets.append(lp - logp(point))
    assert np.ptp(offsets) < 1e-7  # equal up to PyTensor's float32 constants


def _pymc_point(model, x):
    """The unconstrained vector ``x`` as a PyMC point (value variables in PyMC's order)."""
    ip = model.initial_point()
    point, o = {}, 0
    for v in model.value_vars:
        sz = int(np.prod(ip[v.name].shape))
        point[v.name] = x[o : o + sz].reshape(ip[v.name].shape)
        o += sz
    assert o == len(x)
    return point


@pytest.mark.parametrize(
    "name,grad_rtol",
    [
        ("logbinomial_approaches_strata", 1e-10),
        # PyTensor's digamma (the beta function's gradient) is good to ~1e-8 relative; the fast
        # density's finite sums agree with scipy's digamma to 1e-12 (tests/bayes/test_fastlogp.py)
        ("count_betabinomial_strata", 1e-7),
        ("logit_varying_slopes", 1e-10),
        ("logit_varying_slopes_swapped", 1e-10),
        ("slopes_logit_cc", 1e-10),
        ("slopes_bb_nn", 1e-7),
        ("slopes_bb_cc", 1e-7),
    ],
)
def test_fast_density_equals_pymc_on_shipped_specs(sim_df, tmp_path, name, grad_rtol):
    """The log-binomial (bounded log link), beta-binomial and varying-slopes models (all slope
    and intercept parameterisations, slopes on every term or a subset): same initial point,
    same log-density up to a constant and same gradient as the PyMC model, with survey
    weights and scaled priors, at random points."""
    spec = _load(name, tmp_path)
    assert samplers.fast_supported(spec)
    rng = np.random.default_rng(7)
    w = normalise_weights(rng.uniform(0.3, 3.0, len(sim_df)), len(sim_df))
    scales = {"beta": 1.3, "sigma_stratum": 0.8, "concentration": 1.6, "sigma_slope": 1.2}
    # survey weights: the general case of the pattern sums
    pat = collapse(spec, sim_df, w)
    model = build_from_patterns(spec, pat, scales)
    logp, dlogp = model.compile_logp(), model.compile_dlogp()
    x0 = samplers.fast_x0(spec, scales, pat.columns)
    ip = model.initial_point()
    np.testing.assert_allclose(x0, np.concatenate([np.ravel(ip[v.name]) for v in model.value_vars]))
    a = samplers.fast_args(spec, pat, scales)
    offsets = []
    for _ in range(6):
        x = x0 + rng.normal(0, 1.0, len(x0))
        lp, g = F.logp_grad(x, *[a[k] for k in ARGS])
        point = _pymc_point(model, x)
        want = dlogp(point)
        np.testing.assert_allclose(g, want, rtol=grad_rtol, atol=grad_rtol * np.abs(want).max())
        offsets.append(lp - logp(point))
    # equal up to PyTensor's float32 constants: the offset is that constant, not a function of
    # x, except that PyMC's Gamma keeps its scale 1/beta in float32 (here 1/3, see
    # tests/test_models.py), which moves its log-density by up to ~1e-6
    assert np.ptp(offsets) < (1e-6 if name == "slopes_bb_nn" else 1e-7), offsets
    assert abs(offsets[0]) < 1e-6


@pytest.mark.parametrize(
    "name",
    [
        "logbinomial_approaches_strata",
        "count_betabinomial_strata",
        "count_binomial_strata",
        "logit_approaches_strata",
        "logit_approaches",
        "logit_varying_slopes",
        "logit_varying_slopes_swapped",
        *SLOPE_VARIANTS,
    ],
)
def test_fast_model_declares_the_variables_of_the_pymc_model(sim_df, tmp_path, name):
    """Same posterior variable names, shapes and dims as the PyMC model the fallback samples."""
    spec = _load(name, tmp_path)
    pat = collapse(spec, sim_df)
    model = build_from_patterns(spec, pat)
    fast = C_MODEL(spec, pat, 1.0)
    ip = model.initial_point()
    free = {v.name for v in model.free_RVs}
    want = {
        v.name: tuple(model.named_vars_to_dims.get(v.name, ()))
        for v in model.unobserved_value_vars
        if not v.name.endswith("__")
    }
    assert set(fast.names) == set(want)
    for nm, shape in fast.shapes.items():
        dims = tuple(fast.dims.get(nm, ()))
        assert dims == want[nm], nm
        assert shape == tuple(len(model.coords[d]) for d in dims), nm
        if nm in free and nm + "_log__" not in ip:
            assert shape == ip[nm].shape, nm
    assert all(list(fast.coords[d]) == list(model.coords[d]) for d in fast.coords)


def test_fast_density_far_in_the_tail_is_minus_inf_not_an_error(sim_df):
    spec = load_spec("logit_count_strata")
    a = samplers.fast_args(spec, collapse(spec, sim_df))
    x = samplers.fast_x0(spec)
    for u in (-800.0, 800.0):
        x[1] = u  # log sigma_stratum: exp(u) under- or overflows
        lp, g = F.logp_grad(x, *[a[k] for k in ARGS])
        assert lp == -np.inf and np.all(g == 0)


@pytest.mark.slow
def test_seed_that_crashed_the_fast_density_fits():
    from cst_bayes.data.microdata import load

    df = load(DATA_DIR / "reconstructed" / "reconstruction-001.csv")
    f = fit(
        "logit_count_strata", df, seed=2335161427, draws=200, tune=200, chains=2, progress=False
    )
    assert np.isfinite(f.idata.posterior["beta"].to_numpy()).all()


def _callback_model(spec, pat, logp=F.logp_grad):
    """The fast density driven through nutpie's Python-callback interface (``from_pyfunc``)
    instead of its C functions: an independent route into the sampler, for comparison and for
    densities that raise."""
    from nutpie.compiled_pyfunc import from_pyfunc

    c = C_MODEL(spec, pat, 1.0)
    a = samplers.fast_args(spec, pat)
    pos = [a[k] for k in ARGS]
    S = len(STRATA)

    def expand(x):
        if not spec.pooled_strata:
            vals = [x[0], x[1:]]
        else:
            sig = np.exp(x[1])
            vals = [x[0], sig, x[2 : 2 + S], x[2 + S :], x[0] + sig * x[2 : 2 + S]]
        return {n: np.asarray(v, dtype=float) for n, v in zip(c.names, vals)}

    return from_pyfunc(
        c.n_dim,
        lambda: lambda x: logp(x, *pos),
        lambda *seeds: expand,
        [np.dtype("float64")] * len(c.names),
        c.var_shapes,
        c.names,
        coords=c.coords,
        dims=c.dims,
        make_initial_point_fn=c.initial_point_func,
    )


@pytest.mark.slow
@pytest.mark.parametrize("after,what", [(400, "panicked"), (1, "failed")])
def test_sampler_panic_becomes_sampler_trouble(sim_df, monkeypatch, after, what):
    """An exception in the density while sampling makes nutpie panic (pyo3's PanicException, a
    BaseException); at the initial points it makes nutpie raise. Both are SamplerTrouble."""
    calls = {"n": 0}

    def flaky(x, *args):
        calls["n"] += 1
        if calls["n"] > after:
            raise ZeroDivisionError("float division by zero")
        return F.logp_grad(x, *args)

    monkeypatch.setattr(
        samplers, "_compile_nutpie_fast", lambda spec, pat, _: _callback_model(spec, pat, flaky)
    )
    with pytest.raises(SamplerTrouble, match=what):
        fit("logit_count_strata", sim_df, draws=200, tune=200, chains=1, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["logit_approaches_strata", "logit_count"])
def test_c_function_model_samples_the_callback_posterior(name):
    """nutpie over the C functions and nutpie over a Python callback of the same density, with
    different seeds: the posterior means agree within 3.5 Monte Carlo standard errors of their
    difference on a shipped member (pooled and single-intercept layouts)."""
    from arviz_stats.base import array_stats

    from cst_bayes.data.microdata import load

    def mcse(x):
        a = x.transpose("chain", "draw", ...).to_numpy()
        return array_stats.mcse(a, chain_axis=0, draw_axis=1, method="mean")

    df = load(DATA_DIR / "reconstructed" / "reconstruction-001.csv")
    spec = load_spec(name)
    pat = collapse(spec, df)
    kw = dict(draws=500, tune=500, chains=2, progress_bar=False)
    new = nutpie.sample(C_MODEL(spec, pat, 1.0), seed=11, **kw)
    old = nutpie.sample(_callback_model(spec, pat), seed=12, **kw)
    assert set(new.posterior.data_vars) == set(old.posterior.data_vars)
    for v in new.posterior.data_vars:
        a, b = new.posterior[v], old.posterior[v]
        assert a.dims == b.dims
        err = np.hypot(mcse(a), mcse(b))
        diff = np.abs(a.mean(("chain", "draw")).to_numpy() - b.mean(("chain", "draw")).to_numpy())
        assert np.all(diff <= 3.5 * err), v


def test_c_function_model_retraces_the_callback_chain(sim_df):
    """Same seed, same initial point, same density: the two routes give the same draws."""
    spec = load_spec("logit_count_strata")
    pat = collapse(spec, sim_df)
    kw = dict(draws=100, tune=100, chains=1, seed=5, progress_bar=False)
    new = nutpie.sample(C_MODEL(spec, pat, 1.0), **kw).posterior
    old = nutpie.sample(_callback_model(spec, pat), **kw).posterior
    for v in old.data_vars:
        np.testing.assert_allclose(new[v].to_numpy(), old[v].to_numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_sample_stats_use_arviz_names(sim_df):
    f = fit("logit_count", sim_df, draws=100, tune=100, chains=2, progress=False)
    names = set(f.idata.sample_stats.data_vars)
    assert {"tree_depth", "acceptance_rate", "diverging", "energy", "lp"} <= names
    assert not {"depth", "mean_tree_accept"} & names


@pytest.mark.slow
def test_a_reused_compiled_model_samples_the_new_data_exactly(monkeypatch):
    """Across ensemble members the PyMC-compiled density is reused with the new data: the
    posterior must equal a fresh compile's on that member (same seed), not the first's."""
    import numpy as np

    from cst_bayes.bayes import models, samplers
    from cst_bayes.data.simulate import simulate

    spec = "count_betabinomial_strata"
    first, _ = simulate(21)
    second, _ = simulate(22)
    kw = dict(draws=150, tune=150, chains=2, seed=3, progress=False)
    monkeypatch.setattr(samplers, "FAST_LOGP", False)  # nutpie's compile of the PyMC model
    samplers._COMPILED.clear()
    models.fit(spec, first, **kw)
    reused = models.fit(spec, second, **kw)
    samplers._COMPILED.clear()
    fresh = models.fit(spec, second, **kw)
    np.testing.assert_allclose(reused.summary["estimate"], fresh.summary["estimate"])
