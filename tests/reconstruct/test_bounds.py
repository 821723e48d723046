"""Tests of cst_bayes.reconstruct.bounds: the kernel's statistic term and the bound search.

Statistics are recomputed here with plain numpy/pandas (not with the module's own
``statistic_values``) and every published target with cst_bayes.frequentist.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cst_bayes import reconstruct as rc
from cst_bayes.core.config import APPROACHES, OUTCOME, RECONSTRUCTED_DIR, STRATA, STRATUM
from cst_bayes.data.microdata import load
from cst_bayes.reconstruct import bounds as B
from cst_bayes.reconstruct import kernel as K

COLS = [*APPROACHES, OUTCOME]


def _numpy_stat(kind: int, ss: int, pa: int, pb: int, pc: int, V, strat) -> float:
    """The kernel's integer statistics, from their definitions."""
    m = np.ones(len(V), bool) if ss < 0 else strat == ss
    cnt = V[m, :9].sum(axis=1)
    y = V[m, 9]
    if kind == 0:
        return float((cnt**2).sum())
    if kind == 1:
        return float((cnt == pa).sum())
    if kind == 2:
        return float(cnt[y == 1].sum())
    if kind == 3:
        return float(((V[m, pa] == 1) & (y == 1)).sum())
    return float(((V[m, pa] == 1) & (V[m, pb] == 1) & (V[m, pc] == 1)).sum())


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_kernel_statistic_change_equals_recount(seed):
    """Property: stat_delta of a swap equals the recount after the swap, for every kind."""
    rng = np.random.default_rng(seed)
    tg = rc.load_targets()
    V = rc.initial_state(rng, rc.draw_dependence(rng), tg).astype(np.int64)
    strat = np.repeat(np.arange(len(STRATA)), tg.n_by_stratum).astype(np.int64)
    specs = [
        (0, int(rng.integers(4)), 0, 0, 0),
        (1, int(rng.integers(-1, 4)), int(rng.integers(10)), 0, 0),
        (2, int(rng.integers(4)), 0, 0, 0),
        (3, int(rng.integers(4)), int(rng.integers(9)), 0, 0),
        (4, -1, *(int(x) for x in rng.choice(9, 3, replace=False))),
    ]
    for _ in range(30):
        s = int(rng.integers(4))
        c = int(rng.integers(10))
        rows = np.flatnonzero(strat == s)
        ones, zeros = rows[V[rows, c] == 1], rows[V[rows, c] == 0]
        if not len(ones) or not len(zeros):
            continue
        a, b = int(rng.choice(ones)), int(rng.choice(zeros))
        rowcnt = V[:, :9].sum(axis=1).astype(np.int64)
        W = V.copy()
        W[a, c], W[b, c] = 0, 1
        for spec in specs:
            want = _numpy_stat(*spec, W, strat) - _numpy_stat(*spec, V, strat)
            assert K.stat_delta(*spec, V, rowcnt, a, b, c, s) == want, spec
            assert K.stat_value(*spec, V, strat, rowcnt) == _numpy_stat(*spec, V, strat)
        V = W


def _independent_value(df: pd.DataFrame, name: str, stratum: str) -> float:
    """A bounded statistic recomputed with pandas from its definition in the docs."""
    d = df if stratum == "all" else df[df[STRATUM].astype(str) == stratum]
    cnt = d[list(APPROACHES)].sum(axis=1)
    y = d[OUTCOME]
    if name == "count_sd":
        return float(cnt.std())
    if name.startswith("count_share_"):
        return float((cnt == int(name.rsplit("_", 1)[1])).mean())
    if name == "count_mean_case":
        return float(cnt[y == 1].mean())
    if name == "count_mean_nocase":
        return float(cnt[y == 0].mean())
    if name.startswith("n_case_"):
        return float(((d[name[7:]] == 1) & (y == 1)).sum())
    if name.startswith("or_"):
        tab = pd.crosstab(d[name[3:]], y).reindex(index=[0, 1], columns=[0, 1], fill_value=0)
        den = tab.loc[1, 0] * tab.loc[0, 1]
        return float(tab.loc[1, 1] * tab.loc[0, 0] / den) if den else math.inf
    tri = name[5:].split("+")
    return float((d[tri] == 1).all(axis=1).mean())


