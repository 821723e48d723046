"""How the reported ratios move when one prior slot is made narrower or wider.

Each prior slot the spec uses (``intercept``, ``beta``, ``sigma_stratum``, ``sigma_slope``,
``concentration``) is scaled by x0.5 and x2 in turn (what scaling means per distribution:
:meth:`cst_bayes.bayes.spec.Prior.scaled`), the model refitted on the same data and seed,
and the ratio table put beside the x1 fit's. A refit per cell: the direct answer that
power-scaling (:mod:`cst_bayes.checks.psense`) approximates from one fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from cst_bayes.core.options import DEFAULT_SEED

PRIOR_SCALE_COLUMNS = ["slot", "scale", "term", "estimate", "ci_low", "ci_high", "r_hat"]
DEFAULT_SCALES: tuple[float, ...] = (0.5, 2.0)


def slots_of(spec: Any) -> list[str]:
    """The prior slots a spec's model uses (those its priors table names)."""
    from cst_bayes.bayes.families import PRIOR_SLOTS

    return [s for s in PRIOR_SLOTS if s in spec.priors]


def prior_scale_table(
    spec: Any,
    df: pd.DataFrame,
    *,
    scales: Sequence[float] = DEFAULT_SCALES,
    draws: int = 500,
    tune: int = 500,
    chains: int = 2,
    seed: int = DEFAULT_SEED,
    extend: bool = False,
) -> pd.DataFrame:
    """The ratio table at x1 (slot ``none``) and at each scale of each slot (refits).

    ``extend``: a refit that fails a diagnostic threshold is sampled once more
    (:func:`cst_bayes.bayes.convergence.extension_plan`).
    """
    from cst_bayes.bayes import models

    # only the summaries are read: no agency-level log-likelihood or replicates per refit
    kw: dict[str, Any] = dict(
        draws=draws,
        tune=tune,
        chains=chains,
        seed=seed,
        progress=False,
        pointwise=False,
        extend=extend,
    )
    cells: list[tuple[str, float, float | dict[str, float]]] = [("none", 1.0, 1.0)]
    cells += [(s, k, {s: k}) for s in slots_of(spec) for k in scales]
    parts = []
    for slot, k, scale in cells:
        fit = models.fit(spec, df, prior_scale=scale, **kw)
        s = fit.summary
        parts.append(
            pd.DataFrame(
                {
                    "slot": slot,
                    "scale": k,
                    "term": s["term"],
                    "estimate": s["estimate"],
                    "ci_low": s["ci_low"],
                    "ci_high": s["ci_high"],
                    "r_hat": s["r_hat"],
                }
            )
        )
    return pd.concat(parts, ignore_index=True)[PRIOR_SCALE_COLUMNS]


def wide(table: pd.DataFrame) -> pd.DataFrame:
    """One row per term, one column per (slot x scale): the estimate with its interval."""
    t = table.copy()
    t["cell"] = t.apply(
        lambda r: f"{r['estimate']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]", axis=1
    )
    t["column"] = t.apply(
        lambda r: "x1" if r["slot"] == "none" else f"{r['slot']} x{r['scale']:g}", axis=1
    )
    out = t.pivot_table(index="term", columns="column", values="cell", aggfunc="first")
    order = ["x1", *[c for c in dict.fromkeys(t["column"]) if c != "x1"]]
    return out[order].reindex(list(dict.fromkeys(t["term"]))).reset_index()
