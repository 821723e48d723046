"""The weighting stage over ensemble members (:func:`cst_bayes.weighting.stage.run_ensemble`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cst_bayes.data.ensemble import load_ensemble
from cst_bayes.weighting import stage

SCENARIOS = ["unweighted", "design"]


@pytest.fixture(scope="module")
def ens(tmp_path_factory):
    out = tmp_path_factory.mktemp("ens")
    frames = load_ensemble(n=2)
    res = stage.run_ensemble(frames, out, scenarios=SCENARIOS, bayes=False, seed=7)
    return out, res, [f.attrs["member"] for f in frames]


def test_every_table_has_a_dataset_column(ens):
    out, res, members = ens
    tables = {k: v for k, v in res.items() if isinstance(v, pd.DataFrame)}
    assert {"conclusions", "conclusions_by_member", "tipping_point", "sensitivity"} <= set(tables)
    for key in tables:
        t = pd.read_csv(out / f"{key}.csv")
        assert "dataset" in t.columns, key
        assert t["data_status"].eq("SYNTHETIC").all(), key
        if key not in ("conclusions", "tipping_point_summary"):
            assert set(t["dataset"]) == set(members), key
        else:
            assert set(t["dataset"]) == {stage.ENSEMBLE}
    assert (out / "sensitivity.png").exists() and (out / "tipping_point.png").exists()


def _verdict(r: pd.Series) -> str:
    """The stated rule, written again: P >= 0.975 for posterior rows, the 95% interval otherwise."""
    if np.isfinite(r["p_positive"]):
        p = r["p_positive"]
        return "+" if p >= 0.975 else "-" if p <= 0.025 else "0"
    return "+" if r["ci_low"] > 1 else "-" if r["ci_high"] < 1 else "0"


@pytest.mark.parametrize("term", ["offense_code", "mdt", "prosecutor"])
def test_share_equals_a_hand_count_over_members_and_scenarios(ens, term):
    out, _, members = ens
    concl = pd.read_csv(out / "conclusions.csv").set_index("claim")
    claim = next(c for c in concl.index if c.startswith(f"Table 3: {term} OR size-adjusted"))
    sens = pd.read_csv(out / "sensitivity.csv", keep_default_na=False, na_values=[""])
    rows = sens[
        (sens["estimand"] == "or") & (sens["term"] == term) & (sens["adjusted_for_size"] == "yes")
    ]
    # members x scenarios x methods (design, raw and adjusted pseudo-likelihood)
    assert len(rows) == len(members) * len(SCENARIOS) * 3
    assert set(rows["method"]) == {"design", "pseudo_likelihood", "pseudo_likelihood_adjusted"}
    holds = sum(_verdict(r) == concl.loc[claim, "published"] for _, r in rows.iterrows())
    assert concl.loc[claim, "rows"] == len(rows)
    assert concl.loc[claim, "holds_in"] == holds
    assert concl.loc[claim, "share"] == pytest.approx(holds / len(rows))
    by = pd.read_csv(out / "conclusions_by_member.csv").query("claim == @claim")
    assert sorted(by["dataset"]) == sorted(members)
    surviving = sum(
        all(_verdict(r) == concl.loc[claim, "published"] for _, r in g.iterrows())
        for _, g in rows.groupby("dataset")
    )
    assert concl.loc[claim, "members_surviving"] == surviving


def test_worker_processes_give_the_same_tables(ens):
    """Members spread over two worker processes: every table and the text as in one process."""
    _, res, _ = ens
    par = stage.run_ensemble(
        load_ensemble(n=2), None, scenarios=SCENARIOS, bayes=False, seed=7, jobs=2
    )
    assert set(par) == set(res)
    for key, v in res.items():
        if isinstance(v, pd.DataFrame):
            pd.testing.assert_frame_equal(par[key], v, check_exact=True, obj=key)
        else:
            assert par[key] == v


def test_jobs_below_one_is_refused():
    from cst_bayes.core.errors import InputError

    with pytest.raises(InputError, match="jobs"):
        stage.run_ensemble(load_ensemble(n=1), None, jobs=0)


def test_a_workers_warnings_travel_back(monkeypatch):
    """Sampler trouble in a worker process must not stay there (it is re-issued by the parent)."""
    import warnings

    from cst_bayes.weighting.williams_savitsky import SamplerTrouble

    def warns(df, **kw):
        warnings.warn("pseudo-posterior fit: 3 divergences", SamplerTrouble, stacklevel=2)
        return {"sensitivity_text": ""}

    monkeypatch.setattr(stage, "run_weights", warns)
    res, caught = stage._member_task((pd.DataFrame(), {}))
    assert res == {"sensitivity_text": ""}
    assert caught == [(SamplerTrouble, "pseudo-posterior fit: 3 divergences")]
