"""The pipeline: stage caching, kill -9 and resume, determinism, the quick profile end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cst_bayes.core.disclosure import suppress_small_cells
from cst_bayes.core.errors import InputError
from cst_bayes.run import pipeline, units
from cst_bayes.run.cache import input_hash
from cst_bayes.run.context import PROFILES, RunContext
from cst_bayes.run.stages.data import fidelity_table
from pipeline_support import check_outputs_intact, reconstructions_for_tests, write_sim


def _ctx(tmp_path: Path) -> RunContext:
    return RunContext(
        out=tmp_path / "run",
        profile="quick",
        settings=PROFILES["quick"],
        seed=1,
        published_dir=Path("."),
        weighting_file=Path("."),
    )


def test_unit_is_cached_by_input_hash(tmp_path):
    ctx = _ctx(tmp_path)
    calls = []

    def body(work: Path) -> dict:
        calls.append(1)
        (work / "x.csv").write_text("a\n1\n")
        return {"n": 1}

    r1 = units.run_unit(ctx.out, "stage/a", {"k": 1}, body)
    r2 = units.run_unit(ctx.out, "stage/a", {"k": 1}, body)
    r3 = units.run_unit(ctx.out, "stage/a", {"k": 2}, body)
    assert [r1.status, r2.status, r3.status] == ["done", "cached", "done"]
    assert len(calls) == 2
    man = json.loads((ctx.out / "stage/a/manifest.json").read_text())
    assert man["input_hash"] == input_hash({"unit": "stage/a", "k": 2})
    assert sorted(p.name for p in (ctx.out / "stage").iterdir()) == [
        "a"
    ]  # no scratch or old copy left


def test_failing_unit_leaves_previous_output_and_no_scratch(tmp_path):
    ctx = _ctx(tmp_path)
    units.run_unit(ctx.out, "u", {"k": 1}, lambda w: (w / "f.txt").write_text("old") and {})

    def boom(work: Path) -> dict:
        (work / "f.txt").write_text("half")
        raise RuntimeError("crash in the middle")

    with pytest.raises(RuntimeError):
        units.run_unit(ctx.out, "u", {"k": 2}, boom, fail_fast=True)
    assert (ctx.out / "u" / "f.txt").read_text() == "old"
    assert [p.name for p in ctx.out.iterdir()] == ["u"]
    # by default the crash is recorded and the run goes on; the old output stays untouched
    r = units.run_unit(ctx.out, "u", {"k": 2}, boom)
    assert r.status == "failed" and "crash in the middle" in r.message
    assert (ctx.out / "u" / "f.txt").read_text() == "old"
    assert [p.name for p in ctx.out.iterdir()] == ["u"]
    # and the next run recomputes it (the stored hash is still the old input's)
    assert units.run_unit(ctx.out, "u", {"k": 2}, lambda w: {}).status == "done"


def test_unavailable_stage_is_reported_not_faked(tmp_path):
    ctx = _ctx(tmp_path)

    def body(work: Path) -> dict:
        raise units.StageUnavailable("models/x is not available: no fitted model")

    r = units.run_unit(ctx.out, "models/x", {}, body)
    assert r.status == "unavailable" and "not available" in r.message
    assert not (ctx.out / "models" / "x").exists()


def test_clean_stale_removes_scratch(tmp_path):
    out = tmp_path / "run"
    (out / ".tables.partial-123").mkdir(parents=True)
    (out / "models" / ".m.old-9").mkdir(parents=True)
    (out / "audit").mkdir()
    (out / "audit" / ".audit.csv.abc.tmp").write_text("x")
    removed = units.clean_stale(out)
    assert len(removed) == 3
    assert sorted(p.name for p in out.rglob("*")) == ["audit", "models"]


def test_suppress_small_counts_and_what_reveals_them():
    df = pd.DataFrame(
        {"variable": ["a", "b"], "n_yes": [3, 40], "pct": [15.8, 50.0], "r": [0.1, 0.2]}
    )
    out = suppress_small_cells(df, ["n_yes"], derived={"n_yes": ["pct"]})
    assert out["n_yes"].tolist() == ["<5", 40]
    assert pd.isna(out["pct"].iloc[0]) and out["pct"].iloc[1] == 50.0  # blank, not a number
    assert out["r"].tolist() == [0.1, 0.2]


def test_same_seed_gives_identical_tables(tmp_path):
    data = write_sim(tmp_path / "sim.csv", 5)
    a = pipeline.reproduce(
        tmp_path / "a",
        profile="quick",
        seed=3,
        data=data,
        stages=["data", "tables"],
        progress=False,
    )
    b = pipeline.reproduce(
        tmp_path / "b",
        profile="quick",
        seed=3,
        data=data,
        stages=["data", "tables"],
        progress=False,
    )
    names = sorted(p.name for p in (a.out / "tables").glob("*.csv"))
    assert {
        "table1.csv",
        "table2.csv",
        "table3.csv",
        "fig1.csv",
        "anova.csv",
        "comparison.csv",
    } <= set(names)
    for n in names:
        assert (a.out / "tables" / n).read_bytes() == (b.out / "tables" / n).read_bytes(), n


def test_bad_stage_name_is_input_error(tmp_path):
    with pytest.raises(InputError, match="unknown stage"):
        pipeline.reproduce(tmp_path / "x", stages=["tabels"], progress=False)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
@pytest.mark.xdist_group("quick_run")
def test_kill_minus_9_then_rerun_resumes_and_leaves_no_partial_file(quick_run):
    out = quick_run["out"]
    assert quick_run["killed"], (
        "the pipeline finished before it could be killed: nothing was tested"
    )
    # at the kill, every visible unit folder was complete (had its manifest)
    assert quick_run["after_kill"]["half_written"] == []
    done_before = set(quick_run["after_kill"]["units"])
    assert {"audit", "data", "tables"} <= done_before
    run = json.loads((out / "run.json").read_text())
    status = {u["unit"]: u["status"] for u in run["units"]}
    for unit in done_before:
        assert status[unit] == "cached", (unit, status[unit])
    assert set(status.values()) <= {"done", "cached", "unavailable"}
    check_outputs_intact(out)


@pytest.mark.slow
@pytest.mark.xdist_group("quick_run")
def test_quick_profile_end_to_end(quick_run):
    out = quick_run["out"]
    run = json.loads((out / "run.json").read_text())
    assert run["profile"] == "quick" and run["synthetic"] is True and run["restricted"] is False
    assert run["settings"]["n_reconstructions"] == 2 and len(run["datasets"]) == 2
    assert set(run["stage_seconds"]) >= {"audit", "data", "tables", "report"}
    assert (out / "index.html").is_file() and (out / "report.md").is_file()
    # the one-screen summary names every stage that was not available
    for u in run["units"]:
        if u["status"] == "unavailable":
            assert f"STAGE NOT AVAILABLE: {u['unit']}" in quick_run["stdout"]
    t1 = pd.read_csv(out / "tables" / "table1.csv", comment="#")
    assert sorted(t1["dataset"].unique()) == [d["dataset"] for d in run["datasets"]]
    assert t1["data_status"].eq("SYNTHETIC").all()


@pytest.mark.slow
@pytest.mark.xdist_group("quick_run")
def test_every_table_of_a_quick_run_opens_in_pandas_and_r(quick_run):
    import shutil
    import stat
    import subprocess

    out = quick_run["out"]
    tables = sorted(out.rglob("*.csv"))
    assert tables
    for p in tables:
        t = pd.read_csv(p)  # defaults only: a header row first, nothing before it
        # the audit and the copies of the printed tables are PUBLIC; the rest is synthetic
        want = "PUBLIC" if p.parent.name in ("audit", "published") else "SYNTHETIC"
        assert "data_status" in t.columns and t["data_status"].eq(want).all(), p
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p
        assert p.with_name(p.stem + ".meta.json").is_file(), p
    if shutil.which("Rscript"):
        code = "for (f in commandArgs(TRUE)) stopifnot('data_status' %in% names(read.csv(f)))"
        subprocess.run(["Rscript", "-e", code, *map(str, tables)], check=True, capture_output=True)


def test_fidelity_rows_from_a_reconstruction_manifest():
    man = {
        "members": [
            {
                "file": "reconstruction-001.csv",
                "targets": {
                    "table1": {"met": 40, "total": 40, "reported_only": 0},
                    "table3": {"met": 25, "total": 26, "reported_only": 2},
                    "failing": ["table3:x:or"],
                    "all_forced_met": False,
                },
            },
            {
                "file": "reconstruction-002.csv",
                "targets": {"table1": {"met": 40, "total": 40}, "all_forced_met": True},
            },
        ]
    }
    fid = fidelity_table(man, ["reconstruction-001"])
    assert fid[["table", "met", "total"]].values.tolist() == [
        ["table1", 40, 40],
        ["table3", 25, 26],
    ]
    assert not fid["all_forced_met"].any()


def test_a_second_run_into_the_same_folder_is_refused(tmp_path):
    import fcntl

    data = write_sim(tmp_path / "sim.csv", 5)
    out = tmp_path / "run"
    out.mkdir()
    with open(out / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # a run in progress
        with pytest.raises(InputError, match="another cst-bayes reproduce"):
            pipeline.reproduce(out, profile="quick", data=data, stages=["audit"], progress=False)
    assert not (out / "audit").exists()


def test_an_input_error_inside_a_unit_is_that_units_failure(tmp_path):
    """Inputs are validated before a run; an InputError raised inside a unit is a defect of
    that unit: recorded as failed, and the next unit runs."""
    ctx = _ctx(tmp_path)

    def bad(work: Path) -> dict:
        raise InputError("replicated any_cst must be non-negative integers")

    r = units.run_unit(ctx.out, "ppc/x", {}, bad)
    assert r.status == "failed" and "non-negative" in r.message
    assert units.run_unit(ctx.out, "ppc/y", {}, lambda w: {}).status == "done"


@pytest.mark.slow
@pytest.mark.xdist_group("quick_run")
def test_one_job_writes_the_same_tables_as_the_parallel_run(quick_run, tmp_path):
    # the quick run went through the CLI (one worker per core, killed and resumed); the same
    # stages in this process, one job, must give byte-identical tables
    recs = reconstructions_for_tests(tmp_path)  # the quick run's inputs (shipped or seeded)
    stages = ["data", "tables", "models", "prior_check", "ppc", "psense", "compare"]
    one = pipeline.reproduce(
        tmp_path / "one",
        profile="quick",
        reconstructions=recs,
        stages=stages,
        progress=False,
        jobs=1,
    )
    compared = 0
    for stage in stages[2:]:
        for f in sorted((one.out / stage).rglob("*.csv")):
            other = quick_run["out"] / f.relative_to(one.out)
            assert f.read_bytes() == other.read_bytes(), f.relative_to(one.out)
            compared += 1
    assert compared >= 8
