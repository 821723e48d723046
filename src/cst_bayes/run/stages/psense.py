"""Stage ``psense/<MODEL>``: power-scaling prior and likelihood sensitivity of one fit."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cst_bayes.bayes import models as models_mod
from cst_bayes.checks import psense
from cst_bayes.run.units import StageUnavailable

if TYPE_CHECKING:
    from cst_bayes.run.context import RunContext


def run(ctx: RunContext, name: str, work: Path) -> dict[str, Any]:
    if ctx.restricted:  # the log-likelihood per draw would be recomputed from the rows
        raise StageUnavailable(
            "power-scaling needs the likelihood of the data, not kept in restricted mode"
        )
    nc = ctx.out / "models" / name / f"{name}.nc"
    if not nc.exists():
        raise StageUnavailable(f"no fitted model {name} (models/{name} not available)")
    fit = models_mod.read_fit(nc)
    data = ctx.frames if len(ctx.frames) > 1 else ctx.frames[0]
    table = psense.write_psense(fit, ctx.specs[name], data, work, status=ctx.status)
    return {
        "quantities": len(table),
        "conflicts": int((table["diagnosis"] == psense.CONFLICT).sum()),
        "strong_prior": int((table["diagnosis"] == psense.STRONG_PRIOR).sum()),
    }
