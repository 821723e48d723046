"""Statistics of a member that no published number fixes, and their spread over members."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cst_bayes.core.config import (
    APPROACHES,
    STRATA,
    STRATUM,
)
from cst_bayes.core.errors import InputError
from cst_bayes.reconstruct.targets import K

# --------------------------------------------------------------------------------------
# Statistics no target fixes, and the ensemble
# --------------------------------------------------------------------------------------

#: Three-way patterns reported for the ensemble spread: share of agencies with all three.
TRIPLES: tuple[tuple[str, str, str], ...] = (
    ("court", "prosecutor", "mdt"),
    ("victim_service", "child_welfare", "task_force"),
    ("training", "task_force", "advocates"),
    ("prosecutor", "victim_service", "offense_code"),
)
UNTARGETED_COLUMNS = ["statistic", "stratum", "value"]


def untargeted_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Statistics of a member that no published number fixes.

    Per stratum (and ``all``): mean and SD of the approach count, the share of agencies with
    each count 0-9, the share with all three approaches of each :data:`TRIPLES` pattern,
    and the number of distinct approach patterns. The mean count is fixed by Table 1 (a
    check); everything else is free, so its spread across members shows what the tables
    cannot tell us.

    Returns
    -------
    pandas.DataFrame
        Columns ``statistic, stratum, value``.
    """
    x = df[list(APPROACHES)].to_numpy(dtype=np.int64)
    cnt = x.sum(axis=1)
    strata = df[STRATUM].astype(str).to_numpy()
    rows = []
    for s in ("all", *STRATA):
        m = np.ones(len(df), bool) if s == "all" else strata == s
        c = cnt[m]
        rows.append(("count_mean", s, float(c.mean())))
        rows.append(("count_sd", s, float(c.std(ddof=1))))
        for v in range(K + 1):
            rows.append((f"count_share_{v}", s, float(np.mean(c == v))))
        for tri in TRIPLES:
            idx = [APPROACHES.index(a) for a in tri]
            rows.append((f"all3_{'+'.join(tri)}", s, float(np.mean(x[m][:, idx].all(axis=1)))))
        patterns = x[m] @ (1 << np.arange(K))
        rows.append(("distinct_patterns", s, float(len(np.unique(patterns)))))
    return pd.DataFrame(rows, columns=UNTARGETED_COLUMNS)


def ensemble_spread(members: list[pd.DataFrame]) -> pd.DataFrame:
    """Spread of :func:`untargeted_stats` across members.

    Returns
    -------
    pandas.DataFrame
        Columns ``statistic, stratum, mean, sd, min, max, n_members``.
    """
    if not members:
        raise InputError("no members to summarise")
    allstats = pd.concat([untargeted_stats(m).assign(member=i) for i, m in enumerate(members)])
    g = allstats.groupby(["statistic", "stratum"], sort=False)["value"]
    out = g.agg(["mean", "std", "min", "max", "size"]).reset_index()
    return out.rename(columns={"std": "sd", "size": "n_members"})
