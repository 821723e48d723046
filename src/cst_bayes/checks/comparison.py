"""Model comparison with PSIS-LOO (ArviZ), within groups of comparable models.

Only models of the same outcome on the same observations can be compared by their
expected log predictive density: the ``any_cst`` models (logistic and Poisson-link, with
and without strata) form one group, the ``n_approaches`` count models another. Models
whose pointwise log-likelihood has a different number of observations (e.g. one collapsed
to covariate patterns, one per agency) are put in separate groups and a note says why,
because their elpd values are on different scales.

Every model's Pareto-k diagnostics are reported (counts of good / bad / very bad k by
ArviZ's sample-size-dependent threshold), since a PSIS-LOO estimate with many large k is
not reliable.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from cst_bayes.checks.fits import check_fitted_on
from cst_bayes.core.errors import InputError

#: Columns of ``loo.csv``.
LOO_COLUMNS: tuple[str, ...] = (
    "group",
    "model",
    "rank",
    "elpd_loo",
    "se",
    "p_loo",
    "elpd_diff",
    "dse",
    "weight",
    "n_obs",
    "k_good",
    "k_bad",
    "k_very_bad",
    "k_max",
    "good_k_threshold",
    "warning",
    "favoured",
)


def _idata(obj: Any) -> Any:
    return getattr(obj, "idata", obj)


def _loglik_var(idata: Any, name: str) -> str:
    if "log_likelihood" not in idata.groups():
        raise InputError(
            f"model {name!r} has no log_likelihood group (fit it with log-likelihood kept)",
            column="log_likelihood",
        )
    names = list(idata.log_likelihood.data_vars)
    if len(names) == 1:
        return names[0]
    obs = list(idata.observed_data.data_vars) if "observed_data" in idata.groups() else []
    common = [n for n in names if n in obs]
    if len(common) == 1:
        return common[0]
    raise InputError(
        f"model {name!r} has several log-likelihood variables {names}; cannot tell which to use"
    )


def loo_table(
    fits: Mapping[str, Any],
    *,
    method: Literal["stacking", "BB-pseudo-BMA", "pseudo-BMA"] = "stacking",
    data: pd.DataFrame | Sequence[pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """PSIS-LOO of every model and their comparison within groups of the same outcome.

    Fits pooled over a reconstruction ensemble (:mod:`cst_bayes.bayes.pooling`) are compared
    member by member (each member's posterior against its own data) and the results
    averaged: ``elpd_loo``, ``se``, ``p_loo`` and ``weight`` are member means; ``elpd_diff``
    and ``dse`` are member means of the pointwise difference to the group's top model (the
    one with the highest mean ``elpd_loo``), Pareto-k counts are summed over members, and ``favoured_in`` counts the
    members in which the model ranks first (a ranking that flips between reconstructions
    shows there).

    Parameters
    ----------
    fits
        ``{model name: Fit or InferenceData}``.
    method
        ArviZ's model-weighting method of :func:`arviz.compare`.
    data
        The agencies the fits were made on (one frame, or the ensemble's frames in member
        order for pooled fits). A fit without a ``log_likelihood`` group (files are lean by
        default) gets its PSIS-LOO from these through the distinct covariate rows
        (:mod:`cst_bayes.checks.loo_patterns`, equal to ``az.loo`` on agency rows); a fit with
        one is read as stored.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`LOO_COLUMNS`, one row per model, sorted by group and rank. ``group``
        is the outcome (plus ``n=`` when the observation counts differ); ``favoured`` is True
        for the top-ranked model of a group with more than one model. ``attrs['notes']``
        lists groups that had to be split and models with unreliable PSIS. Two more
        columns follow: ``n_members`` and ``favoured_in``.
    """
    from cst_bayes.bayes.pooling import member_idata

    if not fits:
        raise InputError("no models to compare")
    pooled = {n: "reconstruction" in _idata(f).posterior.coords for n, f in fits.items()}
    if not any(pooled.values()):
        one = data if data is None or isinstance(data, pd.DataFrame) else _only(data)
        t, _ = _loo_single(fits, method=method, data=one)
        t["n_members"] = 1
        t["favoured_in"] = t["favoured"].astype(int)
        return t
    if not all(pooled.values()):
        raise InputError(
            "cannot compare fits pooled over an ensemble with fits on one dataset: "
            f"pooled {sorted(n for n, p in pooled.items() if p)}, "
            f"single {sorted(n for n, p in pooled.items() if not p)}"
        )
    members = {
        n: sorted(np.unique(_idata(f).posterior["reconstruction"].values).tolist())
        for n, f in fits.items()
    }
    if len({tuple(m) for m in members.values()}) != 1:
        raise InputError(f"pooled fits cover different reconstructions: {members}")
    parts, notes, pointwise = [], [], {}
    frames = None if data is None or isinstance(data, pd.DataFrame) else list(data)
    for m in next(iter(members.values())):
        if frames is not None and not 1 <= m <= len(frames):
            raise InputError(f"no data frame for reconstruction {m} ({len(frames)} given)")
        t, pointwise[m] = _loo_single(
            {n: _with_outcome(member_idata(_idata(f), m), f) for n, f in fits.items()},
            method=method,
            data=None if frames is None else frames[m - 1],
            specs={n: getattr(f, "spec", None) for n, f in fits.items()},
        )
        t["member"] = m
        notes += [f"reconstruction {m}: {x}" for x in t.attrs.get("notes", [])]
        parts.append(t)
    allm = pd.concat(parts, ignore_index=True)
    g = allm.groupby(["group", "model"], sort=False)
    table = g.agg(
        elpd_loo=("elpd_loo", "mean"),
        se=("se", "mean"),
        p_loo=("p_loo", "mean"),
        weight=("weight", "mean"),
        n_obs=("n_obs", "first"),
        k_good=("k_good", "sum"),
        k_bad=("k_bad", "sum"),
        k_very_bad=("k_very_bad", "sum"),
        k_max=("k_max", "max"),
        good_k_threshold=("good_k_threshold", "min"),
        warning=("warning", "any"),
        n_members=("member", "nunique"),
        favoured_in=("favoured", "sum"),
    ).reset_index()
    table["rank"] = (
        table.groupby("group")["elpd_loo"].rank(ascending=False, method="first").astype(int) - 1
    )
    sizes = table.groupby("group")["model"].transform("size")
    table["favoured"] = (table["rank"] == 0) & (sizes > 1)
    # Differences to the group's top model *on average*, member by member from the
    # pointwise LOO values (so the top row has elpd_diff 0, as in arviz.compare).
    top = table[table["rank"] == 0].set_index("group")["model"]
    diff, dse = [], []
    for r in table.itertuples(index=False):
        d = [pointwise[m][top[r.group]] - pointwise[m][r.model] for m in pointwise]
        diff.append(float(np.mean([x.sum() for x in d])))
        dse.append(float(np.mean([np.sqrt(x.size * x.var()) for x in d])))
    table["elpd_diff"], table["dse"] = diff, dse
    table["favoured_in"] = table["favoured_in"].astype(int)
    table = table[[*LOO_COLUMNS, "n_members", "favoured_in"]].sort_values(
        ["group", "rank"], kind="stable"
    )
    table = table.reset_index(drop=True)
    table.attrs["notes"] = sorted(set(notes), key=notes.index)
    return table


def _with_outcome(idata: Any, fit: Any) -> Any:
    """Carry the model's outcome onto a member's InferenceData (for grouping)."""
    from cst_bayes.checks.ppc import model_outcome

    with contextlib.suppress(InputError):
        idata.posterior.attrs.setdefault("outcome", model_outcome(fit))
    return idata


def _only(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    if len(frames) != 1:
        raise InputError(f"fits on one dataset take one data frame, got {len(frames)}")
    return frames[0]


def _psis_loo(name: str, fit: Any, spec: Any, data: pd.DataFrame | None) -> Any:
    """PSIS-LOO of one fit: its stored log-likelihood, else recomputed from ``data``."""
    import arviz as az

    from cst_bayes.checks import loo_patterns

    idata = _idata(fit)
    if "log_likelihood" in idata.groups():
        var = _loglik_var(idata, name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the warning is reported in the table
            return az.loo(idata, var_name=var, pointwise=True)
    if data is None:
        raise InputError(
            f"model {name!r} has no log_likelihood group: pass the data it was fitted on "
            "(or fit it with --pointwise)",
            column="log_likelihood",
        )
    if spec is None:
        from cst_bayes.checks.fits import _as_fit

        spec = _as_fit(fit).spec
    return loo_patterns.loo_from_data(spec, idata, data)


def _loo_single(
    fits: Mapping[str, Any],
    *,
    method: Literal["stacking", "BB-pseudo-BMA", "pseudo-BMA"] = "stacking",
    data: pd.DataFrame | None = None,
    specs: Mapping[str, Any] | None = None,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """:func:`loo_table` for fits on one dataset, and each model's pointwise LOO values."""
    import arviz as az

    from cst_bayes.checks.ppc import model_outcome

    if method not in ("stacking", "BB-pseudo-BMA", "pseudo-BMA"):
        raise InputError(f"unknown weighting method {method!r}", column="method")
    rows: dict[str, dict[str, Any]] = {}
    elpd: dict[str, Any] = {}
    members: dict[str, list[str]] = {}
    notes: list[str] = []
    for name, fit in fits.items():
        spec = (specs or {}).get(name) or getattr(fit, "spec", None)
        loo = _psis_loo(name, fit, spec, data)
        k = np.asarray(loo.pareto_k).ravel()
        good = float(loo.good_k)
        n_obs = int(loo.n_data_points)
        try:
            outcome = model_outcome(fit)
        except InputError:
            outcome = "unknown"
        rows[name] = {
            "model": name,
            "outcome": outcome,
            "n_obs": n_obs,
            "elpd_loo": float(loo.elpd_loo),
            "se": float(loo.se),
            "p_loo": float(loo.p_loo),
            "k_good": int((k <= good).sum()),
            "k_bad": int(((k > good) & (k <= 1)).sum()),
            "k_very_bad": int((k > 1).sum()),
            "k_max": float(np.nanmax(k)),
            "good_k_threshold": good,
            "warning": bool(loo.warning),
        }
        elpd[name] = loo
        members.setdefault(outcome, []).append(name)
        if rows[name]["k_bad"] or rows[name]["k_very_bad"]:
            notes.append(
                f"{name}: {rows[name]['k_bad']} bad and {rows[name]['k_very_bad']} very bad "
                f"Pareto k (threshold {good:.2f}); its PSIS-LOO estimate is unreliable"
            )
    groups: dict[str, list[str]] = {}
    for outcome, names in members.items():
        sizes = {rows[n]["n_obs"] for n in names}
        if len(sizes) == 1:
            groups[outcome] = names
            continue
        notes.append(
            f"{outcome}: models differ in the number of log-likelihood observations "
            f"{sorted(sizes)} (per agency vs per covariate pattern) and are compared separately"
        )
        for size in sorted(sizes):
            groups[f"{outcome} (n={size})"] = [n for n in names if rows[n]["n_obs"] == size]
    out = []
    for group, names in groups.items():
        if len(names) == 1:
            r = rows[names[0]] | {
                "group": group,
                "rank": 0,
                "elpd_diff": 0.0,
                "dse": 0.0,
                "weight": 1.0,
                "favoured": False,
            }
            out.append(r)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cmp = az.compare({n: elpd[n] for n in names}, method=method)
        for name, c in cmp.iterrows():
            out.append(
                rows[str(name)]
                | {
                    "group": group,
                    "rank": int(c["rank"]),
                    "elpd_diff": float(c["elpd_diff"]),
                    "dse": float(c["dse"]),
                    "weight": float(c["weight"]),
                    "favoured": int(c["rank"]) == 0,
                }
            )
    table = pd.DataFrame(out)[list(LOO_COLUMNS)].sort_values(["group", "rank"], kind="stable")
    table = table.reset_index(drop=True)
    table.attrs["notes"] = notes
    return table, {n: np.asarray(e.loo_i).ravel() for n, e in elpd.items()}


