"""Stage ``prior_check/<MODEL>``: what the priors imply for the published statistics."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cst_bayes.checks.prior_check import plot_prior_check, prior_check_table
from cst_bayes.run.stages.common import save_figure, write_table

if TYPE_CHECKING:
    from cst_bayes.run.context import RunContext


def run(ctx: RunContext, name: str, work: Path) -> dict[str, Any]:
    # the prior predictive depends on the data only through the design (strata, approaches):
    # the first dataset stands for all members
    table = prior_check_table(
        ctx.specs[name], ctx.frames[0], n_draws=ctx.settings.ppc_draws, seed=ctx.seed
    )
    write_table(ctx, work / "prior_check.csv", table)
    if not ctx.restricted:
        save_figure(ctx, plot_prior_check(table, title=name), work / "prior_check.png")
    flagged = int(table["flag"].astype(bool).sum()) if "flag" in table else 0
    return {"statistics": len(table), "outside_prior_interval": flagged}
