"""Fit files: ``MODEL.nc`` (ArviZ InferenceData, netCDF) and ``MODEL-summary.csv``.

A fit file carries its whole spec (``spec_toml``) and the categorical levels of its design
(``design_levels``), so :func:`read_fit` rebuilds the exact model (formula, interactions,
per-term priors) without a ``models/`` folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from cst_bayes.bayes import layout
from cst_bayes.bayes.convergence import diagnose
from cst_bayes.bayes.fit import Fit, summarise
from cst_bayes.bayes.spec import spec_from_text
from cst_bayes.core.errors import InputError
from cst_bayes.core.options import DataStatus


def _status(fit: Fit) -> DataStatus:
    attrs = fit.groups["posterior"].attrs
    if attrs.get("synthetic"):
        return "SYNTHETIC"
    return "PUBLIC" if attrs.get("data_status") == "PUBLIC" else "RESTRICTED"


def write_groups(groups: Mapping[str, Any], path: str | Path) -> None:
    """Write ``{group: Dataset}`` as ArviZ's InferenceData netCDF layout (one netCDF group per
    group, numeric variables zlib-compressed, as ``InferenceData.to_netcdf`` does), without
    importing ArviZ; ``az.from_netcdf`` reads it back."""
    mode: Literal["w", "a"] = "w"
    for name, ds in groups.items():
        encoding = {v: {"zlib": True} for v, x in ds.variables.items() if x.dtype.kind in "biufcS"}
        ds.to_netcdf(path, mode=mode, group=name, engine="h5netcdf", encoding=encoding)
        mode = "a"


def write_fit(fit: Fit, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``DIR/MODEL.nc`` (InferenceData, netCDF via h5netcdf) and ``DIR/MODEL-summary.csv``, atomically."""
    from cst_bayes.core.fileio import atomic_path, write_csv

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    nc = out / f"{fit.spec.name}.nc"
    with atomic_path(nc) as tmp:
        write_groups(fit.groups, tmp)
    csv = write_csv(
        out / f"{fit.spec.name}-summary.csv",
        fit.summary,
        status=_status(fit),
        notes=f"posterior summary of model {fit.spec.name}",
    )
    return nc, csv


def read_fit(path: str | Path) -> Fit:
    """Read a fit written by :func:`write_fit` (spec restored from the embedded TOML text)."""
    import arviz as az

    path = Path(path)
    if not path.exists():
        raise InputError("no such fit file", path=path)
    try:
        idata = az.from_netcdf(str(path), engine="h5netcdf")
    except Exception as exc:
        raise InputError(
            f"cannot read as an InferenceData netCDF ({type(exc).__name__}: {exc})", path=path
        ) from None
    idata = layout.from_file(idata)  # a pooled file's members back on the stacked chains
    attrs = idata.posterior.attrs
    if "spec_toml" not in attrs:
        raise InputError(
            "not a cst_bayes fit (no spec_toml attribute)", path=path, column="spec_toml"
        )
    spec = spec_from_text(str(attrs["spec_toml"]), str(attrs["model"]), f"{path}#spec")
    return Fit(spec=spec, idata=idata, summary=summarise(spec, idata), diagnostics=diagnose(idata))
