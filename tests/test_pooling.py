"""Pooling over the reconstruction ensemble (cst_bayes.bayes.pooling) and LOO comparison (cst_bayes.checks.comparison).

The variance decomposition is checked on members whose posteriors are known exactly
(normal draws with chosen means and SDs: the law of total variance gives the answer);
LOO is checked against exact leave-one-out predictive densities of a conjugate
beta-Bernoulli model; the real-sampler path runs on two small reconstructions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cst_bayes.bayes import pooling
from cst_bayes.core.config import STRATA
from cst_bayes.core.errors import InputError


@dataclass
class FakeFit:
    idata: Any
    summary: pd.DataFrame | None = None
    diagnostics: dict = field(default_factory=dict)


def normal_member(
    means: dict[str, float], sd: float, seed: int, chains: int = 2, draws: int = 1500
) -> FakeFit:
    """A member whose posterior of each approach's log-OR is N(mean, sd) (exactly standardised)."""
    import arviz as az

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((chains, draws, len(means)))
    z = (z - z.mean(axis=(0, 1))) / z.std(axis=(0, 1))  # exact mean 0, SD 1 per term
    beta = np.array(list(means.values())) + sd * z
    alpha = np.arange(len(STRATA)) + 0.01 * rng.standard_normal((chains, draws, len(STRATA)))
    idata = az.from_dict(
        posterior={"beta": beta, "alpha": alpha},
        coords={"approach": list(means), "stratum": list(STRATA)},
        dims={"beta": ["approach"], "alpha": ["stratum"]},
        log_likelihood={"y": rng.normal(-0.5, 0.01, size=(chains, draws, 7))},
    )
    return FakeFit(idata=idata, diagnostics={"no_divergences": True, "rhat_ok": seed != 3})


def test_variance_decomposition_matches_law_of_total_variance():
    mus = [0.1, 0.3, 0.5, 0.7]  # member means of the court log-OR; within SD 0.2
    fits = [normal_member({"court": m, "mdt": 1.0}, 0.2, seed=i) for i, m in enumerate(mus)]
    pooled = pooling.pool_fits("spec", fits)
    b = pooled.between.set_index("term")
    assert b.loc["court", "within_var"] == pytest.approx(0.04, rel=1e-9)
    assert b.loc["court", "between_var"] == pytest.approx(np.var(mus), rel=1e-9)
    assert b.loc["court", "between_frac"] == pytest.approx(np.var(mus) / (0.04 + np.var(mus)))
    assert b.loc["mdt", "between_var"] == pytest.approx(0.0, abs=1e-20)
    # the stacked draws have exactly the total variance
    stacked = pooled.idata.posterior["beta"].sel(approach="court").values.ravel()
    assert np.var(stacked) == pytest.approx(b.loc["court", "total_var"], rel=1e-9)
    # stratum contrasts with the reference: alpha[s] - alpha[1-49] = index of s
    for j, s in enumerate(STRATA[1:], start=1):
        assert b.loc[f"stratum[{s}]", "estimate"] == pytest.approx(np.exp(j), rel=0.01)


def test_flip_is_flagged_and_stable_conclusion_is_not():
    # member means 0.1 and 0.9 with SD 0.2: interval includes 0 in the first, excludes it in the second
    fits = [
        normal_member({"court": m, "mdt": 1.5}, 0.2, seed=i) for i, m in enumerate([0.1, 0.9, 0.9])
    ]
    pooled = pooling.pool_fits("spec", fits)
    b = pooled.between.set_index("term")
    assert b.loc["court", "flips"] and b.loc["court", "n_excluding_1"] == 2
    assert not b.loc["mdt", "flips"] and b.loc["mdt", "n_excluding_1"] == 3
    assert pooled.diagnostics["flipping_terms"] == ["court"]
    assert "court" in pooling.flips_text(pooled)
    # medians on both sides of 1 but every interval includes 1: no conclusion changes;
    # intervals excluding 1 on opposite sides: it does
    fits = [
        normal_member({"court": m, "mdt": d}, 0.2, seed=i)
        for i, (m, d) in enumerate([(-0.1, -1.0), (0.1, 1.0)])
    ]
    b = pooling.pool_fits("spec", fits).between.set_index("term")
    assert not b.loc["court", "flips"] and b.loc["court", "n_above_1"] == 1
    assert b.loc["mdt", "flips"] and b.loc["mdt", "n_excluding_1"] == 2


