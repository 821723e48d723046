"""Stage ``models/<MODEL>``: one shipped model on every dataset (pooled over an ensemble)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from cst_bayes.bayes import layout, pooling
from cst_bayes.bayes import models as models_mod
from cst_bayes.core import config
from cst_bayes.core.disclosure import strip_row_level
from cst_bayes.core.fileio import atomic_path, mode_for, write_text
from cst_bayes.run.stages.common import write_table

if TYPE_CHECKING:
    from cst_bayes.run.context import RunContext

#: Diagnostics a model unit records in its manifest (the report and the summary read them).
DIAGNOSTICS = (
    "divergences", "max_r_hat", "min_ess_bulk", "min_ess_tail", "min_bfmi", "ok", "messages",
    "all_ok", "members_with_trouble", "flipping_terms", "extended_thin", "first_messages",
    "member_messages", "members_extended",
)  # fmt: skip


def run(ctx: RunContext, name: str, work: Path) -> dict[str, Any]:
    spec = ctx.specs[name]
    s = ctx.settings
    # lean files: the compare stage recomputes the pointwise log-likelihood from the data
    # (checks.loo_patterns) and the PPC draws its own replicates
    kw: dict[str, Any] = dict(
        draws=s.draws,
        tune=s.tune,
        chains=s.chains,
        seed=ctx.seed,
        sampler=s.sampler,
        pointwise=False,
        extend=s.extend,
    )
    info: dict[str, Any] = {"model": name, "datasets": len(ctx.frames)}
    if len(ctx.frames) > 1:
        res: Any = pooling.fit_ensemble(spec, ctx.frames, **kw)
        for attr in ("between", "variance_share", "per_member"):
            v = getattr(res, attr, None)
            if isinstance(v, pd.DataFrame):
                write_table(ctx, work / f"{attr}.csv", v, pair_with=config.OUTCOME)
    else:
        res = models_mod.fit(spec, ctx.frames[0], progress=False, **kw)
    diag = res.diagnostics
    info["diagnostics"] = {k: v for k, v in diag.items() if k in DIAGNOSTICS}
    info["diagnostics"].setdefault("ok", info["diagnostics"].get("all_ok"))
    for key in ("member_messages", "members_extended"):  # members by dataset name, not number
        per = info["diagnostics"].get(key)
        if per and len(ctx.dataset_ids) == len(ctx.frames):
            info["diagnostics"][key] = {ctx.dataset_ids[int(m) - 1]: v for m, v in per.items()}
    write_table(ctx, work / "summary.csv", res.summary, pair_with=config.OUTCOME)
    if getattr(spec, "text", None):
        write_text(work / "spec.toml", spec.text)
    idata = strip_row_level(res.idata) if ctx.restricted else res.idata
    with atomic_path(work / f"{name}.nc", mode=mode_for(ctx.status)) as tmp:
        layout.to_file(idata).to_netcdf(str(tmp), engine="h5netcdf")
    return info
