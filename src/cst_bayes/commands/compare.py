"""Compare the shipped models by PSIS-LOO (ArviZ), within groups of the same outcome.

Fits each MODEL (default: every shipped model) on --data, or reads DIR/MODEL.nc from
--fits when it is there, and writes DIR/loo.csv: elpd_loo with its SE, p_loo, the
difference to the best model of the group and its SE, stacking weights, and the Pareto-k
counts (good / bad / very bad). The any_cst models and the approach-count models are
ranked separately, since only models of the same outcome are comparable.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cst_bayes.commands.args import seed_type
from cst_bayes.core.options import DEFAULT_SAMPLER, DEFAULT_SEED, Sampler, choices


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cst-bayes compare``."""
    parser.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help="model names or spec files (default: all shipped)",
    )
    parser.add_argument(
        "--data", required=True, type=Path, help="agency-level file (microdata contract)"
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="output folder (created if missing)"
    )
    parser.add_argument(
        "--fits",
        type=Path,
        default=None,
        help="folder of existing MODEL.nc fits to reuse instead of refitting",
    )
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument(
        "--seed", type=seed_type, default=DEFAULT_SEED, help="seed (0 .. 2**32 - 1)"
    )
    parser.add_argument(
        "--sampler",
        default=DEFAULT_SAMPLER,
        choices=choices(Sampler),
        help="sampler passed to cst_bayes.bayes.models.fit",
    )
    parser.add_argument(
        "--jobs", type=int, default=None, help="worker processes for an ensemble (default 1)"
    )


def run(args: argparse.Namespace) -> int:
    """Fit or read the models, compute PSIS-LOO, write loo.csv, print the verdict."""
    from cst_bayes.checks.comparison import write_loo

    res = write_loo(
        args.data,
        args.out,
        models=args.models or None,
        fits_dir=args.fits,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        seed=args.seed,
        sampler=args.sampler,
        jobs=args.jobs,
    )
    print(res["summary_text"])
    return 0
