"""Survey weighting: scenarios, design-based and Bayesian estimates, and a sensitivity analysis.

Writes into --out: weights.csv (scenario, stratum, weight), weighting_steps.csv (every
adjustment step), design_estimates.csv (scenario, estimand, estimate, se), design_tests.csv
(Rao-Scott tests), design_models.csv (survey-weighted Table 3 ORs and marginal risk
differences), pseudo_likelihood_estimates.csv and mrp_estimates.csv (scenario, estimand,
median, ci_low, ci_high), sensitivity.csv, sensitivity.png, conclusions.csv and
sensitivity.md (which of the article's conclusions survive every scenario).
Scenarios are read from models/weighting.toml (or --scenarios-file); --no-bayes skips the
MCMC fits for a quick run. Also tipping_point.csv, tipping_curves.csv, manski_bounds.csv
and tipping_point.png (nonresponse tipping point; --no-tipping-point skips it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cst_bayes.core.options import DEFAULT_SEED


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
        "--not-sure",
        choices=("no", "yes", "error"),
        default="no",
        help="how 'not sure' answers are coded (default: no, the article's yes vs not-yes)",
    )


def run(args: argparse.Namespace) -> int:
    """Load the data, run the weighting stage, print what survives; exit status 0."""
    from cst_bayes.core.errors import InputError
    from cst_bayes.data import microdata
    from cst_bayes.weighting.stage import run_weights
    from cst_bayes.weighting.weights import load_scenarios, select_scenarios

    for name in ("draws", "tune", "chains"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name} must be a positive integer, got {getattr(args, name)}")
    # Validate the scenarios before loading data or fitting anything: a typo fails in a second.
    select_scenarios(load_scenarios(args.scenarios_file), args.scenario)
    df = microdata.load(args.data, not_sure=args.not_sure)
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
    )
    print(res["sensitivity_text"], end="")
    print(
        f"wrote {args.out}/ (weights.csv, design_estimates.csv, mrp_estimates.csv, sensitivity.csv, sensitivity.png, ...)"
    )
    return 0
