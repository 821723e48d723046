"""The reproduced tables beside the printed ones, and the tables verb's writer.

:func:`compare` puts every reproduced number beside the published one with a ``matches``
flag; :func:`suppress` applies the disclosure policy to restricted outputs;
:func:`write_tables` writes the six CSVs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from cst_bayes.core.config import SMALL_CELL
from cst_bayes.core.disclosure import protect_tables, small_cells
from cst_bayes.core.options import DataClass
from cst_bayes.data.published import read_printed
from cst_bayes.frequentist.tables import COMPARISON_COLUMNS, LINKS, Link, reproduce

#: Figures the article gives in its text rather than in a table (Figure 1, ANOVA).
FIG1_TEXT_PCT: dict[str, tuple[str, str]] = {"offense_code": ("54.7", "49.5")}
#: Figure 1: offense code is the one approach *not* significantly associated with a case.
FIG1_NOT_SIGNIFICANT: frozenset[str] = frozenset({"offense_code"})
ANOVA_TEXT_P: str = "<0.001"


def printed_matches(printed: str, value: float) -> bool:
    """Whether ``value`` is consistent with a number as printed.

    ``"<0.001"`` (any ``<x``) matches values below ``x``; a number printed with *d* decimals
    matches values inside its rounding interval ``[printed - 0.5e-d, printed + 0.5e-d]``
    (closed, since a value on the boundary rounds either way depending on convention).
    Empty or non-numeric printed cells and NaN values never match.
    """
    s = str(printed).strip()
    if not s or value is None or not np.isfinite(value):
        return False
    if s.startswith("<"):
        return value < float(s[1:])
    if s.startswith(">"):
        return value > float(s[1:])
    try:
        target = float(s)
    except ValueError:
        return False
    decimals = len(s.split(".")[1]) if "." in s else 0
    half = 0.5 * 10.0 ** (-decimals)
    return abs(value - target) <= half + 1e-12 * max(1.0, abs(target))


def _stars(p: float) -> str:
    if not np.isfinite(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""


def _read_published(name: str) -> pd.DataFrame:
    """A published CSV as printed text (:func:`cst_bayes.data.published.read_printed`)."""
    return read_printed(name)


def _compare_table1(rep_table: pd.DataFrame) -> list[tuple]:
    rows: list[tuple] = []
    pub = _read_published("table1_approaches_by_stratum.csv")
    rep = rep_table.set_index(["variable", "stratum"])
    for rec in pub.to_dict("records"):
        key = (rec["variable"], rec["stratum"])
        if key not in rep.index:
            continue
        r = rep.loc[key]
        item = f"{rec['variable']}|{rec['stratum']}"
        rows.append(
            (
                "table1",
                item,
                "n_yes",
                "",
                rec["n_yes"],
                float(r["n_yes"]),
                printed_matches(rec["n_yes"], float(r["n_yes"])),
            )
        )
        rows.append(
            (
                "table1",
                item,
                "n_stratum",
                "",
                rec["n_stratum"],
                float(r["n_stratum"]),
                printed_matches(rec["n_stratum"], float(r["n_stratum"])),
            )
        )
        rows.append(
            (
                "table1",
                item,
                "pct",
                "",
                rec["pct_published"],
                float(r["pct"]),
                printed_matches(rec["pct_published"], float(r["pct"])),
            )
        )
        if rec["stratum"] == "all":  # one test per variable, printed on every row
            rows.append(
                (
                    "table1",
                    rec["variable"],
                    "p_value",
                    "",
                    rec["p_value_published"],
                    float(r["p_value"]),
                    printed_matches(rec["p_value_published"], float(r["p_value"])),
                )
            )
    return rows


def _compare_anova(rep_table: pd.DataFrame) -> list[tuple]:
    rows: list[tuple] = []
    a = rep_table
    p = float(a["p_value"].iloc[0]) if len(a) else math.nan
    rows.append(
        (
            "anova",
            "n_approaches~stratum",
            "p_value",
            "",
            ANOVA_TEXT_P,
            p,
            printed_matches(ANOVA_TEXT_P, p),
        )
    )
    return rows


def _compare_table2(rep_table: pd.DataFrame) -> list[tuple]:
    rows: list[tuple] = []
    pub = _read_published("table2_phi_correlations.csv")
    rep = rep_table.set_index(["row", "col"])
    for rec in pub.to_dict("records"):
        if (rec["row"], rec["col"]) not in rep.index:
            continue
        r = rep.loc[(rec["row"], rec["col"])]
        item = f"{rec['row']}|{rec['col']}"
        rows.append(
            (
                "table2",
                item,
                "r",
                "",
                rec["r"],
                float(r["r"]),
                printed_matches(rec["r"], float(r["r"])),
            )
        )
        stars = _stars(float(r["p_value"]))
        if rec["stars_legible"].strip().lower() == "yes":
            rows.append(("table2", item, "stars", "", rec["stars"], stars, rec["stars"] == stars))
        else:
            rows.append(("table2", item, "stars", "", "unknown", stars, False))
    return rows


def _compare_fig1(rep_table: pd.DataFrame) -> list[tuple]:
    rows: list[tuple] = []
    rep = rep_table.set_index("variable")
    for var, (pno, pcase) in FIG1_TEXT_PCT.items():
        if var in rep.index:
            rows.append(
                (
                    "fig1",
                    var,
                    "pct_no_case",
                    "",
                    pno,
                    float(rep["pct_no_case"][var]),
                    printed_matches(pno, float(rep["pct_no_case"][var])),
                )
            )
            rows.append(
                (
                    "fig1",
                    var,
                    "pct_case",
                    "",
                    pcase,
                    float(rep["pct_case"][var]),
                    printed_matches(pcase, float(rep["pct_case"][var])),
                )
            )
    for var in rep.index:
        p = float(rep["p_value"][var])
        expected = "no" if var in FIG1_NOT_SIGNIFICANT else "yes"
        got = "" if not np.isfinite(p) else ("yes" if p < 0.05 else "no")
        rows.append(("fig1", var, "significant_0.05", "", expected, got, got == expected))
    return rows


def _compare_table3(rep_table: pd.DataFrame) -> list[tuple]:
    rows: list[tuple] = []
    # The printed 'or' column holds the estimate on either link: call it what it is here.
    pub = _read_published("table3_odds_ratios.csv").rename(columns={"or": "estimate"})
    rep = rep_table.copy()
    rep["analysis"] = rep["analysis"].astype(str)
    rep = rep.set_index(["analysis", "term", "adjusted_for_size", "link"])
    for lk in LINKS:
        for rec in pub.to_dict("records"):
            key = (str(rec["analysis"]), rec["term"], rec["adjusted_for_size"], lk)
            if key not in rep.index:
                continue
            r = rep.loc[key]  # type: ignore[index]  # a full MultiIndex key; the stubs allow only (row, col)
            item = f"{rec['analysis']}|{rec['term']}|{rec['adjusted_for_size']}"
            for q, printed, col in (
                ("estimate", rec["estimate"], "estimate"),
                ("ci_low", rec["ci_low"], "ci_low"),
                ("ci_high", rec["ci_high"], "ci_high"),
                ("p_value", rec["p_value"], "p_value"),
            ):
                v = float(r[col])
                rows.append(("table3", item, q, lk, printed, v, printed_matches(printed, v)))
    return rows


_COMPARERS = {
    "table1": _compare_table1,
    "anova": _compare_anova,
    "table2": _compare_table2,
    "fig1": _compare_fig1,
    "table3": _compare_table3,
}


def compare(reproduced: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Put each reproduced number beside the published one.

    Parameters
    ----------
    reproduced
        Mapping with any of the keys ``table1``, ``anova``, ``table2``, ``fig1``,
        ``table3`` (as returned by :func:`reproduce`); missing keys are skipped.

    Returns
    -------
    pandas.DataFrame
        Columns ``table, item, quantity, link, published, reproduced, matches``.
        ``published`` is the printed text; ``reproduced`` the unrounded number (for star
        comparisons the reproduced stars, for the Figure 1 significance ``yes``/``no``).
        ``matches`` is True when the reproduction rounds to the printed figure (see
        :func:`printed_matches`). ``link`` is set for Table 3 rows only: both links are
        compared, so the rows show which model the published numbers agree with.
        Table 2 stars printed as illegible are compared as ``unknown`` (matches is False).
    """
    rows: list[tuple] = []
    for name, fn in _COMPARERS.items():
        if name in reproduced:
            rows.extend(fn(reproduced[name]))
    out = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    out["matches"] = out["matches"].astype(bool)
    return out


