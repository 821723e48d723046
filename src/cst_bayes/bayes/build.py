"""The PyMC model of a spec on covariate patterns.

Free variables: ``intercept`` or (``mu_stratum``, ``sigma_stratum``, ``alpha`` [stratum]);
``beta`` [coefficient dimension] on the centred design columns; with varying slopes
``sigma_slope`` and ``z_slope`` / ``beta_stratum`` [stratum, slope columns]; ``concentration``
for the beta-binomial. The data are ``pm.Data`` (re-used with new data by the samplers).

The likelihood is an observed variable on the patterns (Binomial successes per covariate
pattern, or the count per pattern row) plus a Potential that makes the total exactly the
agency-level likelihood, and under survey weights the Savitsky-Toth pseudo-likelihood
(:func:`cst_bayes.bayes.families.observe`). So ``pm.sample_prior_predictive`` and
``pm.sample_posterior_predictive`` work on the model, and a user can extend it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from cst_bayes.bayes.design import Patterns, collapse, column_term, normalise_weights, slope_columns
from cst_bayes.bayes.families import PRIOR_SLOTS, observe
from cst_bayes.bayes.spec import ModelSpec, Prior, load_spec
from cst_bayes.core.config import STRATA
from cst_bayes.core.errors import InputError, SpecError

#: What a plain number given as ``prior_scale`` scales (the coefficient priors, as before).
DEFAULT_SCALED_SLOT = "beta"


def prior_scales(prior_scale: float | Mapping[str, float] | None) -> dict[str, float]:
    """``prior_scale`` -> one factor per slot (1 where not given).

    A plain number K scales the coefficient priors only (``beta`` and every per-term prior);
    a mapping ``{slot: K}`` scales the named slots (``beta``, ``intercept``, ``sigma_stratum``,
    ``sigma_slope``, ``concentration``). What scaling means per distribution:
    :meth:`cst_bayes.bayes.spec.Prior.scaled`.
    """
    out = dict.fromkeys(PRIOR_SLOTS, 1.0)
    if prior_scale is None:
        return out
    items = (
        prior_scale.items()
        if isinstance(prior_scale, Mapping)
        else [(DEFAULT_SCALED_SLOT, prior_scale)]
    )
    for slot, k in items:
        if slot not in PRIOR_SLOTS:
            raise InputError(
                f"unknown prior slot {slot!r} in prior_scale (known: {list(PRIOR_SLOTS)})",
                column="prior_scale",
            )
        ok = isinstance(k, (int, float, np.floating)) and not isinstance(k, bool)
        if not (ok and np.isfinite(k) and k > 0):
            raise InputError(
                f"prior_scale for {slot} must be a positive number, got {k!r}",
                column="prior_scale",
            )
        out[slot] = float(k)
    return out


def scales_key(scales: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    """Hashable form of the scales (cache keys, provenance)."""
    return tuple(sorted((k, float(v)) for k, v in scales.items() if v != 1.0))


def slot_prior(spec: ModelSpec, slot: str, scales: Mapping[str, float]) -> Prior:
    return spec.priors[slot].scaled(scales.get(slot, 1.0))


def column_priors(
    spec: ModelSpec, columns: tuple[str, ...], scales: Mapping[str, float]
) -> list[Prior]:
    """The (scaled) prior of each design column: its term's own prior or the ``beta`` prior."""
    k = scales.get("beta", 1.0)
    return [spec.term_prior(column_term(spec, c)).scaled(k) for c in columns]


def _prior_rv(pm: Any, name: str, prior: Prior, dims: Any = None) -> Any:
    p = prior.params
    if prior.dist == "normal":
        return pm.Normal(name, mu=p["mu"], sigma=p["sigma"], dims=dims)
    if prior.dist == "student_t":
        return pm.StudentT(name, nu=p["nu"], mu=p["mu"], sigma=p["sigma"], dims=dims)
    if prior.dist == "halfnormal":
        return pm.HalfNormal(name, sigma=p["sigma"], dims=dims)
    if prior.dist == "halfstudent_t":
        return pm.HalfStudentT(name, nu=p["nu"], sigma=p["sigma"], dims=dims)
    if prior.dist == "exponential":
        return pm.Exponential(name, lam=p["lam"], dims=dims)
    if prior.dist == "gamma":
        return pm.Gamma(name, alpha=p["alpha"], beta=p["beta"], dims=dims)
    raise SpecError(
        f"unknown prior distribution {prior.dist!r}", path=None, column=name
    )  # pragma: no cover


