"""The audit of the published numbers.

Independent references: the printed p-values of Table 1 (typed in here from the article),
scipy and statsmodels called directly, brute-force enumeration of small binary tables,
and Wald fits on simulated data with known p-values.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cst_bayes import audit as A
from cst_bayes.cli import main
from cst_bayes.core.config import APPROACHES, PUBLISHED_DIR, STRATA
from cst_bayes.data import published as P

#: Table 1's chi-square p-values as printed in the article.
PRINTED_P = {
    "court": "<0.001",
    "prosecutor": "<0.001",
    "training": "<0.001",
    "victim_service": "<0.001",
    "offense_code": "0.95",
    "child_welfare": "0.01",
    "task_force": "<0.001",
    "advocates": "0.02",
    "mdt": "<0.001",
    "any_cst": "<0.001",
}


@pytest.fixture(scope="module")
def checks():
    return A.run_audit()


def _check(checks, id_):
    row = checks[checks["id"] == id_]
    assert len(row) == 1, id_
    return row.iloc[0]


def _counts_by_stratum():
    """Table 1's 2x4 tables straight from the CSV (csv module, not the loader)."""
    out: dict[str, dict[str, tuple[int, int]]] = {}
    with open(PUBLISHED_DIR / P.FILES["table1"], newline="") as fh:
        for r in csv.DictReader(fh):
            if r["stratum"] != "all":
                out.setdefault(r["variable"], {})[r["stratum"]] = (
                    int(r["n_yes"]),
                    int(r["n_stratum"]),
                )
    return out


def _printed(p: float, like: str) -> str:
    if like.startswith("<"):
        return "<0.001" if p < 0.001 else f"{p:.3f}"
    d = len(like.split(".")[1])
    return f"{p:.{d}f}"


def test_all_ten_table1_p_values_reproduce_at_printed_precision(checks):
    counts = _counts_by_stratum()
    assert set(counts) == set(PRINTED_P)
    for var, printed in PRINTED_P.items():
        yes = np.array([counts[var][s][0] for s in STRATA])
        n = np.array([counts[var][s][1] for s in STRATA])
        # Pearson chi-square of the 2x4 table, by hand from expected counts (not chi2_contingency).
        obs = np.vstack([yes, n - yes]).astype(float)
        exp = obs.sum(1, keepdims=True) * obs.sum(0, keepdims=True) / obs.sum()
        p = stats.chi2.sf(((obs - exp) ** 2 / exp).sum(), df=3)
        assert _printed(p, printed) == printed, var
        assert _check(checks, f"t1.chisq.{var}")["status"] == "pass", var
    assert (checks["id"].str.startswith("t1.chisq.")).sum() == 10


def test_a_misprinted_table1_p_value_fails(tmp_path):
    d = tmp_path / "pub"
    shutil.copytree(PUBLISHED_DIR, d)
    path = d / P.FILES["table1"]
    text = path.read_text()
    text = "\n".join(
        line.replace(",0.95", ",0.50") if line.startswith("offense_code") else line
        for line in text.splitlines()
    )
    path.write_text(text + "\n")
    c = A.run_audit(d)
    assert _check(c, "t1.chisq.offense_code")["status"] == "fail"
    assert _check(c, "t1.chisq.court")["status"] == "pass"


def test_output_shape_and_statuses(checks):
    assert list(checks.columns) == A.AUDIT_COLUMNS
    assert checks["id"].is_unique
    assert set(checks["status"]) <= set(A.STATUSES)
    assert A.summary(checks) == {s: int((checks["status"] == s).sum()) for s in A.STATUSES}
    assert A.summary(checks)["fail"] == 0
    tables = set(checks["table"])
    assert {"table1", "table2", "table3", "anova", "figure1", "text", "sampling_frames"} <= tables


def test_truncated_percentages_are_flagged_exactly(checks):
    # By hand: 11/34 = 32.35% (printed 32.3), 911/1306 = 69.75% (69.7), 924/1306 = 70.75% (70.7):
    # all three are truncated; every other printed percentage is correctly rounded.
    flagged = set(
        checks.loc[checks["id"].str.startswith("t1.pct.") & (checks["status"] == "flag"), "id"]
    )
    assert flagged == {"t1.pct.court.1000+", "t1.pct.training.all", "t1.pct.child_welfare.all"}
    assert _check(checks, "t1.grim.court.1000+")["status"] == "flag"  # 32.3% of 34 needs truncation


