"""Carry reconstruction uncertainty through: fit a model on every ensemble member and pool.

The published tables do not determine the agency-level data; the reconstruction ensemble
(:mod:`cst_bayes.reconstruct`) holds datasets that all agree with them. A model is fitted on
each member and the posteriors are pooled by stacking the draws, as in multiple imputation
(Zhou & Reiter 2010: with enough draws per imputation, mixing the per-imputation
posteriors approximates the posterior that averages over the imputations).

The pooled ``InferenceData`` keeps every member: the ``chain`` dimension runs over
(member, chain) pairs and carries a ``reconstruction`` coordinate (1-based member number),
so ``idata.posterior.where(idata.posterior.reconstruction == 3, drop=True)`` gives member
3's own posterior back, and :func:`member_idata` does it for every group. The pointwise
log-likelihood of each member (on its own data) is stacked the same way, so a LOO can be
computed member by member.

How much of the posterior spread is due to the reconstructions is the law of total
variance on the coefficient (log) scale: total = mean within-member variance + variance of
the member means; ``between_frac`` = between / total (the multiple-imputation "fraction of
missing information" for a parameter). A conclusion *flips* when the 95% interval of a
ratio excludes 1 in some members and not in others, or excludes it on opposite sides.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cst_bayes.bayes import layout
from cst_bayes.bayes.decisions import DECISION_COLUMNS, decision_table
from cst_bayes.core.config import STRATA
from cst_bayes.core.errors import InputError

#: Group of a pooled file holding the members' pointwise log-likelihoods (not ``log_likelihood``:
#: ``az.loo`` must not read members as chains of one posterior; it refuses a pooled file).
LOGLIK_BY_MEMBER = "log_likelihood_by_member"
#: Columns of the between-reconstruction variance table (``MODEL-between.csv``).
BETWEEN_COLUMNS: tuple[str, ...] = (
    "term",
    "estimate",
    "ci_low",
    "ci_high",
    "within_var",
    "between_var",
    "total_var",
    "between_frac",
    "n_members",
    "n_excluding_1",
    "n_above_1",
    "flips",
)
#: Columns of the per-member summary (``MODEL-members.csv``).
MEMBER_COLUMNS: tuple[str, ...] = (
    "reconstruction",
    "term",
    "estimate",
    "ci_low",
    "ci_high",
    "r_hat",
    "ess_bulk",
    "ess_tail",
)
#: Columns of the pooled summary (the models summary columns; diagnostics are the worst member's).
#: A member's own summary (what a member fit reports) and the pooled one, which adds the
#: decision columns on the stacked draws.
MEMBER_SUMMARY_COLUMNS: tuple[str, ...] = (
    "term",
    "estimate",
    "ci_low",
    "ci_high",
    "r_hat",
    "ess_bulk",
    "ess_tail",
)
SUMMARY_COLUMNS: tuple[str, ...] = (*MEMBER_SUMMARY_COLUMNS, *DECISION_COLUMNS)


@dataclass
class PooledFit:
    """A model fitted on every reconstruction, with the stacked posterior.

    Attributes
    ----------
    spec
        The model spec.
    idata
        Stacked InferenceData (``chain`` over member x chain, coordinate ``reconstruction``).
    summary
        Pooled posterior (columns :data:`SUMMARY_COLUMNS`): median and 95% interval of the
        stacked draws on the ratio scale; ``r_hat`` is the largest and ``ess_*`` the
        smallest of the members' (an R-hat over the stacked chains would measure the
        between-reconstruction spread, which is wanted, not a convergence failure).
    between
        Per-term variance decomposition and flip flags (columns :data:`BETWEEN_COLUMNS`).
    per_member
        Every member's own summary (columns :data:`MEMBER_COLUMNS`).
    diagnostics
        ``all_ok`` plus, per diagnostic name, whether it held in every member, and
        ``members_with_trouble``.
    """

    spec: Any
    idata: Any
    summary: pd.DataFrame
    between: pd.DataFrame
    per_member: pd.DataFrame
    diagnostics: dict[str, Any] = field(default_factory=dict)

    @property
    def n_members(self) -> int:
        return int(np.unique(self.idata.posterior["reconstruction"].values).size)


# ----------------------------------------------------------------------------- draws per term
def term_draws(idata: Any) -> dict[str, np.ndarray]:
    """Posterior draws of every reported coefficient on the log (link) scale.

    Terms are named as in the models' summaries and Table 3: the predictor names (from
    ``beta``'s coordinate), and for stratum intercepts ``stratum[LABEL]`` = ``alpha[LABEL]
    - alpha[1-49]`` (the contrast with the reference stratum, what Table 3 reports).

    Returns
    -------
    dict
        ``{term: (chain, draw) array}``.
    """
    post = idata.posterior
    out: dict[str, np.ndarray] = {}
    if "beta" in post:
        b = post["beta"]
        dim = [d for d in b.dims if d not in ("chain", "draw")]
        if dim:
            for name in b.coords[dim[0]].values:
                out[str(name)] = b.sel({dim[0]: name}).values
        else:
            out["beta"] = b.values
    if "alpha" in post and "stratum" in post["alpha"].dims:
        a = post["alpha"]
        ref = a.sel(stratum=STRATA[0]).values
        for s in STRATA[1:]:
            out[f"stratum[{s}]"] = a.sel(stratum=s).values - ref
    if not out:
        raise InputError("the posterior has neither 'beta' nor stratum 'alpha' coefficients")
    return out


def _member_term_draws(spec: Any, idata: Any) -> dict[str, np.ndarray]:
    """The models module's own term draws (same terms as its summaries) when ``spec`` is a ModelSpec."""
    from cst_bayes.bayes.fit import term_draws as spec_term_draws
    from cst_bayes.bayes.spec import ModelSpec

    return spec_term_draws(spec, idata) if isinstance(spec, ModelSpec) else term_draws(idata)


