"""Run the whole reanalysis: audit, data, tables, models, PPC, comparison, weighting, report.

Each stage is cached in the run directory by a hash of its inputs: rerunning after an
interruption (even kill -9) resumes from the stages already finished. With --data, the
pipeline runs on that microdata file instead of the shipped reconstructions (restricted
mode for real microdata: counts below 5 are suppressed as "<5" everywhere).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        choices=("quick", "full"),
        default="full",
        help="quick: CI (2 reconstructions, short chains); full: publication quality (default)",
    )
    parser.add_argument("--out", default="reports", help="run directory (default: reports)")
    parser.add_argument("--seed", type=int, default=20240101, help="seed of every stochastic step")
    parser.add_argument(
        "--data",
        metavar="FILE",
        help="microdata file (CSV, Parquet, .dta, .sav) instead of the reconstructions",
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
        help="run only these stages (audit data tables models ppc compare weights report)",
    )
    parser.add_argument(
        "--sweep",
        metavar="GRID.toml",
        help="also run this sensitivity grid into OUT/sweep (dask LocalCluster)",
    )
    parser.add_argument("--force", action="store_true", help="recompute every stage even if cached")
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
    )
    print(summary.text())
    # a failed stage is recorded and the others still ran, but the run is not a success
    return 1 if summary.failed() else 0
