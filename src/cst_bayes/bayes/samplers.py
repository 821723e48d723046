"""Sampler back ends: nutpie over the numba density, nutpie over PyTensor (numba or C), PyMC.

``sampler="nutpie"`` runs the hand-written numba density of :mod:`cst_bayes.bayes.fastlogp`
for every spec it covers (bernoulli/binomial/beta-binomial logit, bounded-log-link binomial and
Poisson log likelihoods, one intercept or partially pooled stratum intercepts, varying slopes,
any fixed-effect design matrix: interactions, covariates, fixed strata, a prior per term): every
shipped spec. Its machine code is cached on disk, so a fresh process needs no compile. Anything
else (a family or prior it does not implement) falls back to nutpie's compile of the PyMC
model, with a one-line note of the cost on stderr.

Why the compiled model is cached
    The data enter the PyMC model only as ``pm.Data``; a compiled sampler is cached per
    (spec, design columns, prior scales, sampler) in the process and re-used with new data
    (``with_data``), so the ensemble, the sweep and the tests compile each model once.

A sampler that panics (nutpie raises pyo3's ``PanicException``, a ``BaseException``) becomes a
:class:`~cst_bayes.core.errors.SamplerTrouble`, so callers record a failed unit.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from cst_bayes.bayes.build import (
    build_from_patterns,
    column_priors,
    prior_scales,
    scales_key,
    slot_prior,
)
from cst_bayes.bayes.design import Patterns, slope_columns
from cst_bayes.bayes.families import N_TRIALS
from cst_bayes.bayes.spec import ModelSpec, Prior
from cst_bayes.core import lazy
from cst_bayes.core.config import OUTCOME, STRATA
from cst_bayes.core.errors import SamplerTrouble

#: NUTS target acceptance. 0.8 left a handful of scattered divergences (not a funnel: at ordinary
#: values of sigma_stratum) in the stratum models; 0.9 removes them for ~15% more leapfrog steps.
TARGET_ACCEPT = 0.9

#: Use the hand-written numba log-density (:mod:`cst_bayes.bayes.fastlogp`) for ``sampler="nutpie"`` when
#: the spec is one it covers; False forces nutpie's PyTensor/numba compile (benchmarks, checks).
FAST_LOGP = True

#: nutpie's sample-statistic names -> ArviZ's.
STAT_NAMES = {
    "depth": "tree_depth",
    "mean_tree_accept": "acceptance_rate",
    "divergences": "diverging",
    "logp": "lp",
    "n_steps": "n_steps",
    "step_size": "step_size",
    "energy": "energy",
    "energy_error": "energy_error",
}
_NOTED: set[str] = set()

_COMPILED: dict[tuple[Any, ...], Any] = {}


def _compile_nutpie_numba(model: Any) -> Any:
    import nutpie

    return nutpie.compile_pymc_model(model)


def _compile_nutpie_c(model: Any) -> Any:
    """nutpie driven by PyTensor's C backend through ``from_pyfunc``.

    Why: PyTensor caches compiled C modules on disk, so a fresh process compiles a known model
    in ~2-3 s, while the numba backend re-compiles its C callbacks every time (15-25 s here).
    The price is a Python call per gradient (GIL-serialised across chains), so for repeated
    fits in one process the numba backend is faster.
    """
    import pytensor
    import pytensor.tensor as pt
    from nutpie.compiled_pyfunc import from_pyfunc

    value_vars = [model.rvs_to_values[v] for v in model.free_RVs]
    ip = model.initial_point()
    shapes = [tuple(ip[v.name].shape) for v in value_vars]
    sizes = [int(np.prod(sh)) for sh in shapes]
    offs = np.cumsum([0, *sizes])
    n = int(offs[-1])
    x = pt.dvector("x")
    logp = model.logp()
    grads: Any = pytensor.grad(logp, value_vars)
    grad = pt.concatenate([g.ravel() for g in grads])
    rep = {v: x[offs[i] : offs[i + 1]].reshape(shapes[i]) for i, v in enumerate(value_vars)}
    logp, grad = pytensor.clone_replace([logp, grad], rep)
    outs = [v for v in model.unobserved_value_vars if not v.name.endswith("__")]
    names = [v.name for v in outs]
    expand_outs = pytensor.clone_replace(outs, rep)
    f_logp = pytensor.function([x], [logp, grad], mode="FAST_RUN", on_unused_input="ignore")
    f_exp = pytensor.function([x], expand_outs, mode="FAST_RUN", on_unused_input="ignore")
    x0 = np.concatenate([np.asarray(ip[v.name], dtype=float).ravel() for v in value_vars])
    shapes_out = [np.shape(v) for v in f_exp(x0)]

    def make_logp() -> Any:
        f = f_logp.copy()  # one per chain: a PyTensor function is not thread-safe

        def logp_fn(xv: np.ndarray) -> tuple[float, np.ndarray]:
            lp, g = f(xv)
            return float(lp), np.asarray(g, dtype=np.float64)

        return logp_fn

    def make_expand(seed1: int, seed2: int, chain: int) -> Any:
        f = f_exp.copy()

        def expand(xv: np.ndarray) -> dict[str, np.ndarray]:
            return {nm: np.asarray(v, dtype=np.float64) for nm, v in zip(names, f(xv))}

        return expand

    def init(
        seed: int,
    ) -> np.ndarray:  # PyMC's support point jittered by U(-1, 1), like nutpie and PyMC
        return x0 + np.random.default_rng(seed).uniform(-1, 1, n)

    dims = {nm: tuple(model.named_vars_to_dims.get(nm, ())) for nm in names}
    return from_pyfunc(
        n,
        make_logp,
        make_expand,
        [np.dtype("float64")] * len(names),
        shapes_out,
        names,
        coords={k: list(v) for k, v in model.coords.items()},
        dims=dims,
        make_initial_point_fn=init,
    )


def fast_supported(spec: ModelSpec) -> bool:
    """Whether :mod:`cst_bayes.bayes.fastlogp` implements this spec's density exactly."""
    from cst_bayes.bayes import fastlogp

    return (
        spec.family in fastlogp.FAMILY_CODES
        and (spec.pooled_strata or not spec.varying_slopes)
        and all(p.dist in fastlogp.PRIOR_CODES for p in spec.priors.values())
    )


