"""An audit of the published numbers: what can be recomputed from the tables themselves.

Every check is one row of a tidy frame ``id, table, description, status, expected,
observed``. ``status`` is

``pass``
    the printed figure is what the other printed figures imply (at printed precision);
``flag``
    a finding about the article: the printed figure disagrees with what the other figures
    imply, but a printing convention, a wording or a model choice explains it (a truncated
    percentage, a p-value that disagrees with its CI, a "Poisson" OR that behaves like a
    logistic one, an inconsistency in the running text);
``fail``
    the printed figures are mathematically impossible together (a chi-square p-value that
    the counts do not give, a correlation outside the bounds its margins allow, a correlation
    matrix that is not positive definite).

Nothing here needs microdata: Table 1's counts are complete, so its chi-square tests, the
agency-size means of the approach count and the bounds of everything else follow from them.
Checks are computed with scipy (``chi2_contingency``, ``norm``, ``f``); the bounds are closed
forms, documented where they are computed.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cst_bayes.audit.base import (
    AUDIT_COLUMNS,
    STATUSES,
    TABLE1_ORDER,
    TEXT,
    _Checks,
    _fmt,
    _in_printed,
    _round_half_up,
)
from cst_bayes.audit.tables import (
    _anova,
    _feasible_counts,
    _table1_chisq,
    _table1_exact,
    _table1_grim,
    _table1_pct,
    _table1_sums,
    _table2,
    _table3,
    approach_count_bounds,
    frechet_phi_bounds,
    implied_count_variance,
    wald_p_range,
)
from cst_bayes.audit.text import _figure1, _text
from cst_bayes.core.options import DEFAULT_SEED
from cst_bayes.data.published import load_all

__all__ = [
    "AUDIT_COLUMNS",
    "STATUSES",
    "TABLE1_ORDER",
    "TEXT",
    "_Checks",
    "_anova",
    "_feasible_counts",
    "_figure1",
    "_fmt",
    "_in_printed",
    "_round_half_up",
    "_table1_chisq",
    "_table1_exact",
    "_table1_grim",
    "_table1_pct",
    "_table1_sums",
    "_table2",
    "_table3",
    "_text",
    "approach_count_bounds",
    "format_checks",
    "frechet_phi_bounds",
    "implied_count_variance",
    "run_audit",
    "summary",
    "to_records",
    "wald_p_range",
    "write_audit",
]


def run_audit(published_dir: str | Path | None = None, *, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """Run every check on the published tables.

    Parameters
    ----------
    published_dir
        Folder with the four published CSVs (default ``config.PUBLISHED_DIR``).
    seed
        Seed of the Monte Carlo exact tests (the only stochastic checks); same seed, same output.

    Returns
    -------
    pandas.DataFrame
        Columns ``id, table, description, status, expected, observed`` (all text;
        ``status`` in ``pass|flag|fail``), one row per check, in a fixed order.

    Raises
    ------
    InputError
        When a table is malformed (see :mod:`cst_bayes.data.published`).
    """
    tabs = load_all(published_dir)
    out = _Checks()
    _table1_chisq(tabs.table1, out)
    _table1_exact(tabs.table1, out, seed=seed)
    _table1_sums(tabs.table1, out)
    _table1_pct(tabs.table1, out)
    _table1_grim(tabs.table1, out)
    _anova(tabs.table1, tabs.table2, out)
    _table2(tabs.table1, tabs.table2, out)
    _table3(tabs.table1, tabs.table3, out)
    _figure1(tabs.table1, out)
    _text(tabs, out)
    return out.frame()


def summary(checks: pd.DataFrame) -> dict[str, int]:
    """Number of checks per status (all three keys present)."""
    counts = checks["status"].value_counts()
    return {s: int(counts.get(s, 0)) for s in STATUSES}


def format_checks(checks: pd.DataFrame, *, width: int = 110) -> str:
    """A readable report: one line per check (status, id, verdict), then a summary count."""
    lines = []
    idw = min(int(checks["id"].str.len().max()), 48)
    for r in checks.to_dict("records"):
        verdict = f"{r['description']}: expected {r['expected']}; observed {r['observed']}"
        lines.append(f"{r['status'].upper():<4}  {r['id']:<{idw}}  {verdict}")
    n = summary(checks)
    lines.append("")
    lines.append(f"{len(checks)} checks: {n['pass']} pass, {n['flag']} flag, {n['fail']} fail")
    return "\n".join(lines)


def to_records(checks: pd.DataFrame) -> list[dict[str, str]]:
    """The checks as a list of ``{id, table, description, status, expected, observed}``."""
    return [
        {str(k): str(v) for k, v in row.items()}
        for row in checks[AUDIT_COLUMNS].to_dict(orient="records")
    ]


def write_audit(checks: pd.DataFrame, path: str | Path) -> Path:
    """Write the checks atomically: JSON (a list of checks) for ``.json``, else CSV."""
    from cst_bayes.core.fileio import write_csv, write_json

    path = Path(path)
    if path.suffix.lower() == ".json":
        return write_json(path, to_records(checks))
    return write_csv(
        path, checks[AUDIT_COLUMNS], status="PUBLIC", notes="audit of the published tables"
    )
