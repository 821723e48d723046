"""Table-level posterior predictive checks (cst_bayes.checks.ppc).

References are independent of the code under test: the package's frequentist functions
(scipy/statsmodels) on the same fixed replicates, scipy's chi2_contingency, statsmodels'
GLM, closed-form p-values, and the beta-binomial posterior predictive of a conjugate model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cst_bayes import frequentist as fq
from cst_bayes.checks import ppc, tablestats
from cst_bayes.checks.ppcplot import plot_ppc_tables
from cst_bayes.core.config import APPROACHES, COUNT, OUTCOME, STRATA
from cst_bayes.core.disclosure import suppress_ppc_counts
from cst_bayes.core.errors import InputError


def truth_replicates(df: pd.DataFrame, truth, n: int, seed: int) -> np.ndarray:
    """any_cst replicates drawn from the simulator's true logistic model (no posterior)."""
    eta = np.array([truth.alpha[s] for s in df["stratum"].astype(str)])
    eta = eta + df[list(APPROACHES)].to_numpy(float) @ np.array([truth.beta[a] for a in APPROACHES])
    p = 1 / (1 + np.exp(-eta))
    return (np.random.default_rng(seed).random((n, len(df))) < p).astype(np.int8)


def count_replicates(df: pd.DataFrame, n: int, seed: int) -> np.ndarray:
    """Approach-count replicates: binomial(9, stratum share) draws."""
    rng = np.random.default_rng(seed)
    s = df["stratum"].astype(str).to_numpy()
    p = np.array([df.loc[s == k, COUNT].mean() / 9 for k in s])
    return rng.binomial(9, p, size=(n, len(df))).astype(np.int8)


# --------------------------------------------------------------------- same numbers as frequentist
def test_batched_statistics_equal_frequentist_code_on_fixed_replicates(sim):
    df, truth = sim
    y_rep = truth_replicates(df, truth, 6, seed=11)
    tables = ("table1", "fig1", "table3")
    batched = ppc.batched_statistics(df, y_rep, tables=tables)
    keys = ppc.statistic_keys(df, tables)
    t3 = np.array([k.table == "table3" for k in keys])
    for r in range(len(y_rep)):
        rep = df.copy()
        rep[OUTCOME] = y_rep[r]
        ref = ppc.frequentist_statistics(rep, tables=tables)
        assert not np.isnan(ref).any()
        # counts, percentages and chi-squares: same arithmetic, so equal to rounding error
        np.testing.assert_allclose(batched[r, ~t3], ref[~t3], rtol=1e-12, atol=1e-10)
        # GLM refits: both are converged MLEs (Newton tolerance 1e-10 vs statsmodels' 1e-8)
        np.testing.assert_allclose(batched[r, t3], ref[t3], rtol=1e-6)


def test_count_statistics_equal_frequentist_anova_and_crosstab(sim_df):
    y_rep = count_replicates(sim_df, 4, seed=3)
    batched = ppc.batched_statistics(sim_df, y_rep, tables=("count",))
    keys = ppc.statistic_keys(sim_df, ("count",))
    for r in range(len(y_rep)):
        rep = sim_df.copy()
        rep[COUNT] = y_rep[r]
        ref = ppc.frequentist_statistics(rep, tables=("count",))
        np.testing.assert_allclose(batched[r], ref, rtol=1e-10)
        # an independent tally of the distribution: pandas crosstab
        ct = pd.crosstab(rep["stratum"].astype(str), rep[COUNT]).reindex(
            columns=range(10), fill_value=0
        )
        for k, v in zip(keys, batched[r]):
            if k.statistic.startswith("n_count="):
                assert v == ct.loc[k.stratum_or_term, int(k.statistic.split("=")[1])]
        f = stats.f_oneway(*[y_rep[r][rep["stratum"].astype(str).to_numpy() == s] for s in STRATA])
        assert batched[r, -1] == pytest.approx(f.statistic, rel=1e-10)


