"""Survey weighting: scenarios, design-based and Bayesian estimates, and a sensitivity analysis.

Writes into --out: weights.csv (scenario, stratum, weight), weighting_steps.csv (every
adjustment step), design_estimates.csv (scenario, estimand, estimate, se), design_tests.csv
(Rao-Scott tests), design_models.csv (survey-weighted Table 3 ORs and marginal risk
differences), pseudo_likelihood_estimates.csv and mrp_estimates.csv (scenario, estimand,
median, ci_low, ci_high), sensitivity.csv, sensitivity.png, conclusions.csv and
sensitivity.md (which of the article's conclusions survive every scenario).
Scenarios are read from models/weighting.toml (or --scenarios-file); --no-bayes skips the
MCMC fits for a quick run. --weight-column COL [--strata-column COL --fpc-column COL]
analyses the file under its own design (scenario file_weights, beside unweighted) instead of
weights rebuilt from the published sampling frames; stderr says which weights were used. Also tipping_point.csv, tipping_curves.csv, manski_bounds.csv
and tipping_point.png (nonresponse tipping point; --no-tipping-point skips it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cst_bayes.core.options import DEFAULT_SEED, DataClass, choices

if TYPE_CHECKING:
    from cst_bayes.weighting.filedesign import DesignColumns


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cst-bayes weights``."""
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
        "--scenario",
        action="append",
        metavar="NAME",
        default=None,
        help="run only this scenario (repeatable; default: every scenario in the file)",
    )
    parser.add_argument(
        "--scenarios-file",
        type=Path,
        default=None,
        help="weighting scenarios TOML (default: models/weighting.toml)",
    )
    parser.add_argument(
        "--no-bayes",
        action="store_true",
        help="no MCMC: the pseudo-posterior by its normal approximation, conjugate MRP shares only",
    )
    parser.add_argument(
        "--draws", type=int, default=1000, help="posterior draws per chain (default 1000)"
    )
    parser.add_argument(
        "--tune", type=int, default=1000, help="tuning steps per chain (default 1000)"
    )
    parser.add_argument("--chains", type=int, default=2, help="chains (default 2)")
    parser.add_argument(
        "--extend",
        action="store_true",
        help="an MCMC fit that fails a diagnostic threshold is sampled once more with 4 times "
        "the draws, every 4th kept (as `cst-bayes fit --extend`); each fit's diagnostics are "
        "in mcmc_diagnostics.csv",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})"
    )
    parser.add_argument(
        "--tipping-point",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="nonresponse tipping point (tipping_point.csv, tipping_curves.csv, "
        "manski_bounds.csv, tipping_point.png); default on",
    )
    parser.add_argument(
        "--sampler",
        default="nutpie",
        help="sampler of the MRP fits (cst_bayes.bayes.models.fit; default nutpie)",
    )
    parser.add_argument(
        "--weight-column",
        metavar="COL",
        default=None,
        help="use the file's own survey weights in COL (scenario file_weights) instead of "
        "weights rebuilt from the published sampling frames",
    )
    parser.add_argument(
        "--strata-column",
        metavar="COL",
        default=None,
        help="strata of the file's own design (default: the stratum column); needs --weight-column",
    )
    parser.add_argument(
        "--fpc-column",
        metavar="COL",
        default=None,
        help="finite population correction of the file's own design: stratum population or "
        "sampling fraction (default: none); needs --weight-column",
    )
    parser.add_argument(
        "--keep-columns", metavar="COL", nargs="+", default=None, help="extra columns to keep"
    )
    parser.add_argument(
        "--data-class",
        choices=choices(DataClass),
        default=None,
        help="restricted (default unless the file opens with the SYNTHETIC banner), public "
        "(your own unrestricted data) or synthetic",
    )
    parser.add_argument(
        "--not-sure",
        choices=("no", "yes", "error"),
        default="no",
        help="how 'not sure' answers are coded (default: no, the article's yes vs not-yes)",
    )


def run(args: argparse.Namespace) -> int:
    """Load the data, run the weighting stage, print what survives; exit status 0."""
    import pandas as pd

    from cst_bayes.core.config import COUNT, WEIGHT
    from cst_bayes.core.errors import InputError
    from cst_bayes.data import microdata
    from cst_bayes.weighting import filedesign
    from cst_bayes.weighting.stage import run_weights
    from cst_bayes.weighting.weights import load_scenarios, select_scenarios

    for name in ("draws", "tune", "chains"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name} must be a positive integer, got {getattr(args, name)}")
    # Validate the scenarios before loading data or fitting anything: a typo fails in a second.
    select_scenarios(load_scenarios(args.scenarios_file), args.scenario)
    cols = _design_columns(args)
    keep = list(args.keep_columns or [])
    if cols is not None:
        raw, _ = microdata.read_table(args.data)
        header = {str(c).strip() for c in raw.columns}
        for flag, c in (
            ("--weight-column", cols.weight),
            ("--strata-column", cols.strata),
            ("--fpc-column", cols.fpc),
        ):
            if c is not None and c not in header:
                raise InputError(
                    f"{flag} names no column of the file: {c!r}", path=args.data, column=c
                )
        known = set(microdata.REQUIRED_COLUMNS + microdata.OPTIONAL_COLUMNS) | {COUNT}
        keep += [c for c in cols.names() if c not in known and c not in keep]
    df = microdata.load(
        args.data, not_sure=args.not_sure, data_class=args.data_class, keep_columns=keep or None
    )
    if cols is not None:
        filedesign.check(df, cols)
        print(cols.describe(), file=sys.stderr)
    else:
        unused = " (the file's 'weight' column is not used: pass --weight-column weight)"
        print(
            "weights: rebuilt from the published sampling frames"
            + (unused if WEIGHT in df else ""),
            file=sys.stderr,
        )
    res = run_weights(
        df,
        scenarios_file=args.scenarios_file,
        scenario_names=args.scenario,
        out_dir=args.out,
        mcmc=not args.no_bayes,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        seed=args.seed,
        sampler=args.sampler,
        tipping_point=args.tipping_point,
        design_columns=cols,
        extend=args.extend,
    )
    print(res["sensitivity_text"], end="")
    diag = res.get("mcmc_diagnostics")
    if isinstance(diag, pd.DataFrame):
        for r in diag[~diag["ok"].astype(bool)].itertuples():
            print(
                f"cst-bayes weights: WARNING: {r.scenario} {r.fit}: {r.messages}", file=sys.stderr
            )
    print(
        f"wrote {args.out}/ (weights.csv, design_estimates.csv, mrp_estimates.csv, sensitivity.csv, sensitivity.png, ...)"
    )
    return 0


def _design_columns(args: argparse.Namespace) -> DesignColumns | None:
    """The file's own design columns, or None (weights rebuilt from the published frames)."""
    from cst_bayes.core.errors import InputError
    from cst_bayes.weighting.filedesign import DesignColumns

    if args.weight_column is None:
        for flag in ("strata_column", "fpc_column"):
            if getattr(args, flag) is not None:
                raise InputError(f"--{flag.replace('_', '-')} needs --weight-column")
        return None
    return DesignColumns(
        weight=args.weight_column,
        strata=args.strata_column,
        fpc=args.fpc_column,
        source=str(args.data),
    )