def test_stack_keeps_every_member_and_gives_it_back():
    fits = [
        normal_member({"court": m}, 0.3, seed=i, chains=2, draws=50)
        for i, m in enumerate([0.0, 1.0, 2.0, 3.0])
    ]
    pooled = pooling.pool_fits("spec", fits)
    post = pooled.idata.posterior
    assert post.sizes["chain"] == 8
    assert list(post["reconstruction"].values) == [1, 1, 2, 2, 3, 3, 4, 4]
    assert pooled.n_members == 4
    for m in (1, 4):
        back = pooling.member_idata(pooled.idata, m)
        np.testing.assert_array_equal(
            back.posterior["beta"].values, fits[m - 1].idata.posterior["beta"].values
        )
        np.testing.assert_array_equal(
            back.log_likelihood["y"].values, fits[m - 1].idata.log_likelihood["y"].values
        )
    with pytest.raises(InputError):
        pooling.member_idata(pooled.idata, 9)
    # one member's sampler trouble is reported for the pool
    assert pooled.diagnostics["members_with_trouble"] == [4] and not pooled.diagnostics["all_ok"]
    assert set(pooled.per_member["reconstruction"]) == {1, 2, 3, 4}


def test_write_pooled_round_trips(tmp_path):
    import arviz as az

    fits = [normal_member({"court": m}, 0.3, seed=i, draws=100) for i, m in enumerate([0.0, 0.5])]
    pooled = pooling.pool_fits("spec", fits)
    paths = pooling.write_pooled(pooled, tmp_path, "toy")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".meta.json")) == [
        "toy-between.csv",
        "toy-members.csv",
        "toy-summary.csv",
        "toy.nc",
    ]
    assert pd.read_csv(paths["between"])["data_status"].eq("SYNTHETIC").all()
    back = az.from_netcdf(paths["idata"])
    # on file the members have their own dimension; read back, they are the stacked chains
    assert back.posterior["beta"].dims[:3] == ("chain", "draw", "member")
    stacked = read_pooled_layout(back)
    np.testing.assert_array_equal(stacked.posterior["reconstruction"].values, [1, 1, 2, 2])
    between = pd.read_csv(paths["between"], comment="#")
    assert list(between.columns) == [*pooling.BETWEEN_COLUMNS, "data_status"]


def read_pooled_layout(idata):
    from cst_bayes.bayes.layout import from_file

    return from_file(idata)


def test_az_rhat_on_a_pooled_file_is_each_members_own(tmp_path):
    """ArviZ must not read members as chains: R-hat on the file is per member and equals each
    member fit's own R-hat (members that disagree do not look unconverged)."""
    import arviz as az

    fits = [normal_member({"court": m}, 0.3, seed=i, draws=200) for i, m in enumerate([0.0, 3.0])]
    pooled = pooling.pool_fits("spec", fits)
    back = az.from_netcdf(pooling.write_pooled(pooled, tmp_path, "toy")["idata"])
    r = az.rhat(back.posterior)["beta"]
    assert r.dims == ("member", "approach")
    for k, f in enumerate(fits):
        assert float(r[k].item()) == pytest.approx(float(az.rhat(f.idata.posterior)["beta"].item()))
    # stacked as chains the same draws give the between-member disagreement instead
    assert float(az.rhat(pooled.idata.posterior)["beta"].item()) > 1.5 > float(r.max())


def test_member_seeds_are_deterministic_and_distinct():
    a, b = pooling.member_seeds(5, 20), pooling.member_seeds(5, 20)
    assert a == b and len(set(a)) == 20
    assert pooling.member_seeds(6, 3) != a[:3]


