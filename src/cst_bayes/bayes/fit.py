"""Fit a spec: sample, add agency-level log-likelihood and replicates, summarise, diagnose.

:func:`fit` returns a :class:`Fit` with an ArviZ ``InferenceData`` (posterior, sample_stats with
ArviZ's names, observed_data, constant_data and, with ``pointwise``, log_likelihood and
posterior_predictive), a tidy summary and diagnostics. Provenance is in every group's attrs,
as ints and floats (never strings of numbers).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pandas as pd

from cst_bayes.bayes import families as fam
from cst_bayes.bayes.build import prior_scales
from cst_bayes.bayes.convergence import SamplerWarning, sample_checked
from cst_bayes.bayes.decisions import DECISION_COLUMNS, DEFAULT_ROPE, decisions
from cst_bayes.bayes.design import (
    Design,
    collapse,
    design,
    normalise_weights,
    outcome,
    slope_columns,
)
from cst_bayes.bayes.samplers import sample
from cst_bayes.bayes.spec import ModelSpec, load_spec
from cst_bayes.core.config import APPROACHES, OUTCOME, STRATA, STRATUM, WEIGHT
from cst_bayes.core.errors import InputError, SamplerTrouble
from cst_bayes.core.provenance import status_of

#: Summary columns: posterior median ratio and 95% interval, convergence, and the decision
#: quantities of :mod:`cst_bayes.bayes.decisions` (P(ratio > 1), P(ratio in the ROPE), MCSEs).
SUMMARY_COLUMNS = [
    "term",
    "estimate",
    "ci_low",
    "ci_high",
    "r_hat",
    "ess_bulk",
    "ess_tail",
    *DECISION_COLUMNS,
]


class Fit:
    """A fitted model: its groups (InferenceData), summary table, diagnostics and the spec.

    A fit made in this process holds its groups as a dict of xarray Datasets; ``idata``
    builds the ArviZ ``InferenceData`` from them on first use (importing ArviZ costs 2-4 s,
    which a fit that only writes its file and summary never pays). ``groups`` and ``idata``
    always describe the same data: assigning ``idata`` replaces both.
    """

    def __init__(
        self,
        spec: ModelSpec,
        idata: Any = None,
        summary: pd.DataFrame | None = None,
        diagnostics: dict[str, Any] | None = None,
        timings: dict[str, float] | None = None,
        *,
        groups: Mapping[str, Any] | None = None,
    ) -> None:
        if (idata is None) == (groups is None):
            raise TypeError("Fit needs exactly one of idata and groups")
        self.spec = spec
        self._idata = idata
        self._groups = dict(groups) if groups is not None else None
        self.summary = summary if summary is not None else pd.DataFrame(columns=SUMMARY_COLUMNS)
        self.diagnostics = diagnostics or {}
        self.timings = timings or {}

    @property
    def idata(self) -> Any:
        if self._idata is None:
            import arviz as az

            assert self._groups is not None
            self._idata = az.InferenceData(**self._groups)
        return self._idata

    @idata.setter
    def idata(self, value: Any) -> None:
        self._idata, self._groups = value, None

    @property
    def groups(self) -> dict[str, Any]:
        """``{group: xarray.Dataset}``, in the order they are written."""
        if self._groups is None:
            self._groups = {g: self._idata[g] for g in self._idata.groups()}
        return self._groups

    @property
    def xbar(self) -> np.ndarray:
        return np.asarray(self.groups["constant_data"]["xbar"].to_numpy(), dtype=float)

    @property
    def columns(self) -> tuple[str, ...]:
        return fit_columns(self.groups)

    @property
    def levels(self) -> dict[str, list[str]]:
        return fit_levels(self.groups)


def fit_columns(idata: Any) -> tuple[str, ...]:
    """Design columns of a fit (the coefficient coordinate), empty without coefficients."""
    post = idata["posterior"]
    if "beta" not in post:
        return ()
    return tuple(str(c) for c in post["beta"].coords[post["beta"].dims[-1]].to_numpy())


def fit_levels(idata: Any) -> dict[str, list[str]]:
    """Categorical levels of the formula's data columns at fit time."""
    return json.loads(str(idata["posterior"].attrs.get("design_levels", "{}")))


