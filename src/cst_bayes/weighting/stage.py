"""The weighting stage: every table of one data set (:func:`run_weights`) or of every member.

Orchestration above :mod:`weights` (scenarios, design-based), :mod:`williams_savitsky`
(pseudo-posterior, raw and design-adjusted), :mod:`mrp` (``poststratified`` and ``mrp``),
:mod:`tipping` and :mod:`sensitivity`; none of those imports this module.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cst_bayes.core.blas import one_blas_thread
from cst_bayes.core.config import APPROACHES, OUTCOME
from cst_bayes.core.disclosure import protect, small_cells
from cst_bayes.core.errors import InputError
from cst_bayes.core.options import DEFAULT_SEED
from cst_bayes.core.provenance import DataStatus, status_of
from cst_bayes.weighting import filedesign, mrp, sensitivity, tipping
from cst_bayes.weighting import weights as W
from cst_bayes.weighting import williams_savitsky as WS
from cst_bayes.weighting.design import Design

#: ``dataset`` of the tables pooled over every member.
ENSEMBLE = "ensemble"
PL_COLUMNS = [
    "scenario",
    "method",
    "estimand",
    "median",
    "ci_low",
    "ci_high",
    "p_positive",
    "mcse_low",
    "mcse_high",
]


def pseudo_likelihood(
    df: pd.DataFrame,
    scenarios: Sequence[W.Scenario],
    frames: pd.DataFrame,
    *,
    method: WS.Method = "mcmc",
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 2,
    seed: int = DEFAULT_SEED,
    designs: Mapping[str, Design] | None = None,
    extend: bool = False,
    diagnostics: list[dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """Raw (``pseudo_likelihood``) and Williams-Savitsky-adjusted (``pseudo_likelihood_adjusted``) rows.

    Estimands: ``any_cst`` (weighted average risk), ``or_<unadjusted|adjusted>:<term>`` for
    every approach and stratum contrast (median/interval as ORs; ``p_positive`` and MCSEs on
    the log-OR scale) and ``rd_<...>:<approach>`` (standardised risk differences).
    ``designs``: each scenario's :func:`weights.make_design` by name, if already built.
    ``extend``: MCMC fits that fail a diagnostic threshold are sampled once more. Each MCMC
    fit's diagnostics are appended to ``diagnostics`` (:func:`diagnostics_row`), when given.
    """
    y = df[OUTCOME].to_numpy(float)
    keys: list[tuple[str, str, str, bool]] = []  # scenario, method, estimand, on the OR scale
    draws_of: list[np.ndarray] = []
    models = {}
    for adjusted_for_size in (False, True):
        X, names = W.model_matrix(df, adjusted_for_size)
        cols = [names.index(a) for a in APPROACHES]
        models[adjusted_for_size] = (X, names, cols, WS.Patterns.of(X, cols))
    for sc in scenarios:
        design = designs[sc.name] if designs else W.make_design(df, sc, frames)
        for adjusted_for_size in (False, True):
            label = "adjusted" if adjusted_for_size else "unadjusted"
            X, names, cols, patterns = models[adjusted_for_size]
            post = WS.fit_pseudo_posterior(
                X, y, design, names, method=method, draws=draws, tune=tune, chains=chains,
                seed=seed, extend=extend,
            )  # fmt: skip
            if diagnostics is not None and post.diagnostics:
                diagnostics.append(
                    diagnostics_row(sc.name, f"pseudo_likelihood {label}", post.diagnostics)
                )
            for adj in (False, True):
                meth = "pseudo_likelihood_adjusted" if adj else "pseudo_likelihood"
                th = post.draws(adj)
                for j, t in enumerate(names):
                    if t != "(Intercept)":
                        keys.append((sc.name, meth, f"or_{label}:{t}", True))
                        draws_of.append(th[..., j])
                der = WS.derived_draws(post, adjusted=adj, columns=cols, patterns=patterns)
                if adjusted_for_size:
                    keys.append((sc.name, meth, OUTCOME, False))
                    draws_of.append(der["prevalence"])
                for a, j in zip(APPROACHES, cols):
                    keys.append((sc.name, meth, f"rd_{label}:{a}", False))
                    draws_of.append(der[j])
    return pd.DataFrame(_summaries(keys, draws_of), columns=PL_COLUMNS)


#: Columns of ``mcmc_diagnostics.csv``: one row per MCMC fit of the weighting stage.
DIAGNOSTICS_COLUMNS = [
    "scenario", "fit", "divergences", "max_r_hat", "min_ess_bulk", "min_ess_tail", "min_bfmi",
    "extended_thin", "ok", "messages",
]  # fmt: skip


def diagnostics_row(scenario: str, fit: str, diag: Mapping[str, Any]) -> dict[str, Any]:
    """One :data:`DIAGNOSTICS_COLUMNS` row from :func:`cst_bayes.bayes.convergence.diagnose`'s dict."""
    row = {c: diag.get(c) for c in DIAGNOSTICS_COLUMNS[2:]}
    row["extended_thin"] = int(diag.get("extended_thin", 1))
    row["messages"] = "; ".join(diag.get("messages") or [])
    return {"scenario": scenario, "fit": fit, **row}