@pytest.mark.parametrize("link", ["logit", "log"])
def test_batched_glm_matches_statsmodels_glm(sim, link):
    import statsmodels.api as sm

    df, truth = sim
    y_rep = truth_replicates(df, truth, 3, seed=5)
    for (analysis, adj), (X, _) in ppc.table3_designs(df).items():
        beta = ppc.batched_glm(X, y_rep, link=link)
        fam = sm.families.Binomial() if link == "logit" else sm.families.Poisson()
        for r in range(3):
            ref = sm.GLM(y_rep[r], X, family=fam).fit(tol=1e-12).params
            np.testing.assert_allclose(
                beta[r], ref, rtol=1e-7, atol=1e-9, err_msg=f"{analysis}/{adj}"
            )


def test_batched_glm_returns_nan_without_finite_mle(sim_df):
    X, _ = ppc.table3_designs(sim_df)[("1", "yes")]
    y = np.zeros(len(sim_df))
    y[sim_df["stratum"].astype(str).to_numpy() == "1000+"] = 1  # a stratum all cases: separation
    y[:40] = 1
    beta = ppc.batched_glm(X, np.vstack([y, 1 - y]), link="logit")
    assert np.isnan(beta).all()


def test_yates_chi2_matches_scipy():
    rng = np.random.default_rng(0)
    tabs = rng.integers(1, 60, size=(50, 2, 2))
    for yates in (False, True):
        got = tablestats._pearson_chi2(tabs, yates=yates)
        ref = [stats.chi2_contingency(t, correction=yates).statistic for t in tabs]
        np.testing.assert_allclose(got, ref, rtol=1e-12)


# --------------------------------------------------------------------- ppp
def test_ppp_known_values():
    t_rep = np.arange(100, dtype=float)[:, None].repeat(3, axis=1)  # 0..99
    t_obs = np.array([89.5, 9.5, 49.5])
    # upper tails 10/100, 90/100, 50/100
    np.testing.assert_allclose(ppc.ppp_values(t_rep, t_obs, "upper"), [0.10, 0.90, 0.50])
    np.testing.assert_allclose(ppc.ppp_values(t_rep, t_obs, "two"), [0.20, 0.20, 1.00])
    # ties count on both sides; a value beyond every replicate gives 0
    assert ppc.ppp_values(np.zeros((10, 1)), np.zeros(1))[0] == 1.0
    assert ppc.ppp_values(t_rep[:, :1], np.array([1e6]))[0] == 0.0
    # NaN replicates are left out; an undefined observed value gives NaN
    t = np.array([[1.0], [np.nan], [3.0], [np.nan]])
    assert ppc.ppp_values(t, np.array([2.0]), "upper")[0] == 0.5
    assert np.isnan(ppc.ppp_values(t, np.array([np.nan]))[0])
    with pytest.raises(InputError):
        ppc.ppp_values(t, np.array([2.0]), "left")


def test_ppp_matches_beta_binomial_closed_form():
    # y ~ Binomial(n, theta), theta ~ Beta(1, 1): the posterior predictive of y_rep is
    # beta-binomial(n, 1 + y, 1 + n - y), so the exact two-sided ppp of T = y is known.
    n, rng = 40, np.random.default_rng(1)
    for y in (2, 11, 20, 35):
        theta = rng.beta(1 + y, 1 + n - y, size=40_000)
        y_rep = rng.binomial(n, theta).astype(float)[:, None]
        got = ppc.ppp_values(y_rep, np.array([float(y)]), "two")[0]
        bb = stats.betabinom(n, 1 + y, 1 + n - y)
        exact = min(1.0, 2 * min(bb.sf(y - 1), bb.cdf(y)))
        assert got == pytest.approx(exact, abs=0.015)


