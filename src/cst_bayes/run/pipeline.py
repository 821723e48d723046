"""The whole reanalysis as one resumable pipeline (``cst-bayes reproduce``).

Stages, in order::

    audit -> data (reconstruction ensemble or --data) -> tables -> models/<MODEL>
          -> prior_check/<MODEL> -> ppc/<MODEL> -> psense/<MODEL> -> compare -> weights
          -> report

Each stage body is a module of :mod:`cst_bayes.run.stages`; each unit is computed and cached
by :mod:`cst_bayes.run.units` under a hash of its inputs and of the code it runs (the stage
module and everything it imports: :mod:`cst_bayes.run.cache`). Inputs are validated before
anything is written (:mod:`cst_bayes.run.context`).

Restricted-data mode (``--data`` with real microdata) writes every table through the one
disclosure policy (:mod:`cst_bayes.core.disclosure`), never writes row-level data, makes the
run folder group-only (0750/0640) and says so in the report.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cst_bayes import __version__
from cst_bayes.core.errors import InputError, check_out_dir
from cst_bayes.core.fileio import DIR_MODE_RESTRICTED, MODE_RESTRICTED, sha256_file, write_json
from cst_bayes.core.options import DEFAULT_SEED, DataClass, Profile
from cst_bayes.run import cache
from cst_bayes.run.cache import input_hash
from cst_bayes.run.context import PROFILES, RunContext, Settings, prepare
from cst_bayes.run.environment import environment
from cst_bayes.run.parallel import Workers
from cst_bayes.run.stages import ONLY_MODELS, ORDER, PER_MODEL, module_name
from cst_bayes.run.stages import audit as audit_stage
from cst_bayes.run.stages import compare as compare_stage
from cst_bayes.run.stages import data as data_stage
from cst_bayes.run.stages import models as models_stage
from cst_bayes.run.stages import ppc as ppc_stage
from cst_bayes.run.stages import prior_check as prior_check_stage
from cst_bayes.run.stages import prior_scale as prior_scale_stage
from cst_bayes.run.stages import psense as psense_stage
from cst_bayes.run.stages import tables as tables_stage
from cst_bayes.run.stages import weights as weights_stage
from cst_bayes.run.units import StageUnavailable, UnitResult, clean_stale, run_unit, unit_hash

__all__ = ["PROFILES", "STAGES", "RunContext", "RunSummary", "Settings", "reproduce"]

#: Every stage a user can name (``--stages``); the report is always last.
STAGES: tuple[str, ...] = (*ORDER, "report")

#: Stage bodies: ``run(ctx, work)`` or, per model, ``run(ctx, name, work)``.
BODIES: dict[str, Callable[..., dict[str, Any]]] = {
    "audit": audit_stage.run,
    "data": data_stage.run,
    "tables": tables_stage.run,
    "models": models_stage.run,
    "prior_check": prior_check_stage.run,
    "ppc": ppc_stage.run,
    "psense": psense_stage.run,
    "prior_scale": prior_scale_stage.run,
    "compare": compare_stage.run,
    "weights": weights_stage.run,
}


def code_hash(stage: str) -> str:
    """Hash of the code a stage runs: its module and everything it imports in the package."""
    return cache.code_hash((module_name(stage),))


def _inputs(
    ctx: RunContext, stage: str, name: str | None, pub_hash: dict[str, str]
) -> dict[str, Any]:
    """What a unit's result depends on besides its code (its cache key's other half)."""
    base = {**ctx.base_inputs(), "code": code_hash(stage)}
    if stage == "audit":
        return {"version": __version__, "code": base["code"], "published": pub_hash}
    if stage == "data":
        return {**base, "manifest": input_hash(ctx.reconstruction_manifest), "published": pub_hash}
    if stage == "tables":
        return {**base, "published": pub_hash}
    if stage == "models":
        assert name is not None
        return {**base, **ctx.sampling_inputs(), "spec": ctx.spec_hashes[name]}
    if stage == "prior_check":
        assert name is not None
        return {**base, "ppc_draws": ctx.settings.ppc_draws, "spec": ctx.spec_hashes[name]}
    if stage == "ppc":
        return {
            **base,
            "ppc_draws": ctx.settings.ppc_draws,
            "fit": unit_hash(ctx.out, f"models/{name}"),
        }
    if stage == "psense":
        return {**base, "fit": unit_hash(ctx.out, f"models/{name}")}
    if stage == "prior_scale":
        assert name is not None
        return {**base, **ctx.sampling_inputs(), "spec": ctx.spec_hashes[name]}
    if stage == "compare":
        return {**base, "fits": {n: unit_hash(ctx.out, f"models/{n}") for n in ctx.specs}}
    if stage == "weights":
        w = ctx.weighting_file
        return {
            **base,
            **ctx.sampling_inputs(),
            "mcmc": ctx.settings.weights_mcmc,
            "scenarios": sha256_file(w) if w.is_file() else None,
            "published": pub_hash,
        }
    raise InputError(f"unknown stage {stage!r}")


def _unavailable(msg: str) -> Callable[[Path], dict[str, Any]]:
    def body(_: Path) -> dict[str, Any]:
        raise StageUnavailable(msg)

    return body


Unit = tuple[str, str, Callable[[], tuple[dict[str, Any], Callable[[Path], dict[str, Any]]]]]


def _units(ctx: RunContext, stages: Sequence[str]) -> list[Unit]:
    """(stage, unit, lazily computed (inputs, body)) in run order.

    Inputs are computed when the unit is reached, so a unit sees the hashes of the units it
    reads as they are after this run recomputed them.
    """
    pub_hash = {p.name: sha256_file(p) for p in sorted(ctx.published_dir.glob("*.csv"))}
    units: list[Unit] = []
    for stage in (s for s in ORDER if s in stages):
        body = BODIES[stage]
        if stage not in PER_MODEL:
            units.append(
                (
                    stage,
                    stage,
                    lambda st=stage, b=body: (
                        _inputs(ctx, st, None, pub_hash),
                        lambda w: b(ctx, w),
                    ),
                )
            )
            continue
        names = [n for n in ctx.specs if n in ONLY_MODELS.get(stage, ctx.specs)]
        if not names and stage not in ONLY_MODELS:
            units.append((stage, stage, lambda: ({}, _unavailable("no model specs"))))
        for name in names:
            units.append(
                (
                    stage,
                    f"{stage}/{name}",
                    lambda st=stage, n=name, b=body: (
                        _inputs(ctx, st, n, pub_hash),
                        lambda w: b(ctx, n, w),
                    ),
                )
            )
    return units


def _progress(ctx: RunContext, total: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        disable=not ctx.progress,
        leave=True,
        file=sys.stderr,
        bar_format="{desc:<22} {bar:20} {n_fmt}/{total_fmt} [{elapsed}]",
    )


@dataclass
class RunSummary:
    """The outcome of :func:`reproduce`."""

    out: Path
    results: list[UnitResult]
    stage_seconds: dict[str, float]
    total_seconds: float
    report: Path | None

    def unavailable(self) -> list[UnitResult]:
        return [r for r in self.results if r.status == "unavailable"]

    def failed(self) -> list[UnitResult]:
        return [r for r in self.results if r.status == "failed"]

    def _stage_lines(self) -> list[str]:
        lines = [
            f"{'stage':<12} {'units':>5} {'done':>5} {'cached':>6} {'n/a':>4} {'failed':>6} {'seconds':>8}"
        ]
        for st in (*ORDER, "sweep", "report"):
            rs = [r for r in self.results if r.unit.split("/")[0] == st]
            if not rs and st not in self.stage_seconds:
                continue
            n = {
                k: sum(r.status == k for r in rs)
                for k in ("done", "cached", "unavailable", "failed")
            }
            lines.append(
                f"{st:<12} {len(rs):>5} {n['done']:>5} {n['cached']:>6} {n['unavailable']:>4} "
                f"{n['failed']:>6} {self.stage_seconds.get(st, 0.0):>8.1f}"
            )
        return lines

    def text(self) -> str:
        """A one-screen summary."""
        lines = [f"cst-bayes reproduce: run directory {self.out}", *self._stage_lines()]
        lines.append(f"total {self.total_seconds:.1f} s")
        info = {r.unit: r.info for r in self.results}
        t = info.get("tables") or {}
        if "published_compared" in t:
            lines.append(
                f"published numbers reproduced: {t['published_matched']} of "
                f"{t['published_compared']} (summed over datasets)"
            )
        fits = {u.split("/", 1)[1]: i for u, i in info.items() if u.startswith("models/")}
        if fits:
            trouble = [
                m for m, i in fits.items() if (i.get("diagnostics") or {}).get("ok") is False
            ]
            lines.append(
                f"models fitted: {len(fits)}; with sampler warnings: {', '.join(trouble) or 'none'}"
            )
        w = info.get("weights") or {}
        if w.get("mcmc_fits"):
            bad = w.get("mcmc_trouble") or []
            lines.append(
                f"weighting MCMC fits: {w['mcmc_fits']}; with sampler warnings: "
                f"{', '.join(bad) or 'none'}"
            )
        ppcs = {u.split("/", 1)[1]: i for u, i in info.items() if u.startswith("ppc/")}
        if ppcs:
            lines.append(
                "PPC statistics outside the 95% band (of those the model does not fit by "
                "construction): "
                + ", ".join(
                    f"{m} {i.get('flagged')}/{i.get('statistics')}" for m, i in ppcs.items()
                )
            )
        lines += [f"STAGE NOT AVAILABLE: {r.unit}: {r.message}" for r in self.unavailable()]
        lines += [f"STAGE FAILED: {r.unit}: {r.message}" for r in self.failed()]
        if self.report is not None:
            lines.append(f"report: {self.report}")
        return "\n".join(lines)


def _restrict_modes(out: Path) -> None:
    """A restricted run folder is group-only: folders 0750, files 0640 (whoever wrote them)."""
    os.chmod(out, DIR_MODE_RESTRICTED)
    for p in out.rglob("*"):
        with contextlib.suppress(OSError):
            os.chmod(p, DIR_MODE_RESTRICTED if p.is_dir() else MODE_RESTRICTED)


def _run_info(
    ctx: RunContext, results: list[UnitResult], stage_seconds: dict[str, float]
) -> dict[str, Any]:
    return {
        "cst_bayes_version": __version__,
        "profile": ctx.profile,
        "settings": asdict(ctx.settings),
        "seed": ctx.seed,
        "synthetic": ctx.synthetic,
        "restricted": ctx.restricted,
        "data_status": ctx.status,
        "data_source": ctx.data_source,
        "datasets": [
            {"dataset": d, "sha256": h}
            for d, h in zip(ctx.dataset_ids, ctx.data_hashes, strict=True)
        ],
        "published": {p.name: sha256_file(p) for p in sorted(ctx.published_dir.glob("*.csv"))},
        "specs": ctx.spec_hashes,
        "weighting_file": str(ctx.weighting_file),
        "input_notes": ctx.input_notes,
        "units": [asdict(r) for r in results],
        "stage_seconds": {k: round(v, 2) for k, v in stage_seconds.items()},
        "environment": environment(),
    }


def reproduce(
    out: str | Path,
    *,
    profile: Profile = "standard",
    seed: int = DEFAULT_SEED,
    data: str | Path | None = None,
    reconstructions: str | Path | None = None,
    published: str | Path | None = None,
    weighting: str | Path | None = None,
    models: Sequence[str] | None = None,
    n_reconstructions: int | None = None,
    stages: Sequence[str] | None = None,
    sweep: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
    data_class: DataClass | None = None,
    keep_columns: Sequence[str] | None = None,
    jobs: int = 1,
) -> RunSummary:
    """Run the pipeline into ``out``; cached units are skipped.

    Parameters
    ----------
    out
        Run directory (created). Reusing one resumes: units whose inputs are unchanged are
        not recomputed.
    profile
        ``"quick"`` (CI), ``"standard"`` (default) or ``"full"``; see
        :data:`cst_bayes.run.context.PROFILES`.
    seed
        Seed for every stochastic step; the same seed gives identical tables.
    data, data_class, keep_columns
        A microdata file instead of the reconstructions, and how it is read
        (:func:`cst_bayes.data.microdata.load`): restricted unless it proves it is synthetic
        or is declared ``public``; extra columns to keep.
    reconstructions, n_reconstructions
        Folder of ``reconstruction-*.csv`` (default ``data/reconstructed``); how many members.
    published, weighting
        Published-tables folder and weighting-scenarios file (defaults under the repo).
    models
        Spec names or paths; default: the profile's list.
    stages
        Subset of :data:`STAGES` to run (default: all). ``report`` is always last.
    sweep
        A grid TOML run into ``RUN_DIR/sweep`` (LocalCluster, cached cells) before the report.
    force
        Recompute every unit even if cached.
    jobs
        Worker processes for the units of a per-model stage and the members of the weighting
        stage (:mod:`cst_bayes.run.parallel`); the files do not depend on it.
    """
    t_start = time.perf_counter()
    stages = list(STAGES) if stages is None else list(stages)
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise InputError(f"unknown stage(s) {bad} (choose from {list(STAGES)})")
    ctx = prepare(
        out,
        profile=profile,
        seed=seed,
        data=data,
        reconstructions=reconstructions,
        published=published,
        weighting=weighting,
        models=models,
        n_reconstructions=n_reconstructions,
        progress=progress,
        data_class=data_class,
        keep_columns=keep_columns,
        weighting_stage="weights" in stages,
    )
    if not isinstance(jobs, int) or jobs < 1:
        raise InputError(f"jobs must be an integer >= 1, got {jobs!r}", column="jobs")
    ctx.jobs = jobs
    grid = None
    if sweep is not None:
        from cst_bayes.run.sweep import load_grid

        grid = load_grid(sweep)  # validated before anything is written
    check_out_dir(ctx.out)
    ctx.out.mkdir(parents=True, exist_ok=True)
    if ctx.restricted:
        os.chmod(ctx.out, DIR_MODE_RESTRICTED)
    with _run_lock(ctx.out):
        return _run(ctx, stages, grid, force, progress, t_start)


@contextlib.contextmanager
def _run_lock(out: Path) -> Any:
    """One run at a time per folder: a second would clean the first's scratch folders."""
    import fcntl

    with open(out / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                "another cst-bayes reproduce is writing into this folder", path=out
            ) from None
        yield