def _why_not_fast(spec: ModelSpec) -> str:
    from cst_bayes.bayes import fastlogp

    if spec.family not in fastlogp.FAMILY_CODES:
        return f"family {spec.family}"
    if spec.varying_slopes and not spec.pooled_strata:
        return "varying slopes without stratum intercepts"
    return "a prior distribution"


def fast_args(
    spec: ModelSpec, pat: Patterns, prior_scale: float | Mapping[str, float] = 1.0
) -> dict[str, Any]:
    """Data and prior arrays of :func:`cst_bayes.bayes.fastlogp.logp_grad` for ``spec`` on ``pat``."""
    from scipy.special import gammaln

    from cst_bayes.bayes import fastlogp as F

    scales = prior_scales(prior_scale)
    sig = (
        slot_prior(spec, "sigma_stratum", scales)
        if spec.pooled_strata
        else Prior("halfnormal", {"sigma": 1.0}, "")
    )
    rows = [slot_prior(spec, "intercept", scales), sig, *column_priors(spec, pat.columns, scales)]
    sl = slope_columns(spec, pat.columns)
    if len(sl):
        rows.append(slot_prior(spec, "sigma_slope", scales))
    if spec.family == "betabinomial":
        rows.append(slot_prior(spec, "concentration", scales))
    priors = np.vstack([F.prior_row(p.dist, p.params) for p in rows])
    w1, w0 = np.asarray(pat.w1, dtype=float), np.asarray(pat.w0, dtype=float)
    fam = F.FAMILY_CODES[spec.family]
    if spec.outcome == OUTCOME:
        if fam == F.LOGISTIC:
            # the log-binomial's bounded log link: log P(y=1) = -softplus(-eta) = log sigmoid(eta)
            # and log P(y=0) = log1mexp of it = log sigmoid(-eta): the Bernoulli-logit density
            a, b, const = w1, w0, 0.0
        else:  # Poisson working likelihood on 0/1
            a, b, const = w1, w1 + w0, 0.0
    else:
        y, m = w1, w0
        lchoose = gammaln(N_TRIALS + 1) - gammaln(y + 1) - gammaln(N_TRIALS - y + 1)
        if fam == F.LOGLINEAR:
            a, b, const = m * y, m, -float(np.sum(m * gammaln(y + 1)))
        elif fam == F.LOGISTIC:  # binomial(9)
            a, b, const = m * y, m * (N_TRIALS - y), float(np.sum(m * lchoose))
        else:  # beta-binomial(9): the count and its multiplicity
            a, b, const = y, m, float(np.sum(m * lchoose))
    structure = (
        F.NO_STRATA
        if not spec.pooled_strata
        else F.CENTERED
        if spec.intercept_parameterisation == "centered"
        else F.NONCENTERED
    )
    K = pat.X.shape[1]
    Xc = np.ascontiguousarray(pat.X - pat.xbar if K else np.zeros((len(w1), 0)), dtype=float)
    return dict(
        structure=structure,
        family=fam,
        n_strata=len(STRATA),
        priors=priors,
        sidx=np.ascontiguousarray(pat.stratum, dtype=np.int64),
        Xc=Xc,
        a=np.ascontiguousarray(a),
        b=np.ascontiguousarray(b),
        const=float(const),
        n_trials=N_TRIALS,
        sl=sl,
        slope_structure=F.CENTERED if spec.slope_parameterisation == "centered" else F.NONCENTERED,
    )


