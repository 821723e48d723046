"""Render the posterior report (index.html, report.md, figures/) of a run directory."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="a run directory written by `cst-bayes reproduce`"
    )


def run(args: argparse.Namespace) -> int:
    from cst_bayes.run.report import build_report

    path = build_report(args.run_dir)
    print(f"report: {path}")
    return 0
