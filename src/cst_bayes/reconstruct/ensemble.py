"""Build and write an ensemble of SYNTHETIC reconstructions with its manifest."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cst_bayes.core.config import (
    AGENCY_ID,
    APPROACHES,
    OUTCOME,
    STRATUM,
    SYNTHETIC_BANNER,
)
from cst_bayes.core.errors import InputError
from cst_bayes.data.ensemble import MEMBER_GLOB
from cst_bayes.reconstruct.anneal import (
    COUNT_WEIGHT,
    FINAL_STAGE,
    METHOD,
    REHEAT_STAGE,
    STAGES,
    reconstruct_one,
)
from cst_bayes.reconstruct.fidelity import fidelity_summary
from cst_bayes.reconstruct.stats import ensemble_spread
from cst_bayes.reconstruct.targets import _kernel, load_targets


def member_filename(i: int) -> str:
    """File name of member ``i`` (1-based): ``reconstruction-001.csv``."""
    return f"reconstruction-{i:03d}.csv"


def _member_job(
    i: int, ss: np.random.SeedSequence, kwargs: dict[str, Any]
) -> tuple[int, pd.DataFrame, pd.DataFrame, dict]:
    # Worker processes must not oversubscribe the cores with BLAS threads.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    df, fid = reconstruct_one(ss, **kwargs)
    return i, df, fid, dict(df.attrs["reconstruction"])


def _run_members(
    jobs_list: list[tuple[int, np.random.SeedSequence, dict[str, Any]]], jobs: int, progress: bool
) -> dict[int, tuple[pd.DataFrame, pd.DataFrame, dict]]:
    """Run :func:`_member_job` for every (i, seed, kwargs), in ``jobs`` processes."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    results: dict[int, tuple[pd.DataFrame, pd.DataFrame, dict]] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs_list), desc="reconstructing (synthetic)", unit="member")
    if jobs == 1:
        for i, ss, kw in jobs_list:
            _, df, fid, info = _member_job(i, ss, kw)
            results[i] = (df, fid, info)
            if bar is not None:
                bar.update(1)
    else:
        with ProcessPoolExecutor(max_workers=jobs) as ex:
            futs = [ex.submit(_member_job, *job) for job in jobs_list]
            for fut in as_completed(futs):
                i, df, fid, info = fut.result()
                results[i] = (df, fid, info)
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    return results


def _reuse_members(
    folder: Path, n: int, seed: int, families: tuple[str, ...]
) -> dict[int, tuple[pd.DataFrame, pd.DataFrame, dict]]:
    """The generated members of an ensemble built before with the same n, seed and families."""
    from cst_bayes.data.ensemble import load_ensemble, read_manifest
    from cst_bayes.reconstruct.fidelity import fidelity

    man = read_manifest(folder)
    if (
        man is None
        or man.get("master_seed") != int(seed)
        or man.get("n_generated", man.get("n_members")) != n
        or tuple(man.get("families", ("copula",))) != tuple(families)
    ):
        raise InputError("cannot reuse: not the same seed, n and families", path=folder)
    frames = load_ensemble(folder, n)
    out = {}
    for i, (df, info) in enumerate(zip(frames, man["members"][:n]), start=1):
        info = dict(info, family=info.get("family", families[(i - 1) % len(families)]))
        out[i] = (df, fidelity(df), info)
    return out


