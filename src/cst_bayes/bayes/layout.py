"""How a pooled fit sits in its file: members on their own dimension, not posing as chains.

In memory a pooled fit stacks the members' chains along ``chain`` with a ``reconstruction``
coordinate (what pooling, the checks and LOO select members by). Written that way, ArviZ
reads members as chains: ``az.rhat`` would measure how the reconstructions disagree, not
whether the sampler converged. So files carry each group as ``(chain, draw, member, ...)``
(the member dimension where ArviZ treats it as a parameter index: ``az.rhat`` and
``az.summary`` then give every member's own diagnostics), and :func:`from_file` restores the
stacked layout when the package reads a file back.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

MEMBER = "member"
STACKED = "reconstruction"


def _split(ds: xr.Dataset) -> xr.Dataset:
    members = [int(m) for m in dict.fromkeys(ds[STACKED].to_numpy().tolist())]
    parts = []
    for m in members:
        part = ds.isel(chain=np.flatnonzero(ds[STACKED].to_numpy() == m)).drop_vars(STACKED)
        parts.append(part.assign_coords(chain=np.arange(part.sizes["chain"])))
    out = xr.concat(parts, dim=xr.DataArray(members, dims=MEMBER, name=MEMBER))
    order = ["chain", "draw", MEMBER]
    return out.transpose(*order, ...)


def _stack(ds: xr.Dataset) -> xr.Dataset:
    members = ds[MEMBER].to_numpy()
    parts = []
    for m in members:
        part = ds.sel({MEMBER: m}).drop_vars(MEMBER)
        parts.append(part.assign_coords({STACKED: ("chain", np.full(part.sizes["chain"], m))}))
    out = xr.concat(parts, dim="chain")
    out = out.assign_coords(chain=np.arange(out.sizes["chain"]))
    return out.transpose("chain", "draw", ...)


def _regroup(idata: Any, applies: Any, convert: Any) -> Any:
    """``convert`` every group ``applies`` says is in the other layout (others unchanged)."""
    groups = {g: getattr(idata, g) for g in idata.groups()}
    todo = [g for g, ds in groups.items() if "chain" in ds.dims and applies(ds)]
    if not todo:
        return idata
    import arviz as az

    out = az.InferenceData(**{g: convert(ds) if g in todo else ds for g, ds in groups.items()})
    for g, ds in groups.items():
        getattr(out, g).attrs.update(ds.attrs)
    return out


def to_file(idata: Any) -> Any:
    """A copy of a pooled InferenceData with members on ``member`` (unchanged if not pooled)."""
    return _regroup(idata, lambda ds: STACKED in ds.coords, _split)


def from_file(idata: Any) -> Any:
    """The stacked in-memory layout of a pooled fit read from a file (others unchanged)."""
    return _regroup(idata, lambda ds: MEMBER in ds.dims, _stack)
