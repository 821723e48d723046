"""Fit files are ArviZ-native: az.loo and az.rhat work on them, attributes are typed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cst_bayes.bayes.models import read_fit, with_pointwise

pytestmark = pytest.mark.slow


def test_written_fit_works_with_arviz_and_keeps_typed_attributes(sim_df, tmp_path):
    import arviz as az

    from cst_bayes.cli import main
    from cst_bayes.core.fileio import write_microdata

    data = tmp_path / "data.csv"
    write_microdata(data, sim_df.drop(columns=["n_approaches"]), synthetic=True)
    args = ["fit", "logit_count_strata", "--data", str(data), "--out", str(tmp_path / "o")]
    args += ["--draws", "200", "--tune", "200", "--chains", "2", "--quiet"]
    args += ["--prior-scale", "sigma_stratum=2", "--prior-scale", "0.5"]
    assert main([*args, "--pointwise"]) == 0
    nc = tmp_path / "o" / "logit_count_strata.nc"
    idata = az.from_netcdf(nc)
    loo = az.loo(idata)
    assert loo.n_data_points == len(sim_df) and np.isfinite(loo.elpd_loo)
    # the default file is lean: ArviZ finds no log-likelihood and says so (never a wrong LOO);
    # with_pointwise recomputes exactly the groups --pointwise stored
    pointwise_bytes = nc.stat().st_size
    assert main(args) == 0
    assert nc.stat().st_size < pointwise_bytes / 4
    with pytest.raises(TypeError, match="log likelihood not found"):
        az.loo(az.from_netcdf(nc))
    back = with_pointwise(read_fit(nc))
    for g in ("log_likelihood", "posterior_predictive"):
        np.testing.assert_array_equal(
            back.groups[g]["any_cst"].to_numpy(), idata[g]["any_cst"].to_numpy()
        )
    assert az.loo(back.idata).elpd_loo == loo.elpd_loo
    idata = az.from_netcdf(nc)
    rh = az.rhat(idata)
    assert set(rh.data_vars) >= {"beta", "alpha", "mu_stratum", "sigma_stratum"}
    a = idata.posterior.attrs
    for key in ("seed", "draws", "tune", "chains", "synthetic", "weighted", "n_agencies"):
        assert isinstance(a[key], (int, np.integer)), key
    assert isinstance(a["prior_scale"], (float, np.floating)) and a["prior_scale"] == 0.5
    scales = json.loads(a["prior_scales"])
    assert scales["sigma_stratum"] == 2.0 and scales["beta"] == 0.5 and scales["intercept"] == 1.0
    assert {"tree_depth", "acceptance_rate", "diverging"} <= set(idata.sample_stats.data_vars)
    assert main([*args[:-4], "--prior-scale", "sigmas=2"]) == 2  # unknown slot: exit 2


def test_prior_groups_on_request(sim_df, tmp_path):
    import arviz as az

    from cst_bayes.bayes.fit import fit
    from cst_bayes.bayes.io import write_fit

    f = fit("logit_count", sim_df, draws=100, tune=100, chains=2, progress=False, prior_draws=300)
    assert {"prior", "prior_predictive"} <= set(f.idata.groups())
    assert f.idata.prior["beta"].shape == (1, 300, 1)
    y = f.idata.prior_predictive["any_cst"]
    assert y.dims == ("chain", "draw", "pattern")
    back = az.from_netcdf(write_fit(f, tmp_path)[0])
    assert "prior_predictive" in back.groups()
    # the prior predictive share of cases is the prior mean risk: wide, centred on the prior
    share = y.sum("pattern").to_numpy() / len(sim_df)
    assert 0.05 < share.mean() < 0.95 and share.std() > 0.1


def test_fit_on_restricted_data_writes_no_row_level_arrays(sim_df, tmp_path):
    import os

    import arviz as az

    from cst_bayes.cli import main

    data = tmp_path / "restricted.csv"
    sim_df.drop(columns=["n_approaches"]).to_csv(data, index=False)  # no banner: restricted
    out = tmp_path / "o"
    args = ["fit", "logit_count", "--data", str(data), "--out", str(out)]
    args += ["--draws", "100", "--tune", "100", "--chains", "2", "--quiet"]
    assert main([*args, "--keep-row-level", "--pointwise"]) == 0
    idata = az.from_netcdf(out / "logit_count.nc")
    for g in idata.groups():
        assert "agency" not in getattr(idata, g).dims, g
    assert "beta" in idata.posterior and "xbar" in idata.constant_data
    row = out / "logit_count-row-level.nc"
    assert os.stat(row).st_mode & 0o777 == 0o600
    assert "agency" in az.from_netcdf(row).log_likelihood.dims
