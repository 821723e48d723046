"""The attacker: try to get planted small cells back from what restricted runs write.

Each planted file is simulated microdata written without the SYNTHETIC banner (so the
package treats it as restricted) in which a few cells are set below 5: stratum cells
(e.g. 2 state agencies with an MDT), their complements (33 of 34 with training), and
pairwise 2 x 2 cells (2 agencies with both a court and an MDT). The attacker knows what a
real outsider knows (the stratum sizes, which are public) plus every file a verb writes
and its stdout, and tries:

* differencing: the ``all`` row minus the other strata, in every table naming them;
* integer solving of a full-precision chi-square (Table 1's 2 x 4) over the hidden cells;
* phi plus the margins (Table 2), and the 2 x 2 counts of Figure 1;
* weighted shares (``design_estimates.csv``) with the weights (``weights.csv``) and the
  other strata;
* search: every .csv/.md/.html/.json/.log/stdout line that names the variable and stratum
  and prints the planted count as a cell, and every .nc array with one entry per agency.

A leak is a recovered value equal to the planted one. Nothing may be recovered.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cst_bayes.core.config import APPROACHES, N_BY_STRATUM, OUTCOME, STRATA
from cst_bayes.data.simulate import simulate
from pipeline_support import once_per_run, run_cli

VARIABLES = (*APPROACHES, OUTCOME)


@dataclass
class Planted:
    """A restricted file and the small cells planted in it."""

    path: Path
    cells: dict[tuple[str, str], int]  #: (variable, stratum) -> count (< 5 or complement < 5)
    pairs: dict[tuple[str, str], int] = field(default_factory=dict)  #: (a, b) -> n11 < 5
    n: int = 0


def _set_count(df: pd.DataFrame, var: str, stratum: str, k: int) -> None:
    idx = np.flatnonzero(df["stratum"].astype(str).to_numpy() == stratum)
    df.loc[idx, var] = 0
    df.loc[idx[:k], var] = 1


def plant(tmp: Path, which: int) -> Planted:
    """Three planted files with different small cells (counts avoid 3, the chi-square dof)."""
    df, _ = simulate(100 + which)
    df = df.drop(columns=["n_approaches"])
    cells: dict[tuple[str, str], int] = {}
    pairs: dict[tuple[str, str], int] = {}
    if which == 0:  # the file: state cells and a 1000+ complement
        for var, s, k in (("court", "state", 4), ("mdt", "state", 2), ("any_cst", "state", 4)):
            _set_count(df, var, s, k)
            cells[(var, s)] = k
        _set_count(df, "training", "1000+", 33)
        cells[("training", "1000+")] = 33
    elif which == 1:  # pairwise: court x mdt has 2 agencies with both
        court = df["court"].to_numpy().astype(bool)
        mdt = np.zeros(len(df), dtype=int)
        mdt[np.flatnonzero(~court)[:60]] = 1
        mdt[np.flatnonzero(court)[:2]] = 1
        df["mdt"] = mdt
        pairs[("court", "mdt")] = 2
        _set_count(df, "offense_code", "1000+", 1)
        cells[("offense_code", "1000+")] = 1
    else:  # pairwise with the outcome, and a small cell in the big stratum
        case = df["any_cst"].to_numpy().astype(bool)
        tf = np.zeros(len(df), dtype=int)
        tf[np.flatnonzero(~case)[:50]] = 1
        tf[np.flatnonzero(case)[:4]] = 1
        df["task_force"] = tf
        pairs[("task_force", "any_cst")] = 4
        _set_count(df, "advocates", "1-49", 2)
        cells[("advocates", "1-49")] = 2
    path = tmp / f"planted-{which}.csv"
    df.to_csv(path, index=False)  # no banner: restricted
    # the planted pairs must really be what the file holds
    for (a, b), k in pairs.items():
        assert int((df[a].astype(bool) & df[b].astype(bool)).sum()) == k
    return Planted(path, cells, pairs, len(df))


# --------------------------------------------------------------------------- reading outputs


def _read_csvs(folders: list[Path]) -> dict[str, pd.DataFrame]:
    out = {}
    for folder in folders:
        for p in sorted(folder.rglob("*.csv")):
            out[str(p)] = pd.read_csv(p, dtype=str, keep_default_na=False, comment=None)
    return out


def _num(v: object) -> float | None:
    try:
        x = float(str(v))
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _table1_counts(csvs: dict[str, pd.DataFrame]) -> dict[tuple[str, str], int]:
    """Every (variable, stratum) count printed anywhere in a Table 1 shape."""
    known: dict[tuple[str, str], int] = {}
    for t in csvs.values():
        if {"variable", "stratum", "n_yes"} <= set(t.columns):
            for v, s, n in zip(t["variable"], t["stratum"], t["n_yes"], strict=True):
                x = _num(n)
                if x is not None:
                    known[(v, s)] = round(x)
        if {"item", "quantity", "reproduced"} <= set(t.columns):
            sel = t[t["quantity"] == "n_yes"]
            for item, val in zip(sel["item"], sel["reproduced"], strict=True):
                x = _num(val)
                if x is not None and "|" in item:
                    v, s = item.split("|", 1)
                    known[(v, s)] = round(x)
    return known


def attack(planted: Planted, folders: list[Path], texts: list[str] = ()) -> list[str]:
    """Every way the attacker recovered a planted value (empty: nothing recovered)."""
    leaks: list[str] = []
    csvs = _read_csvs(folders)
    known = _table1_counts(csvs)
    n_all = planted.n
    sizes = {**N_BY_STRATUM}
    # 1. direct and differencing
    for (v, s), k in planted.cells.items():
        if known.get((v, s)) == k:
            leaks.append(f"printed: {v}|{s} = {k}")
        others = [known.get((v, o)) for o in STRATA if o != s]
        if (v, "all") in known and None not in others and known[(v, "all")] - sum(others) == k:
            leaks.append(f"differencing: {v}|{s} = all - other strata = {k}")
    # 2. chi-square integer solving (Table 1: 2 x 4 per variable)
    n_s = np.array([sizes[o] for o in STRATA], float)
    for t in csvs.values():
        if not {"variable", "stratum", "chi2", "n_yes"} <= set(t.columns):
            continue
        for (v, s), k in planted.cells.items():
            chi = [c for c in (_num(x) for x in t.loc[t["variable"] == v, "chi2"]) if c is not None]
            hidden = [o for o in STRATA if (v, o) not in known]
            if not chi or not hidden or len(hidden) > 2:
                continue
            grids = np.meshgrid(*[np.arange(sizes[o] + 1) for o in hidden], indexing="ij")
            y = np.stack([np.full(grids[0].size, known.get((v, o), 0), float) for o in STRATA])
            for o, g in zip(hidden, grids, strict=True):
                y[STRATA.index(o)] = g.ravel()
            if (v, "all") in known:  # the margin pins the rest
                keep = y.sum(axis=0) == known[(v, "all")]
                y = y[:, keep]
            total_yes = y.sum(axis=0)
            with np.errstate(divide="ignore", invalid="ignore"):
                e_yes = np.outer(n_s, total_yes) / n_all
                e_no = np.outer(n_s, n_all - total_yes) / n_all
                stat = (((y - e_yes) ** 2) / e_yes + ((n_s[:, None] - y - e_no) ** 2) / e_no).sum(
                    axis=0
                )
            hits = np.flatnonzero(np.abs(stat - chi[0]) < 1e-6 * max(1.0, chi[0]))
            if len(hits) == 1 and y[STRATA.index(s), hits[0]] == k:
                leaks.append(f"chi-square solved: {v}|{s} = {k}")
    # 3. phi with margins, and 2 x 2 counts printed beside the outcome (Figure 1)
    for (a, b), k in planted.pairs.items():
        for t in csvs.values():
            if {"row", "col", "r"} <= set(t.columns):
                sel = t[((t["row"] == a) & (t["col"] == b)) | ((t["row"] == b) & (t["col"] == a))]
                for r in sel["r"]:
                    phi = _num(r)
                    na, nb = known.get((a, "all")), known.get((b, "all"))
                    if phi is None or na is None or nb is None:
                        continue
                    n11 = (phi * math.sqrt(na * (n_all - na) * nb * (n_all - nb)) + na * nb) / n_all
                    if abs(n11 - k) < 1e-6:
                        leaks.append(f"phi + margins: {a} x {b} n11 = {k}")
            if {"variable", "n_case"} <= set(t.columns) and OUTCOME in (a, b):
                v = b if a == OUTCOME else a
                for x in t.loc[t["variable"] == v, "n_case"]:
                    if _num(x) == k:
                        leaks.append(f"fig1 n_case: {v} x {OUTCOME} = {k}")
    # 4. weighted shares with the weights and the other strata
    w = next(
        (t for t in csvs.values() if {"scenario", "stratum", "weight"} <= set(t.columns)), None
    )
    for t in csvs.values():
        if w is None or not {"scenario", "estimand", "estimate"} <= set(t.columns):
            continue
        for (v, s), k in planted.cells.items():
            for sc, est in zip(t["scenario"], t.loc[t["estimand"] == v, "estimate"], strict=False):
                e = _num(est)
                ws = {
                    st: _num(x)
                    for st, x, scn in zip(w["stratum"], w["weight"], w["scenario"], strict=True)
                    if scn == sc
                }
                others = {o: known.get((v, o)) for o in STRATA if o != s}
                if e is None or None in others.values() or None in ws.values() or len(ws) < 4:
                    continue
                total = sum(ws[o] * sizes[o] for o in STRATA)
                y = (e * total - sum(ws[o] * others[o] for o in others)) / ws[s]
                if abs(y - k) < 1e-6 * max(1.0, total):
                    leaks.append(f"weighted share solved: {v}|{s} = {k} ({sc})")
    # 5. search every text output for a line that names the cell and prints the count
    files = [
        p
        for f in folders
        for p in f.rglob("*")
        if p.is_file() and p.suffix in {".csv", ".md", ".html", ".json", ".log", ".txt"}
    ]
    bodies = [p.read_text(errors="replace") for p in files] + list(texts)
    for (v, s), k in planted.cells.items():
        cell = re.compile(rf"(?:^|[|,\s>]){k}(?:$|[|,\s<])")
        for body in bodies:
            for line in body.splitlines():
                if re.search(rf"\b{v}\b", line) and s in line and f"{v}|" not in line:
                    after = line.split(s, 1)[1]
                    first = re.split(r"[|,]", after.strip(" |,"))[0].strip()
                    if first == str(k) and cell.search(after):
                        leaks.append(f"text search: {v}|{s} = {k}: {line.strip()[:120]}")
    # 6. row-level arrays in any netCDF
    for f in folders:
        for p in f.rglob("*.nc"):
            import xarray as xr

            tree = xr.open_datatree(p, engine="h5netcdf")
            try:
                for node in tree.subtree:
                    for name, var in node.variables.items():
                        if planted.n in var.shape:
                            leaks.append(f"row-level array {p.name}:{node.path}/{name}")
            finally:
                tree.close()
    return sorted(set(leaks))


# --------------------------------------------------------------------------- the attacker can win


def test_attacker_recovers_cells_from_unprotected_outputs(tmp_path):
    """The attack works: on the same file declared public (no suppression) it finds the cells."""
    planted = plant(tmp_path, 0)
    out = tmp_path / "public"
    res = run_cli(
        [
            "tables",
            "--data",
            str(planted.path),
            "--out",
            str(out),
            "--link",
            "logit",
            "--data-class",
            "public",
        ]
    )
    assert res.returncode == 0, res.stderr
    leaks = attack(planted, [out], [res.stdout])
    assert any(x.startswith("printed") for x in leaks)
    # with the stratum rows hidden by hand, differencing and the chi-square still find them
    t1 = pd.read_csv(out / "table1.csv", dtype=str, keep_default_na=False)
    for v, s in planted.cells:
        t1.loc[(t1["variable"] == v) & (t1["stratum"] == s), ["n_yes", "pct"]] = "<5"
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    t1.to_csv(hidden / "table1.csv", index=False)
    leaks = attack(planted, [hidden])
    assert any(x.startswith("differencing") for x in leaks), leaks
    t1.loc[t1["stratum"] == "all", "n_yes"] = "<5"
    t1.to_csv(hidden / "table1.csv", index=False)
    assert any(x.startswith("chi-square") for x in attack(planted, [hidden]))


def test_attacker_solves_phi_with_margins(tmp_path):
    planted = plant(tmp_path, 1)
    out = tmp_path / "public"
    res = run_cli(
        ["tables", "--data", str(planted.path), "--out", str(out), "--data-class", "public"]
    )
    assert res.returncode == 0, res.stderr
    assert any(x.startswith("phi + margins") for x in attack(planted, [out]))


# --------------------------------------------------------------------------- nothing recovered


@pytest.mark.parametrize("which", [0, 1, 2])
def test_tables_leak_nothing(tmp_path, which):
    planted = plant(tmp_path, which)
    out = tmp_path / "tables"
    res = run_cli(["tables", "--data", str(planted.path), "--out", str(out)])
    assert res.returncode == 0, res.stderr
    assert attack(planted, [out], [res.stdout, res.stderr]) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "which",
    [
        0,
        2,
    ],
)
def test_weights_leak_nothing(tmp_path, which):
    planted = plant(tmp_path, which)
    tables, out = tmp_path / "tables", tmp_path / "weights"
    assert run_cli(["tables", "--data", str(planted.path), "--out", str(tables)]).returncode == 0
    res = run_cli(["weights", "--data", str(planted.path), "--out", str(out), "--no-bayes"])
    assert res.returncode == 0, res.stderr[-2000:]
    assert attack(planted, [tables, out], [res.stdout, res.stderr]) == []


@pytest.mark.slow
def test_fit_and_ppc_leak_nothing(tmp_path):
    planted = plant(tmp_path, 0)
    out = tmp_path / "fit"
    res = run_cli(
        [
            "fit",
            "logit_approaches_strata",
            "--data",
            str(planted.path),
            "--out",
            str(out),
            "--draws",
            "100",
            "--tune",
            "100",
            "--chains",
            "1",
            "--quiet",
        ],
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    texts = [res.stdout, res.stderr]
    nc = next(out.glob("*.nc"))
    ppc = run_cli(["ppc", str(nc), "--data", str(planted.path), "--out", str(tmp_path / "ppc")])
    texts += [ppc.stdout, ppc.stderr]
    assert attack(planted, [out, tmp_path / "ppc"], texts) == []


@pytest.fixture(scope="session")
def restricted_reproduce(tmp_path_factory) -> dict:
    """The quick restricted pipeline run of test_restricted (shared through its file lock)."""
    from test_restricted import _restricted_run

    res = once_per_run(tmp_path_factory, "restricted_run", _restricted_run)
    return {**res, "out": Path(res["out"])}


def test_reproduce_leaks_nothing(restricted_reproduce):
    out = restricted_reproduce["out"]
    data = next(out.parent.glob("lea_cst_restricted.csv"))
    df = pd.read_csv(data)
    planted = Planted(
        data,
        {
            (v, s): int(df.loc[df["stratum"] == s, v].sum())
            for v, s in (("any_cst", "state"), ("mdt", "state"))
        },
        n=len(df),
    )
    assert set(planted.cells.values()) == {3, 2}
    texts = [restricted_reproduce["stdout"], restricted_reproduce["stderr"]]
    assert attack(planted, [out], texts) == []