def test_ppp_uniform_when_data_come_from_the_replicating_model(sim):
    # Data and replicates from the same known model: the ppp of a statistic is (nearly,
    # for discrete statistics) uniform over replications. A broken tail count, a swapped
    # inequality or a mis-aligned statistic would pile the p-values up at 0 or 1.
    df, truth = sim
    n_sims, n_rep = 150, 200
    ys = truth_replicates(df, truth, n_sims, seed=101)
    reps = truth_replicates(df, truth, n_rep, seed=202)
    t_rep = ppc.batched_statistics(df, reps, tables=("table1", "fig1"))
    t_obs = ppc.batched_statistics(df, ys, tables=("table1", "fig1"))
    keys = ppc.statistic_keys(df, ("table1", "fig1"))
    chi2_cols = [i for i, k in enumerate(keys) if k.statistic == "chi2"]
    p = np.array([ppc.ppp_values(t_rep, t_obs[i], "upper")[chi2_cols] for i in range(n_sims)])
    for j in range(p.shape[1]):
        assert stats.kstest(p[:, j], "uniform").pvalue > 1e-3, keys[chi2_cols[j]]
    pooled = p.ravel()
    assert abs(pooled.mean() - 0.5) < 0.05
    assert 0.02 < (pooled < 0.05).mean() < 0.09
    # The checks outside the published tables: counts and rates are discrete and ties count
    # on both sides, so their two-sided ppp are conservative (never too many small values)
    # but not far from uniform.
    from cst_bayes.checks import outside

    tabs = ("approach_by_case", "rate_by_count")
    t_rep = outside.outside_statistics(df, reps, tables=tabs)
    t_obs = outside.outside_statistics(df, ys, tables=tabs)
    p = np.array([ppc.ppp_values(t_rep, t_obs[i], "two") for i in range(n_sims)])
    informative = np.median(t_rep, axis=0) >= 3  # cells with a few expected cases
    pooled = p[:, informative].ravel()
    pooled = pooled[~np.isnan(pooled)]
    assert (pooled < 0.05).mean() < 0.06
    assert (pooled < 0.2).mean() > 0.12
    assert 0.45 < pooled.mean() < 0.65


# --------------------------------------------------------------------- the table
def test_ppc_from_replicates_table(sim):
    df, truth = sim
    out = ppc.ppc_from_replicates(df, truth_replicates(df, truth, 60, seed=9))
    assert list(out.columns[:9]) == list(ppc.PPC_COLUMNS)
    assert set(out["table"]) == {"table1", "fig1", "table3", "approach_by_case", "rate_by_count"}
    # observed = the frequentist code on the data
    t1 = fq.table1(df)
    n_all = t1[(t1["variable"] == OUTCOME) & (t1["stratum"] == "all")]["n_yes"].iloc[0]
    row = out[
        (out["table"] == "table1")
        & (out["statistic"] == "n_yes")
        & (out["stratum_or_term"] == "all")
    ]
    assert row["observed"].iloc[0] == n_all
    assert row["published"].iloc[0] == 218
    court = out[
        (out["statistic"] == "analysis1_unadjusted_OR") & (out["stratum_or_term"] == "court")
    ]
    assert court["published"].iloc[0] == 0.8
    assert (out["rep_low"] <= out["rep_median"]).all() and (
        out["rep_median"] <= out["rep_high"]
    ).all(), "undefined statistics are left out"
    assert out["ppp"].between(0, 1).all()
    flagged = (out["observed"] < out["rep_low"]) | (out["observed"] > out["rep_high"])
    assert (out["flag"] == flagged).all()
    # the replicates come from the truth that generated the data: few statistics flagged
    assert out["flag"].mean() < 0.2


def test_ppc_flags_a_misfitting_model(sim):
    df, _truth = sim
    # replicates with no stratum effect: the outcome-by-stratum chi-square must be flagged
    p = df[OUTCOME].mean()
    y_rep = (np.random.default_rng(0).random((200, len(df))) < p).astype(np.int8)
    out = ppc.ppc_from_replicates(df, y_rep, tables=["table1"])
    chi = out[out["statistic"] == "chi2"].iloc[0]
    assert chi["flag"] and chi["ppp"] < 0.01
    big = out[out["stratum_or_term"] == "1000+"].iloc[0]
    assert big["flag"]