def fast_x0(
    spec: ModelSpec,
    prior_scale: float | Mapping[str, float] = 1.0,
    columns: tuple[str, ...] | None = None,
) -> np.ndarray:
    """PyMC's initial point (support points, log scale for sigma) in the fast layout."""
    from cst_bayes.bayes import fastlogp as F

    scales = prior_scales(prior_scale)
    cols = tuple(spec.predictors) if columns is None else columns
    ip = slot_prior(spec, "intercept", scales)
    mu0 = F.support_point(ip.dist, ip.params)
    parts = [[mu0]]
    if spec.pooled_strata:
        sp = slot_prior(spec, "sigma_stratum", scales)
        parts.append([np.log(F.support_point(sp.dist, sp.params))])
        parts.append([mu0 if spec.intercept_parameterisation == "centered" else 0.0] * len(STRATA))
    beta0 = [F.support_point(p.dist, p.params) for p in column_priors(spec, cols, scales)]
    parts.append(beta0)
    sl = slope_columns(spec, cols)
    if len(sl):
        tp = slot_prior(spec, "sigma_slope", scales)
        parts.append([np.log(F.support_point(tp.dist, tp.params))])
        # z_slope starts at 0, beta_stratum at its mean beta (row-major: stratum, slope)
        centered_slopes = spec.slope_parameterisation == "centered"
        row = [beta0[i] for i in sl] if centered_slopes else [0.0] * len(sl)
        parts.append(row * len(STRATA))
    if spec.family == "betabinomial":
        cp = slot_prior(spec, "concentration", scales)
        parts.append([np.log(F.support_point(cp.dist, cp.params))])
    return np.concatenate([np.asarray(p, dtype=float) for p in parts])


def _compile_nutpie_fast(spec: ModelSpec, pat: Patterns, prior_scale: Any) -> Any:
    """nutpie over the hand-written numba density of :mod:`cst_bayes.bayes.fastlogp`.

    Why: its machine code is cached on disk by numba (``cache=True``), so a fresh process
    loads it in well under a second, where nutpie's PyTensor/numba compile takes 15-35 s;
    nutpie calls it as a C function (:mod:`cst_bayes.bayes.compiled`), so no Python callback
    and no GIL sit between the chains and the density. Same density as the PyMC model (tests
    compare logp and gradient), same variable names.
    """
    from cst_bayes.bayes.compiled import fast_model

    x0 = fast_x0(spec, prior_scale, pat.columns)
    S, K = len(STRATA), pat.X.shape[1]
    dim = spec.predictor_dim
    centered = spec.intercept_parameterisation == "centered"
    # the order the expand callback writes: the free vector (sigma on its natural scale), then
    # the derived alpha of the non-centered parameterisation
    dims: dict[str, tuple[str, ...]]
    if spec.pooled_strata:
        names = ["mu_stratum", "sigma_stratum", "alpha" if centered else "z_stratum"]
        shapes: list[tuple[int, ...]] = [(), (), (S,)]
        dims = {"alpha": ("stratum",), "z_stratum": ("stratum",)}
    else:
        names, shapes, dims = ["intercept"], [()], {}
    coords: dict[str, list] = {"stratum": list(STRATA)}
    if K:
        names.append("beta")
        shapes.append((K,))
        dims["beta"] = (dim,)
        coords[dim] = list(pat.columns)
    sl = slope_columns(spec, pat.columns)
    L = len(sl)
    slopes_centered = spec.slope_parameterisation == "centered"
    if L:
        # as build_from_patterns: the slopes share the coefficient dimension when every
        # predictor of a predictors-list spec varies, else a "slope" dimension of their own
        slope_dim = dim if L == K and not spec.formula else "slope"
        if slope_dim == "slope":
            coords["slope"] = [pat.columns[i] for i in sl]
        names += ["sigma_slope", "beta_stratum" if slopes_centered else "z_slope"]
        shapes += [(), (S, L)]
        dims["z_slope"] = dims["beta_stratum"] = ("stratum", slope_dim)
    if spec.family == "betabinomial":
        names.append("concentration")
        shapes.append(())
    if spec.pooled_strata and not centered:
        names.append("alpha")
        shapes.append((S,))
    if L and not slopes_centered:
        names.append("beta_stratum")
        shapes.append((S, L))
    return fast_model(
        fast_args(spec, pat, prior_scale), x0, names, shapes, coords=coords, dims=dims
    )


