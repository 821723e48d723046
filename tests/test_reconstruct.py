"""Tests of the reconstruction ensemble (issue 3).

The acceptance test recomputes every published number from each shipped member with the
package's frequentist code (statsmodels/scipy), never from the manifest. Windows and
moves are checked against scipy and plain numpy counts.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cst_bayes import frequentist as fq
from cst_bayes import reconstruct as rc
from cst_bayes.core.config import (
    APPROACHES,
    OUTCOME,
    PUBLISHED_DIR,
    RECONSTRUCTED_DIR,
    STRATA,
    STRATUM,
)
from cst_bayes.core.errors import InputError
from cst_bayes.core.fileio import sha256_file

COLS = [*APPROACHES, OUTCOME]


def _published(name: str) -> pd.DataFrame:
    return pd.read_csv(PUBLISHED_DIR / name, dtype=str, keep_default_na=False)


def _table1_counts() -> np.ndarray:
    """(4, 10) counts straight from the published CSV (independent of reconstruct.Targets)."""
    t1 = _published("table1_approaches_by_stratum.csv")
    out = np.zeros((len(STRATA), len(COLS)), dtype=int)
    for r in t1.itertuples(index=False):
        if r.stratum != "all":
            out[STRATA.index(r.stratum), COLS.index(r.variable)] = int(r.n_yes)
    return out


def _counts(V: np.ndarray, strat: np.ndarray) -> np.ndarray:
    return np.vstack([V[strat == s].sum(axis=0) for s in range(len(STRATA))])


# ----------------------------------------------------------------------------- windows


def test_table2_windows_agree_with_scipy_pearsonr():
    """Each n11 window's ends reproduce the printed r and stars; one step outside does not."""
    from scipy.stats import pearsonr

    tg = rc.load_targets()
    tot = _table1_counts().sum(axis=0)
    n = tg.n
    pub = _published("table2_phi_correlations.csv")

    def vectors(a: int, b: int, n11: int) -> tuple[np.ndarray, np.ndarray]:
        x = np.zeros(n)
        y = np.zeros(n)
        x[:a] = 1
        y[:n11] = 1
        y[a : a + b - n11] = 1
        return x, y

    for rec in pub.itertuples(index=False):
        i, j = APPROACHES.index(rec.row), APPROACHES.index(rec.col)
        lo, hi = int(tg.phi_lo[i, j]), int(tg.phi_hi[i, j])
        for n11, inside in ((lo, True), (hi, True), (lo - 1, False), (hi + 1, False)):
            res = pearsonr(*vectors(int(tot[i]), int(tot[j]), n11))
            r_ok = abs(res.statistic - float(rec.r)) < 0.005
            stars = (
                "***"
                if res.pvalue < 0.001
                else "**"
                if res.pvalue < 0.01
                else "*"
                if res.pvalue < 0.05
                else ""
            )
            ok = r_ok and (rec.stars_legible != "yes" or stars == rec.stars)
            if inside:
                assert ok, (rec.row, rec.col, n11)
            elif ok:  # just outside may still round right: then the window is conservative
                assert r_ok


def test_fig1_window_is_the_published_108():
    tg = rc.load_targets()
    j = APPROACHES.index("offense_code")
    assert tg.t_lo[j] == tg.t_hi[j] == 108
    # 108/218 and (703-108)/1088 are the two printed percentages
    assert round(100 * 108 / 218, 1) == 49.5 and round(100 * (703 - 108) / 1088, 1) == 54.7


def test_table3_windows_cover_the_printed_values():
    tg = rc.load_targets()
    assert len(tg.t3) == 26
    for row in tg.t3:
        for printed, (lo, hi) in zip(row["printed"], row["windows"]):
            assert lo < math.log(float(printed)) < hi
        est_lo, est_hi = row["windows"][0]
        assert math.exp(est_lo) == pytest.approx(float(row["printed"][0]) - 0.05, rel=1e-9)
        assert math.exp(est_hi) == pytest.approx(float(row["printed"][0]) + 0.05, rel=1e-9)


