"""A sweep grid: the TOML file, validated (nothing written), and its cells."""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cst_bayes import __version__
from cst_bayes.core import config
from cst_bayes.core.errors import InputError, SpecError
from cst_bayes.core.fileio import sha256_file
from cst_bayes.core.options import DEFAULT_SAMPLER, DEFAULT_SEED, SEED_MAX
from cst_bayes.data.ensemble import MEMBER_GLOB
from cst_bayes.run.cache import input_hash

AXES: tuple[str, ...] = ("reconstruction", "scenario", "prior_scale", "model")
GRID_KEYS: dict[str, str] = {
    "reconstructions": "reconstruction",
    "scenarios": "scenario",
    "prior_scales": "prior_scale",
    "models": "model",
}
SAMPLING_KEYS: dict[str, type] = {
    "draws": int,
    "tune": int,
    "chains": int,
    "seed": int,
    "sampler": str,
}
PATH_KEYS: frozenset[str] = frozenset({"reconstructions", "weighting"})
#: Variables per (cell, term) in the Dataset.
VARIABLES: tuple[str, ...] = ("estimate", "ci_low", "ci_high", "r_hat", "ess_bulk")
#: Cap on the cells of one grid: a typo ("prior_scales = [..1000 values..]") should not
#: silently queue hours of sampling.
MAX_CELLS = 2000


@dataclass(frozen=True)
class Cell:
    """One grid cell: everything a worker needs, all picklable."""

    reconstruction: int
    scenario: str
    prior_scale: PriorScale
    model: str
    data_file: str
    data_hash: str
    scenario_def: dict[str, Any]
    spec_hash: str
    sampling: dict[str, Any]
    weighting_file: str

    def key(self) -> str:
        """Hash of every input (the cache key)."""
        d = asdict(self)
        d.pop("data_file")
        d.pop("weighting_file")
        return input_hash({"version": __version__, **d})


@dataclass
class Grid:
    """A validated sweep grid."""

    path: Path
    reconstructions: list[int]
    scenarios: list[str]
    prior_scales: list[PriorScale]
    models: list[str]
    sampling: dict[str, Any]
    reconstruction_files: dict[int, Path] = field(default_factory=dict)
    weighting_file: Path = config.WEIGHTING_FILE

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (
            len(self.reconstructions),
            len(self.scenarios),
            len(self.prior_scales),
            len(self.models),
        )


def _bad(msg: str, path: Path, key: str) -> SpecError:
    return SpecError(msg, path=path, column=key)


#: A prior-scale entry of the grid: K (the coefficient priors, as ``models.fit`` reads a
#: plain number) or a table ``{slot = K, ...}`` over the spec's prior slots.
PriorScale = float | dict[str, float]


def scale_label(k: PriorScale) -> str:
    """How a prior-scale entry is named on the sweep's ``prior_scale`` axis."""
    if isinstance(k, dict):
        return ",".join(f"{s}={v:g}" for s, v in sorted(k.items()))
    return f"beta={k:g}"


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(
            "grid file not found" if not path.exists() else "expected a file", path=path
        )
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"not valid TOML ({exc})", path=path) from None
    except UnicodeDecodeError:
        raise SpecError("not a text file", path=path) from None