@pytest.mark.parametrize(
    "pct, n, by_round",
    [(32.3, 34, []), (32.4, 34, [11]), (50.0, 34, [17]), (97.5, 1306, [1273, 1274])],
)
def test_grim_feasible_counts(pct, n, by_round):
    got, _ = A._feasible_counts(pct, n, 1)
    assert got == by_round


def test_table3_only_the_adjusted_offense_code_p_disagrees_with_its_ci(checks):
    rows = checks[checks["id"].str.startswith("t3.p_vs_ci.")]
    assert len(rows) == 26
    assert set(rows.loc[rows["status"] == "flag", "id"]) == {"t3.p_vs_ci.1.offense_code.yes"}


def test_wald_p_range_brackets_true_p_of_rounded_fits():
    """Fit logistic regressions on simulated data; round OR/CI to 1 decimal; the true p is in range."""
    import statsmodels.api as sm

    rng = np.random.default_rng(7)
    for beta in (0.0, 0.15, 0.3, 0.6, -0.4):
        x = rng.integers(0, 2, size=1500)
        y = (rng.random(1500) < 1 / (1 + np.exp(-(-1 + beta * x)))).astype(int)
        fit = sm.Logit(y, sm.add_constant(x.astype(float))).fit(disp=0)
        b, se, p = fit.params[1], fit.bse[1], fit.pvalues[1]
        lo, hi = np.exp(b - 1.959964 * se), np.exp(b + 1.959964 * se)
        p_min, p_max, sym = A.wald_p_range(round(math.exp(b), 1), round(lo, 1), round(hi, 1), 1)
        assert sym
        assert p_min <= p <= p_max, (beta, p, p_min, p_max)


def test_wald_p_range_collapses_with_many_decimals():
    est, se = 0.5, 0.2
    lo, hi = math.exp(est - 1.959964 * se), math.exp(est + 1.959964 * se)
    p_true = 2 * stats.norm.sf(est / se)
    p_min, p_max, sym = A.wald_p_range(round(math.exp(est), 6), round(lo, 6), round(hi, 6), 6)
    assert (
        sym
        and p_min == pytest.approx(p_true, rel=1e-3)
        and p_max == pytest.approx(p_true, rel=1e-3)
    )


def test_wald_p_range_detects_asymmetric_ci():
    # OR 3.0 cannot be the log-midpoint of [1.0, 2.0] at any rounding.
    assert A.wald_p_range(3.0, 1.0, 2.0, 1)[2] is False


def test_poisson_or_logistic_scale(checks):
    import statsmodels.api as sm

    # Crude 2x2 of 1000+ vs 1-49 on any_cst from Table 1: 29/34 vs 55/872 (statsmodels directly).
    t = sm.stats.Table2x2(np.array([[29, 5], [55, 817]]))
    assert t.oddsratio == pytest.approx(86.16, abs=0.01)
    assert t.riskratio == pytest.approx(13.52, abs=0.01)
    for analysis in (1, 2):
        row = _check(checks, f"t3.scale.{analysis}.stratum[1000+]")
        assert row["status"] == "flag"
        assert (
            f"crude OR {t.oddsratio:.2f}" in row["observed"]
            and f"crude RR {t.riskratio:.2f}" in row["observed"]
        )


@pytest.mark.parametrize("p1, p2", [(0.2, 0.2), (0.2, 0.8), (0.1, 0.6), (0.7, 0.9), (0.5, 0.5)])
def test_frechet_phi_bounds_against_brute_force(p1, p2):
    p11 = np.linspace(max(0, p1 + p2 - 1), min(p1, p2), 2001)
    phi = (p11 - p1 * p2) / math.sqrt(p1 * (1 - p1) * p2 * (1 - p2))
    lo, hi = A.frechet_phi_bounds(p1, p2)
    assert lo == pytest.approx(phi.min()) and hi == pytest.approx(phi.max())
    if p1 == p2:
        assert hi == pytest.approx(1.0)
    if p1 + p2 == 1:
        assert lo == pytest.approx(-1.0)


