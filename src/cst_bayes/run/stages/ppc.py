"""Stage ``ppc/<MODEL>``: posterior predictive checks of one fitted model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cst_bayes.checks import ppc
from cst_bayes.checks.ppcplot import plot_ppc_tables
from cst_bayes.core.disclosure import protect_ppc
from cst_bayes.run.stages.common import save_figure, write_table
from cst_bayes.run.units import StageUnavailable

if TYPE_CHECKING:
    from cst_bayes.run.context import RunContext


def run(ctx: RunContext, name: str, work: Path) -> dict[str, Any]:
    nc = ctx.out / "models" / name / f"{name}.nc"
    if not nc.exists():
        raise StageUnavailable(f"no fitted model {name} (models/{name} not available)")
    data = ctx.frames if len(ctx.frames) > 1 else ctx.frames[0]  # a pooled fit takes every member
    try:
        table = ppc.ppc_tables(nc, data, n_draws=ctx.settings.ppc_draws, seed=ctx.seed)
    except Exception as exc:
        if ctx.restricted:  # restricted runs keep no per-agency groups on disk
            raise StageUnavailable(
                f"PPC needs per-agency groups that restricted mode drops ({exc})"
            ) from None
        raise
    if ctx.restricted:
        assert ctx.policy is not None
        table = protect_ppc(table, ctx.policy)
    write_table(ctx, work / "ppc.csv", table)
    if not ctx.restricted:
        fig = plot_ppc_tables(table, title=name, synthetic=ctx.synthetic)
        save_figure(ctx, fig, work / "ppc.png")
    outside, checked = ppc.n_outside(table)
    return {"statistics": checked, "flagged": outside, "fitted_by_model": len(table) - checked}
