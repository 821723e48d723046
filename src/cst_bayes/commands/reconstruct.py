"""Reconstruct an ensemble of SYNTHETIC agency-level datasets that agree with the published tables.

Writes DIR/reconstruction-001.csv ... (each opening with a "# SYNTHETIC DATA" comment),
DIR/fidelity-001.csv ... (every target: published, achieved, agrees) and DIR/manifest.json
(method, seeds, package version, targets hit, time taken, spread of the statistics no table
fixes), in parallel over the available cores. The same --seed gives the same ensemble.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cst_bayes.core.config import RECONSTRUCTED_DIR

    parser.add_argument("--n", type=int, default=20, help="number of members (default 20)")
    parser.add_argument("--seed", type=int, default=2024, help="master seed (default 2024)")
    parser.add_argument(
        "--out", default=str(RECONSTRUCTED_DIR), help="output folder (default data/reconstructed)"
    )
    parser.add_argument(
        "--jobs", type=int, default=None, help="worker processes (default: the available cores)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from cst_bayes.core.errors import InputError
    from cst_bayes.reconstruct import build_ensemble, manifest_table

    if args.jobs is not None and args.jobs < 1:
        raise InputError(f"--jobs must be at least 1, got {args.jobs}", column="jobs")
    manifest = build_ensemble(
        args.n, args.seed, args.out, jobs=args.jobs, progress=not args.no_progress
    )
    print("SYNTHETIC reconstructions (not the study's microdata)")
    print(manifest_table(manifest).to_string(index=False))
    print(
        f"{manifest['n_members']} members in {manifest['seconds_total']} s -> {args.out}/manifest.json"
    )
    if not manifest["all_members_agree"]:
        print(
            "WARNING: some members miss a forced target (see the 'agrees' column and manifest.json)"
        )
        return 1
    return 0
