"""Render the posterior report (index.html, report.md, figures/) of a run directory."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="a run directory written by `cst-bayes reproduce`"
    )


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from cst_bayes.core.errors import InputError
    from cst_bayes.run.report import build_report

    run_dir = Path(args.run_dir)
    if not (run_dir / "run.json").is_file():
        raise InputError(
            "not a run directory (no run.json; write one with `cst-bayes reproduce`)", path=run_dir
        )
    try:
        path = build_report(run_dir)
    except (KeyError, IndexError, TypeError, ValueError, json.JSONDecodeError) as exc:
        # a run folder edited or truncated by hand: say so instead of a traceback
        raise InputError(
            f"the run folder is incomplete or was modified ({type(exc).__name__}: {exc}); "
            "rerun `cst-bayes reproduce` into it",
            path=run_dir,
        ) from None
    print(f"report: {path}")
    return 0