#: The name the pipeline looks for.
compare_models = loo_table


def summary_text(table: pd.DataFrame) -> str:
    """One line per group: which model PSIS-LOO favours and by how much."""
    lines = []
    for group, g in table.groupby("group", sort=False):
        g = g.sort_values("rank")
        top = g.iloc[0]
        if len(g) == 1:
            lines.append(f"{group}: only {top['model']} (elpd_loo {top['elpd_loo']:.1f})")
            continue
        second = g.iloc[1]
        lines.append(
            f"{group}: favours {top['model']} (elpd_loo {top['elpd_loo']:.1f}); next {second['model']} "
            f"is {second['elpd_diff']:.1f} lower (dse {second['dse']:.1f})"
        )
    lines += [f"note: {n}" for n in table.attrs.get("notes", [])]
    return "\n".join(lines)


def write_loo(
    data: str | Path,
    out_dir: str | Path,
    *,
    models: Sequence[str] | None = None,
    fits_dir: str | Path | None = None,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    seed: int = 0,
    sampler: str = "nutpie",
    jobs: int | None = None,
) -> dict[str, Any]:
    """Fit (or read) the models, compare them by PSIS-LOO and write ``loo.csv``.

    Parameters
    ----------
    data
        A data file, or an ensemble folder (then every model is fitted on every member
        with :func:`cst_bayes.bayes.pooling.fit_ensemble` and compared member by member).
    out_dir
        Output folder for ``loo.csv``.
    models
        Spec names or paths (default: every shipped spec).
    fits_dir
        Folder with ``MODEL.nc`` fits to reuse; models without one are fitted.
    draws, tune, chains, seed, sampler, jobs
        Sampling settings for the models that are fitted.

    Returns
    -------
    dict
        ``table``, ``paths``, ``summary_text``.
    """
    from cst_bayes.bayes import models as mdl
    from cst_bayes.bayes.pooling import fit_ensemble
    from cst_bayes.core.fileio import write_csv
    from cst_bayes.core.provenance import status_of
    from cst_bayes.data.ensemble import load_frames

    names = list(models) if models else mdl.list_specs()["name"].tolist()
    if len(names) < 2:
        raise InputError(f"need at least two models to compare, got {names}")
    frames = load_frames(data)
    ensemble = Path(data).is_dir()
    fits: dict[str, Any] = {}
    for name in names:
        spec = mdl.load_spec(name)
        nc = Path(fits_dir) / f"{spec.name}.nc" if fits_dir is not None else None
        if nc is not None and nc.exists():
            fits[spec.name] = mdl.read_fit(nc)
            check_fitted_on(fits[spec.name], frames)
        elif ensemble:
            fits[spec.name] = fit_ensemble(
                spec,
                frames,
                draws=draws,
                tune=tune,
                chains=chains,
                seed=seed,
                sampler=sampler,
                jobs=jobs,
                pointwise=False,
            )
        else:
            fits[spec.name] = mdl.fit(
                spec,
                frames[0],
                draws=draws,
                tune=tune,
                chains=chains,
                seed=seed,
                sampler=sampler,
                progress=False,
                pointwise=False,
            )
    table = loo_table(fits, data=frames)
    synthetic = any(bool(d.attrs.get("synthetic", False)) for d in frames)
    notes = [f"cst-bayes compare on {data}: PSIS-LOO within outcome groups (stacking weights)"]
    notes += [f"note: {n}" for n in table.attrs.get("notes", [])]
    paths = {
        "loo": write_csv(Path(out_dir) / "loo.csv", table, status=status_of(frames[0]), notes=notes)
    }
    text = summary_text(table)
    if synthetic:
        text = "SYNTHETIC data (reconstruction)\n" + text
    return {"table": table, "paths": paths, "summary_text": text}
