"""Sensitivity sweep on dask.distributed (``cst-bayes sweep GRID.toml``).

A grid TOML names four axes -- reconstructions x weighting scenarios x prior scales x
models -- and the sampler settings::

    [grid]
    reconstructions = [1, 2]          # member numbers of the ensemble (1-based), or "all"
    scenarios = ["unweighted", "design"]
    prior_scales = [0.5, 1.0, 2.0]    # K: the coefficient priors' scale times K;
                                      # {sigma_stratum = 2} or {beta = 2, intercept = 2}:
                                      # per prior slot (bayes.families.PRIOR_SLOTS)
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

from cst_bayes.run.sweep.execute import (
    SweepResult,
    fit_cell,
    plot_sweep,
    run_sweep,
    spread,
    to_dataset,
)
from cst_bayes.run.sweep.grid import AXES, MAX_CELLS, Cell, Grid, cells, load_grid, scale_label

__all__ = [
    "AXES",
    "MAX_CELLS",
    "Cell",
    "Grid",
    "SweepResult",
    "cells",
    "fit_cell",
    "load_grid",
    "plot_sweep",
    "run_sweep",
    "scale_label",
    "spread",
    "to_dataset",
]
