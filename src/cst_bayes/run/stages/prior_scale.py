"""Stage ``prior_scale/<MODEL>``: the ratio table with each prior slot at x0.5 and x2 (refits).

Run for the models of the published Table 3 analyses with agency size (the report's main
models), on the first dataset, at the profile's chain settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cst_bayes.checks.prior_scales import prior_scale_table
from cst_bayes.run.stages.common import write_table

if TYPE_CHECKING:
    from cst_bayes.run.context import RunContext


def run(ctx: RunContext, name: str, work: Path) -> dict[str, Any]:
    s = ctx.settings
    table = prior_scale_table(
        ctx.specs[name],
        ctx.frames[0],
        draws=s.draws,
        tune=s.tune,
        chains=s.chains,
        seed=ctx.seed,
        extend=s.extend,
    )
    write_table(ctx, work / "prior_scale.csv", table)
    return {"fits": int(table[["slot", "scale"]].drop_duplicates().shape[0])}
