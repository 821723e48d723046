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

import warnings
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

from .errors import InputError

#: Columns of ``loo.csv``.
LOO_COLUMNS: tuple[str, ...] = (
    "group", "model", "rank", "elpd_loo", "se", "p_loo", "elpd_diff", "dse", "weight",
    "n_obs", "k_good", "k_bad", "k_very_bad", "k_max", "good_k_threshold", "warning", "favoured",
)


def _idata(obj: Any) -> Any:
    return getattr(obj, "idata", obj)


def _loglik_var(idata: Any, name: str) -> str:
    if "log_likelihood" not in idata.groups():
        raise InputError(f"model {name!r} has no log_likelihood group (fit it with log-likelihood kept)",
                         column="log_likelihood")
    names = list(idata.log_likelihood.data_vars)
    if len(names) == 1:
        return names[0]
    obs = list(idata.observed_data.data_vars) if "observed_data" in idata.groups() else []
    common = [n for n in names if n in obs]
    if len(common) == 1:
        return common[0]
    raise InputError(f"model {name!r} has several log-likelihood variables {names}; cannot tell which to use")


def loo_table(
    fits: Mapping[str, Any],
    *,
    method: Literal["stacking", "BB-pseudo-BMA", "pseudo-BMA"] = "stacking",
) -> pd.DataFrame:
    """PSIS-LOO of every model and their comparison within groups of the same outcome.

    Parameters
    ----------
    fits
        ``{model name: Fit or InferenceData}``, each with a ``log_likelihood`` group.
    method
        ArviZ's model-weighting method of :func:`arviz.compare`.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`LOO_COLUMNS`, one row per model, sorted by group and rank. ``group``
        is the outcome (plus ``n=`` when the observation counts differ); ``favoured`` is True
        for the top-ranked model of a group with more than one model. ``attrs['notes']``
        lists groups that had to be split and models with unreliable PSIS.
    """
    import arviz as az

    from .ppc import model_outcome

    if method not in ("stacking", "BB-pseudo-BMA", "pseudo-BMA"):
        raise InputError(f"unknown weighting method {method!r}", column="method")
    if not fits:
        raise InputError("no models to compare")
    rows: dict[str, dict[str, Any]] = {}
    elpd: dict[str, Any] = {}
    members: dict[str, list[str]] = {}
    notes: list[str] = []
    for name, fit in fits.items():
        idata = _idata(fit)
        var = _loglik_var(idata, name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the warning is reported in the table
            loo = az.loo(idata, var_name=var, pointwise=True)
        k = np.asarray(loo.pareto_k).ravel()
        good = float(loo.good_k)
        n_obs = int(loo.n_data_points)
        try:
            outcome = model_outcome(fit)
        except InputError:
            outcome = "unknown"
        rows[name] = {
            "model": name, "outcome": outcome, "n_obs": n_obs,
            "elpd_loo": float(loo.elpd_loo), "se": float(loo.se), "p_loo": float(loo.p_loo),
            "k_good": int((k <= good).sum()), "k_bad": int(((k > good) & (k <= 1)).sum()),
            "k_very_bad": int((k > 1).sum()), "k_max": float(np.nanmax(k)),
            "good_k_threshold": good, "warning": bool(loo.warning),
        }
        elpd[name] = loo
        members.setdefault(outcome, []).append(name)
        if rows[name]["k_bad"] or rows[name]["k_very_bad"]:
            notes.append(f"{name}: {rows[name]['k_bad']} bad and {rows[name]['k_very_bad']} very bad "
                         f"Pareto k (threshold {good:.2f}); its PSIS-LOO estimate is unreliable")
    groups: dict[str, list[str]] = {}
    for outcome, names in members.items():
        sizes = {rows[n]["n_obs"] for n in names}
        if len(sizes) == 1:
            groups[outcome] = names
            continue
        notes.append(f"{outcome}: models differ in the number of log-likelihood observations "
                     f"{sorted(sizes)} (per agency vs per covariate pattern) and are compared separately")
        for size in sorted(sizes):
            groups[f"{outcome} (n={size})"] = [n for n in names if rows[n]["n_obs"] == size]
    out = []
    for group, names in groups.items():
        if len(names) == 1:
            r = rows[names[0]] | {"group": group, "rank": 0, "elpd_diff": 0.0, "dse": 0.0,
                                   "weight": 1.0, "favoured": False}
            out.append(r)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cmp = az.compare({n: elpd[n] for n in names}, method=method)
        for name, c in cmp.iterrows():
            out.append(rows[str(name)] | {
                "group": group, "rank": int(c["rank"]), "elpd_diff": float(c["elpd_diff"]),
                "dse": float(c["dse"]), "weight": float(c["weight"]), "favoured": int(c["rank"]) == 0,
            })
    table = pd.DataFrame(out)[list(LOO_COLUMNS)].sort_values(["group", "rank"], kind="stable")
    table = table.reset_index(drop=True)
    table.attrs["notes"] = notes
    return table


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