def _beta_rv(pm: Any, pt: Any, priors: list[Prior], dim: str) -> Any:
    """``beta`` with one prior per column: one vector RV when the priors share a distribution."""
    dists = {p.dist for p in priors}
    if len(dists) == 1:
        d = priors[0].dist
        params = {n: np.array([p.params[n] for p in priors]) for n in priors[0].params}
        if all(np.all(v == v[0]) for v in params.values()):
            return _prior_rv(pm, "beta", priors[0], dims=dim)
        return _prior_rv(pm, "beta", Prior(d, params, ""), dims=dim)  # type: ignore[arg-type]
    parts = [_prior_rv(pm, f"beta_{i}", p) for i, p in enumerate(priors)]
    return pm.Deterministic("beta", pt.stack(parts), dims=dim)


def build(
    spec: ModelSpec | str,
    df: pd.DataFrame,
    *,
    weights: Any = None,
    prior_scale: float | Mapping[str, float] = 1.0,
) -> Any:
    """Build the PyMC model of ``spec`` on ``df``.

    Parameters
    ----------
    spec
        A spec from :func:`~cst_bayes.bayes.spec.load_spec` (a name or path is accepted too).
    df
        Agency-level data (microdata contract).
    weights
        Survey weights per agency (pseudo-likelihood, normalised to sum to n), or None.
    prior_scale
        A number (scales the coefficient priors) or ``{slot: factor}``: :func:`prior_scales`.

    Returns
    -------
    pymc.Model
        Data ``w1, w0, n1, n0`` and, where used, ``stratum_idx, X, xbar`` on collapsed
        covariate patterns; the observed variable is named after the outcome.
    """
    if not isinstance(spec, ModelSpec):
        spec = load_spec(spec)
    scales = prior_scales(prior_scale)
    w = normalise_weights(weights, len(df), source=df.attrs.get("source"))
    pat = collapse(spec, df, w)
    return build_from_patterns(spec, pat, scales)


def build_from_patterns(
    spec: ModelSpec, pat: Patterns, prior_scale: float | Mapping[str, float] = 1.0
) -> Any:
    import pymc as pm
    import pytensor.tensor as pt

    scales = prior_scales(prior_scale)
    dim = spec.predictor_dim
    K = pat.X.shape[1]
    coords: dict[str, Any] = {"stratum": list(STRATA)}
    if K:
        coords[dim] = list(pat.columns)
    sl = slope_columns(spec, pat.columns)
    legacy_slopes = spec.varying_slopes and len(sl) == K and not spec.formula
    slope_dim = dim if legacy_slopes else "slope"
    if spec.varying_slopes and not legacy_slopes:
        coords["slope"] = [pat.columns[i] for i in sl]
    with pm.Model(coords=coords) as model:
        data = {k: pm.Data(k, v) for k, v in pat.data(spec).items()}
        w1 = data["w1"]
        if spec.pooled_strata:
            s_idx = data["stratum_idx"]
            mu = _prior_rv(pm, "mu_stratum", slot_prior(spec, "intercept", scales))
            sigma = _prior_rv(pm, "sigma_stratum", slot_prior(spec, "sigma_stratum", scales))
            if spec.intercept_parameterisation == "centered":
                alpha = pm.Normal("alpha", mu=mu, sigma=sigma, dims="stratum")
            else:
                z = pm.Normal("z_stratum", 0.0, 1.0, dims="stratum")
                alpha = pm.Deterministic("alpha", mu + sigma * z, dims="stratum")
            eta = alpha[s_idx]
        else:
            intercept = _prior_rv(pm, "intercept", slot_prior(spec, "intercept", scales))
            eta = intercept + pt.zeros_like(w1)
        if K:
            beta = _beta_rv(pm, pt, column_priors(spec, pat.columns, scales), dim)
            Xc = data["X"] - data["xbar"]
            if spec.varying_slopes:
                tau = _prior_rv(pm, "sigma_slope", slot_prior(spec, "sigma_slope", scales))
                b_sl = beta[sl] if not legacy_slopes else beta
                dims2 = ("stratum", slope_dim)
                if spec.slope_parameterisation == "noncentered":
                    zs = pm.Normal("z_slope", 0.0, 1.0, dims=dims2)
                    bs = pm.Deterministic("beta_stratum", b_sl[None, :] + tau * zs, dims=dims2)
                else:
                    bs = pm.Normal("beta_stratum", mu=b_sl[None, :], sigma=tau, dims=dims2)
                if legacy_slopes:
                    eta = eta + (Xc * bs[s_idx]).sum(axis=1)
                else:
                    dev = bs - b_sl[None, :]
                    eta = eta + pt.dot(Xc, beta) + (Xc[:, sl] * dev[s_idx]).sum(axis=1)
            else:
                eta = eta + pt.dot(Xc, beta)
        kappa = (
            _prior_rv(pm, "concentration", slot_prior(spec, "concentration", scales))
            if spec.family == "betabinomial"
            else None
        )
        observe(pm, spec.family, spec.outcome, eta, data, kappa)
    return model
