"""Reproduce the article's frequentist tables from an agency-level dataset.

Writes table1.csv, anova.csv, table2.csv, fig1.csv, table3.csv and comparison.csv into
--out (each file atomically), then prints how many published numbers the data reproduce.
Real (restricted) microdata get small-cell suppression: counts < 5 read "<5" and every
statistic that would give one back (margins, chi-square, phi, odds ratios, match flags) is
blank. A file is synthetic only when it opens with the package's SYNTHETIC banner line;
--data-class public declares your own unrestricted data. Every table has a data_status
column (SYNTHETIC, RESTRICTED or PUBLIC).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cst_bayes.core.options import DataClass, NotSure, choices

FILES = ("table1", "anova", "table2", "fig1", "table3", "comparison")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cst-bayes tables``."""
    parser.add_argument(
        "--data",
        required=True,
        type=Path,
        help="agency-level file (CSV, Parquet, .dta, .sav) in the microdata contract",
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="output folder (created if missing)"
    )
    parser.add_argument(
        "--not-sure",
        choices=choices(NotSure),
        default="no",
        help="how 'not sure' answers are coded (default: no, the article's yes vs not-yes)",
    )
    parser.add_argument(
        "--link",
        choices=("both", "logit", "log"),
        default="both",
        help="Table 3 models: logistic ORs, robust-Poisson RRs, or both (default)",
    )

    parser.add_argument(
        "--data-class",
        choices=choices(DataClass),
        default=None,
        help="restricted (default unless the file opens with the SYNTHETIC banner), public "
        "(your own unrestricted data: no suppression) or synthetic",
    )
    parser.add_argument(
        "--keep-columns", metavar="COL", nargs="+", default=None, help="extra columns to keep"
    )


def run(args: argparse.Namespace) -> int:
    """Load, reproduce, compare, write; exit status 0 (bad data raise InputError -> 2)."""
    from cst_bayes.frequentist import write_tables

    link = ("logit", "log") if args.link == "both" else args.link
    result = write_tables(
        args.data,
        args.out,
        not_sure=args.not_sure,
        link=link,
        data_class=args.data_class,
        keep_columns=args.keep_columns,
    )
    print(result["summary_text"])
    return 0
