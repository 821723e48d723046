"""MRP over ``logit_varying_slopes`` on simulated data whose effects differ by stratum.

Known truth: the small stratum (84% of the frame, 67% of respondents) has a positive
task-force effect, every other stratum a negative one. The frame-weighted national marginal
effect is then positive while a respondent-weighted one is not, so MRP must poststratify
stratum-specific effects to recover it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from cst_bayes.core.config import APPROACHES, COUNT, OUTCOME, STRATA, STRATUM
from cst_bayes.data import published
from cst_bayes.data.microdata import stratum_dtype
from cst_bayes.data.simulate import DEFAULT_ALPHA, DEFAULT_BETA, simulate
from cst_bayes.weighting import mrp
from cst_bayes.weighting import weights as W

ALPHA = (-1.5, *DEFAULT_ALPHA[1:])
SLOPE = {"1-49": 1.2, "50-999": -1.2, "state": -1.2, "1000+": -1.2}
TERM = "task_force"


def _data() -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    parts, beta = [], {}
    for h in STRATA:
        b = {**DEFAULT_BETA, TERM: SLOPE[h]}
        d, _ = simulate(31 + STRATA.index(h), alpha=ALPHA, beta=b)
        parts.append(d[d[STRATUM] == h])
        beta[h] = np.array([b[a] for a in APPROACHES])
    df = pd.concat(parts, ignore_index=True)
    df[STRATUM] = df[STRATUM].astype(str).astype(stratum_dtype())
    df[COUNT] = df[list(APPROACHES)].sum(axis=1).astype(np.int8)
    df.attrs.update(synthetic=True, restricted=False)
    return df, beta


def _truth(df: pd.DataFrame, beta: dict, weights: dict[str, float]) -> tuple[float, float]:
    """Weighted national prevalence and marginal effect of TERM from the true parameters."""
    k = list(APPROACHES).index(TERM)
    prev = rd = 0.0
    total = sum(weights.values())
    for j, h in enumerate(STRATA):
        x = df[df[STRATUM] == h][list(APPROACHES)].to_numpy(float)
        x1, x0 = x.copy(), x.copy()
        x1[:, k], x0[:, k] = 1, 0
        prev += weights[h] / total * expit(ALPHA[j] + x @ beta[h]).mean()
        rd += (
            weights[h]
            / total
            * (expit(ALPHA[j] + x1 @ beta[h]) - expit(ALPHA[j] + x0 @ beta[h])).mean()
        )
    return prev, rd


@pytest.mark.slow
def test_mrp_varying_slopes_recovers_the_frame_weighted_effect():
    df, beta = _data()
    frames = published.load_sampling_frames()
    sc = W.load_scenarios()["design"]
    steps = W.weights_table(df, [sc], frames).set_index("stratum")
    frame = {h: float(steps.loc[h, "eligible_frame"]) for h in STRATA}
    out = mrp.mrp_varying_slopes(
        df, {"design": (frame, True)}, draws=300, tune=300, chains=2, seed=5
    ).set_index("estimand")
    true_prev, true_rd = _truth(df, beta, frame)
    _, resp_rd = _truth(df, beta, {h: float((df[STRATUM] == h).sum()) for h in STRATA})
    assert true_rd > 0.02 and resp_rd < true_rd - 0.03  # the design of the test
    rd = out.loc[f"rd_adjusted:{TERM}"]
    assert rd["ci_low"] < true_rd < rd["ci_high"]
    assert abs(rd["median"] - true_rd) < abs(rd["median"] - resp_rd)
    assert rd["ci_low"] > 0  # the national effect is positive, as in the frame
    # National share with a case: the design-based (poststratified) estimate, within 2 points.
    design = W.design_estimates(df, [sc], frames).set_index("estimand").loc[OUTCOME]
    prev = out.loc[OUTCOME]
    assert abs(prev["median"] - design["estimate"]) < 0.02
    assert prev["ci_low"] < true_prev < prev["ci_high"]