def test_fit_ensemble_uses_fit_function_with_member_seeds(sim_df):
    seen = []

    def fake_fit(spec, df, *, draws, tune, chains, seed, sampler):
        seen.append(seed)
        return normal_member({"court": 0.2}, 0.1, seed=len(seen), chains=chains, draws=draws)

    class Spec:
        name, outcome = "fake", "any_cst"

    pooled = pooling.fit_ensemble(
        Spec(), [sim_df, sim_df, sim_df], draws=30, tune=1, chains=2, seed=1, fit_fn=fake_fit
    )
    assert seen == pooling.member_seeds(1, 3)
    assert pooled.idata.posterior.sizes["chain"] == 6
    with pytest.raises(InputError):
        pooling.fit_ensemble(Spec(), [], fit_fn=fake_fit)


# --------------------------------------------------------------------- LOO comparison
def _beta_bernoulli(y: np.ndarray, groups: np.ndarray, draws: int, seed: int):
    """Posterior draws and pointwise log-lik of y_i ~ Bernoulli(theta_g), theta_g ~ Beta(1, 1)."""
    import arviz as az

    rng = np.random.default_rng(seed)
    ll = np.empty((2, draws, len(y)))
    exact = np.empty(len(y))
    for g in np.unique(groups):
        idx = groups == g
        k, n = y[idx].sum(), idx.sum()
        th = rng.beta(1 + k, 1 + n - k, size=(2, draws))
        ll[:, :, idx] = np.where(y[idx] == 1, np.log(th)[..., None], np.log1p(-th)[..., None])
        # exact leave-one-out predictive: P(y_i | y_-i) = (1 + k_-i) / (2 + n - 1)
        k_loo = k - y[idx]
        p1 = (1 + k_loo) / (n + 1)
        exact[idx] = np.where(y[idx] == 1, np.log(p1), np.log1p(-p1))
    idata = az.from_dict(
        posterior={"theta": np.zeros((2, draws))},
        log_likelihood={"any_cst": ll},
        observed_data={"any_cst": y},
    )
    idata.posterior.attrs["outcome"] = "any_cst"
    return idata, exact.sum()


def test_loo_matches_exact_leave_one_out_and_prefers_the_true_model():
    from cst_bayes.checks.comparison import loo_table, summary_text

    rng = np.random.default_rng(3)
    groups = np.repeat([0, 1, 2, 3], [300, 150, 30, 40])
    y = (rng.random(len(groups)) < np.array([0.06, 0.33, 0.5, 0.85])[groups]).astype(int)
    strata, exact_s = _beta_bernoulli(y, groups, 2000, 1)
    pooled, exact_p = _beta_bernoulli(y, np.zeros_like(groups), 2000, 2)
    table = loo_table({"by_stratum": strata, "common": pooled})
    t = table.set_index("model")
    assert t.loc["by_stratum", "elpd_loo"] == pytest.approx(exact_s, abs=0.5)
    assert t.loc["common", "elpd_loo"] == pytest.approx(exact_p, abs=0.5)
    assert t.loc["by_stratum", "favoured"] and t.loc["by_stratum", "rank"] == 0
    assert t.loc["common", "elpd_diff"] == pytest.approx(exact_s - exact_p, abs=1.0)
    assert (t["k_good"] == len(y)).all() and (t["k_very_bad"] == 0).all()
    assert "favours by_stratum" in summary_text(table)


def test_loo_groups_by_outcome_and_observation_count():
    from cst_bayes.checks.comparison import loo_table

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 100)
    a, _ = _beta_bernoulli(y, np.zeros(100, int), 500, 1)
    b, _ = _beta_bernoulli(y, rng.integers(0, 2, 100), 500, 2)
    c, _ = _beta_bernoulli(y[:60], np.zeros(60, int), 500, 3)  # another unit of observation
    d, _ = _beta_bernoulli(y, np.zeros(100, int), 500, 4)
    d.posterior.attrs["outcome"] = "n_approaches"
    table = loo_table({"a": a, "b": b, "c": c, "d": d})
    groups = table.groupby("group")["model"].apply(sorted).to_dict()
    assert groups == {"any_cst (n=100)": ["a", "b"], "any_cst (n=60)": ["c"], "n_approaches": ["d"]}
    assert any("compared separately" in n for n in table.attrs["notes"])
    assert (
        table.loc[table["model"] == "d", "favoured"].item() is False
        or not table.loc[table["model"] == "d", "favoured"].item()
    )
    with pytest.raises(InputError):
        loo_table({})