def _null_is_excluded(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return (lo > 0) | (hi < 0)


def variance_table(
    draws_by_member: Sequence[dict[str, np.ndarray]], *, prob: float = 0.95
) -> pd.DataFrame:
    """Between-reconstruction share of the posterior variance, and flips, per term.

    Parameters
    ----------
    draws_by_member
        For every member, ``{term: draws}`` on the log scale (any shape; flattened). Every
        member must have the same number of draws (stacking weights members equally).
    prob
        Width of the intervals used for the flip check and the pooled interval.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`BETWEEN_COLUMNS`; ``estimate``/``ci_*`` are the pooled median and
        interval on the ratio scale (exp), variances on the log scale.
    """
    if not draws_by_member:
        raise InputError("no ensemble members to pool")
    terms = list(draws_by_member[0])
    a = (1 - prob) / 2
    rows = []
    for t in terms:
        d = np.stack([np.asarray(m[t], float).ravel() for m in draws_by_member])  # (M, S)
        means = d.mean(axis=1)
        within = float(d.var(axis=1).mean())
        between = float(means.var()) if len(means) > 1 else 0.0
        total = within + between  # = variance of the stacked draws (equal draws per member)
        lo, hi = np.quantile(d, [a, 1 - a], axis=1)
        excl = _null_is_excluded(lo, hi)
        med = np.median(d, axis=1)
        above = med > 0
        M = len(d)
        # A conclusion flips when the interval excludes 1 in some members and not in others,
        # or excludes it on opposite sides; medians scattering around 1 while every interval
        # includes 1 is no change of conclusion (n_above_1 still shows it).
        sides = set((lo[excl] > 0).tolist())
        flips = bool((0 < excl.sum() < M) or len(sides) > 1)
        q = np.quantile(d.ravel(), [0.5, a, 1 - a])
        rows.append(
            (
                t,
                *np.exp(q),
                within,
                between,
                total,
                between / total if total > 0 else np.nan,
                M,
                int(excl.sum()),
                int(above.sum()),
                flips,
            )
        )
    return pd.DataFrame(rows, columns=list(BETWEEN_COLUMNS))


# ----------------------------------------------------------------------------- stacking
def stack_members(idatas: Sequence[Any]) -> Any:
    """Stack members' InferenceData along ``chain`` with a ``reconstruction`` coordinate.

    Groups with a ``chain`` dimension (posterior, sample_stats, log_likelihood,
    posterior_predictive) are concatenated; groups without one (observed_data,
    constant_data) differ between members and are dropped, since each member's data are
    in the ensemble folder.
    """
    import arviz as az
    import xarray as xr

    if not idatas:
        raise InputError("no ensemble members to stack")
    groups = [g for g in idatas[0].groups() if "chain" in getattr(idatas[0], g).dims]
    stacked: dict[str, Any] = {}
    first: Any = idatas[0]
    chains_per_member = int(first.posterior.sizes["chain"])
    for g in groups:
        parts, recon = [], []
        for m, idata in enumerate(idatas, start=1):
            ds = getattr(idata, g)
            n_chain = ds.sizes["chain"]
            parts.append(ds.drop_vars("chain", errors="ignore"))
            recon += [m] * n_chain
        ds = xr.concat(parts, dim="chain", join="override", combine_attrs="drop_conflicts")
        ds = ds.assign_coords(
            chain=np.arange(ds.sizes["chain"]), reconstruction=("chain", np.array(recon))
        )
        # each member's log-likelihood is over its own data: az.loo on the stacked group would
        # mix members as if they were chains of one posterior, so it is kept under a name
        # ArviZ does not read; member_idata gives each member's log_likelihood back
        stacked[LOGLIK_BY_MEMBER if g == "log_likelihood" else g] = ds
    with warnings.catch_warnings():  # the member-wise group is outside ArviZ's schema on purpose
        warnings.simplefilter("ignore", UserWarning)
        out: Any = az.InferenceData(**stacked)
    # Which data each member was fitted on (models.fit records a data hash): lets a PPC given
    # one member's data find that member's posterior. Joined as text: netCDF attrs are flat.
    hashes = [str(i.posterior.attrs.get("data_hash", "")) for i in idatas]
    out.posterior.attrs.update(
        pooled_members=len(idatas),
        chains_per_member=chains_per_member,
        pooling="stacked draws (multiple imputation)",
        loo="per member: cst_bayes.bayes.pooling.member_idata(idata, m) has its log_likelihood",
        member_data_hashes=",".join(hashes),
        # an extended member's draws are every thin-th of thin x as many (bayes.convergence.extension_plan)
        member_thin=",".join(str(int(i.posterior.attrs.get("thin", 1))) for i in idatas),
    )
    for a in ("thin", "target_accept"):  # per member: member_thin says which were extended
        out.posterior.attrs.pop(a, None)
    return out


def member_idata(idata: Any, member: int) -> Any:
    """One member's own InferenceData from a pooled one (in memory or as read from its file;
    chains renumbered from 0)."""
    import arviz as az

    idata = layout.from_file(idata)
    if "reconstruction" not in idata.posterior.coords:
        raise InputError("not a pooled fit: the posterior has no 'reconstruction' coordinate")
    groups = {}
    for g in idata.groups():
        ds = getattr(idata, g)
        if "reconstruction" in ds.coords:
            ds = ds.isel(chain=np.flatnonzero(ds["reconstruction"].values == member))
            ds = ds.drop_vars("reconstruction").assign_coords(chain=np.arange(ds.sizes["chain"]))
        groups["log_likelihood" if g == LOGLIK_BY_MEMBER else g] = ds
    if groups["posterior"].sizes["chain"] == 0:
        raise InputError(f"the pooled fit has no member {member}")
    return az.InferenceData(**groups)


# ----------------------------------------------------------------------------- fitting
def _fit_member(args: tuple[Any, pd.DataFrame, dict[str, Any], Callable[..., Any] | None]) -> Any:
    spec, df, kw, fit_fn = args
    if fit_fn is not None:
        return fit_fn(spec, df, **kw)
    from cst_bayes.bayes.fit import fit

    return fit(spec, df, **kw)


def member_seeds(seed: int, n: int) -> list[int]:
    """Independent per-member seeds derived from one seed (numpy SeedSequence)."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]


def fit_ensemble(
    spec: Any,
    frames: Sequence[pd.DataFrame],
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    seed: int = 0,
    sampler: str = "nutpie",
    jobs: int | None = None,
    fit_fn: Callable[..., Any] | None = None,
    **fit_kwargs: Any,
) -> PooledFit:
    """Fit ``spec`` on every reconstruction and pool the posteriors.

    Parameters
    ----------
    spec
        Model spec (or name) for :func:`cst_bayes.bayes.models.fit`.
    frames
        The ensemble (:func:`cst_bayes.data.ensemble.load_ensemble`).
    draws, tune, chains, sampler
        Passed to each member's fit.
    seed
        Member ``m`` gets the ``m``-th seed spawned from this one: same seed, same pool.
    jobs
        Worker processes. Default 1: members run one after the other in this process,
        re-using the compiled model (:mod:`cst_bayes.bayes.models` caches it), while the sampler
        runs the chains in parallel. ``jobs > 1`` spreads members over processes (each
        compiles once).
    fit_fn
        Replaces :func:`cst_bayes.bayes.models.fit` (tests); same signature.
    **fit_kwargs
        Further keywords of the fit function (``weights``, ``prior_scale``).

    Returns
    -------
    PooledFit
    """
    if len(frames) == 0:
        raise InputError("the ensemble is empty (no reconstruction files)")
    if not isinstance(spec, str) and not hasattr(spec, "outcome"):
        raise InputError(f"spec must be a model name or a ModelSpec, got {type(spec).__name__}")
    if isinstance(spec, str):
        from cst_bayes.bayes.models import load_spec

        spec = load_spec(spec)
    jobs = 1 if jobs is None else int(jobs)
    if jobs < 1:
        raise InputError(f"jobs must be >= 1, got {jobs}", column="jobs")
    seeds = member_seeds(seed, len(frames))
    tasks = [
        (
            spec,
            df,
            dict(draws=draws, tune=tune, chains=chains, seed=s, sampler=sampler, **fit_kwargs),
            fit_fn,
        )
        for df, s in zip(frames, seeds)
    ]
    if jobs == 1 or len(frames) == 1:
        fits = [_fit_member(t) for t in tasks]
    else:
        import multiprocessing as mp

        # spawn, not fork: PyTensor/nutpie hold threads and compiled state a fork would copy mid-flight
        with ProcessPoolExecutor(
            max_workers=min(jobs, len(frames), os.cpu_count() or 1),
            mp_context=mp.get_context("spawn"),
        ) as ex:
            fits = list(ex.map(_fit_member, tasks))
    return pool_fits(spec, fits)


#: Worst value over members of each numeric diagnostic (divergences add up).
_WORST = {
    "divergences": "sum",
    "max_r_hat": "max",
    "min_ess_bulk": "min",
    "min_ess_tail": "min",
    "min_bfmi": "min",
}


def pooled_diagnostics(member_diags: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The members' diagnostics in one dict: each pass/fail flag true only when every member
    passes, the worst of each number (:data:`_WORST`), ``members_with_trouble`` (1-based),
    ``member_messages`` (member -> what it fails), ``members_extended`` (member -> thin of its
    extension, :func:`cst_bayes.bayes.convergence.extension_plan`) and ``all_ok``."""
    diag: dict[str, Any] = {}
    trouble, messages, extended = [], {}, {}
    for m, d in enumerate(member_diags, start=1):
        for k, v in d.items():
            if isinstance(v, (bool, np.bool_)):
                diag[k] = bool(diag.get(k, True) and v)
                if not v:
                    trouble.append(m)
        if d.get("messages"):
            messages[str(m)] = "; ".join(d["messages"])
        if int(d.get("extended_thin", 1)) > 1:
            extended[str(m)] = int(d["extended_thin"])
    for k, how in _WORST.items():
        vals = [float(d[k]) for d in member_diags if k in d and d[k] is not None]
        vals = [v for v in vals if not np.isnan(v)]
        if vals:
            diag[k] = float(getattr(np, how)(vals))
    if "divergences" in diag:
        diag["divergences"] = int(diag["divergences"])
    diag["members_with_trouble"] = sorted(set(trouble))
    diag["member_messages"] = messages
    diag["members_extended"] = extended
    diag["all_ok"] = not trouble
    return diag


def pool_fits(spec: Any, fits: Sequence[Any], *, prob: float = 0.95) -> PooledFit:
    """Pool already fitted members (objects with ``.idata``, ``.summary``, ``.diagnostics``)."""
    idatas = [f.idata for f in fits]
    sizes = {(i.posterior.sizes["chain"], i.posterior.sizes["draw"]) for i in idatas}
    if len(sizes) != 1:
        raise InputError(
            f"members have different numbers of chains/draws {sorted(sizes)}; stacking needs equal ones"
        )
    draws = [_member_term_draws(spec, i) for i in idatas]
    between = variance_table(draws, prob=prob)
    per = []
    for m, f in enumerate(fits, start=1):
        s = getattr(f, "summary", None)
        if isinstance(s, pd.DataFrame) and len(s):
            s = s.copy()
        else:
            s = _summary_from_draws(draws[m - 1], prob=prob)
        s.insert(0, "reconstruction", m)
        per.append(s)
    per_member = pd.concat(per, ignore_index=True)
    for c in MEMBER_COLUMNS:
        if c not in per_member:
            per_member[c] = np.nan
    per_member = per_member[list(MEMBER_COLUMNS)]
    worst = per_member.groupby("term", sort=False).agg(
        r_hat=("r_hat", "max"), ess_bulk=("ess_bulk", "min"), ess_tail=("ess_tail", "min")
    )
    summary = between[["term", "estimate", "ci_low", "ci_high"]].merge(
        worst, left_on="term", right_index=True, how="left"
    )
    # decisions on the stacked draws: every member's chains side by side, so the MCSE also
    # carries the members' disagreement (conservative for a mixture)
    stacked = {t: np.concatenate([d[t] for d in draws], axis=0) for t in draws[0]}
    dec = pd.DataFrame.from_dict(decision_table(stacked, prob=prob), orient="index")
    summary = summary.merge(dec, left_on="term", right_index=True, how="left")[
        list(SUMMARY_COLUMNS)
    ]
    diag = pooled_diagnostics([getattr(f, "diagnostics", None) or {} for f in fits])
    diag["flipping_terms"] = between.loc[between["flips"], "term"].tolist()
    return PooledFit(
        spec=spec,
        idata=stack_members(idatas),
        summary=summary,
        between=between,
        per_member=per_member,
        diagnostics=diag,
    )


def _summary_from_draws(draws: dict[str, np.ndarray], *, prob: float) -> pd.DataFrame:
    import arviz as az

    a = (1 - prob) / 2
    rows = []
    for t, d in draws.items():
        d2 = np.atleast_2d(d)
        q = np.exp(np.quantile(d2.ravel(), [0.5, a, 1 - a]))
        rows.append(
            (
                t,
                *q,
                float(az.rhat(d2)),
                float(az.ess(d2, method="bulk")),
                float(az.ess(d2, method="tail")),
            )
        )
    return pd.DataFrame(rows, columns=list(MEMBER_SUMMARY_COLUMNS))


# ----------------------------------------------------------------------------- output
def flips_text(pooled: PooledFit) -> str:
    """Lines naming every term whose conclusion differs between reconstructions."""
    b = pooled.between
    lines = []
    for r in b[b["flips"]].itertuples(index=False):
        lines.append(
            f"{r.term}: 95% interval excludes 1 in {r.n_excluding_1} of {r.n_members} reconstructions; "
            f"median above 1 in {r.n_above_1}; between/total variance {r.between_frac:.2f}"
        )
    return "\n".join(lines) if lines else "no conclusion flips between reconstructions"


def write_pooled(
    pooled: PooledFit, out_dir: str | Path, name: str | None = None
) -> dict[str, Path]:
    """Write ``MODEL.nc``, ``MODEL-summary.csv``, ``MODEL-between.csv``, ``MODEL-members.csv``.

    Every file is written atomically and says the data are synthetic reconstructions.
    """
    from cst_bayes.core.config import SYNTHETIC_BANNER
    from cst_bayes.core.fileio import atomic_path, write_csv

    name = name or getattr(pooled.spec, "name", "model")
    out = Path(out_dir)
    note = f"{name}: pooled over {pooled.n_members} reconstructions (stacked draws)"
    paths = {
        key: write_csv(out / f"{name}-{key}.csv", table, status="SYNTHETIC", notes=note)
        for key, table in (
            ("summary", pooled.summary),
            ("between", pooled.between),
            ("members", pooled.per_member),
        )
    }
    idata = pooled.idata
    idata.posterior.attrs.update(
        synthetic=1,
        label=SYNTHETIC_BANNER,
        model=name,
        outcome=str(getattr(pooled.spec, "outcome", "")),
    )
    with atomic_path(out / f"{name}.nc") as tmp:
        layout.to_file(idata).to_netcdf(str(tmp), engine="h5netcdf")
    paths["idata"] = out / f"{name}.nc"
    return paths
