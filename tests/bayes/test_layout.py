"""A pooled fit's file layout round-trips to the stacked layout exactly."""

from __future__ import annotations

import arviz as az
import numpy as np

from cst_bayes.bayes import layout


def _stacked(members: int = 3, chains: int = 2, draws: int = 50):
    rng = np.random.default_rng(0)
    c = members * chains
    idata = az.from_dict(
        posterior={"beta": rng.normal(size=(c, draws, 4)), "alpha": rng.normal(size=(c, draws))},
        sample_stats={"diverging": np.zeros((c, draws), bool)},
        dims={"beta": ["approach"]},
    )
    rec = np.repeat(np.arange(1, members + 1), chains)
    for g in ("posterior", "sample_stats"):
        ds = getattr(idata, g).assign_coords(reconstruction=("chain", rec))
        ds.attrs["model"] = "toy"
        setattr(idata, g, ds)
    return idata


def test_file_layout_round_trips_values_coordinates_and_attributes():
    idata = _stacked()
    f = layout.to_file(idata)
    assert f.posterior["beta"].dims == ("chain", "draw", "member", "approach")
    assert list(f.posterior["member"].values) == [1, 2, 3] and f.posterior.sizes["chain"] == 2
    back = layout.from_file(f)
    np.testing.assert_array_equal(back.posterior["reconstruction"].values, [1, 1, 2, 2, 3, 3])
    for g in ("posterior", "sample_stats"):
        a, b = getattr(idata, g), getattr(back, g)
        assert a.attrs == b.attrs
        for v in a.data_vars:
            np.testing.assert_array_equal(a[v].values, b[v].transpose(*a[v].dims).values)


def test_a_single_fit_is_left_as_it_is():
    single = az.from_dict(posterior={"alpha": np.zeros((2, 10))})
    assert layout.to_file(single) is single and layout.from_file(single) is single
