"""The published tables of Mitchell et al. (2024) as typed, validated pandas objects.

The four CSVs in ``data/published/`` are transcribed from the article and never edited
(each has a ``.meta.json`` provenance sidecar with its SHA-256). This module loads them
into tidy frames with fixed columns and checks them for *transcription* errors: a table
that fails here cannot have been printed as it is, or was mistyped when copied.

Two levels of strictness, on purpose:

* :func:`load_table1` and friends raise :class:`~cst_bayes.core.errors.InputError` on anything
  that no printing convention explains (unknown labels, counts outside ``0..n``, strata that
  do not add up, a percentage more than one printed unit away from its count, a correlation
  outside ``[-1, 1]``, a CI that does not bracket its OR).
* Smaller inconsistencies that a printing convention *does* explain (a percentage truncated
  instead of rounded, a p-value that disagrees with its CI) are findings about the article,
  not transcription errors: :mod:`cst_bayes.audit` reports them as ``flag``.

Printed p-values such as ``<0.001`` are kept as printed (``p_value_printed``) and parsed
into an operator (``p_op``: ``"<"`` or ``"="``), a number (``p_value``) and the number of
printed decimals (``p_decimals``), so a reproduction can be compared at printed precision.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cst_bayes.core.config import APPROACHES, N_BY_STRATUM, OUTCOME, PUBLISHED_DIR, STRATA
from cst_bayes.core.errors import InputError

#: File names inside the published folder.
FILES: dict[str, str] = {
    "table1": "table1_approaches_by_stratum.csv",
    "table2": "table2_phi_correlations.csv",
    "table3": "table3_odds_ratios.csv",
    "sampling_frames": "sampling_frames.csv",
}
#: Exact header of each CSV (order matters: the files are the article's layout).
COLUMNS: dict[str, tuple[str, ...]] = {
    "table1": (
        "variable",
        "label",
        "stratum",
        "n_yes",
        "n_stratum",
        "pct_published",
        "p_value_published",
    ),
    "table2": ("row", "col", "r", "stars", "stars_legible"),
    "table3": ("analysis", "term", "adjusted_for_size", "or", "ci_low", "ci_high", "p_value"),
    "sampling_frames": (
        "stratum",
        "frame",
        "sworn_officers",
        "population",
        "sampled",
        "selection",
        "respondents",
    ),
}
#: Row labels of Table 1: the nine approaches, then the outcome.
TABLE1_VARIABLES: tuple[str, ...] = (*APPROACHES, OUTCOME)
#: Stratum labels of Table 1: the pooled row first, as printed.
TABLE1_STRATA: tuple[str, ...] = ("all", *STRATA)
#: Stratum terms of Table 3 (reference ``1-49`` omitted).
STRATUM_TERMS: tuple[str, ...] = tuple(f"stratum[{s}]" for s in STRATA[1:])
#: Significance stars of Table 2 and the p-value bound they stand for.
STARS: dict[str, float] = {"***": 0.001, "**": 0.01, "*": 0.05}

_P_RE = re.compile(r"^\s*(<|<=|=)?\s*(0?\.\d+|1(?:\.0+)?|0)\s*$")


@dataclass(frozen=True)
class PublishedTables:
    """The four published tables, loaded and validated.

    Attributes
    ----------
    table1, table2, table3, sampling_frames
        Frames as returned by :func:`load_table1`, :func:`load_table2`,
        :func:`load_table3` and :func:`load_sampling_frames`.
    published_dir
        Folder they were read from.
    """

    table1: pd.DataFrame
    table2: pd.DataFrame
    table3: pd.DataFrame
    sampling_frames: pd.DataFrame
    published_dir: Path


def _dir(published_dir: str | Path | None) -> Path:
    return Path(published_dir) if published_dir is not None else PUBLISHED_DIR


def _rows(mask: pd.Series | np.ndarray) -> list[int]:
    """1-based data-row numbers (header excluded) where ``mask`` is true."""
    return [int(i) + 1 for i in np.flatnonzero(np.asarray(mask, dtype=bool))]


def read_printed(filename: str, published_dir: str | Path | None = None) -> pd.DataFrame:
    """A published CSV exactly as printed: every cell text (``'50.0'``, ``'<0.001'``).

    For comparisons against the printed figures, where precision is information; the typed
    ``load_*`` readers validate and convert.
    """
    path = _dir(published_dir) / filename
    if not path.is_file():
        raise InputError("published table not found", path=path)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _read(name: str, published_dir: str | Path | None) -> tuple[pd.DataFrame, Path]:
    """Read one published CSV as text, checking it exists and has exactly the known header."""
    path = _dir(published_dir) / FILES[name]
    if not path.is_file():
        raise InputError("published table not found", path=path)
    try:
        # Everything as text first: printed precision ("50.0" vs "50") is information.
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except UnicodeDecodeError:
        raise InputError("not a UTF-8 text table", path=path) from None
    except pd.errors.EmptyDataError:
        raise InputError("the file is empty", path=path) from None
    except pd.errors.ParserError as exc:
        raise InputError(f"not a well-formed CSV ({exc})", path=path) from None
    cols = tuple(str(c).strip() for c in df.columns)
    expected = COLUMNS[name]
    missing = [c for c in expected if c not in cols]
    if missing:
        raise InputError(
            f"missing columns {missing} (expected {list(expected)})", path=path, column=missing[0]
        )
    extra = [c for c in cols if c not in expected]
    if extra:
        raise InputError(
            f"unexpected columns {extra} (expected {list(expected)})", path=path, column=extra[0]
        )
    if len(df) == 0:
        raise InputError("the table has a header but no rows", path=path)
    df.columns = list(cols)
    df = df[list(expected)].apply(lambda s: s.str.strip())
    return df, path


def _numeric(df: pd.DataFrame, col: str, path: Path, *, integer: bool = False) -> pd.Series:
    """Parse a text column as numbers; empty or non-numeric cells raise naming the rows."""
    vals = pd.to_numeric(df[col].where(df[col] != ""), errors="coerce")
    bad = vals.isna()
    if integer:
        bad |= vals.notna() & (vals != np.round(vals))
    if bad.any():
        what = "integers" if integer else "numbers"
        raise InputError(
            f"expected {what}, got {sorted(set(df.loc[bad, col]))[:5]}",
            path=path,
            column=col,
            rows=_rows(bad),
        )
    return vals.astype("int64") if integer else vals.astype(float)


def _decimals(text: pd.Series) -> pd.Series:
    """Number of printed decimals of each numeric string (``"50.0"`` -> 1, ``"6"`` -> 0)."""
    return text.map(lambda s: len(s.split(".", 1)[1]) if "." in s else 0).astype("int64")


def parse_p(printed: str) -> tuple[str, float, int]:
    """Parse a printed p-value into ``(operator, value, decimals)``.

    ``"<0.001"`` -> ``("<", 0.001, 3)``; ``".05"`` -> ``("=", 0.05, 2)``; ``"0.95"`` ->
    ``("=", 0.95, 2)``. Raises ``ValueError`` for anything else.
    """
    m = _P_RE.match(printed)
    if not m:
        raise ValueError(f"not a printed p-value: {printed!r}")
    op = {"<": "<", "<=": "<", "=": "=", None: "="}[m.group(1)]
    num = m.group(2)
    dec = len(num.split(".", 1)[1]) if "." in num else 0
    return op, float(num), dec


def p_interval(op: str, value: float, decimals: int) -> tuple[float, float]:
    """The set of true p-values that print as ``op value`` at ``decimals`` decimals.

    ``("<", 0.001, 3)`` -> ``(0, 0.001)``; ``("=", 0.05, 2)`` -> ``(0.045, 0.055)``
    (half-open, half a printed unit either side).
    """
    if op == "<":
        return 0.0, value
    half = 0.5 * 10.0 ** (-decimals)
    return max(value - half, 0.0), min(value + half, 1.0)


def _parse_p_column(df: pd.DataFrame, col: str, path: Path) -> pd.DataFrame:
    parsed, bad = [], []
    for i, s in enumerate(df[col]):
        try:
            parsed.append(parse_p(s))
        except ValueError:
            parsed.append(("=", np.nan, 0))
            bad.append(i + 1)
    if bad:
        raise InputError(
            f"not a printed p-value (expected e.g. 0.27, .05 or <0.001): {sorted(set(df[col].iloc[[b - 1 for b in bad]]))[:5]}",
            path=path,
            column=col,
            rows=bad,
        )
    out = pd.DataFrame(parsed, columns=["p_op", "p_value", "p_decimals"], index=df.index)
    out["p_decimals"] = out["p_decimals"].astype("int64")
    out.insert(0, "p_value_printed", df[col].astype(str))
    if ((out["p_value"] < 0) | (out["p_value"] > 1)).any():
        bad_mask = (out["p_value"] < 0) | (out["p_value"] > 1)
        raise InputError("p-values must lie in [0, 1]", path=path, column=col, rows=_rows(bad_mask))
    return out


def _check_labels(df: pd.DataFrame, col: str, allowed: tuple[str, ...], path: Path) -> None:
    bad = ~df[col].isin(allowed)
    if bad.any():
        raise InputError(
            f"unknown labels {sorted(set(df.loc[bad, col]))[:5]} (allowed: {list(allowed)})",
            path=path,
            column=col,
            rows=_rows(bad),
        )


def load_table1(published_dir: str | Path | None = None) -> pd.DataFrame:
    """Table 1: each approach and the outcome by stratum, with the chi-square p-value.

    Parameters
    ----------
    published_dir
        Folder holding the published CSVs (default ``config.PUBLISHED_DIR``).

    Returns
    -------
    pandas.DataFrame
        One row per (variable, stratum), 50 rows, columns ``variable, label, stratum,
        n_yes, n_stratum, pct_published, pct_decimals, p_value_printed, p_op, p_value,
        p_decimals``. ``stratum`` is ``all`` or one of ``config.STRATA``.

    Raises
    ------
    InputError
        Unknown variable or stratum labels, a (variable, stratum) missing or repeated,
        counts outside ``0..n``, ``n_stratum`` disagreeing with the respondents by stratum,
        strata not summing to the ``all`` row, a percentage more than one printed unit from
        its count, or p-values that differ within a variable.
    """
    df, path = _read("table1", published_dir)
    _check_labels(df, "variable", TABLE1_VARIABLES, path)
    _check_labels(df, "stratum", TABLE1_STRATA, path)
    dup = df.duplicated(["variable", "stratum"], keep=False)
    if dup.any():
        raise InputError(
            "repeated (variable, stratum) rows", path=path, column="stratum", rows=_rows(dup)
        )
    present = set(zip(df["variable"], df["stratum"]))
    absent = [f"{v}/{s}" for v in TABLE1_VARIABLES for s in TABLE1_STRATA if (v, s) not in present]
    if absent:
        raise InputError(
            f"missing (variable, stratum) rows: {absent[:5]}", path=path, column="stratum"
        )

    n_yes = _numeric(df, "n_yes", path, integer=True)
    n = _numeric(df, "n_stratum", path, integer=True)
    pct = _numeric(df, "pct_published", path)
    bad = (n_yes < 0) | (n_yes > n)
    if bad.any():
        raise InputError("counts outside 0..n_stratum", path=path, column="n_yes", rows=_rows(bad))
    expected_n = df["stratum"].map({**N_BY_STRATUM, "all": sum(N_BY_STRATUM.values())})
    bad = n != expected_n
    if bad.any():
        raise InputError(
            f"n_stratum disagrees with the respondents by stratum {dict(N_BY_STRATUM)}",
            path=path,
            column="n_stratum",
            rows=_rows(bad),
        )

    out = pd.DataFrame(
        {
            "variable": df["variable"],
            "label": df["label"],
            "stratum": df["stratum"],
            "n_yes": n_yes,
            "n_stratum": n,
            "pct_published": pct,
            "pct_decimals": _decimals(df["pct_published"]),
        }
    )
    is_all = out["stratum"] == "all"
    sums = out[~is_all].groupby("variable", sort=False)[["n_yes", "n_stratum"]].sum()
    for col in ("n_yes", "n_stratum"):
        total = out.loc[is_all].set_index("variable")[col]
        off = sums[col].reindex(total.index) != total
        if off.any():
            bad = is_all & out["variable"].isin(off[off].index)
            raise InputError(
                f"strata do not sum to the 'all' row for {sorted(off[off].index)}",
                path=path,
                column=col,
                rows=_rows(bad),
            )
    # One printed unit, not half: the article truncates a few percentages (the audit flags
    # those); anything further away is a transcription error.
    exact = 100.0 * out["n_yes"] / out["n_stratum"]
    bad = (exact - out["pct_published"]).abs() > 10.0 ** (-out["pct_decimals"]) + 1e-9
    if bad.any():
        raise InputError(
            "percentage disagrees with n_yes/n_stratum by more than one printed unit",
            path=path,
            column="pct_published",
            rows=_rows(bad),
        )
    p = _parse_p_column(df, "p_value_published", path)
    out = pd.concat([out, p], axis=1)
    # The chi-square p belongs to the whole 2x4 table, so it is printed once per variable.
    varies = out.groupby("variable", sort=False)["p_value_printed"].transform("nunique") > 1
    if varies.any():
        raise InputError(
            "p-value differs between rows of one variable",
            path=path,
            column="p_value_published",
            rows=_rows(varies),
        )
    order = {v: i for i, v in enumerate(TABLE1_VARIABLES)}
    sorder = {s: i for i, s in enumerate(TABLE1_STRATA)}
    out = out.assign(_v=out["variable"].map(order), _s=out["stratum"].map(sorder))
    out = out.sort_values(["_v", "_s"]).drop(columns=["_v", "_s"]).reset_index(drop=True)
    out.attrs["source"] = str(path)
    return out


def load_table2(published_dir: str | Path | None = None) -> pd.DataFrame:
    """Table 2: pairwise phi correlations of the nine approaches (lower triangle).

    Returns
    -------
    pandas.DataFrame
        36 rows, columns ``row, col, r, r_decimals, stars, stars_legible, p_upper``.
        ``stars`` is ``""`` when none are printed; ``stars_legible`` is a bool (``False``
        where the source's stars cannot be read, and then ``stars`` carries no information);
        ``p_upper`` is the p bound the stars stand for (NaN for no or illegible stars).

    Raises
    ------
    InputError
        Unknown labels, a pair missing, repeated or on the diagonal, ``r`` outside
        ``[-1, 1]``, unknown star strings or ``stars_legible`` not ``yes``/``no``.
    """
    df, path = _read("table2", published_dir)
    _check_labels(df, "row", APPROACHES, path)
    _check_labels(df, "col", APPROACHES, path)
    diag = df["row"] == df["col"]
    if diag.any():
        raise InputError(
            "a variable correlated with itself", path=path, column="col", rows=_rows(diag)
        )
    pair = df.apply(lambda r: tuple(sorted((r["row"], r["col"]))), axis=1)
    dup = pair.duplicated(keep=False)
    if dup.any():
        raise InputError("pair listed twice", path=path, column="row", rows=_rows(dup))
    k = len(APPROACHES)
    if len(df) != k * (k - 1) // 2:
        present = set(pair)
        absent = [
            f"{a}/{b}"
            for i, a in enumerate(APPROACHES)
            for b in APPROACHES[:i]
            if tuple(sorted((a, b))) not in present
        ]
        raise InputError(
            f"expected {k * (k - 1) // 2} pairs, missing {absent[:5]}", path=path, column="row"
        )
    r = _numeric(df, "r", path)
    bad = (r < -1) | (r > 1)
    if bad.any():
        raise InputError("correlation outside [-1, 1]", path=path, column="r", rows=_rows(bad))
    bad = ~df["stars"].isin(["", *STARS])
    if bad.any():
        raise InputError(
            f"unknown stars {sorted(set(df.loc[bad, 'stars']))} (allowed: '', *, **, ***)",
            path=path,
            column="stars",
            rows=_rows(bad),
        )
    bad = ~df["stars_legible"].isin(["yes", "no"])
    if bad.any():
        raise InputError(
            "stars_legible must be yes or no", path=path, column="stars_legible", rows=_rows(bad)
        )
    legible = df["stars_legible"] == "yes"
    out = pd.DataFrame(
        {
            "row": df["row"],
            "col": df["col"],
            "r": r,
            "r_decimals": _decimals(df["r"].str.lstrip("-")),
            "stars": df["stars"],
            "stars_legible": legible.astype(bool),
            "p_upper": [
                STARS.get(s, np.nan) if leg else np.nan for s, leg in zip(df["stars"], legible)
            ],
        }
    )
    out.attrs["source"] = str(path)
    return out


def phi_matrix(table2: pd.DataFrame) -> pd.DataFrame:
    """The full symmetric 9x9 correlation matrix (unit diagonal) from :func:`load_table2`."""
    m = pd.DataFrame(np.eye(len(APPROACHES)), index=list(APPROACHES), columns=list(APPROACHES))
    for row, col, r in zip(table2["row"], table2["col"], table2["r"]):
        m.loc[row, col] = m.loc[col, row] = r
    return m


def load_table3(published_dir: str | Path | None = None) -> pd.DataFrame:
    """Table 3: the published "Poisson regression" odds ratios of ``any_cst``.

    Returns
    -------
    pandas.DataFrame
        Columns ``analysis`` (1: nine approaches, 2: ``n_approaches``), ``term``,
        ``adjusted_for_size`` (``"no"``/``"yes"``), ``or``, ``ci_low``, ``ci_high``,
        ``or_decimals``, ``p_value_printed``, ``p_op``, ``p_value``, ``p_decimals``.

    Raises
    ------
    InputError
        Unknown analysis/term/adjustment labels, repeated rows, stratum terms in an
        unadjusted model, non-positive ORs, or a CI that does not bracket its OR.
    """
    df, path = _read("table3", published_dir)
    _check_labels(df, "analysis", ("1", "2"), path)
    _check_labels(df, "adjusted_for_size", ("no", "yes"), path)
    allowed = {"1": (*APPROACHES, *STRATUM_TERMS), "2": ("n_approaches", *STRATUM_TERMS)}
    bad = ~df.apply(lambda r: r["term"] in allowed.get(r["analysis"], ()), axis=1)
    if bad.any():
        raise InputError(
            f"unknown terms {sorted(set(df.loc[bad, 'term']))[:5]} (analysis 1: approaches, 2: n_approaches; plus {list(STRATUM_TERMS)})",
            path=path,
            column="term",
            rows=_rows(bad),
        )
    bad = df["term"].isin(STRATUM_TERMS) & (df["adjusted_for_size"] == "no")
    if bad.any():
        raise InputError(
            "a stratum term in a model not adjusted for size",
            path=path,
            column="adjusted_for_size",
            rows=_rows(bad),
        )
    dup = df.duplicated(["analysis", "term", "adjusted_for_size"], keep=False)
    if dup.any():
        raise InputError(
            "repeated (analysis, term, adjusted_for_size) rows",
            path=path,
            column="term",
            rows=_rows(dup),
        )
    vals = {c: _numeric(df, c, path) for c in ("or", "ci_low", "ci_high")}
    for c, v in vals.items():
        bad = v <= 0
        if bad.any():
            raise InputError(
                "odds ratios and CI limits must be positive", path=path, column=c, rows=_rows(bad)
            )
    bad = (vals["ci_low"] > vals["or"]) | (vals["or"] > vals["ci_high"])
    if bad.any():
        col = "ci_low" if (vals["ci_low"] > vals["or"])[bad].any() else "ci_high"
        raise InputError(
            "the 95% CI does not bracket the OR", path=path, column=col, rows=_rows(bad)
        )
    out = pd.DataFrame(
        {
            "analysis": df["analysis"].astype("int64"),
            "term": df["term"],
            "adjusted_for_size": df["adjusted_for_size"],
            "or": vals["or"],
            "ci_low": vals["ci_low"],
            "ci_high": vals["ci_high"],
            "or_decimals": _decimals(df["or"]),
        }
    )
    out = pd.concat([out, _parse_p_column(df, "p_value", path)], axis=1)
    out.attrs["source"] = str(path)
    return out


def load_sampling_frames(published_dir: str | Path | None = None) -> pd.DataFrame:
    """The four sampling frames: population, sample and respondents by stratum.

    Returns
    -------
    pandas.DataFrame
        Columns ``stratum, frame, sworn_officers, population, sampled, selection,
        respondents``, counts as int64, one row per ``config.STRATA`` label.

    Raises
    ------
    InputError
        Unknown or repeated strata, non-integer counts, ``sampled > population``,
        ``respondents > sampled`` or respondents disagreeing with ``config.N_BY_STRATUM``.
    """
    df, path = _read("sampling_frames", published_dir)
    _check_labels(df, "stratum", STRATA, path)
    dup = df["stratum"].duplicated(keep=False)
    if dup.any() or len(df) != len(STRATA):
        raise InputError(
            f"expected one row per stratum {list(STRATA)}",
            path=path,
            column="stratum",
            rows=_rows(dup),
        )
    out = df.copy()
    for c in ("frame", "population", "sampled", "respondents"):
        out[c] = _numeric(df, c, path, integer=True)
    for lo, hi in (("sampled", "population"), ("respondents", "sampled")):
        bad = (out[lo] < 0) | (out[lo] > out[hi])
        if bad.any():
            raise InputError(f"{lo} must lie in 0..{hi}", path=path, column=lo, rows=_rows(bad))
    bad = out["respondents"] != out["stratum"].map(N_BY_STRATUM)
    if bad.any():
        raise InputError(
            f"respondents disagree with Table 1's stratum sizes {dict(N_BY_STRATUM)}",
            path=path,
            column="respondents",
            rows=_rows(bad),
        )
    out.attrs["source"] = str(path)
    return out


def load_all(published_dir: str | Path | None = None) -> PublishedTables:
    """Load and validate all four published tables from one folder."""
    d = _dir(published_dir)
    return PublishedTables(
        table1=load_table1(d),
        table2=load_table2(d),
        table3=load_table3(d),
        sampling_frames=load_sampling_frames(d),
        published_dir=d,
    )


def margins(table1: pd.DataFrame, stratum: str = "all") -> pd.Series:
    """Proportion answering yes for each variable in one stratum of Table 1 (exact counts)."""
    t = table1[table1["stratum"] == stratum].set_index("variable")
    return (t["n_yes"] / t["n_stratum"]).rename("p")
