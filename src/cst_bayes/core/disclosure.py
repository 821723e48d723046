"""Small-cell suppression for outputs computed from restricted (real) microdata.

The LEA-CST microdata are restricted use: a count below :data:`cst_bayes.core.config.SMALL_CELL`
(5) can identify an agency (e.g. "1 of 19 state agencies has an MDT"). When a loaded frame
has ``attrs['restricted']`` True, every table written from it goes through
:func:`suppress_small_cells`. Synthetic (reconstructed) and simulated data are never
suppressed: they describe no real agency.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cst_bayes.core.config import APPROACHES, COUNT, OUTCOME, SMALL_CELL, STRATA, STRATUM
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
    for ds in (derived or {}).values():
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


# --------------------------------------------------------------------------- the output policy
#
# Counts alone are not the risk: a margin minus the printed strata, a full-precision
# chi-square or phi beside its margins, or a weighted share with derivable weights gives a
# hidden count back. The policy therefore works on *what a number depends on*: each output
# row is read for the variables and strata it is about, and it is printed only when every
# cell behind it passes. Cells are computed once from the microdata (:func:`small_cells`).

#: Tokens that name the approach count (``n_approaches``; PPC rows ``n_count=K``).
_COUNT_TOKENS = re.compile(rf"^({COUNT}|n_count)$")
_TOKEN_SPLIT = re.compile(r"[^A-Za-z0-9_+\-]+")
#: Columns that are labels or public design numbers, never blanked.
PUBLIC_COLUMNS: frozenset[str] = frozenset(
    {"n_stratum", "dof", "df_num", "df_den", "n_draws", "n_chains", "analysis", "n", "scale"}
)
_COUNT_COLUMN = re.compile(r"^(n_.*|total_.*|observed.*)$")


@dataclass(frozen=True)
class SmallCells:
    """Which cells of the microdata are small, and so which statistics may not be printed.

    ``cells`` holds ``(variable, stratum)`` pairs (stratum ``all`` for the whole sample)
    whose count or complement is below the threshold, closed under the rule that a
    variable with one hidden stratum cell also hides its ``all`` margin (else
    ``all - other strata`` gives the cell back). ``COUNT`` (``n_approaches``) is a sum of
    the approaches, so it is hidden in a stratum where any approach is. ``pairs`` are the
    2 x 2 tables (approach x approach, approach x outcome) over all agencies with a small
    cell: their phi, chi-square and odds ratios identify the cell with the margins.
    """

    threshold: int
    cells: frozenset[tuple[str, str]]
    pairs: frozenset[frozenset[str]]

    @property
    def sensitive(self) -> frozenset[str]:
        """Variables with a hidden cell (their whole-sample statistics are hidden)."""
        return frozenset(v for v, s in self.cells if s == "all")

    def cell_ok(self, variable: str, stratum: str = "all") -> bool:
        return (variable, stratum) not in self.cells

    def pair_ok(self, a: str, b: str) -> bool:
        """Whether the 2 x 2 table of ``a`` and ``b`` over all agencies has no small cell."""
        return a == b or frozenset((a, b)) not in self.pairs

    def row_ok(
        self, tokens: Iterable[str], *, about: Sequence[str] = (), pair_with: str | None = None
    ) -> bool:
        """Whether a row that names ``tokens`` (plus the variables ``about``) may be printed."""
        variables, strata = set(about), set()
        for t in tokens:
            if t in BINARY_VARIABLES:
                variables.add(t)
            elif _COUNT_TOKENS.match(t):
                variables.add(COUNT)
            elif t in STRATA or t == "all":
                strata.add(t)
        if pair_with is not None:
            approaches = {v for v in variables if v in APPROACHES}
            if any(not self.pair_ok(v, pair_with) for v in approaches):
                return False
        if len(variables) >= 2:  # a phi or 2 x 2 test: its cells and both margins
            vs = sorted(variables)
            return all(self.cell_ok(v) for v in vs) and all(
                self.pair_ok(a, b) for i, a in enumerate(vs) for b in vs[i + 1 :]
            )
        if len(variables) == 1:
            v = next(iter(variables))
            where = strata - {"all"} or {"all"}
            return all(self.cell_ok(v, s) for s in where)
        # a stratum term without a variable (a model's stratum effect) is about the outcome
        return all(self.cell_ok(OUTCOME, s) for s in strata - {"all"})


#: The 0/1 variables whose cells the policy tracks.
BINARY_VARIABLES: tuple[str, ...] = (*APPROACHES, OUTCOME)


def small_cells(frame: pd.DataFrame, threshold: int = SMALL_CELL) -> SmallCells:
    """The small cells of an agency-level frame (microdata contract)."""
    strata = frame[STRATUM].astype(str).to_numpy()
    n_all = len(frame)
    cells: set[tuple[str, str]] = set()

    def small(k: int, n: int) -> bool:
        return 0 <= k < threshold or 0 <= n - k < threshold

    for v in BINARY_VARIABLES:
        x = frame[v].to_numpy().astype(bool)
        for s in STRATA:
            in_s = strata == s
            if in_s.any() and small(int(x[in_s].sum()), int(in_s.sum())):
                cells.add((v, s))
        if small(int(x.sum()), n_all) or any((v, s) in cells for s in STRATA):
            cells.add((v, "all"))
    for s in STRATA:
        if any((a, s) in cells for a in APPROACHES):
            cells.add((COUNT, s))
    if any((a, "all") in cells for a in APPROACHES):
        cells.add((COUNT, "all"))
    pairs: set[frozenset[str]] = set()
    xs = {v: frame[v].to_numpy().astype(bool) for v in BINARY_VARIABLES}
    for i, a in enumerate(BINARY_VARIABLES):
        for b in BINARY_VARIABLES[i + 1 :]:
            n11 = int((xs[a] & xs[b]).sum())
            na, nb = int(xs[a].sum()), int(xs[b].sum())
            table = (n11, na - n11, nb - n11, n_all - na - nb + n11)
            if min(table) < threshold:
                pairs.add(frozenset((a, b)))
    return SmallCells(threshold, frozenset(cells), frozenset(pairs))


def _tokens(row: Iterable[Any]) -> set[str]:
    out: set[str] = set()
    for v in row:
        if isinstance(v, str):
            out.update(t for t in _TOKEN_SPLIT.split(v) if t)
    return out


def _is_number(v: Any) -> bool:
    if isinstance(v, bool | int | float | np.integer | np.floating | np.bool_):
        return True
    if isinstance(v, str):
        try:
            float(v)
        except ValueError:
            return v.strip().lower() in {"true", "false"}
        return True
    return False


def protect(
    df: pd.DataFrame,
    policy: SmallCells,
    *,
    about: Sequence[str] = (),
    pair_with: str | None = None,
    aggregate: Sequence[str] = (),
    flags: Sequence[str] = ("matches", "flag", "agrees", "significant"),
) -> pd.DataFrame:
    """The one gate every restricted-mode table passes before it is written.

    Each row is read for the variables and strata it names (in any text cell: ``court``,
    ``court|state``, ``stratum[state]``, ``n_count=3``), plus ``about`` for tables whose rows
    do not name their variable (the ANOVA of ``n_approaches``). A row that depends on a
    small cell (:meth:`SmallCells.row_ok`) keeps its labels; its counts read ``"<5"`` and
    every other number, flag or printed value is blanked. ``aggregate`` columns (a test
    over all strata printed on each stratum's row, e.g. Table 1's chi-square) are blanked
    on every row of a variable that has any hidden cell. ``pair_with`` adds the 2 x 2 table of
    each named approach with that variable (Figure 1, Table 3: approach x outcome).
    Finally any ``n_*`` count below the threshold, or whose complement in ``n_stratum`` is,
    reads ``"<5"`` whatever the row.
    """
    thr = policy.threshold
    marker = f"<{thr}"
    out = df.copy().astype(object)
    cols = list(out.columns)
    hidden = 0
    for i in range(len(out)):
        row = out.iloc[i]
        toks = _tokens(row.tolist())
        if not policy.row_ok(toks, about=about, pair_with=pair_with):
            hidden += 1
            for c in cols:
                v = row[c]
                if c in PUBLIC_COLUMNS or v is None or (isinstance(v, float) and math.isnan(v)):
                    continue
                if c in flags or _is_number(v):
                    out.iat[i, cols.index(c)] = marker if _COUNT_COLUMN.match(str(c)) else math.nan
        elif aggregate:
            variables = {t for t in toks if t in BINARY_VARIABLES} | set(about)
            if any(not policy.cell_ok(v, "all") for v in variables):
                for c in aggregate:
                    if c in cols:
                        out.iat[i, cols.index(c)] = math.nan
    counts = [c for c in cols if str(c).startswith("n_") and c not in PUBLIC_COLUMNS]
    if counts:
        totals = {"n_yes": "n_stratum"} if "n_stratum" in cols else {}
        derived = {c: [] for c in counts}
        out = suppress_small_cells(out, counts, thr, derived=derived, totals=totals)
    out.attrs["hidden_rows"] = hidden
    return out


def protect_tables(
    tables: Mapping[str, pd.DataFrame], policy: SmallCells
) -> dict[str, pd.DataFrame]:
    """The frequentist tables (``table1, anova, table2, fig1, table3, comparison``) after the policy."""
    rules: dict[str, dict[str, Any]] = {
        "table1": {"aggregate": ("chi2", "dof", "p_value")},
        "anova": {"about": (COUNT,), "aggregate": ("F", "p_value")},
        "fig1": {"pair_with": OUTCOME},
        "table3": {"pair_with": OUTCOME},
    }
    out = {}
    for name, t in tables.items():
        kw = rules.get(name, {})
        df = protect(t, policy, **kw)
        if name == "anova" and not policy.cell_ok(COUNT, "all"):
            df[["F", "p_value"]] = math.nan  # F pools every group mean
        if name == "fig1" and not policy.cell_ok(OUTCOME, "all"):
            # total_case is the outcome's margin; the shares and the test give it back
            for c in ("pct_no_case", "pct_case", "total_no_case", "total_case", "chi2", "p_value"):
                if c in df:
                    df[c] = math.nan
        out[name] = df
    return out


def suppress_ppc_counts(
    ppc: pd.DataFrame,
    *,
    threshold: int | None = None,
    n_by_stratum: dict[str, int] | None = None,
) -> pd.DataFrame:
    """Restricted-data mode: hide observed values that disclose fewer than 5 agencies.

    An observed agency count (``n_yes``, ``n_count=K``) is replaced by ``"<5"`` when it or
    its complement in the group (``n - count``, which discloses the few agencies *without*
    the attribute as surely) is below the threshold. A Figure 1 percentage is blanked when
    the count it implies (share x group size, group sizes from the ``n_yes`` row of
    ``all``) or its complement is small. The same holds for ``observed_min`` and
    ``observed_max``. Replicated quantiles come from the model, not from rows of data, and
    stay.

    Parameters
    ----------
    ppc
        Output of :func:`cst_bayes.checks.ppc.ppc_tables`.
    threshold
        Default :data:`cst_bayes.core.config.SMALL_CELL`.
    n_by_stratum
        Agencies per stratum (and ``all``); default ``ppc.attrs['n_by_stratum']``.
    """
    thr = SMALL_CELL if threshold is None else threshold
    sizes = dict(n_by_stratum or ppc.attrs.get("n_by_stratum") or {})
    out = ppc.copy()
    stat, where = out["statistic"], out["stratum_or_term"]
    is_count = (stat == "n_yes") | stat.str.startswith("n_count=")
    total = where.map(lambda g: sizes.get(str(g), np.inf)).astype(float)
    # Figure 1 shares: implied counts need the group sizes (agencies with / without a case)
    n_case = out.loc[(stat == "n_yes") & (where == "all"), "observed"]
    n_all = sizes.get("all", np.nan)
    if len(n_case):
        case = float(n_case.iloc[0])
        total = total.where(stat != "pct_case", case).where(stat != "pct_no_case", n_all - case)
    is_pct = stat.isin(["pct_case", "pct_no_case"])
    for col in ("observed", "observed_min", "observed_max"):
        if col not in out:
            continue
        v = pd.to_numeric(out[col], errors="coerce")
        count = v.where(~is_pct, v * total / 100.0).round()
        small = (is_count | is_pct) & ((count < thr) | (total - count < thr))
        # an unknown group size (NaN) cannot be checked: suppress the share to be safe
        small |= is_pct & total.isna()
        vals = out[col].astype(object)
        vals[small & is_count] = f"<{thr}"
        vals[small & is_pct] = np.nan
        out[col] = vals
    out.attrs["suppressed_cells"] = int(
        ((out["observed"] == f"<{thr}") | (is_pct & out["observed"].isna())).sum()
    )
    return out


#: PPC tables beyond the published ones: within-stratum 2 x 2 cells, case rates by count,
#: calibration deciles. Their observed values are cells of small groups whose complements
#: other rows print, so restricted runs show only what the model replicates.
PPC_CELL_TABLES: frozenset[str] = frozenset(
    {"approach_by_case", "rate_by_count", "calibration", "loo_pit"}
)


def protect_ppc(
    ppc: pd.DataFrame, policy: SmallCells, n_by_stratum: Mapping[str, int] | None = None
) -> pd.DataFrame:
    """A PPC table of restricted data after the policy: rows that depend on a small cell
    (:func:`protect`), observed counts and shares that are small or have a small complement
    (:func:`suppress_ppc_counts`), and the observed values of :data:`PPC_CELL_TABLES`."""
    out = suppress_ppc_counts(
        ppc, threshold=policy.threshold, n_by_stratum=dict(n_by_stratum or {}) or None
    )
    cells = out["table"].isin(PPC_CELL_TABLES)
    for col in ("observed", "observed_min", "observed_max", "ppp", "flag"):
        if col in out:
            out[col] = out[col].astype(object).where(~cells, np.nan)
    protected = protect(out, policy, pair_with=OUTCOME)
    protected.attrs.update(ppc.attrs)
    return protected


# --------------------------------------------------------------------------- row-level arrays


def strip_row_level(idata: Any) -> Any:
    """Keep only parameter-level variables of an InferenceData (restricted data).

    A variable survives only if every one of its dimensions is a dimension of the posterior
    (chain, draw, stratum, approach, ...); anything indexed by agency or covariate pattern
    (observed data, pointwise log-likelihood, predictions, design matrices) is dropped, and
    so are coordinates that carry agency identifiers.
    """
    import arviz as az

    allowed = set(idata.posterior.dims)
    keep = {}
    for g in idata.groups():
        ds = getattr(idata, g)
        ok = [v for v in ds.data_vars if set(ds[v].dims) <= allowed]
        if ok:
            sub = ds[ok]
            sub = sub.drop_vars([c for c in sub.coords if not set(sub[c].dims) <= allowed])
            keep[g] = sub
    out = az.InferenceData(**keep)
    for g in out.groups():
        getattr(out, g).attrs.update(getattr(idata, g).attrs)
    return out


#: Mode of a file that holds row-level restricted data (owner only).
MODE_ROW_LEVEL = 0o600


def write_row_level(idata: Any, path: str | Path) -> Path:
    """Write the row-level groups of a restricted fit, explicitly asked for (``--keep-row-level``).

    The file is marked RESTRICTED in every group's attributes and written 0600 (owner only),
    atomically.
    """
    from cst_bayes.core.fileio import atomic_path

    path = Path(path)
    for g in idata.groups():
        getattr(idata, g).attrs["data_status"] = "RESTRICTED"
        getattr(idata, g).attrs["row_level"] = "agency-level restricted microdata: do not share"
    with atomic_path(path, mode=MODE_ROW_LEVEL) as tmp:
        idata.to_netcdf(str(tmp), engine="h5netcdf")
    return path
