"""Shared helpers and the one quick pipeline run used by the pipeline, report and browser tests.

Not a test module (no ``test_`` prefix): ``tests/conftest.py`` registers the fixture
``quick_run``. Under pytest-xdist every worker has its own session, and ``--dist loadgroup``
does not group tests with this pytest (pytest-xdist issue 1386), so :func:`once_per_run`
makes the workers share one result: the first computes it under a file lock in the run's
shared temporary folder, the others read it.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from cst_bayes.core import config
from cst_bayes.core.fileio import write_microdata
from cst_bayes.data.simulate import simulate

REPO = config.ROOT
CLI = [sys.executable, "-m", "cst_bayes"]


def write_sim(path: Path, seed: int, *, synthetic: bool = True) -> Path:
    """A simulated study-shaped dataset as a microdata CSV (labelled SYNTHETIC if asked)."""
    df, _ = simulate(seed)
    write_microdata(path, df.drop(columns=["n_approaches"]), synthetic=synthetic)
    return path


def sim_ensemble(folder: Path, n: int = 2, seed: int = 11) -> Path:
    """A folder shaped like data/reconstructed, from simulated (SYNTHETIC) members."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        write_sim(folder / f"reconstruction-{i:03d}.csv", seed + i)
    return folder


def reconstructions_for_tests(tmp: Path) -> Path:
    """The shipped ensemble when it exists, else a simulated stand-in (said in the test output)."""
    shipped = sorted(config.RECONSTRUCTED_DIR.glob("reconstruction-*.csv"))
    if len(shipped) >= 2:
        return config.RECONSTRUCTED_DIR
    print("NOTE: data/reconstructed is empty; using simulated SYNTHETIC members")
    return sim_ensemble(tmp / "ensemble")


def run_cli(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


def check_outputs_intact(run_dir: Path) -> None:
    """No temporary or scratch file is left; every CSV parses, every JSON loads, every .nc opens."""
    leftovers = [
        p
        for p in run_dir.rglob("*")
        if p.name.endswith(".tmp") or ".partial-" in p.name or ".old-" in p.name
    ]
    assert not leftovers, leftovers
    for p in run_dir.rglob("*.csv"):
        pd.read_csv(p, comment="#")
    for p in run_dir.rglob("*.json"):
        json.loads(p.read_text())
    ncs = list(run_dir.rglob("*.nc"))
    if ncs:
        import xarray as xr

        for p in ncs:
            xr.open_datatree(p, engine="h5netcdf").close()


def manifests(run_dir: Path) -> dict[str, dict]:
    """Unit -> manifest of every visible unit folder."""
    out = {}
    for m in run_dir.rglob("manifest.json"):
        rel = m.parent.relative_to(run_dir).as_posix()
        if not any(part.startswith(".") for part in m.parent.relative_to(run_dir).parts):
            out[rel] = json.loads(m.read_text())
    return out


def once_per_run(tmp_path_factory, name: str, compute) -> dict:
    """``compute(folder) -> JSON-able dict``, run once per pytest run even across xdist workers."""
    base = tmp_path_factory.getbasetemp()
    shared = (
        base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    )  # popen-gwN -> the run's folder
    folder = shared / f"shared-{name}"
    result = shared / f"shared-{name}.json"
    with open(shared / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if result.exists():
            return json.loads(result.read_text())
        folder.mkdir(exist_ok=True)
        value = compute(folder)
        result.write_text(json.dumps(value, default=str))
        return json.loads(result.read_text())


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory) -> dict:
    res = once_per_run(tmp_path_factory, "quick_run", _quick_run)
    return {**res, "out": Path(res["out"])}


def _quick_run(tmp: Path) -> dict:
    """`cst-bayes reproduce --profile quick`, killed with SIGKILL mid-run and then rerun.

    One pipeline run serves the kill-and-resume test, the pipeline tests, the report tests
    and the browser test. Returns ``out`` (run dir), ``killed`` (the process was still
    running when killed), ``after_kill`` (snapshot of visible units and files at the kill)
    and ``stdout`` of the resumed run.
    """
    recs = reconstructions_for_tests(tmp)
    out = tmp / "run"
    args = [
        *CLI,
        "reproduce",
        "--profile",
        "quick",
        "--out",
        str(out),
        "--reconstructions",
        str(recs),
        "--no-progress",
    ]
    proc = subprocess.Popen(
        args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    killed = False
    deadline = time.monotonic() + 600
    try:
        # kill once a few units are finished and a later one is being computed
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "tables" / "manifest.json").exists():
                time.sleep(1.5)
                break
            time.sleep(0.2)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    half_written = [
        d.relative_to(out).as_posix()
        for d in out.rglob("*")
        if d.is_dir()
        and not any(x.startswith(".") for x in d.relative_to(out).parts)
        and d.name != "figures"
        and any(f.is_file() for f in d.iterdir())
        and not (d / "manifest.json").exists()
        and d.parent != out / "data"
        and d.name != "published"
    ]
    after_kill = {
        "half_written": half_written,
        "units": sorted(manifests(out)),
        "unit_dirs": sorted(p.relative_to(out).as_posix() for p in out.glob("*") if p.is_dir()),
    }
    res = run_cli(args[len(CLI) :], timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    return {
        "out": out,
        "killed": killed,
        "after_kill": after_kill,
        "stdout": res.stdout,
        "stderr": res.stderr,
    }
