"""Sensitivity sweep on dask.distributed (``cst-bayes sweep GRID.toml``).

A grid TOML names four axes -- reconstructions x weighting scenarios x prior scales x
models -- and the sampler settings::

    [grid]
    reconstructions = [1, 2]          # member numbers of the ensemble (1-based), or "all"
    scenarios = ["unweighted", "design"]
    prior_scales = [0.5, 1.0, 2.0]    # multiplies every prior scale of the spec
    models = ["logit_approaches_strata"]

    [sampling]                        # optional
    draws = 500
    tune = 500
    chains = 2
    seed = 20240101

    [paths]                           # optional, relative to the grid file
    reconstructions = "../data/reconstructed"
    weighting = "../models/weighting.toml"

Every cell is an independent task on a dask cluster (a LocalCluster by default, an existing
scheduler with ``--scheduler``). A finished cell is cached in ``OUT/cache/<hash>.json``
where the hash covers everything the cell depends on (data file hash, scenario definition,
prior scale, spec hash, sampler settings, package version), so an interrupted sweep resumes
where it stopped and a changed input recomputes only its cells. The results are gathered
into one :class:`xarray.Dataset` with a dimension per grid axis (plus ``term``), saved to
``OUT/sweep.nc`` (netCDF via h5netcdf), with ``OUT/summary.csv`` and ``OUT/sweep.png`` for
the report.
"""

from __future__ import annotations

import json
import time
import tomllib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cst_bayes import __version__
from cst_bayes.core import config
from cst_bayes.core.errors import InputError, SpecError
from cst_bayes.core.fileio import atomic_path, sha256_file, write_csv, write_json
from cst_bayes.run.cache import input_hash

AXES: tuple[str, ...] = ("reconstruction", "scenario", "prior_scale", "model")
GRID_KEYS: dict[str, str] = {
    "reconstructions": "reconstruction",
    "scenarios": "scenario",
    "prior_scales": "prior_scale",
    "models": "model",
}
SAMPLING_KEYS: dict[str, type] = {
    "draws": int,
    "tune": int,
    "chains": int,
    "seed": int,
    "sampler": str,
}
PATH_KEYS: frozenset[str] = frozenset({"reconstructions", "weighting"})
#: Variables per (cell, term) in the Dataset.
VARIABLES: tuple[str, ...] = ("estimate", "ci_low", "ci_high", "r_hat", "ess_bulk")
#: Cap on the cells of one grid: a typo ("prior_scales = [..1000 values..]") should not
#: silently queue hours of sampling.
MAX_CELLS = 2000


@dataclass(frozen=True)
class Cell:
    """One grid cell: everything a worker needs, all picklable."""

    reconstruction: int
    scenario: str
    prior_scale: float
    model: str
    data_file: str
    data_hash: str
    scenario_def: dict[str, Any]
    spec_hash: str
    sampling: dict[str, Any]
    weighting_file: str

    def key(self) -> str:
        """Hash of every input (the cache key)."""
        d = asdict(self)
        d.pop("data_file")
        d.pop("weighting_file")
        return input_hash({"version": __version__, **d})


@dataclass
class Grid:
    """A validated sweep grid."""

    path: Path
    reconstructions: list[int]
    scenarios: list[str]
    prior_scales: list[float]
    models: list[str]
    sampling: dict[str, Any]
    reconstruction_files: dict[int, Path] = field(default_factory=dict)
    weighting_file: Path = config.WEIGHTING_FILE

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (
            len(self.reconstructions),
            len(self.scenarios),
            len(self.prior_scales),
            len(self.models),
        )


def _bad(msg: str, path: Path, key: str) -> SpecError:
    return SpecError(msg, path=path, column=key)