SHORT_ONLY = [
    "count_sd|state",
    "count_share_5|1-49",
    "count_mean_nocase|50-999",
    "or_court|1000+",
    "count_share_9|all",
    "all3_court+prosecutor+mdt|all",
]


@pytest.fixture(scope="module")
def short_bounds(tmp_path_factory):
    """A short bound search (one start, a twentieth of the proposals) on a few statistics."""
    out = tmp_path_factory.mktemp("bounds")
    starts = rc.load_ensemble(RECONSTRUCTED_DIR, n=2)
    bounds, _ = B.compute_bounds(
        out, starts=starts, n_starts=1, steps_scale=0.05, jobs=1, only=SHORT_ONLY
    )
    return out, bounds, starts


def test_each_bound_is_attained_by_a_dataset_meeting_every_target(short_bounds):
    from test_reconstruct import assert_meets_every_target

    out, bounds, _ = short_bounds
    assert list(bounds.columns[:7]) == B.BOUNDS_COLUMNS
    written = pd.read_csv(out / "bounds.csv")
    assert set(written["data_status"]) == {"SYNTHETIC"}
    assert bounds["converged"].all() and (bounds["seconds"] > 0).all()
    seen = {}
    for r in bounds.itertuples(index=False):
        assert r.lower <= r.upper
        for side, val in (("min", r.lower), ("max", r.upper)):
            path = out / B.extreme_filename(r.statistic, r.stratum, side)
            assert path.read_text().startswith("# SYNTHETIC")
            df = load(path)
            got = _independent_value(df, r.statistic, r.stratum)
            assert got == pytest.approx(val, rel=1e-12) or (math.isinf(got) and math.isinf(val))
            key = pd.util.hash_pandas_object(df[COLS], index=False).sum()
            if key not in seen:
                seen[key] = True
                assert_meets_every_target(df, path.name)


def test_bounds_cover_their_starts(short_bounds):
    """A start meets every target, so each bound is at least as extreme as every start."""
    _, bounds, starts = short_bounds
    for r in bounds.itertuples(index=False):
        if r.statistic.startswith("or_"):
            continue
        # each search starts from one member; both members are feasible, so the first is inside
        v = _independent_value(starts[0], r.statistic, r.stratum)
        if r.statistic in ("count_sd", "count_share_5"):
            assert r.lower <= v + 1e-12 and v <= r.upper + 1e-12


def test_derived_bounds_follow_their_source(short_bounds):
    _, bounds, _ = short_bounds
    b = bounds.set_index(["statistic", "stratum"])
    assert b.loc[("count_mean_nocase", "50-999"), "file_min"] != ""
    # the mean without a case is lowest where the mean with a case is highest
    tg = rc.load_targets()
    s = STRATA.index("50-999")
    n, m = tg.n_by_stratum[s], tg.counts[s, -1]
    tot = tg.counts[s, :9].sum()
    hi_case = b.loc[("count_mean_case", "50-999"), "upper"]
    assert b.loc[("count_mean_nocase", "50-999"), "lower"] == pytest.approx(
        (tot - hi_case * m) / (n - m)
    )


def test_span_table_and_plot():
    bounds = pd.DataFrame(
        dict(statistic=["count_sd", "count_sd"], stratum=["state", "1000+"], lower=[1.0, 1.5])
    ).assign(upper=[3.0, 1.5])
    members = rc.load_ensemble(RECONSTRUCTED_DIR, n=2)
    span = B.span_table(bounds, members)
    assert list(span.columns) == B.SPAN_COLUMNS
    sd = [
        float(m[m[STRATUM].astype(str) == "state"][list(APPROACHES)].sum(axis=1).std())
        for m in members
    ]
    row = span.iloc[0]
    assert row["span_share"] == pytest.approx((max(sd) - min(sd)) / 2.0)
    assert span.iloc[1]["span_share"] == 1.0  # equal bounds: nothing left open
    fig = B.plot_bounds(bounds, B.member_values(members), ["count_sd"])
    assert "SYNTHETIC" in fig._suptitle.get_text()