# ------------------------------------------------------------------- Table 1 is exact


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), moves=st.integers(1, 60))
def test_table1_exact_for_any_seed_start_and_moves(seed, moves):
    """Property: the start and any sequence of swap moves keep every Table 1 count exact."""
    rng = np.random.default_rng(seed)
    tg = rc.load_targets()
    V = rc.initial_state(rng, rc.draw_dependence(rng), tg)
    strat = np.repeat(np.arange(len(STRATA)), tg.n_by_stratum)
    want = _table1_counts()
    assert np.array_equal(_counts(V, strat), want)
    for _ in range(moves):
        V = rc.swap_move(V, strat, rng)
    assert np.array_equal(_counts(V, strat), want)
    assert set(np.unique(V)) <= {0, 1}


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_table1_exact_after_kernel_annealing(seed):
    """Property: the compiled annealer (short run) keeps Table 1 exact (recomputed by frequentist.table1)."""
    df, fid = rc.reconstruct_one(seed, steps_scale=0.003, max_rounds=1, max_starts=1)
    t1 = fq.table1(df)
    t1 = t1[t1["stratum"] != "all"]
    want = _table1_counts()
    got = np.zeros_like(want)
    for r in t1.itertuples(index=False):
        got[STRATA.index(r.stratum), COLS.index(r.variable)] = r.n_yes
    assert np.array_equal(got, want)
    assert fid[fid["table"] == "table1"]["agrees"].all()


def test_same_seed_same_member_and_different_seeds_differ():
    a, _ = rc.reconstruct_one(7, steps_scale=0.003, max_rounds=1, max_starts=1)
    b, _ = rc.reconstruct_one(7, steps_scale=0.003, max_rounds=1, max_starts=1)
    c, _ = rc.reconstruct_one(8, steps_scale=0.003, max_rounds=1, max_starts=1)
    assert a[COLS].equals(b[COLS])
    assert not a[COLS].equals(c[COLS])


def test_fidelity_detects_a_broken_member(sim_df):
    """The fidelity check can fail: a simulated dataset misses most targets."""
    fid = rc.fidelity(sim_df)
    assert not fid["agrees"].all()
    assert set(fid["table"]) == {"table1", "table2", "fig1", "table3"}


def test_bad_arguments_are_input_errors(tmp_path):
    with pytest.raises(InputError):
        rc.build_ensemble(0, 1, tmp_path, progress=False)
    with pytest.raises(InputError):
        rc.reconstruct_one(1, margin=0.7)
    with pytest.raises(InputError):
        rc.load_ensemble(tmp_path)
    (tmp_path / "reconstruction-001.csv").write_text(
        "stratum," + ",".join(COLS) + "\n1-49" + ",0" * 10 + "\n"
    )
    with pytest.raises(InputError, match="SYNTHETIC"):
        rc.load_ensemble(tmp_path)


