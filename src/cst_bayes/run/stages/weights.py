"""Stage ``weights``: weighting scenarios on every member, design-based and Bayesian."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from cst_bayes.run.stages.common import write_table
from cst_bayes.weighting import stage as weighting

if TYPE_CHECKING:
    from cst_bayes.run.context import RunContext


def run(ctx: RunContext, work: Path) -> dict[str, Any]:
    s = ctx.settings
    bayes = s.weights_mcmc if isinstance(s.weights_mcmc, bool) else set(s.weights_mcmc)
    res = weighting.run_ensemble(
        ctx.frames,
        None,
        scenarios_file=ctx.weighting_file,
        bayes=bayes,
        seed=ctx.seed,
        draws=s.draws,
        tune=s.tune,
        chains=s.chains,
        sampler=s.sampler,
        published_dir=ctx.published_dir,
        jobs=min(ctx.jobs, len(ctx.frames)),
        extend=s.extend,
    )
    tables = {k: v for k, v in res.items() if isinstance(v, pd.DataFrame)}
    info: dict[str, Any] = {"datasets": len(ctx.frames), "mcmc": s.weights_mcmc}
    info.update({k: len(v) for k, v in tables.items()})
    diag = tables.get("mcmc_diagnostics")
    if diag is not None:  # the report and the summary name MCMC fits that fail a threshold
        bad = diag[~diag["ok"].astype(bool)]
        info["mcmc_fits"] = len(diag)
        info["mcmc_trouble"] = [weighting.fit_label(r) for r in bad.to_dict("records")]
        info["mcmc_extended"] = int((diag["extended_thin"] > 1).sum())
    if ctx.restricted:  # every table through the policy; figures would bypass it
        for k, v in tables.items():
            write_table(ctx, work / f"{k}.csv", v)
    else:
        weighting.write_outputs(tables, str(res["sensitivity_text"]), work, status=ctx.status)
    return info
