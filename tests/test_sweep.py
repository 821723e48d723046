"""The dask sweep: grid -> cells on a 2-worker LocalCluster -> one Dataset, cached cells, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from cst_bayes.run import sweep
from pipeline_support import sim_ensemble

GRID = """[grid]
reconstructions = [1, 2]
scenarios = ["unweighted", "design"]
prior_scales = [0.5, 2.0]
models = ["logit_count_strata"]
[sampling]
draws = 100
tune = 100
chains = 2
seed = 7
sampler = "nutpie-c"
[paths]
reconstructions = "ens"
"""


def fake_fit(cell: sweep.Cell) -> pd.DataFrame:
    """A deterministic stand-in for a fit whose output encodes the cell (tests the plumbing)."""
    scen = {"unweighted": 0.0, "design": 0.1}[cell.scenario]
    return pd.DataFrame(
        {
            "term": ["a", "b"],
            "estimate": [cell.reconstruction + cell.prior_scale + scen, 10.0],
            "ci_low": [0.5, 9.0],
            "ci_high": [9.0, 11.0],
            "r_hat": [1.0, 1.0],
            "ess_bulk": [400.0, 400.0],
        }
    )


def failing_fit(cell: sweep.Cell) -> pd.DataFrame:
    if cell.reconstruction == 2 and cell.prior_scale == 2.0:
        raise RuntimeError("worker died")
    return fake_fit(cell)


@pytest.fixture
def grid_file(tmp_path: Path) -> Path:
    sim_ensemble(tmp_path / "ens", 2)
    p = tmp_path / "grid.toml"
    p.write_text(GRID, encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


def test_grid_is_validated_and_expanded(grid_file):
    g = sweep.load_grid(grid_file)
    assert g.shape == (2, 2, 2, 1)
    cells = sweep.cells(g)
    assert len(cells) == 8 and len({c.key() for c in cells}) == 8


def test_cells_land_in_the_right_place_and_are_cached(grid_file, tmp_path, client):
    out = tmp_path / "out"
    r1 = sweep.run_sweep(grid_file, out, client=client, fit=fake_fit, progress=False)
    assert (r1.computed, r1.cached) == (8, 0)
    ds = xr.open_dataset(out / "sweep.nc", engine="h5netcdf")
    assert dict(ds["estimate"].sizes) == {
        "reconstruction": 2,
        "scenario": 2,
        "prior_scale": 2,
        "model": 1,
        "term": 2,
    }
    v = ds["estimate"].sel(
        reconstruction=2, scenario="design", prior_scale=0.5, model="logit_count_strata", term="a"
    )
    assert float(v) == pytest.approx(2 + 0.5 + 0.1)
    assert np.all(ds["estimate"].sel(term="b").values == 10.0)
    ds.close()
    assert len(list((out / "cache").glob("*.json"))) == 8
    summ = pd.read_csv(out / "summary.csv", comment="#")
    assert set(summ["term"]) == {"a", "b"} and (out / "sweep.png").stat().st_size > 0
    r2 = sweep.run_sweep(grid_file, out, client=client, fit=fake_fit, progress=False)
    assert (r2.computed, r2.cached) == (0, 8)
    # a changed axis recomputes only the new cells
    grid_file.write_text(GRID.replace("[0.5, 2.0]", "[0.5, 2.0, 4.0]"), encoding="utf-8")
    r3 = sweep.run_sweep(grid_file, out, client=client, fit=fake_fit, progress=False)
    assert (r3.computed, r3.cached) == (4, 8)


def test_interrupted_sweep_resumes_where_it_stopped(grid_file, tmp_path, client):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="worker died"):
        sweep.run_sweep(grid_file, out, client=client, fit=failing_fit, progress=False)
    assert not (out / "sweep.nc").exists()
    done = len(list((out / "cache").glob("*.json"))) if (out / "cache").exists() else 0
    r = sweep.run_sweep(grid_file, out, client=client, fit=fake_fit, progress=False)
    assert r.cached == done and r.computed == 8 - done
    assert not list(out.rglob("*.tmp"))


@pytest.mark.slow
def test_real_fits_on_a_two_worker_local_cluster(grid_file, tmp_path):
    """Two real (short) fits as tasks on a 2-worker LocalCluster of processes (PyTensor compilation is
    not thread-safe, so thread workers fail; nutpie-c reuses the on-disk C compile cache)."""
    grid_file.write_text(
        GRID.replace("[1, 2]", "[1]")
        .replace('["unweighted", "design"]', '["unweighted", "design"]')
        .replace("[0.5, 2.0]", "[1.0]"),
        encoding="utf-8",
    )
    out = tmp_path / "out"
    r = sweep.run_sweep(grid_file, out, n_workers=2, processes=True, progress=False)
    assert r.computed == 2
    ds = r.dataset
    est = ds["estimate"].sel(
        reconstruction=1, prior_scale=1.0, model="logit_count_strata", term="n_approaches"
    )
    # weighting by stratum changes the fit a little, not wildly: both ORs per approach in a sane range
    assert np.all((est.values > 1.0) & (est.values < 3.0))
    assert float(ds["r_hat"].max()) < 1.1


def test_sweep_summary_and_figure_go_into_the_report(grid_file, tmp_path, client):
    from cst_bayes.core.fileio import write_json
    from cst_bayes.run.report import build_report

    run = tmp_path / "run"
    sweep.run_sweep(grid_file, run / "sweep", client=client, fit=fake_fit, progress=False)
    write_json(
        run / "run.json",
        {"profile": "quick", "seed": 1, "synthetic": True, "settings": {}, "units": []},
    )
    build_report(run)
    md = (run / "report.md").read_text()
    assert "## Sensitivity sweep" in md and "(figures/sweep.png)" in md
    summ = pd.read_csv(run / "sweep" / "summary.csv", comment="#")
    a = summ.set_index("term").loc["a"]
    # term a's estimate is reconstruction + prior scale + scenario shift: min 1.5, max 4.1, 8 cells
    assert (a["cells"], a["min"], a["max"]) == (8, 1.5, pytest.approx(4.1))
    assert (run / "figures" / "sweep.png").read_bytes() == (
        run / "sweep" / "sweep.png"
    ).read_bytes()


def test_per_slot_prior_scales_are_grid_entries(grid_file, monkeypatch):
    """`{slot = K}` tables scale named prior slots; they reach the fit and name the axis."""
    text = grid_file.read_text().replace(
        "prior_scales = [0.5, 2.0]", "prior_scales = [1.0, {sigma_stratum = 2.0, beta = 0.5}]"
    )
    grid_file.write_text(text)
    g = sweep.load_grid(grid_file)
    assert g.prior_scales == [1.0, {"sigma_stratum": 2.0, "beta": 0.5}]
    assert [sweep.scale_label(k) for k in g.prior_scales] == ["beta=1", "beta=0.5,sigma_stratum=2"]
    seen = []

    def fake_fit(spec, df, **kw):
        seen.append(kw["prior_scale"])
        raise RuntimeError("stop after the call")

    from cst_bayes.bayes import models

    monkeypatch.setattr(models, "fit", fake_fit)
    cell = next(c for c in sweep.cells(g) if isinstance(c.prior_scale, dict))
    with pytest.raises(RuntimeError, match="stop"):
        sweep.fit_cell(cell)
    assert seen == [{"sigma_stratum": 2.0, "beta": 0.5}]


@pytest.mark.parametrize(
    "entry",
    ["{sigma_stratum = -1.0}", "{sigma_strata = 2.0}", "{}", '"two"'],
)
def test_bad_prior_scale_entries_name_the_key(grid_file, entry):
    from cst_bayes.core.errors import SpecError

    grid_file.write_text(
        grid_file.read_text().replace("prior_scales = [0.5, 2.0]", f"prior_scales = [{entry}]")
    )
    with pytest.raises(SpecError, match=r"grid\.prior_scales"):
        sweep.load_grid(grid_file)
