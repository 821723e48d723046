"""A methodologist's own file: a Stata .dta with the study's variables plus its own weights and
extra covariates goes through fit, weights and reproduce without editing the package."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cst_bayes.data.simulate import simulate
from pipeline_support import run_cli


@pytest.fixture(scope="module")
def own_dta(tmp_path_factory):
    import pyreadstat

    df, _ = simulate(4)
    df = df.drop(columns=["n_approaches"])
    df["stratum"] = df["stratum"].astype(str)
    rng = np.random.default_rng(1)
    df["weight"] = rng.uniform(1, 5, len(df))
    df["region"] = rng.choice(["NE", "S", "W"], len(df))
    df["pct_rural"] = rng.uniform(0, 1, len(df))
    path = tmp_path_factory.mktemp("own") / "own.dta"
    pyreadstat.write_dta(df, str(path))
    return path


@pytest.mark.slow
def test_fit_weights_and_reproduce_take_an_own_public_dta(own_dta, tmp_path):
    short = ["--draws", "100", "--tune", "100", "--chains", "2"]
    fit = run_cli(
        ["fit", "logit_approaches_strata", "--data", str(own_dta), "--out", str(tmp_path / "fit"),
         "--weights", "weight", "--data-class", "public", "--keep-columns", "region", "pct_rural",
         "--quiet", *short]
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-2000:]
    s = pd.read_csv(tmp_path / "fit" / "logit_approaches_strata-summary.csv")
    assert set(s["data_status"]) == {"PUBLIC"}
    w = run_cli(
        ["weights", "--data", str(own_dta), "--out", str(tmp_path / "w"), "--weight-column",
         "weight", "--data-class", "public", "--keep-columns", "region", "pct_rural",
         "--no-bayes"]
    )  # fmt: skip
    assert w.returncode == 0, w.stderr[-2000:]
    assert "weights: column 'weight'" in w.stderr
    est = pd.read_csv(tmp_path / "w" / "design_estimates.csv")
    assert "file_weights" in set(est["scenario"]) and set(est["data_status"]) == {"PUBLIC"}
    rep = run_cli(
        ["reproduce", "--profile", "quick", "--data", str(own_dta), "--data-class", "public",
         "--keep-columns", "region", "pct_rural", "--out", str(tmp_path / "run"), "--no-progress",
         "--stages", "audit", "data", "tables", "models", "report"]
    )  # fmt: skip
    assert rep.returncode == 0, rep.stderr[-2000:]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["data_status"] == "PUBLIC" and run["restricted"] is False
    t1 = pd.read_csv(tmp_path / "run" / "tables" / "table1.csv")
    assert pd.api.types.is_numeric_dtype(t1["n_yes"])  # public: nothing suppressed
