"""Output files any reader opens: header first, data_status, TRUE/FALSE, sidecar, modes."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess

import numpy as np
import pandas as pd
import pytest

from cst_bayes.core import fileio
from cst_bayes.core.config import SYNTHETIC_BANNER
from cst_bayes.data.microdata import load


def _mode(p) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_table_opens_with_plain_read_csv_and_carries_its_status(tmp_path):
    df = pd.DataFrame({"term": ["a", "b"], "n": [3, 4], "holds": [True, False]})
    p = fileio.write_csv(tmp_path / "t.csv", df, status="SYNTHETIC", notes="what it is")
    back = pd.read_csv(p)
    assert list(back.columns) == ["term", "n", "holds", "data_status"]
    assert back["holds"].tolist() == [True, False] and back["n"].dtype.kind == "i"
    assert set(back["data_status"]) == {"SYNTHETIC"}
    meta = json.loads((tmp_path / "t.meta.json").read_text())
    assert meta["data_status"] == "SYNTHETIC" and meta["banner"] == SYNTHETIC_BANNER
    assert meta["notes"] == ["what it is"]
    assert _mode(p) == 0o644 and _mode(tmp_path / "t.meta.json") == 0o644


def test_restricted_tables_are_group_only(tmp_path):
    p = fileio.write_csv(tmp_path / "r.csv", pd.DataFrame({"x": [1]}), status="RESTRICTED")
    assert _mode(p) == 0o640 and pd.read_csv(p)["data_status"].item() == "RESTRICTED"


def test_booleans_with_missing_values_stay_logical(tmp_path):
    df = pd.DataFrame({"a": pd.array([True, None], dtype="boolean"), "b": np.array([False, True])})
    text = fileio.write_csv(tmp_path / "b.csv", df, status="PUBLIC").read_text()
    assert text.splitlines()[1:] == ["TRUE,FALSE,PUBLIC", ",TRUE,PUBLIC"]


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="R is not installed")
def test_r_reads_tables_as_typed_columns(tmp_path):
    df = pd.DataFrame({"n": [1, 2], "holds": [True, False]})
    p = fileio.write_csv(tmp_path / "t.csv", df, status="SYNTHETIC")
    code = f'x <- read.csv("{p}"); cat(class(x$n), class(x$holds), names(x), sep=",")'
    out = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True, check=True).stdout
    assert out.split(",") == ["integer", "logical", "n", "holds", "data_status"]


def test_synthetic_microdata_start_with_exactly_the_banner(tmp_path, sim_df):
    p = fileio.write_microdata(
        tmp_path / "m.csv", sim_df.drop(columns=["n_approaches"]), synthetic=True, note="seed 1"
    )
    lines = p.read_text().splitlines()
    assert lines[0] == f"# {SYNTHETIC_BANNER}" and lines[1] == "# seed 1"
    assert load(p).attrs["synthetic"]
    q = fileio.write_microdata(
        tmp_path / "r.csv", sim_df.drop(columns=["n_approaches"]), synthetic=False
    )
    assert (
        not q.read_text().startswith("#") and not load(q).attrs["synthetic"] and _mode(q) == 0o640
    )


def test_a_failed_write_leaves_the_old_file(tmp_path):
    p = fileio.write_text(tmp_path / "f.txt", "old")
    with pytest.raises(RuntimeError), fileio.atomic_path(p) as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert p.read_text() == "old" and not list(tmp_path.glob(".*.tmp"))
