"""Stacked predictions: each model's posterior draws mixed in proportion to its LOO stacking
weight (Yao, Vehtari, Simpson & Gelman 2018), for the national share and the prevalence
ratios of the approaches.

:func:`stack_draws` is the NumPy core (draws and weights in, a table out);
:func:`stacked_predictions` gathers each fit's draws of the derived quantities.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cst_bayes.core.config import OUTCOME
from cst_bayes.core.options import DEFAULT_SEED

STACKED_COLUMNS = ["quantity", "scale", "estimate", "ci_low", "ci_high", "p_gt_1", "models"]


def stack_draws(
    draws: Mapping[str, Mapping[str, np.ndarray]],
    weights: Mapping[str, float],
    *,
    n_draws: int = 4000,
    seed: int = DEFAULT_SEED,
    prob: float = 0.95,
) -> pd.DataFrame:
    """Mix each quantity's draws over the models that have it, by stacking weight.

    Parameters
    ----------
    draws
        ``{model: {quantity: draws}}``; a quantity named ``PR ...`` holds log prevalence
        ratios (reported on the ratio scale), any other a share.
    weights
        Stacking weights; a quantity mixes the models that have it, their weights renormalised.
    """
    rng = np.random.default_rng([int(seed), 7])
    quantities = list(dict.fromkeys(q for d in draws.values() for q in d))
    a = (1 - prob) / 2
    rows = []
    for q in quantities:
        models = [m for m in draws if q in draws[m] and weights.get(m, 0.0) > 0]
        if not models:
            continue
        w = np.array([weights[m] for m in models], dtype=float)
        w = w / w.sum()
        counts = rng.multinomial(n_draws, w)
        parts = [
            rng.choice(np.ravel(draws[m][q]), size=k, replace=True)
            for m, k in zip(models, counts, strict=True)
            if k > 0
        ]
        mix = np.concatenate(parts)
        ratio = q.startswith("PR ")
        vals = np.exp(mix) if ratio else mix
        lo, med, hi = np.quantile(vals, [a, 0.5, 1 - a])
        rows.append(
            {
                "quantity": q,
                "scale": "ratio" if ratio else "share",
                "estimate": med,
                "ci_low": lo,
                "ci_high": hi,
                "p_gt_1": float(np.mean(mix > 0)) if ratio else np.nan,
                "models": "; ".join(f"{m} {wi:.3f}" for m, wi in zip(models, w, strict=True)),
            }
        )
    return pd.DataFrame(rows, columns=STACKED_COLUMNS)


def _derived(fit: Any, frames: Sequence[pd.DataFrame]) -> dict[str, np.ndarray]:
    """A fit's draws of the national share and prevalence ratios (pooled: every member's)."""
    from cst_bayes.bayes.pooling import member_idata
    from cst_bayes.checks.psense import derived_draws

    idata, spec = fit.idata, fit.spec
    post = idata.posterior
    if "reconstruction" in post.coords:
        members = sorted(int(m) for m in np.unique(post["reconstruction"].to_numpy()))
        pairs = [(member_idata(idata, m), f) for m, f in zip(members, frames, strict=True)]
    else:
        pairs = [(idata, frames[0])]
    out: dict[str, list[np.ndarray]] = {}
    for idm, df in pairs:
        for name, (kind, d) in derived_draws(spec, idm, df).items():
            if kind in ("national_share", "pr"):
                out.setdefault(name, []).append(np.ravel(d))
    return {k: np.concatenate(v) for k, v in out.items()}


def stacked_predictions(
    fits: Mapping[str, Any],
    loo: pd.DataFrame,
    frames: Sequence[pd.DataFrame],
    *,
    n_draws: int = 4000,
    seed: int = DEFAULT_SEED,
) -> pd.DataFrame:
    """Stacked national share and prevalence ratios of the ``any_cst`` models in ``loo``."""
    group = loo[loo["group"] == OUTCOME]
    weights = {str(m): float(w) for m, w in zip(group["model"], group["weight"], strict=True)}
    draws = {m: _derived(fits[m], frames) for m, w in weights.items() if w > 0 and m in fits}
    return stack_draws(draws, weights, n_draws=n_draws, seed=seed)
