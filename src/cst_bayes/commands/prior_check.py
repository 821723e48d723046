"""Prior predictive check of a model: what its priors imply for the published tables.

Draws replicated outcomes from MODEL's priors (NumPy, from the spec) on the covariates of
--data, recomputes the published statistics and writes DIR/prior_check.csv (same columns as
ppc.csv) and DIR/prior_check.png (published Table 1 shares and Table 3 ORs against the
prior predictive).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cst_bayes.commands.args import seed_type
from cst_bayes.core.options import DEFAULT_SEED


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cst-bayes prior-check``."""
    parser.add_argument("model", metavar="MODEL", help="model name or spec file")
    parser.add_argument(
        "--data", required=True, type=Path, help="agency-level file (microdata contract)"
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="output folder (created if missing)"
    )
    parser.add_argument("--draws", type=int, default=500, help="prior replicates (default 500)")
    parser.add_argument(
        "--seed",
        type=seed_type,
        default=DEFAULT_SEED,
        help=f"seed (0 .. 2**32 - 1; default {DEFAULT_SEED})",
    )
    parser.add_argument("--prob", type=float, default=0.95, help="interval width (default 0.95)")


def run(args: argparse.Namespace) -> int:
    """Write prior_check.csv and prior_check.png; print where the published counts fall."""
    from cst_bayes.checks.prior_check import write_prior_check

    res = write_prior_check(
        args.model, args.data, args.out, n_draws=args.draws, seed=args.seed, prob=args.prob
    )
    print(res["summary_text"])
    return 0
