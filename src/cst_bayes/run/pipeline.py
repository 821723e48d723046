"""The whole reanalysis as one resumable pipeline (``cst-bayes reproduce``).

Stages, in order::

    audit -> data (reconstruction ensemble or --data) -> tables -> models/<MODEL>
          -> ppc/<MODEL> -> compare -> weights -> report

Every stage *unit* (``audit``, ``models/logit_approaches`` ...) is computed in a hidden
scratch folder ``RUN_DIR/.<unit>.partial-<pid>`` and renamed onto ``RUN_DIR/<unit>`` only when
it is complete, with a ``manifest.json`` holding the hash of its inputs (data hashes, spec
hashes, options, package version and the hashes of the units it reads). A rerun skips the
units whose stored hash matches, so ``kill -9`` followed by a rerun resumes where it stopped
and never shows a half-written unit. Stale scratch folders are removed at start.

A stage whose module is not installed yet (the package is written in parallel) is recorded
as *not available* in ``run.json``, the summary and the report; nothing is faked for it.

Restricted-data mode (``--data`` with real microdata) suppresses every count below
:data:`cst_bayes.core.config.SMALL_CELL` as ``"<5"`` in every table written, never writes
row-level data (InferenceData files lose their per-agency groups), and the report says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

import pandas as pd

from cst_bayes import __version__, audit
from cst_bayes import frequentist as freq
from cst_bayes.bayes import models as models_mod
from cst_bayes.bayes import pooling
from cst_bayes.checks import comparison, ppc
from cst_bayes.core import config
from cst_bayes.core.disclosure import SmallCells, protect, small_cells, strip_row_level
from cst_bayes.core.errors import InputError, check_out_dir, validate_seed
from cst_bayes.core.fileio import (
    DIR_MODE_RESTRICTED,
    MODE_RESTRICTED,
    sha256_file,
    sha256_frame,
    write_csv,
    write_json,
    write_text,
)
from cst_bayes.core.options import DataClass, DataStatus
from cst_bayes.core.provenance import status_of
from cst_bayes.data import microdata, published
from cst_bayes.run import cache
from cst_bayes.run.cache import input_hash
from cst_bayes.weighting import weights as weights_mod

Profile = Literal["quick", "full"]
StageName = Literal["audit", "data", "tables", "models", "ppc", "compare", "weights", "report"]
STAGES: tuple[str, ...] = get_args(StageName)

#: Shipped models fitted by the ``quick`` profile (CI): the two Table 3 analyses with agency
#: size, which is what the PPC and the forest plot need; ``full`` fits every shipped spec.
QUICK_MODELS: tuple[str, ...] = ("logit_approaches_strata", "logit_count_strata")


@dataclass(frozen=True)
class Settings:
    """Numbers that a profile fixes (all part of every unit's input hash)."""

    n_reconstructions: int | None  #: None = the whole shipped ensemble
    draws: int
    tune: int
    chains: int
    ppc_draws: int
    models: tuple[str, ...] | None  #: None = every shipped spec
    weights_mcmc: bool  #: run the Bayesian (pseudo-likelihood, MRP) part of the weighting stage
    #: nutpie with the package's numba log-densities (cached on disk, see models/fastlogp), and
    #: one compiled model reused across the members: 20 members x 2 x 500 of the main model in
    #: 22 s against 61 s with nutpie-c (varying slopes 42 vs 171 s), measured 2026-11-26.
    sampler: str = "nutpie"


PROFILES: dict[str, Settings] = {
    # CI: minutes on two cores. Short chains are enough to exercise every stage end to end.
    "quick": Settings(
        n_reconstructions=2,
        draws=200,
        tune=200,
        chains=2,
        ppc_draws=100,
        models=QUICK_MODELS,
        weights_mcmc=False,
    ),
    # Publication quality over the whole ensemble: 2 x 1000 draws per member pooled over 20
    # members = 40,000 draws per parameter. 2 x 500 (measured 427 s in all) left 1-18 member
    # terms per model with R-hat just above 1.01 and varying-slopes bulk ESS down to 244: the
    # warnings were sampling noise of short chains, so the chains are longer rather than the
    # thresholds looser.
    "full": Settings(
        n_reconstructions=None,
        draws=1000,
        tune=500,
        chains=2,
        ppc_draws=500,
        models=None,
        weights_mcmc=True,
    ),
}


class StageUnavailable(RuntimeError):
    """A stage cannot run because a module or function it needs is not installed."""


@dataclass
class RunContext:
    """Everything the stages read: validated inputs, settings, hashes."""

    out: Path
    profile: str
    settings: Settings
    seed: int
    published_dir: Path
    weighting_file: Path
    frames: list[pd.DataFrame] = field(default_factory=list)
    dataset_ids: list[str] = field(default_factory=list)
    data_hashes: list[str] = field(default_factory=list)
    data_source: str = ""
    synthetic: bool = True
    restricted: bool = False
    status: DataStatus = "SYNTHETIC"
    policy: SmallCells | None = None
    reconstruction_manifest: dict[str, Any] | None = None
    specs: dict[str, Any] = field(default_factory=dict)
    spec_hashes: dict[str, str] = field(default_factory=dict)
    input_notes: dict[str, str] = field(default_factory=dict)
    progress: bool = True

    def base_inputs(self) -> dict[str, Any]:
        """Inputs every data-dependent unit depends on (sampler settings are added per unit)."""
        return {
            "version": __version__,
            "seed": self.seed,
            "data": self.data_hashes,
            "restricted": self.restricted,
        }

    def sampling_inputs(self) -> dict[str, Any]:
        """Sampler settings (model, PPC and weighting units)."""
        s = self.settings
        return {"draws": s.draws, "tune": s.tune, "chains": s.chains, "sampler": s.sampler}


# --------------------------------------------------------------------------- helpers


#: The modules each stage runs; its cache key follows their imports (:mod:`cst_bayes.run.cache`).
STAGE_ENTRIES: dict[str, tuple[str, ...]] = {
    "audit": ("cst_bayes.audit",),
    "data": ("cst_bayes.data.ensemble",),
    "tables": ("cst_bayes.frequentist",),
    "models": ("cst_bayes.bayes.models", "cst_bayes.bayes.pooling"),
    "ppc": ("cst_bayes.checks.ppc",),
    "compare": ("cst_bayes.checks.comparison",),
    "weights": ("cst_bayes.weighting.weights",),
}


def code_hash(stage: str) -> str:
    """Hash of the code a stage runs: its entry modules and all they import."""
    return cache.code_hash(STAGE_ENTRIES[stage])


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(config.ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if out.returncode == 0:
            dirty = subprocess.run(
                ["git", "-C", str(config.ROOT), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def environment() -> dict[str, Any]:
    """Package versions, Python, platform and git commit (the report's environment section)."""
    from importlib import metadata

    pkgs = {}
    for name in (
        "cst_bayes",
        "numpy",
        "pandas",
        "scipy",
        "statsmodels",
        "pymc",
        "pytensor",
        "arviz",
        "nutpie",
        "xarray",
        "dask",
        "distributed",
        "matplotlib",
        "h5netcdf",
        "jinja2",
    ):
        try:
            pkgs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pkgs[name] = "not installed"
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "packages": pkgs,
        "git_commit": _git_commit(),
    }


# --------------------------------------------------------------------------- input preparation


def _load_specs(names: Sequence[str] | None) -> tuple[dict[str, Any], dict[str, str]]:
    """Load the model specs (all shipped ones when ``names`` is None) and their hashes."""
    if names is None:
        listing = models_mod.list_specs()
        names = list(listing["name"]) if "name" in listing.columns else list(listing.iloc[:, 0])
    specs, hashes = {}, {}
    for name in names:
        spec = models_mod.load_spec(name)  # raises SpecError naming file and key
        key = getattr(spec, "name", None) or Path(str(name)).stem
        specs[key] = spec
        path = getattr(spec, "path", None)
        if path is not None and Path(path).exists():
            hashes[key] = sha256_file(path)
        else:
            hashes[key] = getattr(spec, "hash", None) or input_hash(repr(spec))
    return specs, hashes


def _load_reconstructions(
    directory: Path, n: int | None
) -> tuple[list[pd.DataFrame], list[str], dict | None]:
    from cst_bayes.data.ensemble import load_ensemble, read_manifest

    frames = load_ensemble(directory, n)
    return frames, [df.attrs["member"] for df in frames], read_manifest(directory)


def _check_published(directory: Path) -> None:
    """Fail early on a published-tables folder that the audit would reject."""
    if not directory.is_dir():
        raise InputError("published-tables folder not found", path=directory)
    published.load_all(directory)  # raises InputError naming file, column and rows


def _check_weighting(path: Path, frames: Sequence[pd.DataFrame], published_dir: Path) -> None:
    """Validate the scenarios and their feasibility against every dataset before writing.

    Respondents above the sampled count in a stratum, or more ineligibles than a stratum
    allows, fail here in a second instead of after the models have run.
    """
    scenarios = weights_mod.load_scenarios(path)  # raises SpecError naming file and key
    frame_counts = published.load_sampling_frames(published_dir)
    for df in frames:
        weights_mod.weights_table(df, list(scenarios.values()), frame_counts)


def prepare(
    out: str | Path,
    *,
    profile: Profile = "full",
    seed: int = 20240101,
    data: str | Path | None = None,
    reconstructions: str | Path | None = None,
    published: str | Path | None = None,
    weighting: str | Path | None = None,
    models: Sequence[str] | None = None,
    n_reconstructions: int | None = None,
    progress: bool = True,
    data_class: DataClass | None = None,
    keep_columns: Sequence[str] | None = None,
) -> RunContext:
    """Validate every input of a run before anything is written.

    Raises
    ------
    InputError, SpecError
        For bad microdata, reconstructions, published tables, model specs or scenarios;
        nothing has been written when they are raised. (The one write: a checkout without
        the shipped ensemble gets it built in ``data/reconstructed`` once the other inputs
        have passed.)
    """
    if profile not in PROFILES:
        raise InputError(f"unknown profile {profile!r} (choose from {sorted(PROFILES)})")
    validate_seed(seed)
    settings = PROFILES[profile]
    if n_reconstructions is not None:
        if n_reconstructions < 1:
            raise InputError(f"--n-reconstructions must be >= 1, got {n_reconstructions}")
        settings = replace(settings, n_reconstructions=n_reconstructions)
    if models is not None:
        settings = replace(settings, models=tuple(models))
    ctx = RunContext(
        out=Path(out),
        profile=profile,
        settings=settings,
        seed=seed,
        published_dir=Path(published) if published else config.PUBLISHED_DIR,
        weighting_file=Path(weighting) if weighting else config.WEIGHTING_FILE,
        progress=progress,
    )
    _check_published(ctx.published_dir)
    # specs first: they are cheap, and a typo must fail before any data work
    ctx.specs, ctx.spec_hashes = _load_specs(settings.models)
    if data is not None:
        if reconstructions is not None:
            raise InputError("--data and --reconstructions name two inputs; give one")
        if n_reconstructions is not None:
            raise InputError(
                "--n-reconstructions applies to a reconstruction folder, not to --data"
            )
        df = microdata.load(data, data_class=data_class, keep_columns=keep_columns)
        ctx.frames, ctx.dataset_ids = [df], ["data"]
        ctx.status = status_of(df)
        ctx.synthetic = ctx.status == "SYNTHETIC"
        ctx.restricted = ctx.status == "RESTRICTED"
        # the path is not row-level data, but in restricted mode keep only the file name
        ctx.data_source = Path(data).name if ctx.restricted else str(data)
    else:
        if data_class is not None and data_class != "synthetic":
            raise InputError("--data-class describes a --data file; reconstructions are synthetic")
        if reconstructions is None:  # the shipped ensemble; built if a checkout lacks it
            _ensure_default_ensemble(settings.n_reconstructions, seed, progress)
        directory = Path(reconstructions) if reconstructions else config.RECONSTRUCTED_DIR
        ctx.frames, ctx.dataset_ids, ctx.reconstruction_manifest = _load_reconstructions(
            directory, settings.n_reconstructions
        )
        ctx.synthetic, ctx.restricted, ctx.status = True, False, "SYNTHETIC"
        ctx.data_source = str(directory)
    if ctx.restricted:
        ctx.policy = small_cells(ctx.frames[0])
    _check_weighting(ctx.weighting_file, ctx.frames, ctx.published_dir)
    ctx.data_hashes = [sha256_frame(f) for f in ctx.frames]
    return ctx


# --------------------------------------------------------------------------- unit runner


@dataclass
class UnitResult:
    """What happened to one unit in this run."""

    unit: str
    status: Literal["done", "cached", "unavailable", "failed"]
    seconds: float
    message: str = ""
    info: dict[str, Any] = field(default_factory=dict)


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def clean_stale(out: Path) -> list[Path]:
    """Remove scratch folders and temporary files left by a killed run."""
    removed: list[Path] = []
    if not out.exists():
        return removed
    for p in list(out.rglob(".*.partial-*")) + list(out.rglob(".*.old-*")):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    for p in out.rglob(".*.tmp"):
        with contextlib.suppress(OSError):
            p.unlink()
            removed.append(p)
    return removed


def run_unit(
    ctx: RunContext,
    unit: str,
    inputs: dict[str, Any],
    body: Callable[[Path], dict[str, Any]],
    *,
    force: bool = False,
    fail_fast: bool = False,
) -> UnitResult:
    """Run ``body(scratch_dir)`` unless ``RUN_DIR/unit`` holds a manifest with the same input hash.

    The body writes its files into ``scratch_dir``; on success a manifest is added and the
    folder is renamed onto ``RUN_DIR/unit`` (two renames; the old copy is removed after).
    A body that raises leaves ``RUN_DIR/unit`` as it was: :class:`StageUnavailable` gives
    status ``unavailable``, :class:`InputError` propagates, any other exception (also a
    sampler panic, which Rust bindings raise as a ``BaseException``) gives status ``failed``
    (or propagates with ``fail_fast``); an interrupt propagates.
    """
    target = ctx.out / unit
    h = input_hash({"unit": unit, **inputs})
    old = _read_manifest(target)
    if not force and old is not None and old.get("input_hash") == h:
        return UnitResult(unit, "cached", 0.0, info=old.get("info", {}))
    scratch = target.parent / f".{target.name}.partial-{os.getpid()}"
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    if ctx.restricted:
        os.chmod(scratch, DIR_MODE_RESTRICTED)
    t0 = time.perf_counter()
    try:
        info = body(scratch) or {}
    except StageUnavailable as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        return UnitResult(unit, "unavailable", time.perf_counter() - t0, str(exc))
    except InputError:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    except BaseException as exc:  # a sampler panic (PanicException) is a BaseException
        # A crash inside one stage (a Python error or a sampler panic) must not lose the
        # others: record it, keep going, and let the CLI exit non-zero. The traceback goes
        # to stderr (not into the run directory: in restricted mode it could quote data).
        shutil.rmtree(scratch, ignore_errors=True)
        if fail_fast:
            raise
        import traceback

        traceback.print_exc(file=sys.stderr)
        return UnitResult(unit, "failed", time.perf_counter() - t0, f"{type(exc).__name__}: {exc}")
    secs = time.perf_counter() - t0
    write_json(
        scratch / "manifest.json",
        {
            "unit": unit,
            "input_hash": h,
            "inputs": inputs,
            "seconds": round(secs, 3),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "info": info,
        },
    )
    if target.exists():
        trash = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, trash)
        os.replace(scratch, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(scratch, target)
    return UnitResult(unit, "done", secs, info=info)


def _unit_hash(ctx: RunContext, unit: str) -> str | None:
    m = _read_manifest(ctx.out / unit)
    return None if m is None else m.get("input_hash")


# --------------------------------------------------------------------------- stages


def _write_table(ctx: RunContext, path: Path, df: pd.DataFrame, **rules: Any) -> None:
    """Write a table; in restricted mode through the disclosure policy first.

    ``rules`` are the policy's per-table options (``about``, ``pair_with``, ``aggregate``:
    :func:`cst_bayes.core.disclosure.protect`).
    """
    notes: list[str] = []
    if ctx.restricted:
        assert ctx.policy is not None
        df = protect(df, ctx.policy, **rules)
        notes.append(
            f"counts below {config.SMALL_CELL} read '<{config.SMALL_CELL}'; statistics that "
            "depend on them are blank; no row-level data"
        )
    write_csv(path, df, status=ctx.status, notes=notes)


def _copy_published(ctx: RunContext, work: Path) -> None:
    """Keep the published tables the run used beside its outputs (the report reads them).

    In restricted mode Table 1 is left out: it is public, but its small printed counts would
    sit among outputs that promise no count below the threshold.
    """
    for p in sorted(ctx.published_dir.glob("*.csv")):
        if ctx.restricted and p.name.startswith("table1"):
            continue
        write_text(work / "published" / p.name, p.read_text(encoding="utf-8"))


def stage_audit(ctx: RunContext, work: Path) -> dict[str, Any]:
    """Audit of the published tables (``audit.run_audit``) -> ``audit.csv``."""
    checks = pd.DataFrame(audit.run_audit(ctx.published_dir))
    write_csv(work / "audit.csv", checks, status="PUBLIC", notes="audit of the published tables")
    counts = checks["status"].value_counts().to_dict() if "status" in checks else {}
    return {"checks": len(checks), **{str(k): int(v) for k, v in counts.items()}}


def stage_data(ctx: RunContext, work: Path) -> dict[str, Any]:
    """Provenance of the data (never the rows themselves) and reconstruction fidelity."""
    rows = []
    for ds, df, h in zip(ctx.dataset_ids, ctx.frames, ctx.data_hashes, strict=True):
        rows.append({"dataset": ds, "n_rows": len(df), "sha256": h, "synthetic": ctx.synthetic})
    info: dict[str, Any] = {
        "datasets": len(rows),
        "synthetic": ctx.synthetic,
        "restricted": ctx.restricted,
        "source": ctx.data_source,
    }
    write_csv(work / "datasets.csv", pd.DataFrame(rows), status=ctx.status)
    _copy_published(ctx, work)
    man = ctx.reconstruction_manifest
    if man is not None:
        write_json(work / "reconstruction_manifest.json", man)
        fid = _fidelity_table(man, ctx.dataset_ids)
        if fid is not None:
            write_csv(work / "fidelity.csv", fid, status="SYNTHETIC")
            info["fidelity_met"] = int(fid["met"].sum())
            info["fidelity_total"] = int(fid["total"].sum())
        spread = man.get("untargeted_spread")
        if isinstance(spread, list) and spread:
            write_csv(work / "untargeted_spread.csv", pd.DataFrame(spread), status="SYNTHETIC")
    return info


def _fidelity_table(man: dict[str, Any], ids: Sequence[str]) -> pd.DataFrame | None:
    """Targets met per member and table, from the reconstruction manifest (``reconstruct.build_ensemble``)."""
    members = man.get("members")
    if not isinstance(members, list):
        return None
    rows = []
    for m in members:
        if not isinstance(m, dict) or not isinstance(m.get("targets"), dict):
            continue
        ds = Path(str(m.get("file", ""))).stem
        if ids and ds not in ids:
            continue
        for table, t in m["targets"].items():
            if isinstance(t, dict) and "met" in t:
                rows.append(
                    {
                        "dataset": ds,
                        "table": table,
                        "met": int(t["met"]),
                        "total": int(t["total"]),
                        "reported_only": int(t.get("reported_only", 0)),
                        "all_forced_met": bool(m["targets"].get("all_forced_met", False)),
                    }
                )
    return pd.DataFrame(rows) if rows else None


def stage_tables(ctx: RunContext, work: Path) -> dict[str, Any]:
    """Frequentist tables on every dataset, stacked with a leading ``dataset`` column."""
    out: dict[str, list[pd.DataFrame]] = {}
    matched = total = 0
    for ds, df in zip(ctx.dataset_ids, ctx.frames, strict=True):
        res = dict(freq.reproduce(df))
        res["comparison"] = freq.compare(res)
        if ctx.restricted:
            res = freq.suppress(res, df)
        # restricted: only the rows still printed, else the count says how many hidden
        # cells equal the article's
        shown = res["comparison"]["matches"].dropna().astype(bool)
        matched += int(shown.sum())
        total += len(shown)
        for k, v in res.items():
            v = pd.DataFrame(v).copy()
            v.insert(0, "dataset", ds)
            out.setdefault(k, []).append(v)
    info: dict[str, Any] = {}
    for k, parts in out.items():
        t = pd.concat(parts, ignore_index=True)
        _write_table(ctx, work / f"{k}.csv", t)
        info[k] = len(t)
    info["published_matched"] = matched
    info["published_compared"] = total
    return info


def _summary_of(fit: Any) -> pd.DataFrame:
    s = getattr(fit, "summary", None)
    if not isinstance(s, pd.DataFrame):
        raise TypeError(f"fit result {type(fit).__name__} has no summary DataFrame")
    return s


def stage_model(ctx: RunContext, name: str, work: Path) -> dict[str, Any]:
    """Fit one shipped model on every dataset (pooled over the ensemble when there are several)."""
    spec = ctx.specs[name]
    s = ctx.settings
    kw = dict(draws=s.draws, tune=s.tune, chains=s.chains, seed=ctx.seed, sampler=s.sampler)
    info: dict[str, Any] = {"model": name, "datasets": len(ctx.frames)}
    if len(ctx.frames) > 1:
        res = pooling.fit_ensemble(spec, ctx.frames, **kw)
        for attr in ("between", "variance_share", "per_member"):
            v = getattr(res, attr, None)
            if isinstance(v, pd.DataFrame):
                write_csv(work / f"{attr}.csv", v, status=ctx.status)
    else:
        res = models_mod.fit(spec, ctx.frames[0], progress=False, **kw)
    summary = _summary_of(res)
    idata = getattr(res, "idata", None)
    diag = getattr(res, "diagnostics", None)
    if isinstance(diag, dict):
        info["diagnostics"] = {
            k: v
            for k, v in diag.items()
            if k
            in (
                "divergences",
                "max_r_hat",
                "min_ess_bulk",
                "min_ess_tail",
                "min_bfmi",
                "ok",
                "messages",
                "all_ok",
                "members_with_trouble",
                "flipping_terms",
            )
        }
        if "ok" not in info["diagnostics"] and "all_ok" in info["diagnostics"]:
            info["diagnostics"]["ok"] = info["diagnostics"]["all_ok"]
    _write_table(ctx, work / "summary.csv", summary, pair_with=config.OUTCOME)
    text = getattr(spec, "text", None)
    if text:
        write_text(work / "spec.toml", text)
    if idata is not None:
        if ctx.restricted:
            idata = strip_row_level(idata)
        from cst_bayes.core.fileio import atomic_path

        with atomic_path(work / f"{name}.nc") as tmp:
            idata.to_netcdf(str(tmp), engine="h5netcdf")
    return info


def stage_ppc(ctx: RunContext, name: str, work: Path) -> dict[str, Any]:
    """Table-level posterior predictive checks for one fitted model (on the first dataset)."""
    nc = ctx.out / "models" / name / f"{name}.nc"
    if not nc.exists():
        raise StageUnavailable(f"no fitted model {name} (models/{name} not available)")
    data = ctx.frames if len(ctx.frames) > 1 else ctx.frames[0]  # a pooled fit takes every member
    try:
        table = ppc.ppc_tables(nc, data, n_draws=ctx.settings.ppc_draws, seed=ctx.seed)
    except Exception as exc:
        if ctx.restricted:  # restricted runs keep no per-agency groups on disk
            raise StageUnavailable(
                f"PPC needs per-agency groups that restricted mode drops ({exc})"
            ) from None
        raise
    _write_table(ctx, work / "ppc.csv", table)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cst_bayes.core.fileio import atomic_path

    fig = ppc.plot_ppc_tables(table, title=name, synthetic=ctx.synthetic)
    with atomic_path(work / "ppc.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    outside = int(table["flag"].astype(bool).sum()) if "flag" in table else 0
    return {"statistics": len(table), "flagged": outside}


def stage_compare(ctx: RunContext, work: Path) -> dict[str, Any]:
    """PSIS-LOO comparison of the fitted models (``comparison.loo_table``)."""
    if ctx.restricted:
        raise StageUnavailable(
            "PSIS-LOO needs the pointwise log-likelihood, which restricted mode does not keep"
        )
    fits = {}
    for name in ctx.specs:
        nc = ctx.out / "models" / name / f"{name}.nc"
        if nc.exists():
            fits[name] = models_mod.read_fit(nc)
    if len(fits) < 2:
        raise StageUnavailable(f"{len(fits)} fitted model(s): nothing to compare")
    table = comparison.loo_table(fits)
    _write_table(ctx, work / "loo.csv", table)
    notes = list(table.attrs.get("notes", []))
    write_text(work / "loo.md", comparison.summary_text(table) + "\n")
    return {"models": len(fits), "notes": notes}


def stage_weights(ctx: RunContext, work: Path) -> dict[str, Any]:
    """Weighting scenarios, design-based and Bayesian estimates, sensitivity (``weights.run_weights``).

    Runs on the first dataset (the weighting question is about the design, not about which
    reconstruction is used; the sweep crosses both).
    """
    s = ctx.settings
    res = weights_mod.run_weights(
        ctx.frames[0],
        scenarios_file=ctx.weighting_file,
        out_dir=None,
        mcmc=s.weights_mcmc,
        draws=s.draws,
        tune=s.tune,
        chains=s.chains,
        seed=ctx.seed,
        sampler=s.sampler,
        published_dir=ctx.published_dir,
    )
    info: dict[str, Any] = {"dataset": ctx.dataset_ids[0], "mcmc": s.weights_mcmc}
    for k, v in res.items():
        if isinstance(v, pd.DataFrame):
            _write_table(ctx, work / f"{k}.csv", v)
            info[k] = len(v)
    text = res.get("sensitivity_text")
    if isinstance(text, str):
        write_text(work / "sensitivity.md", text)
    sens = res.get("sensitivity")
    if isinstance(sens, pd.DataFrame) and len(sens):
        from cst_bayes.weighting.sensitivity import plot_sensitivity

        plot_sensitivity(sens, work / "sensitivity.png", synthetic=ctx.synthetic)  # atomic itself
    return info


# --------------------------------------------------------------------------- orchestration


def _progress(ctx: RunContext, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        disable=not ctx.progress,
        leave=True,
        file=sys.stderr,
        bar_format="{desc:<22} {bar:20} {n_fmt}/{total_fmt} [{elapsed}]",
    )


def _units(
    ctx: RunContext, stages: Sequence[str]
) -> list[tuple[str, str, Callable[[], tuple[dict, Callable]]]]:
    """(stage, unit, lazily computed (inputs, body)) in run order."""
    base = ctx.base_inputs()
    units: list[tuple[str, str, Callable[[], tuple[dict, Callable]]]] = []
    pub_hash = {p.name: sha256_file(p) for p in sorted(ctx.published_dir.glob("*.csv"))}
    if "audit" in stages:
        units.append(
            (
                "audit",
                "audit",
                lambda: (
                    {"version": __version__, "code": code_hash("audit"), "published": pub_hash},
                    lambda w: stage_audit(ctx, w),
                ),
            )
        )
    if "data" in stages:
        units.append(
            (
                "data",
                "data",
                lambda: (
                    {
                        **base,
                        "code": code_hash("data"),
                        "manifest": input_hash(ctx.reconstruction_manifest),
                        "published": pub_hash,
                    },
                    lambda w: stage_data(ctx, w),
                ),
            )
        )
    if "tables" in stages:
        units.append(
            (
                "tables",
                "tables",
                lambda: (
                    {**base, "code": code_hash("tables"), "published": pub_hash},
                    lambda w: stage_tables(ctx, w),
                ),
            )
        )
    if "models" in stages:
        if not ctx.specs:
            units.append(
                (
                    "models",
                    "models",
                    lambda: ({}, _unavailable("no model specs")),
                )
            )
        for name in ctx.specs:
            units.append(
                (
                    "models",
                    f"models/{name}",
                    lambda n=name: (
                        {
                            **base,
                            **ctx.sampling_inputs(),
                            "code": code_hash("models"),
                            "spec": ctx.spec_hashes[n],
                        },
                        lambda w: stage_model(ctx, n, w),
                    ),
                )
            )
    if "ppc" in stages:
        if not ctx.specs:
            units.append(("ppc", "ppc", lambda: ({}, _unavailable("no fitted models to check"))))
        for name in ctx.specs:
            units.append(
                (
                    "ppc",
                    f"ppc/{name}",
                    lambda n=name: (
                        {
                            **base,
                            "code": code_hash("ppc"),
                            "ppc_draws": ctx.settings.ppc_draws,
                            "fit": _unit_hash(ctx, f"models/{n}"),
                        },
                        lambda w: stage_ppc(ctx, n, w),
                    ),
                )
            )
    if "compare" in stages:
        units.append(
            (
                "compare",
                "compare",
                lambda: (
                    {
                        **base,
                        "code": code_hash("compare"),
                        "fits": {n: _unit_hash(ctx, f"models/{n}") for n in ctx.specs},
                    },
                    lambda w: stage_compare(ctx, w),
                ),
            )
        )
    if "weights" in stages:
        w_hash = sha256_file(ctx.weighting_file) if ctx.weighting_file.is_file() else None
        units.append(
            (
                "weights",
                "weights",
                lambda: (
                    {
                        **base,
                        **ctx.sampling_inputs(),
                        "code": code_hash("weights"),
                        "mcmc": ctx.settings.weights_mcmc,
                        "scenarios": w_hash,
                        "published": pub_hash,
                    },
                    lambda w: stage_weights(ctx, w),
                ),
            )
        )
    return units


def _unavailable(msg: str) -> Callable[[Path], dict]:
    def body(_: Path) -> dict:
        raise StageUnavailable(msg)

    return body


#: Members built when the shipped ensemble is missing (the number the package ships).
DEFAULT_ENSEMBLE_SIZE = 20


def _ensure_default_ensemble(n: int | None, seed: int, progress: bool) -> None:
    """Build ``data/reconstructed`` with ``reconstruct.build_ensemble`` when it holds no member.

    A fresh clone ships the ensemble; this covers a checkout without it (said loudly, since
    it takes minutes).
    """
    directory = config.RECONSTRUCTED_DIR
    if any(directory.glob("reconstruction-*.csv")):
        return
    from cst_bayes import reconstruct

    n = max(n or DEFAULT_ENSEMBLE_SIZE, 2)
    print(
        f"cst-bayes reproduce: {directory} has no reconstructions; building {n} SYNTHETIC members "
        f"(seed {seed})",
        file=sys.stderr,
    )
    reconstruct.build_ensemble(n, seed, directory, progress=progress)


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

    def text(self) -> str:
        """A one-screen summary."""
        lines = [f"cst-bayes reproduce: run directory {self.out}"]
        lines.append(
            f"{'stage':<10} {'units':>5} {'done':>5} {'cached':>6} {'n/a':>4} {'failed':>6} {'seconds':>8}"
        )
        for st in (*STAGES[:-1], "sweep", STAGES[-1]):
            rs = [r for r in self.results if r.unit.split("/")[0] == st]
            if not rs and st not in self.stage_seconds:
                continue
            lines.append(
                f"{st:<10} {len(rs):>5} {sum(r.status == 'done' for r in rs):>5} "
                f"{sum(r.status == 'cached' for r in rs):>6} {sum(r.status == 'unavailable' for r in rs):>4} "
                f"{sum(r.status == 'failed' for r in rs):>6} "
                f"{self.stage_seconds.get(st, 0.0):>8.1f}"
            )
        lines.append(f"total {self.total_seconds:.1f} s")
        info = {r.unit: r.info for r in self.results}
        t = info.get("tables") or {}
        if "published_compared" in t:
            lines.append(
                f"published numbers reproduced: {t['published_matched']} of {t['published_compared']} "
                "(summed over datasets)"
            )
        fits = {u: i for u, i in info.items() if u.startswith("models/")}
        if fits:
            trouble = [
                u.split("/", 1)[1]
                for u, i in fits.items()
                if (i.get("diagnostics") or {}).get("ok") is False
            ]
            lines.append(
                f"models fitted: {len(fits)}; with sampler warnings: {', '.join(trouble) or 'none'}"
            )
        flagged = {
            u.split("/", 1)[1]: i.get("flagged") for u, i in info.items() if u.startswith("ppc/")
        }
        if flagged:
            lines.append(
                "PPC statistics outside the 95% band: "
                + ", ".join(f"{m} {n}" for m, n in flagged.items())
            )
        for r in self.unavailable():
            lines.append(f"STAGE NOT AVAILABLE: {r.unit}: {r.message}")
        for r in self.failed():
            lines.append(f"STAGE FAILED: {r.unit}: {r.message}")
        if self.report is not None:
            lines.append(f"report: {self.report}")
        return "\n".join(lines)


def _restrict_modes(out: Path) -> None:
    """A restricted run folder is group-only: folders 0750, files 0640 (whoever wrote them)."""
    os.chmod(out, DIR_MODE_RESTRICTED)
    for p in out.rglob("*"):
        with contextlib.suppress(OSError):
            os.chmod(p, DIR_MODE_RESTRICTED if p.is_dir() else MODE_RESTRICTED)


def reproduce(
    out: str | Path,
    *,
    profile: Profile = "full",
    seed: int = 20240101,
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
) -> RunSummary:
    """Run the pipeline into ``out``; cached units are skipped.

    Parameters
    ----------
    out
        Run directory (created). Reusing one resumes: units whose inputs are unchanged are
        not recomputed.
    profile
        ``"quick"`` (CI) or ``"full"`` (publication quality); see :data:`PROFILES`.
    seed
        Seed for every stochastic step; the same seed gives identical tables.
    data
        Real (or any contract-conforming) microdata file instead of the reconstructions.
    data_class, keep_columns
        How ``data`` is read (:func:`cst_bayes.data.microdata.load`): restricted unless it
        proves it is synthetic or is declared ``public``; extra columns to keep.
    reconstructions
        Folder of ``reconstruction-*.csv`` (default ``data/reconstructed``).
    published, weighting
        Published-tables folder and weighting-scenarios file (defaults under the repo).
    models
        Spec names or paths; default: the profile's list.
    n_reconstructions
        Override the profile's ensemble size.
    stages
        Subset of :data:`STAGES` to run (default: all). ``report`` is always last.
    sweep
        A grid TOML: run :func:`cst_bayes.run.sweep.run_sweep` into ``RUN_DIR/sweep`` (LocalCluster,
        cached cells) before the report, which then shows it.
    force
        Recompute every unit even if cached.

    Returns
    -------
    RunSummary
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
    )
    grid = None
    if sweep is not None:
        from cst_bayes.run.sweep import load_grid

        grid = load_grid(sweep)  # validated before anything is written
    check_out_dir(ctx.out)
    ctx.out.mkdir(parents=True, exist_ok=True)
    if ctx.restricted:
        os.chmod(ctx.out, DIR_MODE_RESTRICTED)
    clean_stale(ctx.out)
    results: list[UnitResult] = []
    stage_seconds: dict[str, float] = {}
    units = _units(ctx, stages)
    for st in [s for s in STAGES if s != "report" and s in stages]:
        mine = [u for u in units if u[0] == st]
        if not mine:
            continue
        t0 = time.perf_counter()
        with _progress(ctx, len(mine), st) as bar:
            for _, unit, make in mine:
                bar.set_postfix_str(unit.split("/")[-1][:24])
                inputs, body = make()
                r = run_unit(ctx, unit, inputs, body, force=force)
                results.append(r)
                bar.update(1)
        stage_seconds[st] = time.perf_counter() - t0
    if grid is not None:
        from cst_bayes.run.sweep import run_sweep

        t0 = time.perf_counter()
        res = run_sweep(grid, ctx.out / "sweep", progress=progress)
        stage_seconds["sweep"] = time.perf_counter() - t0
        results.append(
            UnitResult(
                "sweep",
                "done" if res.computed else "cached",
                stage_seconds["sweep"],
                info={"computed": res.computed, "cached": res.cached},
            )
        )
    run_info = {
        "cst_bayes_version": __version__,
        "profile": ctx.profile,
        "settings": asdict(ctx.settings),
        "seed": ctx.seed,
        "synthetic": ctx.synthetic,
        "restricted": ctx.restricted,
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
    write_json(ctx.out / "run.json", run_info)
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
    total = time.perf_counter() - t_start
    run_info["stage_seconds"] = {k: round(v, 2) for k, v in stage_seconds.items()}
    run_info["total_seconds"] = round(total, 2)
    run_info["units"] = [asdict(r) for r in results]
    write_json(ctx.out / "run.json", run_info)
    return RunSummary(ctx.out, results, stage_seconds, total, report_path)
