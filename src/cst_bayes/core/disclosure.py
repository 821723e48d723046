"""Small-cell suppression for outputs computed from restricted (real) microdata.

The LEA-CST microdata are restricted use: a count below :data:`cst_bayes.core.config.SMALL_CELL`
(5) can identify an agency (e.g. "1 of 19 state agencies has an MDT"). When a loaded frame
has ``attrs['restricted']`` True, every table written from it goes through
:func:`suppress_small_cells`. Synthetic (reconstructed) and simulated data are never
suppressed: they describe no real agency.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from cst_bayes.core.config import SMALL_CELL
from cst_bayes.core.errors import InputError

#: What a suppressed count is replaced with.
SUPPRESSED: str = f"<{SMALL_CELL}"


def default_derived(columns: Sequence[str], count_columns: Sequence[str]) -> dict[str, list[str]]:
    """Percentage columns derived from each count column, by the package's naming convention.

    ``n_yes`` -> ``pct`` (Table 1); ``n_<x>`` -> ``pct_<x>`` (Figure 1: ``n_case`` ->
    ``pct_case``). Only columns present in ``columns`` are returned.
    """
    out: dict[str, list[str]] = {}
    for c in count_columns:
        cands = ["pct"] if c == "n_yes" else []
        if c.startswith("n_"):
            cands.append("pct_" + c[2:])
        out[c] = [p for p in cands if p in columns]
    return out


def suppress_small_cells(
    df: pd.DataFrame,
    count_columns: Sequence[str],
    threshold: int = SMALL_CELL,
    *,
    derived: Mapping[str, Sequence[str]] | None = None,
    totals: Mapping[str, str] | None = None,
    keep_zero: bool = False,
) -> pd.DataFrame:
    """Replace counts below ``threshold`` by ``"<threshold>"`` and blank what they reveal.

    Parameters
    ----------
    df
        A tidy output table (not modified).
    count_columns
        Columns holding agency counts.
    threshold
        Counts below ``threshold`` (zero included) are suppressed: a zero tells that *every*
        agency of the group lacks something, which is group disclosure.
    keep_zero
        Keep zeros (the common "1 to threshold-1" convention) where structural zeros matter
        more than group disclosure.
    derived
        For each count column, the columns computed from it (percentages), blanked (NaN)
        on the rows where the count is suppressed. Default: :func:`default_derived`.
    totals
        For each count column, the column holding its denominator. When given, a count
        whose complement ``total - count`` is below the threshold is suppressed as well,
        because "33 of 34" discloses the single agency without the approach as surely as
        "1 of 34" does.

    Returns
    -------
    pandas.DataFrame
        A copy; suppressed count columns become object columns holding ints and the string
        ``"<5"``. ``attrs['suppressed_cells']`` counts the cells replaced.

    Raises
    ------
    InputError
        When a named column is missing or ``threshold`` is not a positive integer.
    """
    if not isinstance(threshold, int) or threshold < 1:
        raise InputError(f"threshold must be a positive integer, got {threshold!r}")
    cols = list(df.columns)
    missing = [c for c in count_columns if c not in cols]
    for c, ds in (derived or {}).items():
        missing += [d for d in ds if d not in cols]
    missing += [t for t in (totals or {}).values() if t not in cols]
    if missing:
        raise InputError(f"columns to suppress are not in the table: {missing}", column=missing[0])
    derived = dict(derived) if derived is not None else default_derived(cols, count_columns)
    totals = dict(totals or {})
    marker = f"<{threshold}"
    out = df.copy()
    n_suppressed = 0
    for c in count_columns:
        values = pd.to_numeric(df[c], errors="coerce")
        low = 0 if keep_zero else -1
        small = (values > low) & (values < threshold)
        if c in totals:
            rest = pd.to_numeric(df[totals[c]], errors="coerce") - values
            small |= (rest > low) & (rest < threshold)
        if not small.any():
            continue
        n_suppressed += int(small.sum())
        col = out[c].astype(object)
        col[small] = marker
        out[c] = col
        for d in derived.get(c, []):
            out[d] = out[d].astype(float).where(~small, math.nan)
    out.attrs["suppressed_cells"] = n_suppressed
    return out
