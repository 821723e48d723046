"""Stage ``tables``: the frequentist tables on every dataset, with a ``dataset`` column."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from cst_bayes import frequentist as freq
from cst_bayes.run.stages.common import write_table

if TYPE_CHECKING:
    from cst_bayes.run.context import RunContext


def run(ctx: RunContext, work: Path) -> dict[str, Any]:
    out: dict[str, list[pd.DataFrame]] = {}
    matched = total = 0
    for ds, df in zip(ctx.dataset_ids, ctx.frames, strict=True):
        res = dict(freq.reproduce(df))
        res["comparison"] = freq.compare(res)
        if ctx.restricted:
            res = freq.suppress(res, df)
        # restricted: only the rows still printed (the count must not say how many hidden
        # cells equal the article's); Table 3 on the link the article printed
        m, n = freq.reproduced_count(res["comparison"])
        matched, total = matched + m, total + n
        for k, v in res.items():
            v = pd.DataFrame(v).copy()
            v.insert(0, "dataset", ds)
            out.setdefault(k, []).append(v)
    info: dict[str, Any] = {}
    for k, parts in out.items():
        t = pd.concat(parts, ignore_index=True)
        write_table(ctx, work / f"{k}.csv", t)
        info[k] = len(t)
    info["published_matched"] = matched
    info["published_compared"] = total
    return info
