"""Run the whole reanalysis: audit, data, tables, models, PPC, comparison, weighting, report.

Each stage is cached in the run directory by a hash of its inputs: rerunning after an
interruption (even kill -9) resumes from the stages already finished. With --data, the
pipeline runs on that microdata file instead of the shipped reconstructions (restricted
mode for real microdata: counts below 5, and every statistic that would give them back,
are suppressed everywhere). A file is synthetic only when it opens with the package's
SYNTHETIC banner line; any other file is restricted unless --data-class public says it is
your own unrestricted data. Seeds are integers from 0 to 2**32 - 1.
"""

from __future__ import annotations

import argparse
import os

from cst_bayes.commands.args import seed_type
from cst_bayes.core.options import DEFAULT_SEED, DataClass, Profile, choices


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        choices=choices(Profile),
        default="standard",
        help="quick: CI (2 reconstructions, short chains); standard (default): every member and "
        "model, 2 x 500 draws; full: 2 x 1000 draws and MCMC weighting on every member",
    )
    parser.add_argument("--out", default="reports", help="run directory (default: reports)")
    parser.add_argument(
        "--seed",
        type=seed_type,
        default=DEFAULT_SEED,
        help=f"seed of every stochastic step, 0 .. 2**32 - 1 (default {DEFAULT_SEED})",
    )
    parser.add_argument(
        "--data",
        metavar="FILE",
        help="microdata file (CSV, Parquet, .dta, .sav) instead of the reconstructions",
    )
    parser.add_argument(
        "--data-class",
        choices=choices(DataClass),
        default=None,
        help="what --data is: restricted (default unless the file opens with the package's "
        "SYNTHETIC banner), public (your own unrestricted data: no suppression) or synthetic",
    )
    parser.add_argument(
        "--keep-columns",
        metavar="COL",
        nargs="+",
        default=None,
        help="extra columns of --data to keep (e.g. region pct_rural)",
    )
    parser.add_argument(
        "--reconstructions",
        metavar="DIR",
        help="folder of reconstruction-*.csv (default: data/reconstructed)",
    )
    parser.add_argument(
        "--n-reconstructions",
        type=int,
        metavar="M",
        help="use the first M reconstructions (overrides the profile)",
    )
    parser.add_argument(
        "--published", metavar="DIR", help="published-tables folder (default: data/published)"
    )
    parser.add_argument(
        "--weighting",
        metavar="FILE",
        help="weighting scenarios TOML (default: models/weighting.toml)",
    )
    parser.add_argument(
        "--models",
        metavar="NAME",
        nargs="+",
        help="model specs (names or TOML paths) instead of the profile's",
    )
    parser.add_argument(
        "--stages",
        metavar="STAGE",
        nargs="+",
        help="run only these stages (audit data tables models prior_check ppc compare weights "
        "report)",
    )
    parser.add_argument(
        "--sweep",
        metavar="GRID.toml",
        help="also run this sensitivity grid into OUT/sweep (dask LocalCluster)",
    )
    parser.add_argument("--force", action="store_true", help="recompute every stage even if cached")
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="worker processes for the per-model stages and the weighting members "
        "(default: the number of cores, at most 4); the output files do not depend on it",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from cst_bayes.run.pipeline import reproduce

    summary = reproduce(
        args.out,
        profile=args.profile,
        seed=args.seed,
        data=args.data,
        reconstructions=args.reconstructions,
        published=args.published,
        weighting=args.weighting,
        models=args.models,
        n_reconstructions=args.n_reconstructions,
        stages=args.stages,
        sweep=args.sweep,
        force=args.force,
        progress=not args.no_progress,
        data_class=args.data_class,
        keep_columns=args.keep_columns,
        jobs=args.jobs if args.jobs is not None else min(4, os.cpu_count() or 1),
    )
    print(summary.text())
    # a failed stage is recorded and the others still ran, but the run is not a success
    return 1 if summary.failed() else 0
