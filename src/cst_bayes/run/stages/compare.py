"""Stage ``compare``: PSIS-LOO comparison of the fitted models within outcome groups."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cst_bayes.bayes import models as models_mod
from cst_bayes.checks import comparison
from cst_bayes.checks.stacking import stacked_predictions
from cst_bayes.core.fileio import write_text
from cst_bayes.run.stages.common import write_table
from cst_bayes.run.units import StageUnavailable

if TYPE_CHECKING:
    from cst_bayes.run.context import RunContext


def run(ctx: RunContext, work: Path) -> dict[str, Any]:
    if ctx.restricted:
        raise StageUnavailable(
            "PSIS-LOO is per agency: its pointwise values are row-level data, which restricted "
            "mode does not write"
        )
    fits = {}
    for name in ctx.specs:
        nc = ctx.out / "models" / name / f"{name}.nc"
        if nc.exists():
            fits[name] = models_mod.read_fit(nc)
    if len(fits) < 2:
        raise StageUnavailable(f"{len(fits)} fitted model(s): nothing to compare")
    table = comparison.loo_table(fits, data=ctx.frames)
    write_table(ctx, work / "loo.csv", table)
    write_text(work / "loo.md", comparison.summary_text(table) + "\n")
    stacked = stacked_predictions(fits, table, ctx.frames, seed=ctx.seed)
    write_table(ctx, work / "stacked.csv", stacked)
    return {
        "models": len(fits),
        "stacked_quantities": len(stacked),
        "notes": list(table.attrs.get("notes", [])),
    }