def _check_sections(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    unknown = sorted(set(raw) - {"grid", "sampling", "paths"})
    if unknown:
        raise _bad(
            f"unknown section(s) {unknown} (allowed: grid, sampling, paths)", path, unknown[0]
        )
    g = raw.get("grid")
    if not isinstance(g, dict):
        raise _bad("missing [grid] table", path, "grid")
    unknown = sorted(set(g) - set(GRID_KEYS))
    if unknown:
        raise _bad(
            f"unknown grid axis {unknown[0]!r} (allowed: {sorted(GRID_KEYS)})",
            path,
            f"grid.{unknown[0]}",
        )
    missing = [k for k in GRID_KEYS if k not in g]
    if missing:
        raise _bad(f"missing grid axis {missing[0]!r}", path, f"grid.{missing[0]}")
    return g


def _paths(raw: dict[str, Any], path: Path) -> tuple[Path, Path]:
    paths = raw.get("paths", {})
    if not isinstance(paths, dict) or set(paths) - PATH_KEYS:
        bad = sorted(set(paths) - PATH_KEYS) if isinstance(paths, dict) else ["paths"]
        raise _bad(
            f"unknown path key(s) {bad} (allowed: {sorted(PATH_KEYS)})", path, f"paths.{bad[0]}"
        )
    base = path.parent
    rec = base / paths["reconstructions"] if "reconstructions" in paths else None
    w = base / paths["weighting"] if "weighting" in paths else None
    return (
        rec.resolve() if rec else config.RECONSTRUCTED_DIR,
        w.resolve() if w else config.WEIGHTING_FILE,
    )


def _as_list(g: dict[str, Any], key: str, path: Path) -> list[Any]:
    v = g[key]
    if not isinstance(v, list) or not v:
        raise _bad("must be a non-empty list", path, f"grid.{key}")
    if len({json.dumps(x, sort_keys=True) for x in v}) != len(v):
        raise _bad("repeated values", path, f"grid.{key}")
    return v


def _reconstructions(g: dict[str, Any], files: list[Path], rec_dir: Path, path: Path) -> list[int]:
    key = "grid.reconstructions"
    if g["reconstructions"] == "all":
        if not files:
            raise _bad(f"no reconstruction-*.csv in {rec_dir}", path, key)
        return list(range(1, len(files) + 1))
    recs = _as_list(g, "reconstructions", path)
    if not all(isinstance(r, int) and not isinstance(r, bool) for r in recs):
        raise _bad('reconstruction numbers must be integers (1-based) or "all"', path, key)
    out_of = [r for r in recs if r < 1 or r > len(files)]
    if out_of:
        raise _bad(
            f"reconstruction(s) {out_of} outside the ensemble of {len(files)} in {rec_dir}",
            path,
            key,
        )
    return [int(r) for r in recs]


def _positive(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and bool(np.isfinite(x)) and x > 0


def _prior_scales(g: dict[str, Any], path: Path) -> list[PriorScale]:
    from cst_bayes.bayes.families import PRIOR_SLOTS

    slots = sorted(PRIOR_SLOTS)
    out: list[PriorScale] = []
    for x in _as_list(g, "prior_scales", path):
        if isinstance(x, dict):
            bad = sorted(set(x) - set(slots))
            if bad or not x or not all(_positive(v) for v in x.values()):
                raise _bad(
                    f"a prior-scale table maps slots {slots} to positive numbers"
                    + (f" (unknown slot {bad[0]!r})" if bad else ""),
                    path,
                    "grid.prior_scales",
                )
            out.append({str(k): float(v) for k, v in x.items()})
        elif _positive(x):
            out.append(float(x))
        else:
            raise _bad(
                "prior scales must be positive finite numbers or {slot = K} tables",
                path,
                "grid.prior_scales",
            )
    return out


def _names(g: dict[str, Any], key: str, path: Path) -> list[str]:
    vals = _as_list(g, key, path)
    if not all(isinstance(x, str) and x.strip() for x in vals):
        raise _bad("must be a list of names", path, f"grid.{key}")
    return list(vals)


def _sampling(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    sampling: dict[str, Any] = {
        "draws": 500, "tune": 500, "chains": 2, "seed": DEFAULT_SEED, "sampler": DEFAULT_SAMPLER,
    }  # fmt: skip
    s = raw.get("sampling", {})
    if not isinstance(s, dict):
        raise _bad("must be a table", path, "sampling")
    for k, v in s.items():
        if k not in SAMPLING_KEYS:
            raise _bad(
                f"unknown sampling key {k!r} (allowed: {sorted(SAMPLING_KEYS)})",
                path,
                f"sampling.{k}",
            )
        typ = SAMPLING_KEYS[k]
        ok = isinstance(v, typ) and not isinstance(v, bool)
        if ok and typ is int:
            ok = 0 <= v <= SEED_MAX if k == "seed" else v >= 1
        if not ok:
            what = (
                "string"
                if typ is str
                else ("seed in 0 .. 2**32 - 1" if k == "seed" else "positive integer")
            )
            raise _bad(f"must be a {what}", path, f"sampling.{k}")
        sampling[k] = v
    return sampling


def load_grid(path: str | Path) -> Grid:
    """Read and validate a grid TOML (nothing is written).

    Raises
    ------
    SpecError
        Naming the file and the key: TOML syntax, unknown sections or keys, empty or
        repeated axis values, bad prior scales (numbers or ``{slot = K}`` tables) or sampler
        numbers, reconstruction numbers outside the ensemble, unknown scenarios or models,
        or too many cells.
    """
    from cst_bayes.weighting import weights

    path = Path(path)
    raw = _read_toml(path)
    g = _check_sections(raw, path)
    rec_dir, wfile = _paths(raw, path)
    files = sorted(rec_dir.glob(MEMBER_GLOB)) if rec_dir.is_dir() else []
    recs = _reconstructions(g, files, rec_dir, path)
    scales = _prior_scales(g, path)
    scenarios, models_ = _names(g, "scenarios", path), _names(g, "models", path)
    sampling = _sampling(raw, path)
    n_cells = len(recs) * len(scenarios) * len(scales) * len(models_)
    if n_cells > MAX_CELLS:
        raise _bad(f"{n_cells} cells exceed the limit of {MAX_CELLS}", path, "grid")
    # names are checked against the scenario file and the shipped specs
    known = weights.load_scenarios(wfile)
    unknown = [x for x in scenarios if x not in known]
    if unknown:
        raise _bad(
            f"unknown scenario(s) {unknown} (in {wfile.name}: {sorted(known)})",
            path,
            "grid.scenarios",
        )
    for m in models_:
        _load_spec(m, path)
    return Grid(
        path=path,
        reconstructions=recs,
        scenarios=scenarios,
        prior_scales=scales,
        models=models_,
        sampling=sampling,
        reconstruction_files={r: files[r - 1] for r in recs},
        weighting_file=wfile,
    )


def _load_spec(name: str, grid_path: Path) -> Any:
    from cst_bayes.bayes import models

    try:
        return models.load_spec(name)
    except InputError as exc:
        raise SpecError(f"model {name!r}: {exc}", path=grid_path, column="grid.models") from None


def _spec_hash(spec: Any) -> str:
    p = getattr(spec, "path", None)
    if p is not None and Path(p).is_file():
        return sha256_file(p)
    return input_hash(repr(spec))


def cells(grid: Grid) -> list[Cell]:
    """Every cell of the grid, in axis order."""
    from cst_bayes.weighting import weights

    scen = weights.load_scenarios(grid.weighting_file)
    data_hash = {r: sha256_file(f) for r, f in grid.reconstruction_files.items()}
    spec_hash = {m: _spec_hash(_load_spec(m, grid.path)) for m in grid.models}
    out = []
    for r in grid.reconstructions:
        for s in grid.scenarios:
            for k in grid.prior_scales:
                for m in grid.models:
                    out.append(
                        Cell(
                            reconstruction=r,
                            scenario=s,
                            prior_scale=k,
                            model=m,
                            data_file=str(grid.reconstruction_files[r]),
                            data_hash=data_hash[r],
                            scenario_def=json.loads(json.dumps(asdict(scen[s]), default=str)),
                            spec_hash=spec_hash[m],
                            sampling=dict(grid.sampling),
                            weighting_file=str(grid.weighting_file),
                        )
                    )
    return out
