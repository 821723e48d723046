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
    parser.add_argument(
        "--families",
        nargs="+",
        default=["copula"],
        help="generating families, in turn over members (copula, copula_strata, latent_class)",
    )
    parser.add_argument(
        "--span-from",
        default=None,
        help="folder written by --bounds: add its attaining datasets as members until the "
        "ensemble spans 60%% of every bound, and ship its bounds.csv (widened to the members)",
    )
    parser.add_argument(
        "--bounds",
        action="store_true",
        help="instead of members: min and max of every statistic the tables leave open, over "
        "datasets meeting every target, starting from the ensemble in --from (writes "
        "bounds.csv and the attaining extreme-*.csv datasets to --out)",
    )
    parser.add_argument(
        "--loglink",
        action="store_true",
        help="instead of members: try to reconstruct with Table 3 read as log-link prevalence "
        "ratios from --starts starts (family draws and members of --from); writes "
        "loglink-attempts.csv and loglink-targets.csv to --out",
    )
    parser.add_argument(
        "--from",
        dest="from_dir",
        default=str(RECONSTRUCTED_DIR),
        help="ensemble the bound searches start from (default data/reconstructed)",
    )
    parser.add_argument(
        "--starts", type=int, default=2, help="searches per bound and direction (default 2)"
    )
    parser.add_argument(
        "--steps-scale",
        type=float,
        default=1.0,
        help="multiplies the proposals of every search stage (default 1)",
    )
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="bound only statistics whose 'name|stratum' starts with one of these",
    )


def run(args: argparse.Namespace) -> int:
    from cst_bayes.core.errors import InputError
    from cst_bayes.reconstruct import build_ensemble, manifest_table

    if args.jobs is not None and args.jobs < 1:
        raise InputError(f"--jobs must be at least 1, got {args.jobs}", column="jobs")
    if args.bounds:
        return _run_bounds(args)
    if args.loglink:
        return _run_loglink(args)
    from cst_bayes.reconstruct.families import FAMILIES

    bad = [f for f in args.families if f not in FAMILIES]
    if bad:
        raise InputError(f"--families: unknown {bad}; choose from {FAMILIES}", column="families")
    manifest = build_ensemble(
        args.n,
        args.seed,
        args.out,
        jobs=args.jobs,
        progress=not args.no_progress,
        families=tuple(args.families),
        span_from=args.span_from,
    )
    print("SYNTHETIC reconstructions (not the study's microdata)")
    print(manifest_table(manifest).to_string(index=False))
    print(
        f"{manifest['n_members']} members in {manifest['seconds_total']} s -> {args.out}/manifest.json"
    )
    if "span" in manifest:
        print(
            f"span share of the bounds: min {manifest['span_share_min']}, "
            f"{manifest['span_share_below_60pct']} statistics below 60%"
        )
    if not manifest["all_members_agree"]:
        print(
            "WARNING: some members miss a forced target (see the 'agrees' column and manifest.json)"
        )
        return 1
    return 0


def _run_bounds(args: argparse.Namespace) -> int:
    from cst_bayes.core.errors import InputError
    from cst_bayes.data.ensemble import load_ensemble
    from cst_bayes.reconstruct.bounds import compute_bounds

    if args.starts < 1:
        raise InputError(f"--starts must be at least 1, got {args.starts}", column="starts")
    if args.steps_scale <= 0:
        raise InputError(f"--steps-scale must be > 0, got {args.steps_scale}", column="steps-scale")
    bounds, _ = compute_bounds(
        args.out,
        starts=load_ensemble(args.from_dir),
        n_starts=args.starts,
        steps_scale=args.steps_scale,
        jobs=args.jobs,
        only=args.only,
    )
    print("SYNTHETIC bounds (datasets meeting every published target; not the study's data)")
    print(bounds[["statistic", "stratum", "lower", "upper", "converged", "seconds"]].to_string())
    print(f"{len(bounds)} statistics, {bounds['seconds'].sum():.0f} CPU s -> {args.out}/bounds.csv")
    if not bounds["converged"].all():
        print("WARNING: some bounds have no dataset that meets every target (converged = false)")
        return 1
    return 0


def _run_loglink(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cst_bayes.core.errors import InputError
    from cst_bayes.core.fileio import write_csv
    from cst_bayes.data.ensemble import load_ensemble
    from cst_bayes.reconstruct.loglink import loglink_attempts

    if args.starts < 1:
        raise InputError(f"--starts must be at least 1, got {args.starts}", column="starts")
    attempts, per_target = loglink_attempts(
        args.starts,
        args.seed,
        members=load_ensemble(args.from_dir),
        steps_scale=args.steps_scale,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    note = "Table 3 read as log-link prevalence ratios; SYNTHETIC reconstruction attempts"
    write_csv(out / "loglink-attempts.csv", attempts, status="SYNTHETIC", notes=note)
    write_csv(out / "loglink-targets.csv", per_target, status="SYNTHETIC", notes=note)
    print("SYNTHETIC log-link reconstruction attempts (not the study's data)")
    print(attempts.to_string(index=False))
    print(
        f"lowest energy {attempts['energy'].min()}; {int(attempts['converged'].sum())} met every target"
    )
    return 0
