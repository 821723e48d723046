"""What a run reads, validated before anything is written: profiles, inputs, the run context."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from cst_bayes import __version__
from cst_bayes.bayes import models as models_mod
from cst_bayes.core import config
from cst_bayes.core.disclosure import SmallCells, small_cells
from cst_bayes.core.errors import InputError, validate_seed
from cst_bayes.core.fileio import sha256_file, sha256_frame
from cst_bayes.core.options import DEFAULT_SAMPLER, DEFAULT_SEED, DataClass, DataStatus, Profile
from cst_bayes.core.provenance import status_of
from cst_bayes.data import microdata, published
from cst_bayes.data.ensemble import MEMBER_GLOB, load_ensemble, read_manifest
from cst_bayes.run.cache import input_hash
from cst_bayes.weighting import weights as weights_mod

#: Shipped models fitted by the ``quick`` profile (CI): the two Table 3 analyses with agency
#: size, which is what the PPC and the forest plot need; the other profiles fit every spec.
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
    #: pseudo-posterior and MRP by MCMC for these members (True: all, False: none; the
    #: design-based estimates and the normal-approximation pseudo-posterior run on every member)
    weights_mcmc: bool | tuple[str, ...]
    sampler: str = DEFAULT_SAMPLER
    #: members of the shipped ensemble to use (None: ``n_reconstructions`` decides)
    members: tuple[str, ...] | None = None
    #: sample a fit that fails a diagnostic threshold once more (cst_bayes.bayes.convergence.extension_plan)
    extend: bool = False


#: The shipped members the ``standard`` profile uses: two of each generating family and the
#: eight extreme members that, chosen greedily, attain the most of the certified bounds the
#: 19 extreme members attain (106 of 121); ``tests/run/test_context.py`` re-derives the list
#: from the ensemble's manifest. The ``full`` profile uses all 31.
STANDARD_MEMBERS: tuple[str, ...] = tuple(
    f"reconstruction-{i:03d}" for i in (1, 2, 3, 4, 16, 17, 18, 19, 20, 23, 29, 31)
)

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
    # The default of `make reproduce` (five minutes on two cores): every model on
    # STANDARD_MEMBERS, chains long enough for the diagnostics thresholds in each member, MCMC
    # weighting on two members.
    "standard": Settings(
        n_reconstructions=None,
        draws=1000,
        tune=1000,
        chains=2,
        ppc_draws=300,
        models=None,
        weights_mcmc=("reconstruction-001", "reconstruction-002"),
        members=STANDARD_MEMBERS,
        extend=True,
    ),
    # Publication quality: every member, 2 x 1000 draws and MCMC weighting on every member.
    "full": Settings(
        n_reconstructions=None,
        draws=1000,
        tune=1000,
        chains=2,
        ppc_draws=500,
        models=None,
        weights_mcmc=True,
        extend=True,
    ),
}

#: Members built when the shipped ensemble is missing (the number the package ships).
DEFAULT_ENSEMBLE_SIZE = 20


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
    jobs: int = 1  #: worker processes (cst_bayes.run.parallel); never part of a unit's inputs

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
        return {
            "draws": s.draws,
            "tune": s.tune,
            "chains": s.chains,
            "sampler": s.sampler,
            "extend": s.extend,
        }


def _load_specs(names: Sequence[str] | None) -> tuple[dict[str, Any], dict[str, str]]:
    """Load the model specs (all shipped ones when ``names`` is None) and their file hashes."""
    if names is None:
        names = list(models_mod.list_specs()["name"])
    specs, hashes = {}, {}
    for name in names:
        spec = models_mod.load_spec(name)  # raises SpecError naming file and key
        specs[spec.name] = spec
        path = getattr(spec, "path", None)
        hashes[spec.name] = (
            sha256_file(path)
            if path is not None and Path(path).exists()
            else input_hash(repr(spec))
        )
    return specs, hashes


def _check_published(directory: Path) -> None:
    """Fail early on a published-tables folder that the audit would reject."""
    if not directory.is_dir():
        raise InputError("published-tables folder not found", path=directory)
    published.load_all(directory)  # raises InputError naming file, column and rows


def _check_weighting(
    path: Path, frames: Sequence[pd.DataFrame], published_dir: Path, *, feasibility: bool = True
) -> None:
    """Validate the scenarios and their feasibility against every dataset before writing.

    Respondents above the sampled count in a stratum, or more ineligibles than a stratum
    allows, fail here in a second instead of after the models have run.
    """
    scenarios = weights_mod.load_scenarios(path)  # raises SpecError naming file and key
    if not feasibility:
        return
    frame_counts = published.load_sampling_frames(published_dir)
    for df in frames:
        weights_mod.weights_table(df, list(scenarios.values()), frame_counts)


def ensure_default_ensemble(n: int | None, seed: int, progress: bool) -> None:
    """Build ``data/reconstructed`` when it holds no member (said loudly: it takes minutes)."""
    directory = config.RECONSTRUCTED_DIR
    if any(directory.glob(MEMBER_GLOB)):
        return
    from cst_bayes import reconstruct

    n = max(n or DEFAULT_ENSEMBLE_SIZE, 2)
    print(
        f"cst-bayes reproduce: {directory} has no reconstructions; building {n} SYNTHETIC "
        f"members (seed {seed})",
        file=sys.stderr,
    )
    reconstruct.build_ensemble(n, seed, directory, progress=progress)


def prepare(
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
    progress: bool = True,
    data_class: DataClass | None = None,
    keep_columns: Sequence[str] | None = None,
    weighting_stage: bool = True,
) -> RunContext:
    """Validate every input of a run before anything is written.

    ``weighting_stage``: the scenario file is always validated, but checked against the data
    only when the weighting stage will run (it describes the real frames; other data, e.g.
    simulated at ten times the size, may not fit them).

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
            ensure_default_ensemble(settings.n_reconstructions, seed, progress)
        directory = Path(reconstructions) if reconstructions else config.RECONSTRUCTED_DIR
        ctx.frames = load_ensemble(directory, settings.n_reconstructions)
        if settings.members is not None and reconstructions is None and n_reconstructions is None:
            have = {str(df.attrs["member"]) for df in ctx.frames}
            if set(settings.members) <= have:
                ctx.frames = [df for df in ctx.frames if df.attrs["member"] in settings.members]
            else:  # a rebuilt ensemble lacks the named members: say so, use all of it
                print(
                    f"cst-bayes reproduce: {directory} lacks the profile's members; using all "
                    f"{len(ctx.frames)}",
                    file=sys.stderr,
                )
        ctx.dataset_ids = [df.attrs["member"] for df in ctx.frames]
        ctx.reconstruction_manifest = read_manifest(directory)
        ctx.synthetic, ctx.restricted, ctx.status = True, False, "SYNTHETIC"
        ctx.data_source = str(directory)
    if ctx.restricted:
        ctx.policy = small_cells(ctx.frames[0])
    _check_weighting(ctx.weighting_file, ctx.frames, ctx.published_dir, feasibility=weighting_stage)
    ctx.data_hashes = [sha256_frame(f) for f in ctx.frames]
    return ctx