def draws_of(idata: Any, name: str) -> np.ndarray:
    """Posterior draws of ``name`` flattened to (chain*draw, ...)."""
    a = idata["posterior"][name].to_numpy()
    return a.reshape(a.shape[0] * a.shape[1], *a.shape[2:])


def linear_predictor(
    spec: ModelSpec,
    idata: Any,
    codes: np.ndarray,
    X: np.ndarray,
    xbar: np.ndarray,
    columns: tuple[str, ...] = (),
) -> np.ndarray:
    """Linear predictor (draws, rows) for agency rows given stratum codes and design matrix."""
    if spec.pooled_strata:
        eta = draws_of(idata, "alpha")[:, codes]
    else:
        eta = np.repeat(draws_of(idata, "intercept")[:, None], len(codes), axis=1)
    if X.shape[1]:
        Xc = X - xbar
        if spec.varying_slopes and not spec.formula:
            bs = draws_of(idata, "beta_stratum")  # (D, S, K)
            return eta + np.einsum("dnk,nk->dn", bs[:, codes, :], Xc)
        beta = draws_of(idata, "beta")
        eta = eta + beta @ Xc.T
        if spec.varying_slopes:
            sl = slope_columns(spec, columns)
            dev = draws_of(idata, "beta_stratum") - beta[:, None, sl]  # (D, S, L)
            eta = eta + np.einsum("dnl,nl->dn", dev[:, codes, :], Xc[:, sl])
    return eta


def _kappa(spec: ModelSpec, idata: Any, idx: np.ndarray | None = None) -> Any:
    if spec.family != "betabinomial":
        return None
    k = draws_of(idata, "concentration")
    return (k if idx is None else k[idx])[:, None]


def term_draws(spec: ModelSpec, idata: Any) -> dict[str, np.ndarray]:
    """Log-scale draws (chain, draw) of every reported term."""
    out: dict[str, np.ndarray] = {}
    post = idata["posterior"]
    if "beta" in post:
        b = post["beta"]
        cols = [str(c) for c in b.coords[b.dims[-1]].to_numpy()]
        bv = b.to_numpy()
        for k, name in enumerate(cols):
            out[name] = bv[..., k]
        if spec.varying_slopes:
            bs = post["beta_stratum"]
            scols = [str(c) for c in bs.coords[bs.dims[-1]].to_numpy()]
            bsv = bs.to_numpy()
            for j, s in enumerate(STRATA):
                for k, name in enumerate(scols):
                    out[f"{name}[{s}]"] = bsv[..., j, k]
    if spec.pooled_strata:
        a = post["alpha"].to_numpy()
        for j, s in enumerate(STRATA[1:], start=1):
            out[f"stratum[{s}]"] = a[..., j] - a[..., 0]
    return out


