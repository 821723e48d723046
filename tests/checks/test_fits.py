"""A fit refuses data it was not fitted on (the stored data hash decides)."""

from __future__ import annotations

import numpy as np
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


SPEC_TEXT = """
[model]
name = "logit_interaction_fixed"
description = "nine approaches, victim_service x task_force, fixed strata"
family = "bernoulli"
link = "logit"
formula = "any_cst ~ court + prosecutor + training + victim_service + offense_code + child_welfare + task_force + advocates + mdt + victim_service:task_force + stratum"

[priors.intercept]
dist = "normal"
mu = -1.5
sigma = 2.5
reason = "centred predictors"

[priors.beta]
dist = "normal"
mu = 0.0
sigma = 2.5
reason = "weakly informative"
"""


def test_checks_build_the_formula_design(tmp_path):
    """The sufficient-statistic design and the prior replicates follow the formula's columns."""
    from cst_bayes.bayes.spec import load_spec
    from cst_bayes.checks.prior_check import prior_check_table

    p = tmp_path / "logit_interaction_fixed.toml"
    p.write_text(SPEC_TEXT)
    spec = load_spec(p)
    df, _ = simulate(5)
    Z = ppc.model_design(spec, df)
    inter = (df["victim_service"] * df["task_force"]).to_numpy(float)
    # the interaction column is among Z's columns (so Z'y includes its sum)
    assert Z is not None and any(np.allclose(Z[:, j], inter) for j in range(Z.shape[1]))
    table = prior_check_table(spec, df, n_draws=50, seed=2)
    assert len(table) and table["rep_median"].notna().all()