def load_grid(path: str | Path) -> Grid:
    """Read and validate a grid TOML (nothing is written).

    Raises
    ------
    SpecError
        Naming the file and the key: TOML syntax, unknown sections or keys, empty or
        repeated axis values, non-positive prior scales or sampler numbers, reconstruction
        numbers outside the ensemble, unknown scenarios or models, or too many cells.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            "grid file not found" if not path.exists() else "expected a file", path=path
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"not valid TOML ({exc})", path=path) from None
    except UnicodeDecodeError:
        raise SpecError("not a text file", path=path) from None
    unknown = sorted(set(raw) - {"grid", "sampling", "paths"})
    if unknown:
        raise _bad(
            f"unknown section(s) {unknown} (allowed: grid, sampling, paths)", path, unknown[0]
        )
    g = raw.get("grid")
    if not isinstance(g, dict):
        raise _bad("missing [grid] table", path, "grid")
    unknown = sorted(set(g) - set(GRID_KEYS))
    if unknown:
        raise _bad(
            f"unknown grid axis {unknown[0]!r} (allowed: {sorted(GRID_KEYS)})",
            path,
            f"grid.{unknown[0]}",
        )
    missing = [k for k in GRID_KEYS if k not in g]
    if missing:
        raise _bad(f"missing grid axis {missing[0]!r}", path, f"grid.{missing[0]}")
    paths = raw.get("paths", {})
    if not isinstance(paths, dict) or set(paths) - PATH_KEYS:
        bad = sorted(set(paths) - PATH_KEYS) if isinstance(paths, dict) else ["paths"]
        raise _bad(
            f"unknown path key(s) {bad} (allowed: {sorted(PATH_KEYS)})", path, f"paths.{bad[0]}"
        )
    base = path.parent
    rec_dir = (
        (base / paths["reconstructions"]).resolve()
        if "reconstructions" in paths
        else config.RECONSTRUCTED_DIR
    )
    wfile = (base / paths["weighting"]).resolve() if "weighting" in paths else config.WEIGHTING_FILE

    def as_list(key: str) -> list[Any]:
        v = g[key]
        if not isinstance(v, list) or not v:
            raise _bad("must be a non-empty list", path, f"grid.{key}")
        if len({json.dumps(x) for x in v}) != len(v):
            raise _bad("repeated values", path, f"grid.{key}")
        return v

    files = sorted(rec_dir.glob("reconstruction-*.csv")) if rec_dir.is_dir() else []
    if g["reconstructions"] == "all":
        recs = list(range(1, len(files) + 1))
        if not recs:
            raise _bad(f"no reconstruction-*.csv in {rec_dir}", path, "grid.reconstructions")
    else:
        recs = as_list("reconstructions")
        if not all(isinstance(r, int) and not isinstance(r, bool) for r in recs):
            raise _bad(
                'reconstruction numbers must be integers (1-based) or "all"',
                path,
                "grid.reconstructions",
            )
        out_of = [r for r in recs if r < 1 or r > len(files)]
        if out_of:
            raise _bad(
                f"reconstruction(s) {out_of} outside the ensemble of {len(files)} in {rec_dir}",
                path,
                "grid.reconstructions",
            )
    scales = as_list("prior_scales")
    if not all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x) and x > 0
        for x in scales
    ):
        raise _bad("prior scales must be positive finite numbers", path, "grid.prior_scales")
    scenarios = as_list("scenarios")
    models_ = as_list("models")
    for key, vals in (("scenarios", scenarios), ("models", models_)):
        if not all(isinstance(x, str) and x.strip() for x in vals):
            raise _bad("must be a list of names", path, f"grid.{key}")
    sampling = {"draws": 500, "tune": 500, "chains": 2, "seed": 20240101, "sampler": "nutpie"}
    s = raw.get("sampling", {})
    if not isinstance(s, dict):
        raise _bad("must be a table", path, "sampling")
    for k, v in s.items():
        if k not in SAMPLING_KEYS:
            raise _bad(
                f"unknown sampling key {k!r} (allowed: {sorted(SAMPLING_KEYS)})",
                path,
                f"sampling.{k}",
            )
        typ = SAMPLING_KEYS[k]
        if (
            not isinstance(v, typ)
            or isinstance(v, bool)
            or (typ is int and (v < 0 or (k != "seed" and v < 1)))
        ):
            raise _bad(
                f"must be a {'positive integer' if typ is int else 'string'}", path, f"sampling.{k}"
            )
        sampling[k] = v
    n_cells = len(recs) * len(scenarios) * len(scales) * len(models_)
    if n_cells > MAX_CELLS:
        raise _bad(f"{n_cells} cells exceed the limit of {MAX_CELLS}", path, "grid")
    # names are checked against the scenario file and the shipped specs
    try:
        from cst_bayes.weighting import weights

        known = weights.load_scenarios(wfile)
    except ImportError:  # pragma: no cover - weights is part of the package
        known = {}
    unknown = [x for x in scenarios if x not in known]
    if unknown:
        raise _bad(
            f"unknown scenario(s) {unknown} (in {wfile.name}: {sorted(known)})",
            path,
            "grid.scenarios",
        )
    for m in models_:
        _load_spec(m, path)
    return Grid(
        path=path,
        reconstructions=[int(r) for r in recs],
        scenarios=list(scenarios),
        prior_scales=[float(x) for x in scales],
        models=list(models_),
        sampling=sampling,
        reconstruction_files={r: files[r - 1] for r in recs},
        weighting_file=wfile,
    )


def _load_spec(name: str, grid_path: Path) -> Any:
    try:
        from cst_bayes.bayes import models
    except ModuleNotFoundError as exc:  # the models module is written in parallel
        raise SpecError(
            f"cannot check model {name!r}: {exc}", path=grid_path, column="grid.models"
        ) from None
    try:
        return models.load_spec(name)
    except InputError as exc:
        raise SpecError(f"model {name!r}: {exc}", path=grid_path, column="grid.models") from None


def _spec_hash(spec: Any) -> str:
    p = getattr(spec, "path", None)
    if p is not None and Path(p).is_file():
        return sha256_file(p)
    return input_hash(repr(spec))


def cells(grid: Grid) -> list[Cell]:
    """Every cell of the grid, in axis order."""
    from cst_bayes.weighting import weights

    scen = weights.load_scenarios(grid.weighting_file)
    data_hash = {r: sha256_file(f) for r, f in grid.reconstruction_files.items()}
    spec_hash = {m: _spec_hash(_load_spec(m, grid.path)) for m in grid.models}
    out = []
    for r in grid.reconstructions:
        for s in grid.scenarios:
            for k in grid.prior_scales:
                for m in grid.models:
                    out.append(
                        Cell(
                            reconstruction=r,
                            scenario=s,
                            prior_scale=k,
                            model=m,
                            data_file=str(grid.reconstruction_files[r]),
                            data_hash=data_hash[r],
                            scenario_def=json.loads(json.dumps(asdict(scen[s]), default=str)),
                            spec_hash=spec_hash[m],
                            sampling=dict(grid.sampling),
                            weighting_file=str(grid.weighting_file),
                        )
                    )
    return out


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


def to_dataset(grid: Grid, results: Mapping[str, tuple[Cell, dict[str, Any]]]) -> Any:
    """Gather the cell results into one Dataset with dims (reconstruction, scenario, prior_scale, model, term)."""
    import xarray as xr

    terms = list(dict.fromkeys(r["term"] for _, res in results.values() for r in res["rows"]))
    coords = {
        "reconstruction": grid.reconstructions,
        "scenario": grid.scenarios,
        "prior_scale": grid.prior_scales,
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


def summarise(ds: Any) -> pd.DataFrame:
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
    write_csv(out / "summary.csv", summarise(ds), header_comment=config.SYNTHETIC_BANNER)
    import matplotlib.pyplot as plt

    fig = plot_sweep(ds)
    with atomic_path(out / "sweep.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return SweepResult(ds, out / "sweep.nc", len(pending), n_cached, time.perf_counter() - t0)