def summarise(
    spec: ModelSpec, idata: Any, *, rope: tuple[float, float] = DEFAULT_ROPE
) -> pd.DataFrame:
    """Posterior median ratio (OR for logit, PR/rate ratio for log) with 95% equal-tailed interval.

    Returns ``DataFrame[term, estimate, ci_low, ci_high, r_hat, ess_bulk, ess_tail]``: one
    row per design column (approach, ``n_approaches``, interaction, ``stratum[LABEL]`` for
    fixed strata), per ``stratum[LABEL]`` contrast of pooled intercepts with the reference
    ``1-49``, and with varying slopes per ``TERM[STRATUM]``; then ``p_gt_1``, ``p_rope``
    (``rope`` on the ratio scale) and the Monte Carlo errors ``mcse_estimate``,
    ``mcse_ci_low``, ``mcse_ci_high`` (:func:`cst_bayes.bayes.decisions.decisions`).
    """
    from arviz_stats.base import array_stats as st

    rows = []
    for term, d in term_draws(spec, idata).items():
        q = np.exp(np.quantile(d, [0.5, 0.025, 0.975]))  # exp is monotone: quantiles commute
        rows.append(
            dict(
                term=term,
                estimate=q[0],
                ci_low=q[1],
                ci_high=q[2],
                r_hat=float(st.rhat(d, chain_axis=0, draw_axis=1)),
                ess_bulk=float(st.ess(d, chain_axis=0, draw_axis=1, method="bulk")),
                ess_tail=float(st.ess(d, chain_axis=0, draw_axis=1, method="tail", prob=0.05)),
                **decisions(d, rope=rope),
            )
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def check_diagnostics(fit: Fit, *, strict: bool = False) -> None:
    """Warn loudly (stderr) about failed diagnostics; with ``strict`` raise :class:`SamplerTrouble`."""
    msgs = fit.diagnostics.get("messages", [])
    if not msgs:
        return
    text = f"model {fit.spec.name}: " + "; ".join(msgs)
    if strict:
        raise SamplerTrouble(text)
    warnings.warn(text, SamplerWarning, stacklevel=2)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("cst_bayes", "pymc", "pytensor", "nutpie", "arviz", "numpy", "pandas", "formulae"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


def data_hash(df: pd.DataFrame, spec: ModelSpec) -> str:
    """Hash of the data columns a fit depends on (a PPC checks it against ``--data``)."""
    from cst_bayes.core.fileio import sha256_frame

    cols = [c for c in (STRATUM, *APPROACHES, OUTCOME, WEIGHT) if c in df.columns]
    d = df[cols].copy()
    d[STRATUM] = d[STRATUM].astype(str)
    return sha256_frame(d)


def _check_args(sampler: str, draws: Any, tune: Any, chains: Any) -> None:
    if sampler not in get_args(fam.Sampler):
        raise InputError(
            f"unknown sampler {sampler!r} (known: {list(get_args(fam.Sampler))})",
            column="sampler",
        )
    for name, v, lo in (("draws", draws, 1), ("tune", tune, 0), ("chains", chains, 1)):
        if not isinstance(v, (int, np.integer)) or v < lo:
            raise InputError(f"{name} must be an integer >= {lo}, got {v!r}", column=name)


def _pointwise_groups(
    spec: ModelSpec, post: Any, dz: Any, y: np.ndarray, xbar: np.ndarray, agency: Any, seed: int
) -> dict[str, Any]:
    import xarray as xr

    eta = linear_predictor(spec, post, dz.codes, dz.X, xbar, dz.columns)
    nc, nd = post["posterior"].sizes["chain"], post["posterior"].sizes["draw"]
    n = len(y)
    kappa = _kappa(spec, post)
    ll = fam.pointwise_loglik(spec.family, spec.link, spec.outcome, eta, y, kappa)
    rng = np.random.default_rng([int(seed), 1])
    yrep = fam.draw_outcome(spec.family, spec.link, eta, rng, kappa).reshape(nc, nd, n)
    cd = {
        "chain": post["posterior"]["chain"].to_numpy(),
        "draw": post["posterior"]["draw"].to_numpy(),
        "agency": agency,
    }
    dims = ("chain", "draw", "agency")
    return {
        # float32: 7 significant digits of a log-density are far below PSIS-LOO's Monte Carlo
        # error and halve the largest group of the file
        "log_likelihood": xr.Dataset(
            {spec.outcome: (dims, ll.reshape(nc, nd, n).astype(np.float32))}, coords=cd
        ),
        "posterior_predictive": xr.Dataset({spec.outcome: (dims, yrep)}, coords=cd),
    }


POINTWISE_GROUPS = ("log_likelihood", "posterior_predictive")


def with_pointwise(fit: Fit) -> Fit:
    """``fit`` with its agency-level ``log_likelihood`` and ``posterior_predictive`` groups.

    Files are written without them by default (draws x agencies dominate a file's size);
    they are recomputed here from what the file keeps (posterior, the observed outcome and
    the design in ``constant_data``), with the seed the fit recorded, so the replicates are
    the ones the fit would have stored. A fit that already has them is returned unchanged.
    Pooled fits keep no member data: :func:`cst_bayes.checks.comparison.loo_table` takes the
    members' frames instead.
    """
    groups = fit.groups
    if all(g in groups for g in POINTWISE_GROUPS):
        return fit
    for g in ("observed_data", "constant_data"):
        if g not in groups:
            raise InputError(
                f"model {fit.spec.name}: the fit keeps no {g} group, so its pointwise "
                "log-likelihood cannot be recomputed (restricted files keep it only with "
                "--keep-row-level)",
                column=g,
            )
    spec, cd = fit.spec, groups["constant_data"]
    columns = fit.columns
    X = cd["X"].to_numpy() if "X" in cd else np.zeros((cd.sizes["agency"], 0))
    dz = Design(
        codes=cd["stratum_idx"].to_numpy().astype(np.int64),
        X=np.asarray(X, dtype=float),
        columns=columns,
    )
    y = groups["observed_data"][spec.outcome].to_numpy()
    agency = cd["agency"].to_numpy()
    seed = int(groups["posterior"].attrs.get("seed", 0))
    new = _pointwise_groups(spec, groups, dz, y, fit.xbar, agency, seed)
    for ds in new.values():
        ds.attrs.update(groups["posterior"].attrs)
    return Fit(
        spec,
        groups={**groups, **new},
        summary=fit.summary,
        diagnostics=fit.diagnostics,
        timings=fit.timings,
    )


def _prior_groups(
    spec: ModelSpec, pat: Any, scales: Mapping[str, float], n: int, seed: int
) -> dict[str, Any]:
    """Prior and prior-predictive draws (pattern level) from the PyMC model."""
    import pymc as pm

    from cst_bayes.bayes.build import build_from_patterns

    if n < 1:
        raise InputError(f"prior_draws must be >= 1, got {n}", column="prior_draws")
    model = build_from_patterns(spec, pat, scales)
    with warnings.catch_warnings():  # the Potential holds constants and weights (docs/models.md)
        warnings.filterwarnings("ignore", message=".*Potentials.*")
        pp = pm.sample_prior_predictive(
            draws=n, model=model, random_seed=np.random.default_rng([seed, 3])
        )
    prior_pred = pp.prior_predictive
    obs_dims = [d for d in prior_pred[spec.outcome].dims if d not in ("chain", "draw")]
    prior_pred = prior_pred.rename({d: "pattern" for d in obs_dims})
    return {"prior": pp.prior, "prior_predictive": prior_pred}


def fit(
    spec: ModelSpec | str | Path,
    df: pd.DataFrame,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    seed: int = 0,
    sampler: fam.Sampler = "nutpie",
    weights: Any = None,
    prior_scale: float | Mapping[str, float] = 1.0,
    progress: bool = True,
    pointwise: bool = True,
    prior_draws: int = 0,
    extend: bool = False,
) -> Fit:
    """Fit a model spec to agency-level data.

    Parameters
    ----------
    spec
        A :class:`ModelSpec`, a spec name (``models/NAME.toml``) or a path.
    df
        Agency-level data in the microdata contract (plus any column a formula names).
    draws, tune, chains
        Posterior draws and warm-up iterations per chain, and the number of chains.
    seed
        Seed of the sampler and of the posterior-predictive draws: same seed, same numbers.
    sampler
        ``"nutpie"`` (over the numba density of :mod:`cst_bayes.bayes.fastlogp` for every spec
        it covers, whose machine code numba caches on disk; otherwise nutpie's PyTensor/numba
        backend, compiled once per process), ``"nutpie-c"`` (nutpie over PyTensor's
        disk-cached C backend) or ``"pymc"`` (PyMC's own NUTS).
    weights
        Survey weights per agency (array or column name): weighted pseudo-likelihood, each
        agency's log-likelihood scaled by its weight normalised to sum to n. Equal weights
        reproduce the unweighted fit exactly.
    prior_scale
        A number K: the coefficient priors' scales times K. A mapping ``{slot: K}`` scales
        the named slots (``beta``, ``intercept``, ``sigma_stratum``, ``sigma_slope``,
        ``concentration``); see :func:`cst_bayes.bayes.build.prior_scales`.
    progress
        Show the sampler's progress bar.
    pointwise
        Add agency-level ``log_likelihood`` and ``posterior_predictive`` groups (memory grows
        as draws x agencies; switch off for very large simulated data).
    prior_draws
        When > 0, add ``prior`` and ``prior_predictive`` groups with that many draws from
        PyMC's prior predictive of the model (covariate-pattern level, dimension
        ``pattern``; PyMC is imported for it).
    extend
        When the draws fail a diagnostic threshold, sample once more with EXTEND_THIN times
        the draws, keeping every EXTEND_THIN-th (:func:`extension_plan`; the fit keeps its shape).
        ``diagnostics["extended_thin"]`` and the ``thin`` attribute say what ran; thresholds
        that still fail are warned as ever.
    """
    import xarray as xr

    if not isinstance(spec, ModelSpec):
        spec = load_spec(spec)
    _check_args(sampler, draws, tune, chains)
    scales = prior_scales(prior_scale)
    source = df.attrs.get("source")
    if isinstance(weights, str):
        if weights not in df.columns:
            raise InputError(f"no weight column {weights!r}", path=source, column=weights)
        weights = df[weights].to_numpy(dtype=float)
    weighted = weights is not None
    w = normalise_weights(weights, len(df), source=source)
    pat = collapse(spec, df, w)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    def run(thin: int, run_seed: int, target_accept: float) -> dict[str, Any]:
        groups, t = sample(
            spec,
            pat,
            draws=int(draws),
            tune=int(tune),
            chains=int(chains),
            seed=run_seed,
            sampler=sampler,
            prior_scale=scales,
            progress=progress,
            thin=thin,
            target_accept=target_accept,
        )
        for k, v in t.items():
            timings[k] = timings.get(k, 0.0) + v
        return groups

    post, diag = sample_checked(run, int(seed), extend=extend)
    t1 = time.perf_counter()

    dz = design(spec, df, pat.levels)
    y = outcome(spec, df)
    n = len(df)
    agency = df["agency_id"].astype(str).to_numpy() if "agency_id" in df.columns else np.arange(n)
    dim = spec.predictor_dim
    K = dz.X.shape[1]
    const: dict[str, Any] = {
        "stratum_idx": (("agency",), dz.codes),
        "weight": (("agency",), w),
        "xbar": ((dim,), pat.xbar) if K else (("predictor",), pat.xbar),
    }
    coords: dict[str, Any] = {"agency": agency}
    if K:
        const["X"] = (("agency", dim), dz.X)
        coords[dim] = list(dz.columns)
    groups: dict[str, Any] = dict(post)
    groups["observed_data"] = xr.Dataset(
        {spec.outcome: (("agency",), y.astype(np.int16))}, coords={"agency": agency}
    )
    groups["constant_data"] = xr.Dataset(const, coords=coords)
    if pointwise:
        groups.update(_pointwise_groups(spec, post, dz, y, pat.xbar, agency, seed))
    if prior_draws:
        groups.update(_prior_groups(spec, pat, scales, int(prior_draws), int(seed)))
    plain = scales_plain(prior_scale, scales)
    attrs = {
        "model": spec.name,
        "spec_hash": spec.hash,
        "spec_toml": spec.text,
        "data_hash": data_hash(df, spec),
        "data_source": str(source or ""),
        "synthetic": int(bool(df.attrs.get("synthetic", False))),
        "data_status": status_of(df),
        "seed": int(seed),
        "sampler": sampler,
        "draws": int(draws),
        "tune": int(tune),
        "chains": int(chains),
        "thin": int(diag["extended_thin"]),
        "target_accept": float(diag["target_accept"]),
        "prior_scale": plain,
        "prior_scales": json.dumps(scales, sort_keys=True),
        "design_levels": json.dumps(pat.levels, sort_keys=True),
        "weighted": int(weighted),
        "n_agencies": int(n),
        "n_patterns": len(pat.w1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **{f"version_{k}": v for k, v in _versions().items()},
    }
    if attrs["synthetic"]:
        from cst_bayes.core.config import SYNTHETIC_BANNER

        attrs["label"] = SYNTHETIC_BANNER
    for ds in groups.values():
        ds.attrs.update(attrs)
    summary = summarise(spec, groups)
    timings["postprocess_s"] = time.perf_counter() - t1
    timings["total_s"] = time.perf_counter() - t0
    return Fit(spec=spec, groups=groups, summary=summary, diagnostics=diag, timings=timings)


def scales_plain(prior_scale: Any, scales: Mapping[str, float]) -> float:
    """The one-number form of the prior scales: the ``beta`` factor (the other slots are in
    the ``prior_scales`` attribute)."""
    if isinstance(prior_scale, Mapping):
        return float(scales.get("beta", 1.0))
    return float(prior_scale)