def fit_label(row: Mapping[Any, Any]) -> str:
    """``dataset scenario fit`` of a :data:`DIAGNOSTICS_COLUMNS` row (empty parts left out)."""
    parts = [row.get("dataset"), row.get("scenario"), row.get("fit")]
    return " ".join(str(p) for p in parts if isinstance(p, str) and p)


def _summaries(
    keys: Sequence[tuple[str, str, str, bool]], draws_of: Sequence[np.ndarray]
) -> list[dict[str, object]]:
    """One :data:`PL_COLUMNS` row per estimand; draws of one shape summarised in one batch."""
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, d in enumerate(draws_of):
        by_shape.setdefault(np.shape(d), []).append(i)
    stats: list[dict[str, float]] = [{} for _ in draws_of]
    for idx in by_shape.values():
        s = WS.summarise_many(np.stack([draws_of[i] for i in idx]))
        for n, i in enumerate(idx):
            stats[i] = {k: float(v[n]) for k, v in s.items()}
    rows = []
    for (sc, meth, est, on_or), st in zip(keys, stats):
        if on_or:  # median and interval as ORs; p_positive and MCSEs on the log-OR scale
            for k in ("median", "ci_low", "ci_high"):
                st[k] = float(np.exp(st[k]))
        rows.append({"scenario": sc, "method": meth, "estimand": est, **st})
    return rows


def file_scenario(cols: filedesign.DesignColumns) -> W.Scenario:
    """The scenario that stands for a data file's own design (weights, strata, fpc)."""
    name = Path(cols.source).name if cols.source else "the data file"
    return W.Scenario(
        name=filedesign.FILE_SCENARIO,
        description=f"The weights, strata and fpc of {name}",
        fpc=cols.fpc is not None,
        columns=cols,
    )


