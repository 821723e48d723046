"""The one extension of a fit that fails a diagnostic threshold (cst_bayes.bayes.convergence).

The rule is checked on AR(1) chains, whose effective sample size is known in closed form
(N (1 - rho) / (1 + rho)): chains that fail the threshold are extended and pass, chains that
pass are left alone, chains that no extension can rescue stay flagged. The real sampler is
checked on a model and member where the short run fails (varying slopes) and on one where it
passes (the main model, whose draws must then be the unextended ones, bit for bit).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

from cst_bayes.bayes import convergence as F
from cst_bayes.bayes.pooling import pooled_diagnostics
from cst_bayes.bayes.samplers import thin_groups


def ar1_groups(rho: float, chains: int, draws: int, seed: int, diverging_at=()) -> dict:
    """``posterior`` (one AR(1) variable, stationary start) and ``sample_stats`` groups."""
    rng = np.random.default_rng(seed)
    x = np.empty((chains, draws))
    x[:, 0] = rng.normal(size=chains)
    e = rng.normal(scale=np.sqrt(1 - rho**2), size=(chains, draws))
    for t in range(1, draws):
        x[:, t] = rho * x[:, t - 1] + e[:, t]
    div = np.zeros((chains, draws), bool)
    for c, d in diverging_at:
        div[c, d] = True
    stats = xr.Dataset(
        {
            "diverging": (("chain", "draw"), div),
            "energy": (("chain", "draw"), rng.normal(size=(chains, draws))),
        }
    )
    return {"posterior": xr.Dataset({"x": (("chain", "draw"), x)}), "sample_stats": stats}


def ar1_run(rho: float, chains: int = 2, draws: int = 1000, calls: list | None = None):
    """A stand-in for the sampler: thin k keeps every k-th of k x draws AR(1) iterations."""

    def run(thin: int, seed: int, target_accept: float) -> dict:
        if calls is not None:
            calls.append((thin, seed, target_accept))
        return thin_groups(ar1_groups(rho, chains, draws * thin, seed), thin)

    return run


# ----------------------------------------------------------------------------- the plan


def test_plan_leaves_a_passing_fit_alone():
    assert F.extension_plan({"ok": True}) is None


@pytest.mark.parametrize(
    "diag",
    [
        {"ok": False, "min_ess_bulk": 390.0, "min_ess_tail": 900.0, "divergences": 0},
        {"ok": False, "min_ess_bulk": 1500.0, "min_ess_tail": 1200.0, "divergences": 1},
        {"ok": False, "max_r_hat": 1.02},
    ],
)
def test_plan_for_any_failure_is_four_times_the_draws_at_smaller_steps(diag):
    assert F.extension_plan(diag) == (4, 0.95)
    assert F.EXTEND_TARGET_ACCEPT > F.TARGET_ACCEPT


def test_extension_seed_is_fixed_by_the_seed_and_differs_from_it():
    assert F.extension_seed(5, 3) == F.extension_seed(5, 3)
    assert len({F.extension_seed(5, 3), F.extension_seed(5, 2), F.extension_seed(6, 3), 5}) == 4


# ----------------------------------------------------------------------------- thinning


def test_thinning_keeps_every_kth_draw_and_every_divergence():
    g = ar1_groups(0.5, 2, 12, 0, diverging_at=[(0, 0), (1, 7)])
    t = thin_groups(g, 3)
    np.testing.assert_array_equal(
        t["posterior"]["x"].to_numpy(), g["posterior"]["x"].to_numpy()[:, 2::3]
    )
    assert t["posterior"].sizes["draw"] == 4 and list(t["posterior"]["draw"].to_numpy()) == [
        0,
        1,
        2,
        3,
    ]
    # draws 0 and 7 are dropped by the thinning; their blocks' draws carry the divergence
    div = t["sample_stats"]["diverging"].to_numpy()
    assert div.sum() == 2 and div[0, 0] and div[1, 2]
    assert thin_groups(g, 1)["posterior"] is g["posterior"]


# ----------------------------------------------------------------------------- with known ESS


def test_ar1_closed_form_ess_is_what_the_diagnostics_see():
    # N (1 - rho) / (1 + rho): 2 x 1000 draws at rho 0.8 -> 222; kept every 4th of 4 x as many
    # (rho^4 = 0.41) -> 836. The diagnostics must agree within Monte Carlo error.
    d1 = F.diagnose(ar1_run(0.8)(1, 1, 0.9))
    d4 = F.diagnose(ar1_run(0.8)(4, 1, 0.9))
    assert 150 < d1["min_ess_bulk"] < 300
    assert 650 < d4["min_ess_bulk"] < 1050


def test_a_failing_fit_is_extended_once_and_passes():
    calls: list = []
    groups, d = F.sample_checked(ar1_run(0.8, calls=calls), 7, extend=True)
    assert [c[0] for c in calls] == [1, 4]
    assert calls[1][1:] == (F.extension_seed(7, 4), F.EXTEND_TARGET_ACCEPT)
    assert d["ok"] and d["extended_thin"] == 4 and d["messages"] == []
    assert any("bulk ESS" in m for m in d["first_messages"])
    assert groups["posterior"].sizes == {"chain": 2, "draw": 1000}  # the shape is kept


def test_a_passing_fit_runs_once():
    calls: list = []
    _, d = F.sample_checked(ar1_run(0.1, calls=calls), 7, extend=True)
    assert len(calls) == 1 and d["ok"] and d["extended_thin"] == 1 and d["first_messages"] == []


def test_without_extend_a_failing_fit_is_reported_not_extended():
    calls: list = []
    _, d = F.sample_checked(ar1_run(0.8, calls=calls), 7, extend=False)
    assert len(calls) == 1 and not d["ok"] and d["extended_thin"] == 1


def test_a_fit_the_extension_cannot_rescue_stays_flagged():
    # rho 0.99: ESS ~10 per 2000 draws; x4 thinning gives ~40. Still failing, and said.
    calls: list = []
    _, d = F.sample_checked(ar1_run(0.99, calls=calls), 7, extend=True)
    assert [c[0] for c in calls] == [1, 4]
    assert not d["ok"] and d["extended_thin"] == 4
    assert any("bulk ESS" in m for m in d["messages"])


# ----------------------------------------------------------------------------- pooled


def test_pooled_diagnostics_keep_the_worst_numbers_and_name_members():
    a = {"ok": True, "ok_divergences": True, "divergences": 0, "max_r_hat": 1.002,
         "min_ess_bulk": 900.0, "min_ess_tail": 800.0, "min_bfmi": 0.9, "messages": [],
         "extended_thin": 1}  # fmt: skip
    b = {"ok": False, "ok_divergences": False, "divergences": 2, "max_r_hat": 1.004,
         "min_ess_bulk": 700.0, "min_ess_tail": 450.0, "min_bfmi": 0.7,
         "messages": ["2 divergent transitions"], "extended_thin": 2}  # fmt: skip
    c = {**a, "divergences": 1, "min_ess_tail": 600.0, "extended_thin": 4}
    d = pooled_diagnostics([a, b, c])
    assert d["divergences"] == 3 and d["max_r_hat"] == 1.004
    assert d["min_ess_bulk"] == 700.0 and d["min_ess_tail"] == 450.0 and d["min_bfmi"] == 0.7
    assert d["members_with_trouble"] == [2] and not d["all_ok"] and not d["ok"]
    assert d["member_messages"] == {"2": "2 divergent transitions"}
    assert d["members_extended"] == {"2": 2, "3": 4}


# ----------------------------------------------------------------------------- the real sampler


@pytest.fixture(scope="module")
def member():
    from cst_bayes.core import config
    from cst_bayes.data.ensemble import load_ensemble

    return load_ensemble(config.RECONSTRUCTED_DIR, n=1)[0]


@pytest.mark.slow
def test_varying_slopes_fails_short_and_passes_extended(member):
    from cst_bayes.bayes import models

    kw = dict(draws=1000, tune=1000, chains=2, seed=123, progress=False, pointwise=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = models.fit("logit_varying_slopes", member, **kw)
    ext = models.fit("logit_varying_slopes", member, extend=True, **kw)
    assert not plain.diagnostics["ok"]  # the check fires on the short run ...
    assert ext.diagnostics["first_messages"] == plain.diagnostics["messages"]
    assert (
        ext.diagnostics["extended_thin"] > 1 and ext.diagnostics["ok"]
    )  # ... and the extension passes
    assert ext.groups["posterior"].sizes["draw"] == 1000
    assert ext.groups["posterior"].attrs["thin"] == ext.diagnostics["extended_thin"]
    again = models.fit("logit_varying_slopes", member, extend=True, **kw)
    np.testing.assert_array_equal(
        again.groups["posterior"]["sigma_slope"].to_numpy(),
        ext.groups["posterior"]["sigma_slope"].to_numpy(),
    )


@pytest.mark.slow
def test_a_passing_real_fit_is_not_touched_by_extend(member):
    from cst_bayes.bayes import models

    kw = dict(draws=1000, tune=1000, chains=2, seed=123, progress=False, pointwise=False)
    plain = models.fit("logit_approaches_strata", member, **kw)
    ext = models.fit("logit_approaches_strata", member, extend=True, **kw)
    assert plain.diagnostics["ok"] and ext.diagnostics["extended_thin"] == 1
    np.testing.assert_array_equal(
        plain.groups["posterior"]["beta"].to_numpy(), ext.groups["posterior"]["beta"].to_numpy()
    )


@pytest.mark.slow
def test_cli_fit_extend_says_what_it_did_and_records_it(tmp_path, capsys):
    import arviz as az

    from cst_bayes.cli import main
    from cst_bayes.core import config

    data = config.RECONSTRUCTED_DIR / "reconstruction-001.csv"
    args = ["fit", "logit_varying_slopes", "--data", str(data), "--draws", "1000", "--tune",
            "1000", "--chains", "2", "--seed", "123", "--quiet"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0
    assert "WARNING: logit_varying_slopes: bulk ESS" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "ext"), "--extend", "--strict"]) == 0
    out = capsys.readouterr()
    assert "extended once, thinned by" in out.out and "WARNING" not in out.err
    idata = az.from_netcdf(tmp_path / "ext" / "logit_varying_slopes.nc")
    assert idata.posterior.attrs["thin"] > 1 and idata.posterior.sizes["draw"] == 1000
    assert float(az.ess(idata, var_names=["sigma_slope"])["sigma_slope"].min()) >= 400