# --------------------------------------------------------------------- real sampler (slow)
@pytest.mark.slow
def test_fit_ensemble_real_sampler_ppc_and_loo(tmp_path):
    from cst_bayes.bayes import models
    from cst_bayes.checks import ppc
    from cst_bayes.checks.comparison import loo_table
    from cst_bayes.data.simulate import simulate

    frames = [simulate(s)[0] for s in (21, 22)]
    kw = dict(draws=150, tune=150, chains=2, seed=7, sampler="nutpie-c", progress=False)
    pooled = pooling.fit_ensemble("logit_count_strata", frames, **kw)
    post = pooled.idata.posterior
    assert post.sizes["chain"] == 4 and list(post["reconstruction"].values) == [1, 1, 2, 2]
    assert set(pooled.between["term"]) == {
        "n_approaches",
        "stratum[50-999]",
        "stratum[state]",
        "stratum[1000+]",
    }
    assert pooled.between["between_frac"].between(0, 1).all()
    # member 2 is exactly the fit of frame 2 with the second spawned seed
    alone = models.fit(
        "logit_count_strata", frames[1], **{**kw, "seed": pooling.member_seeds(7, 2)[1]}
    )
    np.testing.assert_array_equal(
        pooling.member_idata(pooled.idata, 2).posterior["beta"].values,
        alone.idata.posterior["beta"].values,
    )
    # PPC on the pool: every member's replicates against its own observed tables
    table = ppc.ppc_tables(pooled, frames, n_draws=40, seed=0, tables=["table1"])
    assert (table["n_rep"] == 40).all()
    assert (table["observed_min"] < table["observed_max"]).any()
    # one member's data: that member's posterior is found by its data hash
    one = ppc.ppc_tables(pooled, frames[1], n_draws=40, seed=0, tables=["table1"])
    assert (one["observed"] == one["observed_min"]).all()
    with pytest.raises(InputError):
        ppc.ppc_tables(pooled, simulate(23)[0], n_draws=10, tables=["table1"])
    # LOO member by member
    other = pooling.fit_ensemble("logit_count", frames, **kw)
    cmp = loo_table({"logit_count_strata": pooled, "logit_count": other})
    assert (cmp["n_members"] == 2).all()
    assert (
        cmp.loc[cmp["model"] == "logit_count_strata", "favoured_in"].item() == 2
    )  # strata matter here
    # the CLI on the written pooled fits and an ensemble folder
    from cst_bayes.cli import main
    from cst_bayes.core.fileio import write_microdata

    ens, fits, out = tmp_path / "ens", tmp_path / "fits", tmp_path / "out"
    for i, f in enumerate(frames, start=1):
        write_microdata(
            ens / f"reconstruction-{i:03d}.csv", f.drop(columns=["n_approaches"]), synthetic=True
        )
    pooling.write_pooled(pooled, fits)
    pooling.write_pooled(other, fits)
    assert (
        main(
            [
                "compare",
                "logit_count_strata",
                "logit_count",
                "--data",
                str(ens),
                "--fits",
                str(fits),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    loo = pd.read_csv(out / "loo.csv", comment="#")
    pd.testing.assert_series_equal(loo["elpd_loo"], cmp["elpd_loo"], check_names=False)
    assert (
        main(
            [
                "ppc",
                str(fits / "logit_count.nc"),
                "--data",
                str(ens),
                "--out",
                str(out),
                "--draws",
                "20",
            ]
        )
        == 0
    )
    assert pd.read_csv(out / "ppc.csv", comment="#")["n_rep"].max() == 20
    # an ensemble folder with a fit that is not pooled over it is a clean error
    single = models.write_fit(alone, tmp_path / "single")[0]
    assert main(["ppc", str(single), "--data", str(ens), "--out", str(tmp_path / "x")]) == 2


def test_pooled_loo_is_the_member_average_against_a_common_top_model():
    from cst_bayes.checks.comparison import loo_table

    rng = np.random.default_rng(8)
    groups = np.repeat([0, 1, 2, 3], [200, 100, 30, 40])
    ys = [
        (rng.random(len(groups)) < np.array([0.06, 0.33, 0.5, 0.85])[groups]).astype(int)
        for _ in range(2)
    ]
    strata = [_beta_bernoulli(y, groups, 800, i)[0] for i, y in enumerate(ys)]
    common = [_beta_bernoulli(y, np.zeros_like(groups), 800, 10 + i)[0] for i, y in enumerate(ys)]
    singles = [
        loo_table({"strata": s, "common": c}).set_index("model") for s, c in zip(strata, common)
    ]
    pooled = {"strata": pooling.stack_members(strata), "common": pooling.stack_members(common)}
    for idata in pooled.values():
        idata.posterior.attrs["outcome"] = "any_cst"
    t = loo_table(pooled).set_index("model")
    for col in ("elpd_loo", "se", "p_loo"):
        assert t.loc["common", col] == pytest.approx(
            np.mean([s.loc["common", col] for s in singles])
        )
    # the same top model in both members: differences and their SEs are the arviz ones, averaged
    assert all(s.loc["strata", "rank"] == 0 for s in singles)
    assert t.loc["strata", "elpd_diff"] == 0 and t.loc["strata", "favoured_in"] == 2
    for col in ("elpd_diff", "dse"):
        assert t.loc["common", col] == pytest.approx(
            np.mean([s.loc["common", col] for s in singles])
        )
    with pytest.raises(InputError):
        loo_table({"strata": pooled["strata"], "single": common[0]})


def test_arviz_refuses_loo_on_a_pooled_file_and_gives_it_per_member(tmp_path):
    """Stacked members are not chains of one posterior: az.loo on the pooled file must refuse,
    member_idata gives each member's own LOO; attributes are typed."""
    import arviz as az

    fits = [normal_member({"court": m}, 0.3, seed=i, draws=200) for i, m in enumerate([0.0, 2.0])]
    for f in fits:
        f.idata.posterior.attrs["chains"] = 2
    pooled = pooling.pool_fits("spec", fits)
    path = pooling.write_pooled(pooled, tmp_path, "toy")["idata"]
    back = az.from_netcdf(path)
    with pytest.raises(TypeError, match="log likelihood not found"):
        az.loo(back)
    for m in (1, 2):
        own = pooling.member_idata(back, m)
        got = az.loo(own)
        want = az.loo(fits[m - 1].idata)
        assert got.elpd_loo == pytest.approx(want.elpd_loo)
    attrs = back.posterior.attrs
    assert int(attrs["pooled_members"]) == 2 and int(attrs["chains_per_member"]) == 2
    assert not isinstance(attrs["synthetic"], str) and int(attrs["synthetic"]) == 1


def test_pooled_summary_carries_decisions_on_the_stacked_draws():
    """P(ratio > 1) of the pooled posterior is that of the equal mixture of the members."""
    from scipy import stats

    fits = [normal_member({"court": m}, 0.3, seed=i, draws=400) for i, m in enumerate([0.0, 0.5])]
    s = pooling.pool_fits("spec", fits).summary.set_index("term")
    assert {"p_gt_1", "p_rope", "mcse_estimate"} <= set(s.columns)
    want = 0.5 * (stats.norm.sf(0, 0.0, 0.3) + stats.norm.sf(0, 0.5, 0.3))
    assert s.loc["court", "p_gt_1"] == pytest.approx(want, abs=0.02)


def test_pooled_file_records_each_members_thinning():
    fits = [normal_member({"court": 0.1}, 0.2, seed=i, draws=50) for i in range(3)]
    fits[1].idata.posterior.attrs["thin"] = (
        4  # an extended member (bayes.convergence.extension_plan)
    )
    pooled = pooling.pool_fits("spec", fits)
    assert pooled.idata.posterior.attrs["member_thin"] == "1,4,1"
    assert "thin" not in pooled.idata.posterior.attrs  # members disagree: no single value