def run_weights(
    df: pd.DataFrame,
    *,
    scenarios_file: str | Path | None = None,
    scenario_names: Sequence[str] | None = None,
    out_dir: str | Path | None = None,
    mcmc: bool = True,
    mrp_fits: bool | None = None,
    tipping_point: bool = True,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 2,
    seed: int = DEFAULT_SEED,
    sampler: str | None = mrp.DEFAULT_SAMPLER,
    published_dir: str | Path | None = None,
    design_columns: filedesign.DesignColumns | None = None,
    extend: bool = False,
) -> dict[str, pd.DataFrame | str]:
    """Every weighting table of one data set.

    With MCMC, ``mcmc_diagnostics`` holds each fit's sampler diagnostics (``extend``: a fit
    that fails a threshold is sampled once more, :func:`cst_bayes.bayes.convergence.extension_plan`).

    ``mcmc`` false: the pseudo-posterior uses its normal approximation (``laplace``) and the
    MRP tables hold the conjugate estimands only (``mrp_fits`` overrides the latter).
    ``design_columns``: the file's own design becomes scenario ``file_weights``, analysed
    beside ``unweighted`` (and the scenarios named in ``scenario_names``, if any).
    """
    with one_blas_thread():
        from cst_bayes.data.published import load_sampling_frames

        frames = load_sampling_frames(published_dir)
        loaded = W.load_scenarios(scenarios_file)
        if design_columns is not None and not scenario_names:
            scenarios = [loaded[n] for n in ("unweighted",) if n in loaded]
        else:
            scenarios = W.select_scenarios(loaded, scenario_names)
        if design_columns is not None:
            scenarios = [*scenarios, file_scenario(design_columns)]
        steps = W.weights_table(df, scenarios, frames)
        diag_rows: list[dict[str, Any]] = []
        designs = {sc.name: W.make_design(df, sc, frames) for sc in scenarios}
        out: dict[str, pd.DataFrame] = {
            "weights": steps[W.WEIGHTS_COLUMNS].copy(),
            "weighting_steps": steps,
            "design_estimates": W.design_estimates(df, scenarios, frames, designs),
            "design_tests": W.design_tests(df, scenarios, frames, designs),
            "design_models": W.design_models(df, scenarios, frames, designs),
        }
        pl = pseudo_likelihood(
            df,
            scenarios,
            frames,
            method="mcmc" if mcmc else "laplace",
            draws=draws,
            tune=tune,
            chains=chains,
            seed=seed,
            designs=designs,
            extend=extend,
            diagnostics=diag_rows,
        )
        targets = {}
        for sc in scenarios:
            t = steps[steps["scenario"] == sc.name]
            targets[sc.name] = (
                dict(zip(t["stratum"], t["eligible_frame"])),
                bool(sc.fpc and sc.weighted),
            )
        fit_mrp = mcmc if mrp_fits is None else mrp_fits
        kw: dict[str, Any] = dict(
            draws=draws, tune=tune, chains=chains, seed=seed, sampler=sampler, extend=extend
        )
        mrp_diag: dict[str, dict[str, Any]] = {}
        mrp_table = mrp.poststratified(df, targets, mcmc=fit_mrp, diagnostics=mrp_diag, **kw)
        if fit_mrp:
            mrp_table = pd.concat(
                [mrp_table, mrp.mrp_varying_slopes(df, targets, diagnostics=mrp_diag, **kw)],
                ignore_index=True,
            )
        diag_rows += [diagnostics_row("", f"mrp {m}", d) for m, d in mrp_diag.items()]
        if diag_rows:
            out["mcmc_diagnostics"] = pd.DataFrame(diag_rows, columns=DIAGNOSTICS_COLUMNS)
        out["pseudo_likelihood_estimates"] = pl
        out["mrp_estimates"] = mrp_table
        sens = sensitivity.sensitivity_table(
            out["design_estimates"], out["design_models"], pl, mrp_table
        )
        out["sensitivity"] = sens
        out["conclusions"] = sensitivity.conclusions(
            sens, out["design_tests"], published_dir=published_dir
        )
        curves = bounds = None
        base = next((sc for sc in scenarios if sc.weighted), None)
        if tipping_point and base is not None:
            curves, bounds = tipping.delta_curves(
                df, steps[steps["scenario"] == base.name], designs[base.name], seed=seed
            )
            out["tipping_curves"] = curves.assign(scenario=base.name)
            out["manski_bounds"] = bounds.assign(scenario=base.name)
            out["tipping_point"] = tipping.tipping_points(
                curves, tipping.effect_claims(published_dir)
            ).assign(scenario=base.name)
        synthetic = bool(df.attrs.get("synthetic", False))
        text = sensitivity.conclusions_text(out["conclusions"], sens, synthetic=synthetic)
        status = status_of(df)
        if status == "RESTRICTED":
            text = RESTRICTED_TEXT  # printed by the CLI: no estimate in it
        if out_dir is not None:
            written = out
            if status == "RESTRICTED":
                # weighted shares and estimates with the (public) weights solve small cells:
                # every written table through the one policy (the pipeline's stage does the same)
                policy = small_cells(df)
                written = {k: protect(v, policy, pair_with=OUTCOME) for k, v in out.items()}
            write_outputs(written, text, out_dir, status=status)
        return {**out, "sensitivity_text": text}


RESTRICTED_TEXT = (
    "Restricted data: the weighting tables are written with every number that depends on a "
    "cell below the threshold suppressed; no figure or printed summary.\n"
)


def write_outputs(
    out: dict[str, pd.DataFrame], text: str, out_dir: str | Path, *, status: DataStatus
) -> None:
    """Every table as ``<key>.csv``, the figures and ``sensitivity.md`` (all atomic)."""
    from cst_bayes.core.fileio import write_csv, write_text

    out_dir = Path(out_dir)
    synthetic = status == "SYNTHETIC"
    for key, table in out.items():
        write_csv(out_dir / f"{key}.csv", table, status=status, notes=[f"weighting: {key}"])
    write_text(out_dir / "sensitivity.md", text)
    if status == "RESTRICTED":
        return  # the figures would show estimates the policy hid
    sens = out["sensitivity"]
    if "dataset" in sens:
        sens = sens[sens["dataset"] == sens["dataset"].iloc[0]]
    sensitivity.plot_sensitivity(sens, out_dir / "sensitivity.png", synthetic=synthetic)
    if "tipping_curves" in out:
        c, b = out["tipping_curves"], out["manski_bounds"]
        if "dataset" in c:
            c, b = c[c["dataset"] == c["dataset"].iloc[0]], b[b["dataset"] == b["dataset"].iloc[0]]
        tipping.plot_tipping(c, b, out_dir / "tipping_point.png", synthetic=synthetic)


def _member_task(task: tuple[pd.DataFrame, dict[str, Any]]) -> tuple[dict[str, Any], list]:
    """:func:`run_weights` in a worker, with the warnings it raised (they would stay there)."""
    df, kw = task
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = run_weights(df, **kw)
    return res, [(w.category, str(w.message)) for w in caught]