def test_table2_positive_definite_and_within_bounds(checks):
    eig = np.linalg.eigvalsh(P.phi_matrix(P.load_table2()).to_numpy())
    assert eig.min() > 0
    row = _check(checks, "t2.positive_definite")
    assert row["status"] == "pass" and f"{eig.min():.3f}" in row["observed"]
    fr = checks[checks["id"].str.startswith("t2.frechet.")]
    assert len(fr) == 36 and (fr["status"] == "pass").all()


def test_impossible_correlation_fails_and_wrong_stars_are_flagged(tmp_path):
    d = tmp_path / "pub"
    shutil.copytree(PUBLISHED_DIR, d)
    path = d / P.FILES["table2"]
    text = path.read_text()
    # mdt (9.3%) and advocates (89.7%): phi can be at most ~0.11; 0.90 is impossible.
    text = text.replace("mdt,advocates,0.07,**,yes", "mdt,advocates,0.90,***,yes")
    # r = 0.04 with n = 1306 gives p ~ 0.15: three stars are impossible.
    text = text.replace("offense_code,court,0.04,,yes", "offense_code,court,0.04,***,yes")
    path.write_text(text)
    c = A.run_audit(d)
    assert _check(c, "t2.frechet.mdt.advocates")["status"] == "fail"
    assert _check(c, "t2.stars.mdt.advocates")["status"] == "pass"
    assert _check(c, "t2.stars.offense_code.court")["status"] == "flag"
    assert _check(c, "t2.frechet.offense_code.court")["status"] == "pass"


def _small_table1(col_sums: dict[str, list[int]], n: dict[str, int]) -> pd.DataFrame:
    rows = [
        dict(variable=a, stratum=s, n_yes=col_sums[s][j], n_stratum=n[s])
        for s in STRATA
        for j, a in enumerate(APPROACHES)
    ]
    return pd.DataFrame(rows)


def test_approach_count_bounds_against_enumeration():
    """Exact min/max within-stratum SS by enumerating every binary matrix with given column sums."""
    rng = np.random.default_rng(3)
    n = {"1-49": 3, "50-999": 3, "state": 2, "1000+": 3}
    col_sums = {s: rng.integers(0, n[s] + 1, size=9).tolist() for s in STRATA}
    b = A.approach_count_bounds(_small_table1(col_sums, n))
    for s in STRATA:
        choices = [list(itertools.combinations(range(n[s]), c)) for c in col_sums[s]]
        ss = set()
        for combo in itertools.product(*choices):
            counts = np.zeros(n[s])
            for rows in combo:
                counts[list(rows)] += 1
            ss.add(round(float(((counts - counts.mean()) ** 2).sum()), 9))
        assert b.loc[s, "ss_min"] == pytest.approx(min(ss)), s
        assert b.loc[s, "ss_max"] == pytest.approx(max(ss)), s
        assert b.loc[s, "mean"] == pytest.approx(sum(col_sums[s]) / n[s])


def test_bounds_and_implied_variance_on_simulated_data(sim_df):
    """On data with known rows: the true SSW lies in the bounds; the phi formula gives the true variance."""
    from cst_bayes.core.config import COUNT

    rows = []
    for s, g in sim_df.groupby("stratum", observed=True):
        for a in APPROACHES:
            rows.append(dict(variable=a, stratum=str(s), n_yes=int(g[a].sum()), n_stratum=len(g)))
    b = A.approach_count_bounds(pd.DataFrame(rows))
    groups = [g[COUNT].to_numpy(float) for _, g in sim_df.groupby("stratum", observed=True)]
    for s, g in sim_df.groupby("stratum", observed=True):
        ssw = float(((g[COUNT] - g[COUNT].mean()) ** 2).sum())
        assert b.loc[str(s), "ss_min"] <= ssw <= b.loc[str(s), "ss_max"]
    # F from scipy lies inside the attainable F range implied by the bounds.
    f_obs = stats.f_oneway(*groups).statistic
    n_tot = len(sim_df)
    grand = sim_df[COUNT].mean()
    ssb = float((b["n"] * (b["mean"] - grand) ** 2).sum())
    assert (
        (ssb / 3) / (b["ss_max"].sum() / (n_tot - 4))
        <= f_obs
        <= (ssb / 3) / (b["ss_min"].sum() / (n_tot - 4))
    )
    x = sim_df[list(APPROACHES)].to_numpy(float)
    p = x.mean(0)
    phi = np.corrcoef(x, rowvar=False)
    assert A.implied_count_variance(p, phi) == pytest.approx(np.var(sim_df[COUNT].to_numpy(float)))


