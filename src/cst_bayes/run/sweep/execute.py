"""Running a sweep: cells on dask, cached per cell, gathered into one xarray Dataset."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cst_bayes import __version__
from cst_bayes.core import config
from cst_bayes.core.fileio import atomic_path, write_csv, write_json
from cst_bayes.run.sweep.grid import (
    AXES,
    VARIABLES,
    Cell,
    Grid,
    PriorScale,
    cells,
    load_grid,
    scale_label,
)


def fit_cell(cell: Cell) -> pd.DataFrame:
    """Fit one cell: the model on one reconstruction, weighted by one scenario, priors scaled.

    The scenario's weights enter as a weighted pseudo-likelihood (``weight`` column, weights
    normalised to sum to n by the model builder); ``unweighted`` leaves the frame as it is.
    Returns the fit summary (``term, estimate, ci_low, ci_high, r_hat, ess_bulk, ...``).
    """
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from cst_bayes.bayes import models
    from cst_bayes.data import microdata
    from cst_bayes.weighting import weights

    df = microdata.load(cell.data_file)
    scen = weights.load_scenarios(cell.weighting_file)[cell.scenario]
    w = weights.agency_weights(df, scen) if scen.weighted else None
    spec = models.load_spec(cell.model)
    s = cell.sampling
    res = models.fit(
        spec,
        df,
        draws=s["draws"],
        tune=s["tune"],
        chains=s["chains"],
        seed=s["seed"],
        sampler=s["sampler"],
        weights=w,
        prior_scale=cell.prior_scale,
        progress=False,
        pointwise=False,
    )
    return res.summary


def _run_cell(cell: Cell, fit: Callable[[Cell], pd.DataFrame]) -> dict[str, Any]:
    t0 = time.perf_counter()
    summ = fit(cell)
    cols = ["term", *[v for v in VARIABLES if v in summ.columns]]
    return {
        "key": cell.key(),
        "seconds": time.perf_counter() - t0,
        "rows": json.loads(summ[cols].to_json(orient="records")),
    }


def _cache_path(out: Path, cell: Cell) -> Path:
    return out / "cache" / f"{cell.key()}.json"


def _read_cache(out: Path, cell: Cell) -> dict[str, Any] | None:
    p = _cache_path(out, cell)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return d if d.get("key") == cell.key() else None


def _scale_coords(scales: list[PriorScale]) -> list[Any]:
    """Numbers stay numbers on the axis; any per-slot table makes every entry a label."""
    if all(isinstance(k, float) for k in scales):
        return list(scales)
    return [scale_label(k) for k in scales]


def to_dataset(grid: Grid, results: Mapping[str, tuple[Cell, dict[str, Any]]]) -> Any:
    """Gather the cell results into one Dataset with dims (reconstruction, scenario, prior_scale, model, term)."""
    import xarray as xr

    terms = list(dict.fromkeys(r["term"] for _, res in results.values() for r in res["rows"]))
    coords = {
        "reconstruction": grid.reconstructions,
        "scenario": grid.scenarios,
        "prior_scale": _scale_coords(grid.prior_scales),
        "model": grid.models,
        "term": terms,
    }
    shape = (*grid.shape, len(terms))
    arrays = {v: np.full(shape, np.nan) for v in VARIABLES}
    seconds = np.full(grid.shape, np.nan)
    for cell, res in results.values():
        idx = (
            grid.reconstructions.index(cell.reconstruction),
            grid.scenarios.index(cell.scenario),
            grid.prior_scales.index(cell.prior_scale),
            grid.models.index(cell.model),
        )
        seconds[idx] = res.get("seconds", np.nan)
        for row in res["rows"]:
            t = terms.index(row["term"])
            for v in VARIABLES:
                if row.get(v) is not None:
                    arrays[v][(*idx, t)] = float(row[v])
    ds = xr.Dataset(
        {v: ((*AXES, "term"), a) for v, a in arrays.items()} | {"seconds": (AXES, seconds)},
        coords=coords,
    )
    ds.attrs.update(
        title="cst-bayes sensitivity sweep",
        grid=str(grid.path),
        cst_bayes_version=__version__,
        data=config.SYNTHETIC_BANNER,
        sampling=json.dumps(grid.sampling),
        estimate="posterior median on the ratio scale (OR for logit, PR for log link); 95% equal-tailed interval",
    )
    return ds


def spread(ds: Any) -> pd.DataFrame:
    """Spread of each term's estimate over the grid: per model, term and axis."""
    rows = []
    for m in ds["model"].values:
        for t in ds["term"].values:
            e = ds["estimate"].sel(model=m, term=t)
            if not np.isfinite(e.values).any():
                continue
            lo = ds["ci_low"].sel(model=m, term=t)
            hi = ds["ci_high"].sel(model=m, term=t)
            excl = ((lo.values > 1) | (hi.values < 1))[np.isfinite(e.values)]
            rows.append(
                {
                    "model": str(m),
                    "term": str(t),
                    "cells": int(np.isfinite(e.values).sum()),
                    "median": float(np.nanmedian(e.values)),
                    "min": float(np.nanmin(e.values)),
                    "max": float(np.nanmax(e.values)),
                    "share_interval_excludes_1": float(excl.mean()) if excl.size else np.nan,
                }
            )
    return pd.DataFrame(
        rows,
        columns=["model", "term", "cells", "median", "min", "max", "share_interval_excludes_1"],
    )


