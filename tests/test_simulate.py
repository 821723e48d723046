"""The test-data simulator: study shape and determinism (truth is checked by model tests)."""

import numpy as np

from cst_bayes.core.config import APPROACHES, N_BY_STRATUM
from cst_bayes.data.microdata import validate
from cst_bayes.data.simulate import simulate


def test_shape_and_contract(sim_df):
    assert len(sim_df) == 1306
    counts = sim_df["stratum"].value_counts()
    for s, n in N_BY_STRATUM.items():
        assert counts[s] == n
    again = validate(sim_df.drop(columns=["n_approaches"]))
    assert (
        again["n_approaches"].to_numpy() == sim_df[list(APPROACHES)].sum(axis=1).to_numpy()
    ).all()


def test_same_seed_same_data():
    a, _ = simulate(7)
    b, _ = simulate(7)
    c, _ = simulate(8)
    assert a.equals(b)
    assert not a.equals(c)


def test_scale_multiplies_rows():
    a, _ = simulate(1, scale=3)
    assert len(a) == 3 * 1306
    assert np.isclose(a["any_cst"].mean(), 0.17, atol=0.04)
