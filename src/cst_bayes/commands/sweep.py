"""Run a sensitivity grid (reconstructions x scenarios x prior scales x models) on dask.

Each cell is an independent task on a dask.distributed cluster (a LocalCluster by default,
or an existing scheduler with --scheduler). Finished cells are cached by a hash of their
inputs in OUT/cache/, so an interrupted sweep resumes where it stopped. Writes
OUT/sweep.nc (one xarray Dataset, a dimension per grid axis), OUT/summary.csv and
OUT/sweep.png; put OUT inside a run directory as RUN_DIR/sweep and the report shows them.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("grid", metavar="GRID.toml", help="grid file (see sweeps/*.toml)")
    parser.add_argument(
        "--out", default="reports/sweep", help="output folder (default: reports/sweep)"
    )
    parser.add_argument(
        "--scheduler", metavar="ADDRESS", help="existing dask scheduler, e.g. tcp://127.0.0.1:8786"
    )
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster workers (default 2)")
    parser.add_argument(
        "--threads", action="store_true", help="LocalCluster with threads instead of processes"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def check_scheduler(address: str, timeout: float = 5.0) -> None:
    """One clear line, before any work, when a dask scheduler address cannot be reached."""
    import socket
    from urllib.parse import urlparse

    from cst_bayes.core.errors import InputError

    url = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        host, port = url.hostname, url.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise InputError(f"--scheduler {address!r} is not an address like tcp://HOST:PORT")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise InputError(
            f"--scheduler {address}: cannot connect ({exc.strerror or exc}); is the scheduler running?"
        ) from None


def run(args: argparse.Namespace) -> int:
    from cst_bayes.core.errors import InputError
    from cst_bayes.run.sweep import load_grid, run_sweep

    if args.workers < 1:
        raise InputError(f"--workers must be >= 1, got {args.workers}")
    grid = load_grid(args.grid)  # validate before anything is written
    if args.scheduler:
        check_scheduler(args.scheduler)
    res = run_sweep(
        grid,
        args.out,
        scheduler=args.scheduler,
        n_workers=args.workers,
        processes=not args.threads,
        progress=not args.no_progress,
    )
    print(
        f"sweep: {res.computed} cells computed, {res.cached} from cache, {res.seconds:.1f} s -> {res.path}"
    )
    return 0