def plot_sweep(ds: Any) -> Any:
    """Posterior medians of every term across the grid (one dot per cell), per model."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    models_ = [str(m) for m in ds["model"].values]
    fig, axes = plt.subplots(
        1, len(models_), figsize=(5 * len(models_), 0.35 * ds.sizes["term"] + 1.8), squeeze=False
    )
    scen = [str(s) for s in ds["scenario"].values]
    cmap = plt.get_cmap("tab10")
    for ax, m in zip(axes[0], models_):
        sub = ds.sel(model=m)
        terms = [
            str(t)
            for t in sub["term"].values
            if np.isfinite(sub["estimate"].sel(term=t).values).any()
        ]
        for j, s in enumerate(scen):
            for i, t in enumerate(terms):
                v = sub["estimate"].sel(scenario=s, term=t).values.ravel()
                v = v[np.isfinite(v)]
                ax.scatter(
                    v,
                    np.full(v.size, i) + 0.12 * (j - (len(scen) - 1) / 2),
                    s=10,
                    color=cmap(j % 10),
                    label=s if i == 0 else None,
                )
        ax.axvline(1, color="gray", ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_yticks(range(len(terms)), terms, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("posterior median (ratio scale)", fontsize=8)
    axes[0][0].legend(title="scenario", fontsize=7)
    fig.text(
        0.01,
        0.005,
        "SYNTHETIC DATA (reconstructions of published tables)",
        fontsize=7,
        color="#b00020",
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


@dataclass
class SweepResult:
    """What :func:`run_sweep` did."""

    dataset: Any
    path: Path
    computed: int
    cached: int
    seconds: float


def run_sweep(
    grid: str | Path | Grid,
    out: str | Path,
    *,
    scheduler: str | None = None,
    n_workers: int = 2,
    processes: bool = True,
    fit: Callable[[Cell], pd.DataFrame] = fit_cell,
    progress: bool = True,
    client: Any = None,
) -> SweepResult:
    """Run every uncached cell of ``grid`` on dask.distributed and write the Dataset.

    Parameters
    ----------
    grid
        Grid TOML path (validated with :func:`load_grid`) or a :class:`Grid`.
    out
        Output folder: ``sweep.nc``, ``summary.csv``, ``sweep.png``, ``cache/``.
    scheduler
        Address of an existing dask scheduler (``tcp://host:8786``); default: a LocalCluster.
    n_workers, processes
        LocalCluster size and whether its workers are processes (``False``: threads).
    fit
        The per-cell computation (a picklable module-level function); default
        :func:`fit_cell`.
    client
        An existing :class:`distributed.Client` (tests); overrides ``scheduler``.

    Returns
    -------
    SweepResult
    """
    t0 = time.perf_counter()
    g = grid if isinstance(grid, Grid) else load_grid(grid)
    out = Path(out)
    todo_cells = cells(g)
    results: dict[str, tuple[Cell, dict[str, Any]]] = {}  # cell key -> (cell, result)
    pending = []
    for c in todo_cells:
        hit = _read_cache(out, c)
        if hit is not None:
            results[c.key()] = (c, hit)
        else:
            pending.append(c)
    n_cached = len(results)
    if pending:
        from distributed import Client, LocalCluster, as_completed
        from tqdm.auto import tqdm

        own_cluster = own_client = None
        if client is None:
            if scheduler:
                client = own_client = Client(scheduler)
            else:
                own_cluster = LocalCluster(
                    n_workers=n_workers,
                    threads_per_worker=1,
                    processes=processes,
                    dashboard_address=None,
                )
                client = own_client = Client(own_cluster)
        try:
            # a fresh token per run: a key reused across runs could hand back an old result
            token = uuid.uuid4().hex[:8]
            futures = {
                client.submit(_run_cell, c, fit, key=f"cell-{c.key()[:16]}-{token}", pure=False): c
                for c in pending
            }
            with tqdm(total=len(pending), desc="sweep", disable=not progress) as bar:
                for fut in as_completed(futures):
                    c = futures[fut]
                    res = fut.result()
                    write_json(_cache_path(out, c), res)  # atomic: a finished cell survives a crash
                    results[c.key()] = (c, res)
                    bar.update(1)
        finally:
            if own_client is not None:
                own_client.close()
            if own_cluster is not None:
                own_cluster.close()
    ds = to_dataset(g, results)
    with atomic_path(out / "sweep.nc") as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")
    write_csv(
        out / "summary.csv",
        spread(ds),
        status="SYNTHETIC",
        notes="spread of each term over the grid",
    )
    import matplotlib.pyplot as plt

    fig = plot_sweep(ds)
    with atomic_path(out / "sweep.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return SweepResult(ds, out / "sweep.nc", len(pending), n_cached, time.perf_counter() - t0)
