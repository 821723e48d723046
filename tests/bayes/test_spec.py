"""Formula specs: terms, strata, slopes and per-term priors; every mistake names file and key."""

from __future__ import annotations

import pytest
from bayes_support import INTERACTION, write_spec

from cst_bayes.bayes.spec import load_spec
from cst_bayes.core.errors import SpecError


def test_formula_spec_terms_and_priors(interaction_spec):
    s = interaction_spec
    assert s.outcome == "any_cst"
    assert s.predictors == (
        "court",
        "victim_service",
        "task_force",
        "victim_service:task_force",
        "stratum",
    )
    assert s.stratum_intercepts == "fixed" and not s.pooled_strata and not s.varying_slopes
    assert s.term_prior("victim_service:task_force").dist == "student_t"
    assert s.term_prior("court").dist == "normal"
    assert s.predictor_dim == "term"


def test_pooled_strata_and_varying_slopes(tmp_path):
    text = INTERACTION.replace(' + stratum"', ' + (victim_service | stratum)"') + (
        '\n[priors.sigma_stratum]\ndist = "halfnormal"\nsigma = 2.0\nreason = "four strata"\n'
        '\n[priors.sigma_slope]\ndist = "halfnormal"\nsigma = 0.5\nreason = "small differences"\n'
    )
    s = load_spec(write_spec(tmp_path, text))
    assert s.pooled_strata and s.varying_slopes and s.slopes == ("victim_service",)
    assert "stratum" not in s.predictors


@pytest.mark.parametrize(
    "old,new,match",
    [
        (' + stratum"', ' + (1 | court)"', "only 'stratum' may group"),
        (' + stratum"', ' + (mdt | stratum)"', "needs 'mdt' as a fixed term"),
        ("any_cst ~ ", "any_cst ~ 0 + ", "always has an intercept"),
        ("any_cst ~ court", "any_cst ~ court + (", "cannot parse formula"),
        (
            '[priors."victim_service:task_force"]',
            '[priors."mdt:court"]',
            "unknown prior 'mdt:court'",
        ),
        (' + stratum"', ' + (1 | stratum)"', "missing prior 'sigma_stratum'"),
        ('formula = "', 'predictors = ["court"]\nformula = "', "say the same thing twice"),
    ],
)
def test_formula_mistakes_name_the_file_and_key(tmp_path, old, new, match):
    assert old in INTERACTION
    p = write_spec(tmp_path, INTERACTION.replace(old, new, 1))
    with pytest.raises(SpecError, match=match) as e:
        load_spec(p)
    assert str(p) in str(e.value)


def test_bernoulli_log_points_to_logbinomial(tmp_path):
    p = write_spec(tmp_path, INTERACTION.replace('link = "logit"', 'link = "log"'))
    with pytest.raises(SpecError, match="logbinomial") as e:
        load_spec(p)
    assert "model.link" in str(e.value)
