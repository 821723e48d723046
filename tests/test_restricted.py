"""Restricted-data mode: real microdata with small cells; every output is scanned.

The dataset is simulated but written without the SYNTHETIC label, so the package treats it
as real microdata. It carries planted agency identifiers and two cells below 5 (3 state
agencies with a case, 2 with an MDT). After ``cst-bayes reproduce --data FILE``, no file
(tables, fits, figures, report, run log) may contain an identifier or any agency-level
array, every count below 5 must read "<5", and the report must say it is restricted.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cst_bayes.core import config
from cst_bayes.data.simulate import simulate
from pipeline_support import once_per_run, run_cli

SECRET = "SECRET-AG-"
#: Columns holding counts of agencies in the package's tables.
COUNT_COLUMNS = {"n_yes", "n_stratum", "n_case", "n_no_case", "total_case", "total_no_case", "n"}


@pytest.fixture(scope="session")
def restricted_run(tmp_path_factory) -> dict:
    res = once_per_run(tmp_path_factory, "restricted_run", _restricted_run)
    return {**res, "out": Path(res["out"])}


def _restricted_run(tmp: Path) -> dict:
    df, _ = simulate(99)
    df = df.drop(columns=["n_approaches"])
    state = np.flatnonzero(df["stratum"].astype(str).to_numpy() == "state")
    df.loc[state, "any_cst"] = 0
    df.loc[state[:3], "any_cst"] = 1  # 3 of 19: a small cell
    df.loc[state, "mdt"] = 0
    df.loc[state[:2], "mdt"] = 1  # 2 of 19
    df.insert(0, "agency_id", [f"{SECRET}{i:04d}" for i in range(len(df))])
    data = tmp / "lea_cst_restricted.csv"
    df.to_csv(data, index=False)
    out = tmp / "out"
    res = run_cli(
        [
            "reproduce",
            "--profile",
            "quick",
            "--data",
            str(data),
            "--out",
            str(out),
            "--models",
            "logit_count_strata",
            "--no-progress",
        ],
        timeout=900,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return {"out": out, "stdout": res.stdout, "stderr": res.stderr, "n": len(df)}


def test_run_is_marked_restricted(restricted_run):
    run = json.loads((restricted_run["out"] / "run.json").read_text())
    assert run["restricted"] is True and run["synthetic"] is False
    assert run["data_source"] == "lea_cst_restricted.csv"  # the file name only, no path
    md = (restricted_run["out"] / "report.md").read_text()
    html = (restricted_run["out"] / "index.html").read_text()
    assert "RESTRICTED DATA" in md and "RESTRICTED DATA" in html
    assert "SYNTHETIC" not in md


def test_no_output_contains_identifiers_or_row_level_arrays(restricted_run):
    out = restricted_run["out"]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 10
    for p in files:
        assert SECRET.encode() not in p.read_bytes(), p
    for text in (restricted_run["stdout"], restricted_run["stderr"]):
        assert SECRET not in text
    ncs = list(out.rglob("*.nc"))
    assert ncs, "the model stage wrote no fit"
    import xarray as xr

    for p in ncs:
        tree = xr.open_datatree(p, engine="h5netcdf")
        for node in tree.subtree:
            assert node.name not in ("observed_data", "log_likelihood", "posterior_predictive"), (
                p,
                node.name,
            )
            for name, var in node.variables.items():
                assert restricted_run["n"] not in var.shape, (p, node.name, name, var.shape)
        tree.close()


def _csvs(out: Path) -> dict[str, pd.DataFrame]:
    return {
        p.relative_to(out).as_posix(): pd.read_csv(p, comment="#", dtype=str, keep_default_na=False)
        for p in out.rglob("*.csv")
    }


def test_every_count_below_5_is_suppressed_in_every_table(restricted_run):
    tables = _csvs(restricted_run["out"])
    checked = 0
    for name, t in tables.items():
        for c in COUNT_COLUMNS & set(t.columns):
            for v in t[c]:
                if v in ("", f"<{config.SMALL_CELL}"):
                    continue
                assert float(v) >= config.SMALL_CELL, (name, c, v)
                checked += 1
        if {"statistic", "observed"} <= set(t.columns):  # PPC: observed counts
            counts = t[(t["statistic"] == "n_yes") | t["statistic"].str.startswith("n_count=")]
            for v in counts["observed"]:
                assert v == "<5" or float(v) >= config.SMALL_CELL, (name, v)
    assert checked > 50
    t1 = tables["tables/table1.csv"].set_index(["variable", "stratum"])
    assert t1.loc[("any_cst", "state"), "n_yes"] == "<5"
    assert t1.loc[("mdt", "state"), "n_yes"] == "<5"
    assert t1.loc[("mdt", "state"), "pct"] in ("", "<5")  # the percentage would give the count back
    # a count that is not small stays
    assert int(t1.loc[("any_cst", "1-49"), "n_yes"]) >= 5


def test_report_shows_suppressed_cells_not_the_counts(restricted_run):
    md = (restricted_run["out"] / "report.md").read_text()
    rows = [line for line in md.splitlines() if re.match(r"\| (mdt|any_cst) \| state \|", line)]
    assert rows, "Table 1 rows for the state stratum are missing from the report"
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[2] == "<5", line