def _is_panic(exc: BaseException) -> bool:
    return type(exc).__name__ == "PanicException"


def sample(
    spec: ModelSpec,
    pat: Patterns,
    *,
    draws: int,
    tune: int,
    chains: int,
    seed: int,
    sampler: str,
    prior_scale: Any,
    progress: bool,
    thin: int = 1,
    target_accept: float = TARGET_ACCEPT,
) -> tuple[Any, dict[str, float]]:
    """Sample; return the posterior InferenceData (posterior + sample_stats) and timings.

    ``thin`` > 1 runs ``draws * thin`` iterations per chain and keeps every ``thin``-th
    (:func:`thin_groups`): the same number of draws, less autocorrelated.

    Raises
    ------
    SamplerTrouble
        When the sampler panics (nutpie) instead of returning draws.
    """
    try:
        return _sample(
            spec,
            pat,
            draws=draws,
            tune=tune,
            chains=chains,
            seed=seed,
            sampler=sampler,
            prior_scale=prior_scale,
            progress=progress,
            thin=thin,
            target_accept=target_accept,
        )
    except BaseException as exc:
        if _is_panic(exc):
            what = "panicked"
        elif isinstance(exc, RuntimeError) and sampler.startswith("nutpie"):
            what = "failed"  # nutpie's errors, e.g. every initial point with a failing density
        else:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SamplerTrouble(
            f"model {spec.name}: the {sampler} sampler {what} (seed {seed}): {first}"
        ) from None


def _note_fallback(spec: ModelSpec) -> None:
    if spec.hash in _NOTED:
        return
    _NOTED.add(spec.hash)
    print(
        f"note: {spec.name}: {_why_not_fast(spec)} is not covered by the fast density; "
        "nutpie compiles the PyMC model instead (once per process)",
        file=sys.stderr,
    )


def _sample(
    spec: ModelSpec,
    pat: Patterns,
    *,
    draws: int,
    tune: int,
    chains: int,
    seed: int,
    sampler: str,
    prior_scale: Any,
    progress: bool,
    thin: int = 1,
    target_accept: float = TARGET_ACCEPT,
) -> tuple[Any, dict[str, float]]:
    t0 = time.perf_counter()
    n_iter = draws * thin
    timings: dict[str, float] = {}
    scales = prior_scales(prior_scale)
    if sampler == "pymc":
        import pymc as pm

        model = build_from_patterns(spec, pat, scales)
        timings["compile_s"] = 0.0  # PyMC compiles inside pm.sample; reported as sampling time
        t1 = time.perf_counter()
        with model:
            idata = pm.sample(
                draws=n_iter,
                tune=tune,
                chains=chains,
                cores=min(chains, 2),
                random_seed=seed,
                progressbar=progress,
                target_accept=target_accept,
                compute_convergence_checks=False,
                nuts_sampler="pymc",
            )
        timings["sample_s"] = time.perf_counter() - t1
    else:
        nutpie = lazy.nutpie()  # ArviZ deferred: 2-4 s of a fit

        key = (spec.hash, pat.columns, scales_key(scales), sampler)
        compiled = _COMPILED.get(key)
        if sampler == "nutpie" and FAST_LOGP and fast_supported(spec):
            compiled = _compile_nutpie_fast(spec, pat, scales)
        elif compiled is not None:
            # the compiled density keeps only the data its graph reads (the beta-binomial
            # reads no w1): swap those; a datum it does not read cannot change the posterior
            used = compiled.shared_data
            compiled = compiled.with_data(**{k: v for k, v in pat.data(spec).items() if k in used})
        elif sampler == "nutpie":
            if FAST_LOGP:
                _note_fallback(spec)
            compiled = _COMPILED[key] = _compile_nutpie_numba(
                build_from_patterns(spec, pat, scales)
            )
        else:  # the C functions close over this dataset; their compiled modules are cached on disk
            compiled = _compile_nutpie_c(build_from_patterns(spec, pat, scales))
        timings["compile_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        raw = nutpie.sample(
            compiled,
            draws=n_iter,
            tune=tune,
            chains=chains,
            seed=seed,
            progress_bar=progress,
            save_warmup=False,
            target_accept=target_accept,
            return_raw_trace=True,
        )
        timings["sample_s"] = time.perf_counter() - t1
        idata = groups_from_trace(raw, compiled.coords)
    post = idata["posterior"]
    keep = [v for v in post.data_vars if not str(v).endswith("__")]
    post = post[keep]
    stats = idata["sample_stats"]
    stats = stats.rename({k: v for k, v in STAT_NAMES.items() if k in stats and v not in stats})
    return thin_groups({"posterior": post, "sample_stats": stats}, thin), timings