#: The link whose Table 3 estimates the article printed: the other link's rows are compared
#: to show which model the printed numbers agree with, not counted as reproductions.
EXPECTED_LINK: dict[str, str] = {"table3": "logit"}


def reproduced_count(comparison: pd.DataFrame) -> tuple[int, int]:
    """(matched, compared) over comparison rows of the expected link (:data:`EXPECTED_LINK`).

    Rows of tables without a link all count; blank ``matches`` (numbers that restricted
    mode hid) are not compared.
    """
    link = comparison["link"].fillna("").astype(str)
    want = comparison["table"].map(EXPECTED_LINK).fillna("")
    keep = (want == "") | (link == want)
    m = comparison.loc[keep, "matches"].astype(str).str.strip().str.lower()
    shown = m[m.isin(["true", "false", "1", "0"])]
    return int(shown.isin(["true", "1"]).sum()), len(shown)


def summarise_comparison(comparison: pd.DataFrame) -> pd.DataFrame:
    """Matches per table (and link for Table 3): columns ``table, link, matched, total``."""
    g = comparison.groupby(["table", "link"], sort=False)["matches"]
    return pd.DataFrame({"matched": g.sum().astype(int), "total": g.size()}).reset_index()


def suppress(
    tables: Mapping[str, pd.DataFrame], frame: pd.DataFrame, threshold: int | None = None
) -> dict[str, pd.DataFrame]:
    """The frequentist outputs of restricted microdata after the disclosure policy.

    Every table goes through :func:`cst_bayes.core.disclosure.protect_tables` with the small
    cells of ``frame``: counts below the threshold (or with a small complement) read
    ``"<5"``, a variable with a hidden cell loses its ``all`` margin and its chi-square,
    phi, Figure 1 row and Table 3 terms, and the comparison keeps no ``matches`` flag or
    reproduced value beside them.
    """
    thr = SMALL_CELL if threshold is None else threshold
    return protect_tables(tables, small_cells(frame, thr))