def test_cli_rejects_bad_n(tmp_path, capsys):
    from cst_bayes.cli import main

    assert main(["reconstruct", "--n", "0", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "--n" in capsys.readouterr().err


# ------------------------------------------------------------ the shipped ensemble


@pytest.fixture(scope="module")
def shipped():
    if not (RECONSTRUCTED_DIR / "manifest.json").exists():
        pytest.fail("no shipped ensemble in data/reconstructed (run `cst-bayes reconstruct`)")
    members = rc.load_ensemble(RECONSTRUCTED_DIR)
    manifest = json.loads((RECONSTRUCTED_DIR / "manifest.json").read_text())
    return members, manifest


def _ci_ok(printed: str, value: float) -> bool:
    return (
        fq.printed_matches(printed, value)
        or abs(math.log(value) - math.log(float(printed))) <= 0.01
    )


def test_shipped_ensemble_is_labelled_synthetic_and_matches_manifest(shipped):
    members, manifest = shipped
    assert len(members) >= 20 and manifest["n_members"] == len(members)
    assert manifest["synthetic"] is True and "SYNTHETIC" in manifest["banner"]
    for m, df in zip(manifest["members"], members):
        path = RECONSTRUCTED_DIR / m["file"]
        assert path.read_text().startswith("# SYNTHETIC")
        assert sha256_file(path) == m["sha256"]
        assert df.attrs["synthetic"] and not df.attrs["restricted"]
        assert len(df) == 1306


def assert_meets_every_target(df: pd.DataFrame, k: object) -> None:
    """Recompute Tables 1-3 and Figure 1 with cst_bayes.frequentist; every number must agree."""
    t2pub = _published("table2_phi_correlations.csv")
    t3pub = _published("table3_odds_ratios.csv")
    t1pub = _published("table1_approaches_by_stratum.csv")
    # Table 1: every count exact
    t1 = fq.table1(df).set_index(["variable", "stratum"])
    for r in t1pub.itertuples(index=False):
        assert int(t1.loc[(r.variable, r.stratum), "n_yes"]) == int(r.n_yes), (
            k,
            r.variable,
            r.stratum,
        )
    # Table 2: 36 correlations round to the printed value; legible stars hold
    t2 = fq.table2(df).set_index(["row", "col"])
    for r in t2pub.itertuples(index=False):
        got = t2.loc[(r.row, r.col)]
        assert round(float(got["r"]), 2) == pytest.approx(float(r.r)), (k, r.row, r.col)
        if r.stars_legible == "yes":
            assert fq._stars(float(got["p_value"])) == r.stars, (k, r.row, r.col)
    # Figure 1: 108 of 218 agencies with a case had an offense code; the others significant
    f1 = fq.fig1(df).set_index("variable")
    assert (
        int(f1.loc["offense_code", "n_case"]) == 108
        and int(f1.loc["offense_code", "total_case"]) == 218
    )
    for a in APPROACHES:
        sig = f1.loc[a, "p_value"] < 0.05 and f1.loc[a, "pct_case"] > f1.loc[a, "pct_no_case"]
        assert sig == (a != "offense_code"), (k, a)
    # Table 3: 26 logistic ORs round to the printed value; CI bounds within rounding or 1% (log)
    t3 = fq.table3(df, link="logit")
    t3["analysis"] = t3["analysis"].astype(str)
    t3 = t3.set_index(["analysis", "term", "adjusted_for_size"])
    for r in t3pub.itertuples(index=False):
        got = t3.loc[(r.analysis, r.term, r.adjusted_for_size)]
        printed_or = r._3
        assert fq.printed_matches(printed_or, float(got["estimate"])), (
            k,
            r.term,
            r.adjusted_for_size,
        )
        assert _ci_ok(r.ci_low, float(got["ci_low"])), (k, r.term, "ci_low")
        assert _ci_ok(r.ci_high, float(got["ci_high"])), (k, r.term, "ci_high")


def test_every_shipped_member_reproduces_every_published_number(shipped):
    """Acceptance: recompute Tables 1-3 and Figure 1 with cst_bayes.frequentist for each member."""
    members, _ = shipped
    for k, df in enumerate(members, start=1):
        assert_meets_every_target(df, k)


def test_shipped_members_differ_where_the_tables_are_silent(shipped):
    """The ensemble is honest: statistics no target fixes vary across members."""
    members, manifest = shipped
    spread = rc.ensemble_spread(members).set_index(["statistic", "stratum"])
    # Table 1 fixes the mean count per stratum: identical in every member
    for s in STRATA:
        assert spread.loc[("count_mean", s), "sd"] < 1e-12
    # ... but not its SD within a stratum, the count distribution or the three-way patterns.
    # (The pooled SD is nearly pinned by Tables 1-2, see the next test, and the 1-49 stratum
    # holds two thirds of the agencies, so its spread is small but not zero.)
    rng_ = spread["max"] - spread["min"]
    assert rng_[("count_sd", "1-49")] > 0.02 and rng_[("count_sd", "50-999")] > 0.05
    assert rng_[("count_sd", "state")] > 0.2 and rng_[("count_sd", "1000+")] > 0.1
    for s in STRATA:
        assert rng_[("count_share_5", s)] > 0.02
        assert rng_[("all3_court+prosecutor+mdt", s)] > 0.005
    fams = [m["family"] for m in manifest["members"]]
    assert {"copula_strata", "latent_class", "extreme"} <= set(fams)
    # no two members are the same data
    hashes = {pd.util.hash_pandas_object(df[[STRATUM, *COLS]], index=False).sum() for df in members}
    assert len(hashes) == len(members)


def test_pooled_count_sd_lies_in_the_interval_tables_1_and_2_imply(shipped):
    """Closed form: Var(count) = sum_ij r_ij sqrt(v_i v_j), v_i = p_i(1-p_i) * n/(n-1), with
    every r_ij anywhere in its rounding interval; each member's pooled SD must lie inside."""
    members, _ = shipped
    tot = _table1_counts().sum(axis=0)[: len(APPROACHES)]
    n = 1306
    v = tot / n * (1 - tot / n) * n / (n - 1)
    sd = np.sqrt(v)
    pub = _published("table2_phi_correlations.csv")
    base = float(v.sum())
    lo = hi = base
    for r in pub.itertuples(index=False):
        i, j = APPROACHES.index(r.row), APPROACHES.index(r.col)
        lo += 2 * (float(r.r) - 0.005) * sd[i] * sd[j]
        hi += 2 * (float(r.r) + 0.005) * sd[i] * sd[j]
    for df in members:
        got = float(df[list(APPROACHES)].sum(axis=1).std(ddof=1))
        assert math.sqrt(lo) <= got <= math.sqrt(hi)


QUICK = dict(steps_scale=0.003, max_rounds=1, max_starts=1)  # tiny runs: Table 1 exact, rest not


def test_build_ensemble_same_seed_same_files_whatever_jobs(tmp_path):
    a = rc.build_ensemble(2, 11, tmp_path / "a", jobs=1, progress=False, **QUICK)
    b = rc.build_ensemble(2, 11, tmp_path / "b", jobs=2, progress=False, **QUICK)
    assert [m["sha256"] for m in a["members"]] == [m["sha256"] for m in b["members"]]
    assert a["synthetic"] and a["n_members"] == 2 and not a["all_members_agree"]
    for m in a["members"]:
        text = (tmp_path / "a" / m["file"]).read_text()
        assert text.startswith("# SYNTHETIC")
        assert (tmp_path / "a" / m["fidelity_file"]).exists()
    # a smaller rebuild in the same folder leaves no stale member behind
    rc.build_ensemble(1, 11, tmp_path / "a", jobs=1, progress=False, **QUICK)
    assert len(rc.load_ensemble(tmp_path / "a")) == 1


def test_cli_writes_members_manifest_and_prints_the_table(tmp_path, capsys, monkeypatch):
    import functools

    from cst_bayes.cli import main

    monkeypatch.setattr(rc, "build_ensemble", functools.partial(rc.build_ensemble, **QUICK))
    status = main(
        [
            "reconstruct",
            "--n",
            "1",
            "--seed",
            "3",
            "--out",
            str(tmp_path),
            "--jobs",
            "1",
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert status == 1  # a tiny run cannot meet every target, and the CLI says so
    assert "SYNTHETIC" in out and "table3" in out and "WARNING" in out
    man = json.loads((tmp_path / "manifest.json").read_text())
    assert man["synthetic"] is True and man["master_seed"] == 3
    assert (tmp_path / "reconstruction-001.csv").exists()