def thin_groups(groups: Mapping[str, Any], thin: int) -> dict[str, Any]:
    """Keep every ``thin``-th draw (the last of each block of ``thin``) of every group.

    A divergence anywhere in a block is kept on the block's draw (``diverging`` is the
    block's any), so thinning never hides one from the diagnostics.
    """
    if thin == 1:
        return dict(groups)
    out = {}
    for name, ds in groups.items():
        n = ds.sizes["draw"] // thin
        kept = ds.isel(draw=slice(thin - 1, n * thin, thin))
        if "diverging" in ds:
            d = ds["diverging"].transpose("chain", "draw").to_numpy()[:, : n * thin]
            kept["diverging"] = (("chain", "draw"), d.reshape(d.shape[0], n, thin).any(axis=2))
        out[name] = kept.assign_coords(draw=np.arange(n))
    return out


#: nutpie statistics left out of ``sample_stats`` (nutpie's own conversion drops them too
#: unless asked to store them): per-draw vectors and the sampler's bookkeeping.
_SKIPPED_STATS = frozenset(
    {
        "chain",
        "draw",
        "gradient",
        "unconstrained_draw",
        "mass_matrix_inv",
        "mass_matrix_eigvals",
        "mass_matrix_stds",
        "divergence_start",
        "divergence_end",
        "divergence_momentum",
        "divergence_start_gradient",
    }
)


def groups_from_trace(raw: Any, coords: Mapping[str, Any] | None) -> dict[str, Any]:
    """``posterior`` and ``sample_stats`` Datasets from nutpie's raw (Arrow) trace, warm-up
    rows dropped: what ``nutpie.sample`` returns, without building an ArviZ object."""
    import xarray as xr
    from nutpie.sample import _add_arrow_data

    draw_batches, stat_batches = raw.get_arrow_trace()
    n_chains = len(draw_batches)
    groups = {}
    for group, batches, skip in (
        ("posterior", draw_batches, []),
        ("sample_stats", stat_batches, sorted(_SKIPPED_STATS)),
    ):
        data: dict[str, np.ndarray] = {}
        dims: dict[str, list[str]] = {}
        kept = []
        for chain, (batch, stats) in enumerate(zip(batches, stat_batches, strict=True)):
            tuning = np.asarray(stats.column("tuning").to_numpy(), dtype=bool)
            start = int(tuning.sum())  # nutpie writes the warm-up rows first
            kept.append(batch.num_rows - start)
            _add_arrow_data(
                data, batch.num_rows - start, batch.slice(start, batch.num_rows - start),
                chain, n_chains, dims, skip,
            )  # fmt: skip
        n_draws = min(kept)
        variables = {}
        for name, values in data.items():
            item_dims = list(dims.get(name) or [])
            extra = values.ndim - 2
            if len(item_dims) != extra:
                item_dims = [f"{name}_dim_{i}" for i in range(extra)]
            variables[name] = (("chain", "draw", *item_dims), values[:, :n_draws])
        used = {d for _, (ds, _) in variables.items() for d in ds}
        crd: dict[str, Any] = {"chain": np.arange(n_chains), "draw": np.arange(n_draws)}
        crd.update({k: list(v) for k, v in (coords or {}).items() if k in used})
        groups[group] = xr.Dataset(variables, coords=crd)
    return groups