def _run(
    ctx: RunContext, stages: list[str], grid: Any, force: bool, progress: bool, t_start: float
) -> RunSummary:
    clean_stale(ctx.out)
    results: list[UnitResult] = []
    stage_seconds: dict[str, float] = {}
    units = _units(ctx, stages)
    with Workers(ctx, BODIES, ctx.jobs) as workers:
        for st in ORDER:
            mine = [u for u in units if u[0] == st]
            if not mine:
                continue
            t0 = time.perf_counter()
            with _progress(ctx, len(mine), st) as bar:
                if ctx.jobs > 1 and st in PER_MODEL and all("/" in u for _, u, _ in mine):
                    tasks = [(st, u.split("/", 1)[1], u, make()[0]) for _, u, make in mine]
                    for unit_result in workers.run(tasks, force):
                        results.append(unit_result)
                        bar.update(1)
                else:
                    for _, unit, make in mine:
                        bar.set_postfix_str(unit.split("/")[-1][:24])
                        inputs, body = make()
                        results.append(
                            run_unit(
                                ctx.out, unit, inputs, body, restricted=ctx.restricted, force=force
                            )
                        )
                        bar.update(1)
            stage_seconds[st] = time.perf_counter() - t0
    if grid is not None:
        from cst_bayes.run.sweep import run_sweep

        t0 = time.perf_counter()
        res = run_sweep(grid, ctx.out / "sweep", progress=progress)
        stage_seconds["sweep"] = time.perf_counter() - t0
        status = "done" if res.computed else "cached"
        info = {"computed": res.computed, "cached": res.cached}
        results.append(UnitResult("sweep", status, stage_seconds["sweep"], info=info))
    write_json(ctx.out / "run.json", _run_info(ctx, results, stage_seconds))
    report_path = None
    if "report" in stages:
        from cst_bayes.run import report as report_mod

        t0 = time.perf_counter()
        with _progress(ctx, 1, "report") as bar:
            report_path = report_mod.build_report(ctx.out)
            bar.update(1)
        stage_seconds["report"] = time.perf_counter() - t0
        results.append(UnitResult("report", "done", stage_seconds["report"]))
    if ctx.restricted:
        _restrict_modes(ctx.out)
    run_info = _run_info(ctx, results, stage_seconds)
    run_info["total_seconds"] = round(time.perf_counter() - t_start, 2)
    write_json(ctx.out / "run.json", run_info)
    return RunSummary(ctx.out, results, stage_seconds, time.perf_counter() - t_start, report_path)
