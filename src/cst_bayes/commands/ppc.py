"""Posterior predictive checks that regenerate the published tables from a fitted model.

For FIT.nc (written by `cst-bayes fit`) and the data it was fitted on, draws replicated
outcomes from the posterior predictive, recomputes the published statistics on each
replicate (Table 1 outcome row, Figure 1, Table 3 in both links; for count models the
count distribution, means, SDs and ANOVA F) and writes DIR/ppc.csv (observed, published,
replicated median and 95% interval, posterior predictive p-value, flag) and DIR/ppc.png
(observed vs replicated, one panel per table). Synthetic data are labelled SYNTHETIC;
restricted microdata get small-cell suppression.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cst_bayes.commands.args import seed_type
from cst_bayes.core.options import DEFAULT_SEED


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cst-bayes ppc``."""
    parser.add_argument(
        "fit", type=Path, metavar="FIT.nc", help="fitted model (cst-bayes fit output)"
    )
    parser.add_argument(
        "--data",
        required=True,
        type=Path,
        help="the agency-level file the model was fitted on (microdata contract)",
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="output folder (created if missing)"
    )
    parser.add_argument(
        "--draws", type=int, default=500, help="posterior predictive replicates (default 500)"
    )
    parser.add_argument(
        "--seed",
        type=seed_type,
        default=DEFAULT_SEED,
        help=f"seed of the replicate draws (0 .. 2**32 - 1; default {DEFAULT_SEED})",
    )
    parser.add_argument(
        "--prob", type=float, default=0.95, help="width of the replicated interval (default 0.95)"
    )


def run(args: argparse.Namespace) -> int:
    """Run the check and write ppc.csv and ppc.png; print the flagged statistics."""
    from cst_bayes.checks.ppcplot import write_ppc

    res = write_ppc(
        args.fit, args.data, args.out, n_draws=args.draws, seed=args.seed, prob=args.prob
    )
    print(res["summary_text"])
    return 0