def summary_text(comparison: pd.DataFrame, *, warnings_: Iterable[str] = ()) -> str:
    """A few lines saying how many published numbers were reproduced, per table."""
    s = summarise_comparison(comparison)
    lines = [f"reproduced {int(s['matched'].sum())} of {int(s['total'].sum())} published numbers"]
    for rec in s.to_dict("records"):
        label = rec["table"] + (f" ({rec['link']})" if rec["link"] else "")
        lines.append(f"  {label:<14} {rec['matched']:>4} / {rec['total']}")
    t3 = s[s["table"] == "table3"].set_index("link")["matched"]
    if {"logit", "log"} <= set(t3.index):
        better = (
            "logit (odds ratios)"
            if t3["logit"] > t3["log"]
            else "log (risk ratios)"
            if t3["log"] > t3["logit"]
            else "neither"
        )
        lines.append(f"Table 3 agrees better with: {better}")
    lines += [f"warning: {w}" for w in warnings_]
    return "\n".join(lines)


def write_tables(
    data: str | os.PathLike[str] | pd.DataFrame,
    out_dir: str | os.PathLike[str],
    *,
    not_sure: Literal["no", "yes", "error"] = "no",
    link: Link | Iterable[Link] = LINKS,
    data_class: DataClass | None = None,
    keep_columns: Sequence[str] | None = None,
) -> dict:
    """Load (or take) a dataset, reproduce every table, compare, and write the six CSVs.

    Parameters
    ----------
    data
        Path of an agency-level file (loaded with :func:`cst_bayes.data.microdata.load`) or a
        frame already in the contract (its ``attrs`` say whether it is synthetic/restricted).
    out_dir
        Folder receiving ``table1.csv, anova.csv, table2.csv, fig1.csv, table3.csv,
        comparison.csv`` (each written atomically, with a ``data_status`` column).
    not_sure, link
        Passed to the loader and to :func:`table3`.
    data_class, keep_columns
        Passed to the loader (restricted unless the file proves it is synthetic or the
        user declares it public).

    Returns
    -------
    dict
        ``tables`` (what was written, after suppression), ``paths``, ``summary_text``,
        ``synthetic``, ``restricted``, ``status``.
    """
    from pathlib import Path

    from cst_bayes.core.fileio import write_csv
    from cst_bayes.core.provenance import status_of
    from cst_bayes.data.microdata import load

    if isinstance(data, pd.DataFrame):
        df = data
    else:
        df = load(data, not_sure=not_sure, data_class=data_class, keep_columns=keep_columns)
    status = status_of(df)
    tables = reproduce(df, link=link)
    tables["comparison"] = compare(tables)
    if status == "RESTRICTED":
        tables = suppress(tables, df)
        # count only the rows still printed: matches among hidden cells would tell how many
        # of them equal the article's
        shown = tables["comparison"]["matches"].dropna().astype(bool)
        text = (
            f"restricted microdata: reproduced {int(shown.sum())} of {len(shown)} published "
            "numbers that the small-cell policy lets through"
        )
    else:
        text = summary_text(
            tables["comparison"], warnings_=tables["table3"].attrs.get("warnings", [])
        )
    source = Path(str(df.attrs.get("source") or "data frame")).name
    notes = [f"cst-bayes tables from {source}"]
    if status == "RESTRICTED":
        notes.append(
            f"counts below {SMALL_CELL} read '<{SMALL_CELL}'; statistics that depend on them are blank"
        )
    out = Path(out_dir)
    paths = {
        name: write_csv(out / f"{name}.csv", table, status=status, notes=notes)
        for name, table in tables.items()
    }
    if status == "SYNTHETIC":
        text = "SYNTHETIC data (reconstruction): " + text
    return {
        "tables": tables,
        "paths": paths,
        "summary_text": text,
        "synthetic": status == "SYNTHETIC",
        "restricted": status == "RESTRICTED",
        "status": status,
    }