def _in_processes(tasks: list[tuple[pd.DataFrame, dict[str, Any]]], jobs: int) -> Iterator[dict]:
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: nutpie and numba hold threads a fork would copy mid-flight
    workers = min(jobs, len(tasks), os.cpu_count() or 1)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as ex:
        for res, caught in ex.map(_member_task, tasks):
            for category, message in caught:
                warnings.warn(message, category, stacklevel=3)
            yield res


def run_ensemble(
    frames: Sequence[pd.DataFrame],
    out_dir: str | Path | None,
    *,
    scenarios_file: str | Path | None = None,
    scenarios: Sequence[str] | None = None,
    bayes: bool | Collection[str] = False,
    seed: int = DEFAULT_SEED,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 2,
    sampler: str | None = mrp.DEFAULT_SAMPLER,
    published_dir: str | Path | None = None,
    tipping_point: bool = True,
    jobs: int = 1,
    extend: bool = False,
) -> dict[str, pd.DataFrame | str]:
    """The weighting stage over every member; every table gets a ``dataset`` column.

    ``frames`` carry ``df.attrs["member"]`` (else their position). ``bayes``: MCMC (the
    pseudo-posterior by nutpie and the MRP fits) for every member (True), none (False: the
    pseudo-posterior by its normal approximation, conjugate MRP) or the members named.
    ``conclusions`` reports per claim the share of members x scenarios x methods in which
    it holds (``share``), pooled over members. ``jobs > 1`` runs members in that many worker
    processes (same numbers; a worker's warnings, such as sampler trouble, are re-issued here).
    """
    parts: dict[str, list[pd.DataFrame]] = {}
    texts = []
    statuses = set()
    members, tasks = [], []
    for i, df in enumerate(frames):
        members.append(str(df.attrs.get("member", f"{i + 1:03d}")))
        statuses.add(status_of(df))
        use = bayes if isinstance(bayes, bool) else members[-1] in set(bayes)
        kw: dict[str, Any] = {
            "scenarios_file": scenarios_file,
            "scenario_names": scenarios,
            "mcmc": use,
            "draws": draws,
            "tune": tune,
            "chains": chains,
            "seed": seed,
            "sampler": sampler,
            "published_dir": published_dir,
            "tipping_point": tipping_point,
            "extend": extend,
        }
        tasks.append((df, kw))
    if jobs < 1:
        raise InputError(f"jobs must be >= 1, got {jobs}", column="jobs")
    if jobs == 1 or len(tasks) == 1:
        results: Iterable[dict[str, Any]] = (run_weights(df, **kw) for df, kw in tasks)
    else:
        results = _in_processes(tasks, jobs)
    for member, res in zip(members, results):
        for k, v in res.items():
            if isinstance(v, pd.DataFrame):
                parts.setdefault(k, []).append(v.assign(dataset=member))
        texts.append(f"## {member}\n\n{res['sensitivity_text']}")
    out = {k: pd.concat(v, ignore_index=True) for k, v in parts.items()}
    member_concl = out.pop("conclusions")
    out["conclusions_by_member"] = member_concl
    g = member_concl.groupby("claim", sort=False)
    out["conclusions"] = pd.DataFrame(
        {
            "published": g["published"].first(),
            "holds_in": g["holds_in"].sum(),
            "rows": g["rows"].sum(),
            "members": g["dataset"].nunique(),
            "members_surviving": g["survives"].sum(),
            "borderline": g["borderline"].sum(),
        }
    ).reset_index()
    out["conclusions"]["share"] = out["conclusions"]["holds_in"] / out["conclusions"]["rows"]
    # Pooled tables carry the dataset column too, naming the pool.
    out["conclusions"]["dataset"] = ENSEMBLE
    if "tipping_point" in out:
        tp = out["tipping_point"]
        out["tipping_point_summary"] = (
            tp.groupby("claim", sort=False)
            .agg(
                holds_at_zero=("holds_at_zero", "mean"),
                # Medians over the members whose verdict changes inside the grid.
                delta_low_median=("delta_low", "median"),
                delta_high_median=("delta_high", "median"),
                members_flipping_low=("delta_low", "count"),
                members_flipping_high=("delta_high", "count"),
            )
            .reset_index()
            .assign(dataset=ENSEMBLE)
        )
    text = "\n".join(texts)
    if out_dir is not None:
        # A mixed ensemble is as restricted as its most restricted member.
        status = next(s for s in ("RESTRICTED", "PUBLIC", "SYNTHETIC") if s in statuses)
        write_outputs(out, text, out_dir, status=status)
    return {**out, "sensitivity_text": text}
