"""A fit refuses data it was not fitted on (the stored data hash decides)."""

from __future__ import annotations

import pytest

from cst_bayes.bayes import models
from cst_bayes.checks import ppc
from cst_bayes.checks.fits import check_fitted_on
from cst_bayes.core.errors import InputError
from cst_bayes.data.simulate import simulate


@pytest.fixture(scope="module")
def small_fit():
    df, _ = simulate(3)
    fit = models.fit(
        "logit_count_strata", df, draws=100, tune=100, chains=2, seed=1, progress=False
    )
    return fit, df


def test_same_data_passes_other_data_is_refused(small_fit):
    fit, df = small_fit
    check_fitted_on(fit, [df])  # the data it was fitted on
    other, _ = simulate(4)
    with pytest.raises(InputError, match="not fitted on these data"):
        check_fitted_on(fit, [other])
    # and the PPC, which would otherwise print numbers about the wrong data, refuses too
    with pytest.raises(InputError, match="not fitted on these data"):
        ppc.ppc_tables(fit, other, n_draws=20, seed=1)


def test_a_changed_outcome_is_other_data(small_fit):
    fit, df = small_fit
    flipped = df.copy()
    flipped.loc[flipped.index[0], "any_cst"] = 1 - flipped.loc[flipped.index[0], "any_cst"]
    with pytest.raises(InputError):
        check_fitted_on(fit, [flipped])
