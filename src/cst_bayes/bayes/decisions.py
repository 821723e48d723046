"""Decision quantities of a ratio from posterior draws of its logarithm (NumPy core).

For a ratio ``r = exp(x)`` (OR, PR, a ratio of national shares) with draws of ``x``:

``p_gt_1``
    P(r > 1): the posterior probability of the direction, instead of reading the direction
    off whether a 95% interval excludes 1.
``p_rope``
    P(rope_low < r < rope_high): the probability that the ratio lies in a region of
    practical equivalence. The default ROPE (0.8, 1.25) is symmetric on the log scale
    (1/1.25 = 0.8), the usual bioequivalence bounds; pass ``rope=`` to change it.
``mcse_estimate``, ``mcse_ci_low``, ``mcse_ci_high``
    Monte Carlo standard errors (:func:`arviz.mcse`) of the posterior median and the 2.5% and
    97.5% quantiles, on the ratio scale (quantiles commute with exp; the delta method maps
    the log-scale MCSE through exp at the quantile).
"""

from __future__ import annotations

import numpy as np

from cst_bayes.core.errors import InputError

#: Region of practical equivalence for a ratio (lower, upper), documented default.
DEFAULT_ROPE: tuple[float, float] = (0.8, 1.25)
DECISION_COLUMNS: tuple[str, ...] = (
    "p_gt_1",
    "p_rope",
    "mcse_estimate",
    "mcse_ci_low",
    "mcse_ci_high",
)


def decisions(
    log_draws: np.ndarray,
    *,
    rope: tuple[float, float] = DEFAULT_ROPE,
    prob: float = 0.95,
) -> dict[str, float]:
    """Direction and ROPE probabilities and Monte Carlo errors of one ratio.

    Parameters
    ----------
    log_draws
        Draws of the log-ratio: (chain, draw) for MCMC (the MCSE then accounts for
        autocorrelation and between-chain differences), or one flat vector (taken as one
        chain).
    rope
        (low, high) bounds of the region of practical equivalence on the ratio scale.
    prob
        Width of the equal-tailed interval whose end points' MCSE is returned.

    Returns
    -------
    dict
        Keys :data:`DECISION_COLUMNS`.
    """
    from arviz_stats.base import array_stats as st

    x = np.asarray(log_draws, dtype=float)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.size < 4 or not np.isfinite(x).all():
        raise InputError(
            f"need a finite (chain, draw) array of log-ratio draws, got shape {np.shape(log_draws)}",
            column="log_draws",
        )
    lo, hi = rope
    if not (0 < lo < hi):
        raise InputError(f"ROPE must satisfy 0 < low < high, got {rope}", column="rope")
    if not 0 < prob < 1:
        raise InputError(f"prob must be in (0, 1), got {prob}", column="prob")
    a = (1 - prob) / 2
    out = {
        "p_gt_1": float((x > 0).mean()),
        "p_rope": float(((x > np.log(lo)) & (x < np.log(hi))).mean()),
    }
    for key, q in (("mcse_estimate", 0.5), ("mcse_ci_low", a), ("mcse_ci_high", 1 - a)):
        se_log = float(
            st.mcse(x, chain_axis=0, draw_axis=1, method="median")
            if q == 0.5
            else st.mcse(x, chain_axis=0, draw_axis=1, method="quantile", prob=q)
        )
        out[key] = float(np.exp(np.quantile(x, q)) * se_log)
    return out


def decision_table(
    log_draws: dict[str, np.ndarray],
    *,
    rope: tuple[float, float] = DEFAULT_ROPE,
    prob: float = 0.95,
) -> dict[str, dict[str, float]]:
    """:func:`decisions` for every term: ``{term: {column: value}}``."""
    return {t: decisions(d, rope=rope, prob=prob) for t, d in log_draws.items()}