def build_ensemble(
    n: int,
    seed: int,
    out_dir: str | Path,
    jobs: int | None = None,
    progress: bool = True,
    families: tuple[str, ...] = ("copula",),
    extra: list[pd.DataFrame] | None = None,
    bounds: pd.DataFrame | None = None,
    span_from: str | Path | None = None,
    reuse: str | Path | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Reconstruct ``n`` SYNTHETIC members in parallel and write them with a manifest.

    Member seeds are ``numpy.random.SeedSequence(seed).spawn(n)``, so the same ``seed`` gives
    the same ensemble whatever ``jobs`` is.

    Parameters
    ----------
    n
        Number of members (>= 1).
    seed
        Master seed.
    out_dir
        Folder for ``reconstruction-001.csv`` ..., ``fidelity-001.csv`` ... and ``manifest.json``.
    jobs
        Worker processes (default: the available cores).
    progress
        Show a tqdm progress bar.
    families
        Generating families, in turn: member ``i`` uses ``families[(i - 1) % len(families)]``
        (:data:`cst_bayes.reconstruct.families.FAMILIES`).
    extra
        Datasets that meet every target found otherwise (e.g. the attaining datasets of
        :func:`cst_bayes.reconstruct.bounds.compute_bounds`), appended as members after the
        ``n`` generated ones; ``attrs['extreme']`` (the bounds they attain) goes to the manifest.
    bounds
        The bounds table: written as ``bounds.csv`` beside the members, and the manifest gets
        ``span`` (:func:`cst_bayes.reconstruct.bounds.span_table`).
    span_from
        A folder written by ``cst-bayes reconstruct --bounds``: its attaining datasets are
        added as members (:func:`cst_bayes.reconstruct.span.extremes_for`) until every
        statistic's span share reaches 60%, and its bounds, widened to the members, are used
        as ``bounds``.
    reuse
        A folder holding this very ensemble (same ``n``, ``seed``, ``families``, settings) built
        before: its members are read instead of rebuilt (the same seed gives the same members,
        so this only saves time; the manifest's seeds and families must match).
    **kwargs
        Passed to :func:`reconstruct_one`.

    Returns
    -------
    dict
        The manifest (also written to ``out_dir/manifest.json``).
    """
    from cst_bayes import __version__
    from cst_bayes.core.fileio import sha256_file, write_csv, write_json, write_microdata

    if int(n) < 1:
        raise InputError(f"--n must be at least 1, got {n}", column="n")
    n = int(n)
    jobs = max(1, min(int(jobs or len(os.sched_getaffinity(0)) or 1), n))
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("output path exists and is not a folder", path=out_dir)
    t0 = time.perf_counter()
    load_targets()  # fail fast on a bad published table, before spawning workers
    _kernel()  # compile once here so the workers load numba's cache instead of compiling
    seeds = np.random.SeedSequence(int(seed)).spawn(n)

    def _kw(i: int) -> dict[str, Any]:
        return dict(kwargs, family=families[(i - 1) % len(families)])

    if reuse is not None:
        results = _reuse_members(Path(reuse), n, seed, families)
    else:
        jl = [(i, ss, _kw(i)) for i, ss in enumerate(seeds, start=1)]
        results = _run_members(jl, jobs, progress)

    out_dir.mkdir(parents=True, exist_ok=True)
    # The manifest goes first and comes back last: a crash while writing leaves members
    # without a manifest (which readers notice), never a manifest describing other files.
    # A previous, larger ensemble in the same folder would otherwise leave stale members.
    for old in [
        out_dir / "manifest.json",
        *out_dir.glob(MEMBER_GLOB),
        *out_dir.glob("fidelity-*.csv"),
    ]:
        old.unlink(missing_ok=True)
    from cst_bayes.reconstruct.fidelity import fidelity

    if span_from is not None:
        from cst_bayes.reconstruct.span import extremes_for

        gen = [results[i][0] for i in range(1, n + 1)]
        extra, bounds = extremes_for(span_from, gen, name=member_filename)
    for k, df in enumerate(extra or [], start=n + 1):
        info = dict(
            spawn_key=None,
            seconds=None,
            steps=None,
            converged=True,
            starts=[],
            family="extreme",
            dependence=dict(family="extreme", **df.attrs.get("extreme", {})),
        )
        results[k] = (df, fidelity(df), info)
    n_all = len(results)
    members = []
    for i in range(1, n_all + 1):
        df, fid, info = results[i]
        name = member_filename(i)
        note = (
            f"SYNTHETIC member {i} of {n_all}; master seed {seed}; "
            f"cst_bayes {__version__}; see manifest.json for its fidelity to the published tables"
        )
        cols = [AGENCY_ID, STRATUM, *APPROACHES, OUTCOME]
        write_microdata(out_dir / name, df[cols], synthetic=True, note=note)
        fname = f"fidelity-{i:03d}.csv"
        write_csv(
            out_dir / fname, fid, status="SYNTHETIC", notes=f"fidelity of SYNTHETIC member {i}"
        )
        members.append(
            dict(
                member=i,
                file=name,
                fidelity_file=fname,
                sha256=sha256_file(out_dir / name),
                spawn_key=info["spawn_key"],
                seconds=info["seconds"],
                cpu_seconds=info.get("cpu_seconds"),
                steps=info["steps"],
                converged=info["converged"],
                starts=info["starts"],
                family=info.get("family", "copula"),
                dependence=info["dependence"],
                targets=fidelity_summary(fid),
            )
        )
    frames = [results[i][0] for i in range(1, n_all + 1)]
    spread = ensemble_spread(frames)
    span = None
    if bounds is not None:
        from cst_bayes.reconstruct.bounds import span_table, write_bounds

        write_bounds(out_dir, bounds, {}, {"see": "bounds.meta.json of the bound search"})
        span = span_table(bounds, frames)
    import numba
    import scipy

    manifest = dict(
        synthetic=True,
        banner=SYNTHETIC_BANNER,
        method=METHOD,
        package="cst_bayes",
        package_version=__version__,
        versions=dict(
            numpy=np.__version__,
            pandas=pd.__version__,
            scipy=scipy.__version__,
            numba=numba.__version__,
        ),
        master_seed=int(seed),
        n_members=n_all,
        n_generated=n,
        families=list(families),
        jobs=jobs,
        member_seeds="numpy.random.SeedSequence(master_seed).spawn(n_members)",
        settings=dict(
            stages=[list(s) for s in STAGES],
            final_stage=list(FINAL_STAGE),
            reheat_stage=list(REHEAT_STAGE),
            count_weight=COUNT_WEIGHT,
            **kwargs,
        ),
        seconds_total=round(time.perf_counter() - t0, 1),
        all_members_agree=all(m["targets"]["all_forced_met"] for m in members),
        members=members,
        untargeted_spread=spread.round(4).to_dict(orient="records"),
    )
    if span is not None:
        manifest["span"] = (
            span.round(4)
            .replace([np.inf, -np.inf], np.nan)
            .astype(object)
            .where(span.notna() & ~span.isin([np.inf, -np.inf]), None)
            .to_dict(orient="records")
        )
        manifest["span_share_min"] = round(float(span["span_share"].min()), 4)
        manifest["span_share_below_60pct"] = int((span["span_share"] < 0.6).sum())
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def manifest_table(manifest: dict[str, Any]) -> pd.DataFrame:
    """One row per member: seconds, starts and targets met per table (for printing)."""
    rows = []
    for m in manifest["members"]:
        t = m["targets"]
        row = dict(
            member=m["member"],
            seconds=m["seconds"],
            cpu_seconds=m.get("cpu_seconds"),
            starts=len(m["starts"]),
        )
        for tab in ("table1", "table2", "fig1", "table3"):
            if tab in t:
                row[tab] = f"{t[tab]['met']}/{t[tab]['total']}"
        row["agrees"] = "yes" if t["all_forced_met"] else "NO"
        rows.append(row)
    return pd.DataFrame(rows)