def test_ppc_count_model_tables(sim_df):
    out = ppc.ppc_from_replicates(sim_df, count_replicates(sim_df, 50, 1), outcome=COUNT)
    assert set(out["table"]) == {"count"}
    assert len(out) == 4 * 10 + 4 + 4 + 1
    an = fq.anova(sim_df)
    f = out[out["statistic"] == "anova_F"]["observed"].iloc[0]
    assert f == pytest.approx(an["F"].iloc[0])


def test_bad_arguments(sim_df):
    y = np.zeros((3, len(sim_df)), dtype=np.int8)
    with pytest.raises(InputError):
        ppc.ppc_from_replicates(sim_df, y, tables=["table2"])
    with pytest.raises(InputError):
        ppc.ppc_from_replicates(sim_df, y, outcome=COUNT, tables=["table3"])
    with pytest.raises(InputError):
        ppc.ppc_from_replicates(sim_df, y[:, :10])
    with pytest.raises(InputError):
        ppc.ppc_from_replicates(sim_df, y - 1)
    with pytest.raises(InputError):
        ppc.ppc_from_replicates(sim_df, y + 0.5)


def test_suppress_small_cells_hides_small_counts_and_complements(sim, sim_df):
    out = ppc.ppc_from_replicates(sim_df, count_replicates(sim_df, 20, 2), outcome=COUNT)
    sizes = {**sim_df["stratum"].astype(str).value_counts().to_dict(), "all": len(sim_df)}
    sup = suppress_ppc_counts(out, n_by_stratum=sizes)
    counts = out["statistic"].str.startswith("n_count=")
    n = out["stratum_or_term"].map(sizes)
    small = counts & ((out["observed"] < 5) | (n - out["observed"] < 5))
    assert small.any()
    for col in ("observed", "observed_min", "observed_max"):
        assert (sup.loc[small, col] == "<5").all()
        assert (sup.loc[~small, col] == out.loc[~small, col]).all()
    # Figure 1 shares imply counts: a share of the 34 largest agencies... here of the case
    # agencies; make one share imply 3 agencies with a case and check it is blanked
    df, truth = sim
    t = ppc.ppc_from_replicates(
        df, truth_replicates(df, truth, 20, seed=1), tables=["table1", "fig1"]
    )
    n_case = t.loc[(t["statistic"] == "n_yes") & (t["stratum_or_term"] == "all"), "observed"].item()
    row = (t["statistic"] == "pct_case") & (t["stratum_or_term"] == "court")
    t.loc[row, "observed"] = 100 * 3 / n_case
    s = suppress_ppc_counts(t, n_by_stratum={"all": len(df)})
    assert pd.isna(s.loc[row, "observed"].item())
    assert (
        s.loc[(t["statistic"] == "pct_case") & (t["stratum_or_term"] == "mdt"), "observed"]
        .notna()
        .all()
    )


def test_plot_has_one_panel_per_table_and_says_synthetic(sim):
    import matplotlib.pyplot as plt

    df, truth = sim
    out = ppc.ppc_from_replicates(df, truth_replicates(df, truth, 30, seed=4))
    fig = plot_ppc_tables(out, title="m", synthetic=True)
    assert len(fig.axes) == 5
    assert "SYNTHETIC" in fig._suptitle.get_text()
    plt.close(fig)