def test_anova_and_text_checks(checks):
    assert _check(checks, "anova.attainable")["status"] == "pass"
    assert _check(checks, "anova.implied_by_table2")["status"] == "pass"
    for id_ in (
        "text.sampled_alt",
        "text.r30",
        "text.offense_code_adjusted",
        "text.training_unadjusted",
    ):
        assert _check(checks, id_)["status"] == "flag", id_
    for id_ in (
        "text.sampled",
        "text.eligible",
        "text.ineligible",
        "text.response_rate",
        "text.any_approach",
        "fig1.n",
        "fig1.offense_code.total",
        "fig1.offense_code.chisq",
    ):
        assert _check(checks, id_)["status"] == "pass", id_
    # 54.7% of 1,088 = 595 and 49.5% of 218 = 108: 595 + 108 = 703, Table 1's offense-code total.
    assert "[703]" in _check(checks, "fig1.offense_code.total")["observed"]
    p = stats.chi2_contingency(
        np.array([[595, 1088 - 595], [108, 218 - 108]]), correction=False
    ).pvalue
    assert f"{p:.3g}" in _check(checks, "fig1.offense_code.chisq")["observed"]


def test_cli_table_json_and_out(tmp_path, capsys):
    assert main(["audit"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[-1].endswith("fail") and "checks:" in lines[-1]
    assert any(
        line.startswith("FLAG") and "t3.p_vs_ci.1.offense_code.yes" in line for line in lines
    )
    assert main(["audit", "--json", "--out", str(tmp_path / "a.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    written = json.loads((tmp_path / "a.json").read_text())
    assert printed == written
    assert set(printed[0]) == {"id", "table", "description", "status", "expected", "observed"}
    # The CSV writer behind --out FILE.csv, without a third audit run.
    A.write_audit(pd.DataFrame(printed), tmp_path / "a.csv")
    back = pd.read_csv(tmp_path / "a.csv", dtype=str, keep_default_na=False)
    assert list(back.columns) == [*A.AUDIT_COLUMNS, "data_status"] and len(back) == len(printed)
    assert not list(tmp_path.glob(".*.tmp"))


def test_exact_tests_seeded_and_agree_with_a_permutation_test(checks):
    # Only the tables with an expected count below 5 get a Monte Carlo exact test.
    exact = checks[checks["id"].str.startswith("t1.exact.")]
    assert set(exact["id"]) == {
        "t1.exact.court",
        "t1.exact.advocates",
        "t1.exact.mdt",
        "t1.exact.any_cst",
    }
    assert (exact["status"] == "pass").all()
    t1 = P.load_table1()

    def exact_only(seed):
        c = A._Checks()
        A._table1_exact(t1, c, seed=seed)
        return c.frame()

    pd.testing.assert_frame_equal(exact_only(20240101), exact.reset_index(drop=True))
    assert (exact_only(5)["observed"].to_numpy() != exact["observed"].to_numpy()).any()
    # Independent reference: permute the stratum labels of 1,306 agencies (advocates).
    counts = _counts_by_stratum()["advocates"]
    strata = np.repeat(np.arange(4), [counts[s][1] for s in STRATA])
    yes = np.concatenate(
        [np.r_[np.ones(counts[s][0]), np.zeros(counts[s][1] - counts[s][0])] for s in STRATA]
    )
    n_s = np.bincount(strata)

    def stat(y):
        ys = np.bincount(strata, weights=y)
        obs = np.vstack([ys, n_s - ys])
        e = obs.sum(1, keepdims=True) * obs.sum(0, keepdims=True) / obs.sum()
        return ((obs - e) ** 2 / e).sum()

    rng = np.random.default_rng(99)
    s0 = stat(yes)
    perm = np.array([stat(rng.permutation(yes)) for _ in range(3000)])
    p_perm = (1 + (perm >= s0 - 1e-9).sum()) / 3001
    obs_txt = _check(checks, "t1.exact.advocates")["observed"]
    p_audit = float(obs_txt.split("p = ")[1].split(" ")[0])
    assert abs(p_audit - p_perm) < 0.012  # ~4 combined Monte Carlo SEs at p ~ 0.02