def test_bad_bound_arguments_are_input_errors():
    from cst_bayes.core.errors import InputError

    with pytest.raises(InputError):
        B.compute_bounds(None, n_starts=0)
    with pytest.raises(InputError):
        B.compute_bounds(None, only=["no_such_statistic"])


# ------------------------------------------------------------ the shipped ensemble and bounds


@pytest.fixture(scope="module")
def shipped_bounds():
    path = RECONSTRUCTED_DIR / "bounds.csv"
    if not path.exists():
        pytest.fail("no data/reconstructed/bounds.csv (run `cst-bayes reconstruct --span-from`)")
    return B.read_bounds(path), rc.load_ensemble(RECONSTRUCTED_DIR)


def test_every_shipped_member_lies_within_the_shipped_bounds(shipped_bounds):
    """Members meet every target, so no member may be more extreme than a bound."""
    bounds, members = shipped_bounds
    assert set(B.BOUNDS_COLUMNS) <= set(bounds.columns)
    assert len(bounds) == len(B.statistics())
    for k, df in enumerate(members, start=1):
        for r in bounds.itertuples(index=False):
            v = _independent_value(df, r.statistic, r.stratum)
            if math.isinf(v):
                assert math.isinf(r.upper), (k, r.statistic, r.stratum)
                continue
            assert r.lower - 1e-9 <= v <= r.upper + 1e-9, (k, r.statistic, r.stratum, v)


def test_manifest_reports_family_and_span_share(shipped_bounds):
    import json

    bounds, members = shipped_bounds
    man = json.loads((RECONSTRUCTED_DIR / "manifest.json").read_text())
    assert len(members) >= 20 and all("family" in m for m in man["members"])
    span = B.span_table(bounds, members)
    got = pd.DataFrame(man["span"]).set_index(["statistic", "stratum"])["span_share"]
    want = span.set_index(["statistic", "stratum"])["span_share"]
    assert np.allclose(got.loc[want.index].to_numpy(dtype=float), want.to_numpy(), atol=1e-4)
    assert man["span_share_min"] == pytest.approx(round(float(want.min()), 4))


def test_cli_bounds_writes_the_table_and_the_datasets(tmp_path, capsys):
    from cst_bayes.cli import main

    status = main(
        [
            "reconstruct",
            "--bounds",
            "--only",
            "count_share_9|1000+",
            "--starts",
            "1",
            "--steps-scale",
            "0.02",
            "--jobs",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert status == 0 and "SYNTHETIC" in out
    b = B.read_bounds(tmp_path)
    assert list(b["statistic"]) == ["count_share_9"]
    assert (tmp_path / "extreme-count_share_9-1000+-max.csv").exists()
    assert main(["reconstruct", "--bounds", "--starts", "0", "--out", str(tmp_path)]) == 2


@pytest.mark.slow
def test_full_length_search_is_at_least_as_wide_as_the_generated_members(tmp_path):
    """Long configuration: two full starts on the state stratum's count SD."""
    import json

    man = json.loads((RECONSTRUCTED_DIR / "manifest.json").read_text())
    members = rc.load_ensemble(RECONSTRUCTED_DIR)[: man["n_generated"]]
    bounds, _ = B.compute_bounds(
        tmp_path, starts=members, n_starts=2, jobs=1, only=["count_sd|state"]
    )
    r = bounds.iloc[0]
    assert r["converged"]
    starts_sd = [_independent_value(members[i], "count_sd", "state") for i in (0, 1)]
    assert r["lower"] <= min(starts_sd) and r["upper"] >= max(starts_sd)
    assert r["upper"] - r["lower"] > 0.3  # the search moves well beyond its two starts