# --------------------------------------------------------------------- real fits (slow)
@pytest.fixture(scope="module")
def small_fit(sim_df, tmp_path_factory):
    """logit_count_strata fitted on the simulated data, written as a fit file and a CSV."""
    from cst_bayes.bayes import models
    from cst_bayes.core.fileio import write_microdata

    d = tmp_path_factory.mktemp("ppcfit")
    f = models.fit(
        "logit_count_strata",
        sim_df,
        draws=150,
        tune=150,
        chains=2,
        seed=4,
        sampler="nutpie-c",
        progress=False,
    )
    nc, _ = models.write_fit(f, d)
    csv = write_microdata(d / "data.csv", sim_df.drop(columns=[COUNT]), synthetic=True)
    return f, nc, csv


@pytest.mark.slow
def test_ppc_tables_on_a_real_fit_is_deterministic(small_fit, sim_df):
    f, _, _ = small_fit
    a = ppc.ppc_tables(f, sim_df, n_draws=60, seed=1)
    b = ppc.ppc_tables(f, sim_df, n_draws=60, seed=1)
    c = ppc.ppc_tables(f, sim_df, n_draws=60, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not a["rep_median"].equals(c["rep_median"])
    assert set(a["table"]) == {
        "table1",
        "fig1",
        "table3",
        "approach_by_case",
        "rate_by_count",
        "calibration",
        "loo_pit",
    }
    assert (a["n_rep"] <= 60).all()
    # the model has stratum intercepts: the outcome-by-stratum counts are reproduced
    t1 = a[(a["table"] == "table1") & (a["statistic"] == "n_yes")]
    assert not t1["flag"].any()


@pytest.mark.slow
def test_ppc_cli_writes_table_and_figure(small_fit, tmp_path):
    from cst_bayes.cli import main

    _, nc, csv = small_fit
    out = tmp_path / "out"
    assert (
        main(
            ["ppc", str(nc), "--data", str(csv), "--out", str(out), "--draws", "40", "--seed", "3"]
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["ppc.csv", "ppc.meta.json", "ppc.png"]
    text = (out / "ppc.csv").read_text()
    assert pd.read_csv(out / "ppc.csv")["data_status"].eq("SYNTHETIC").all()
    table = pd.read_csv(out / "ppc.csv", comment="#")
    assert list(table.columns[:9]) == list(ppc.PPC_COLUMNS)
    first = text
    assert (
        main(
            ["ppc", str(nc), "--data", str(csv), "--out", str(out), "--draws", "40", "--seed", "3"]
        )
        == 0
    )
    assert (out / "ppc.csv").read_text() == first  # same seed, same bytes
    # a pooled fit needs the ensemble folder; a missing file is a clean error; nothing written
    bad = tmp_path / "bad"
    assert main(["ppc", str(nc), "--data", str(tmp_path / "none.csv"), "--out", str(bad)]) == 2
    assert main(["ppc", str(tmp_path / "none.nc"), "--data", str(csv), "--out", str(bad)]) == 2
    assert not bad.exists()


def test_restricted_ppc_hides_cells_of_the_checks_beyond_the_tables(sim, sim_df):
    """The within-stratum 2 x 2 cells and count rates are cells of small groups: observed
    values go, replicated quantiles (the model's) stay."""
    from cst_bayes.core.disclosure import PPC_CELL_TABLES, protect_ppc, small_cells

    df, truth = sim
    t = ppc.ppc_from_replicates(df, truth_replicates(df, truth, 20, seed=3))
    cells = t["table"].isin(PPC_CELL_TABLES)
    assert cells.any() and pd.to_numeric(t.loc[cells, "observed"]).notna().all()
    out = protect_ppc(t, small_cells(df))
    assert out.loc[cells, "observed"].isna().all()
    # replicated quantiles stay where no small cell is behind the row (a replicate of a small
    # cell would sit near it, so those go with the row)
    kept = pd.to_numeric(out.loc[cells, "rep_median"]).notna()
    assert 0 < kept.sum() < cells.sum()
    # and a published-table count that is small is still marked, not printed
    small = (t["statistic"] == "n_yes") & (pd.to_numeric(t["observed"], errors="coerce") < 5)
    assert (out.loc[small, "observed"] == "<5").all()
