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
    recon = ds[STACKED].to_numpy()
    members = [int(m) for m in dict.fromkeys(recon.tolist())]
    per = len(recon) // len(members)
    if len(recon) != per * len(members) or not np.array_equal(
        recon, np.repeat(members, per)
    ):  # members' chains not in equal consecutive blocks: select each member's
        parts = []
        for m in members:
            part = ds.isel(chain=np.flatnonzero(recon == m)).drop_vars(STACKED)
            parts.append(part.assign_coords(chain=np.arange(part.sizes["chain"])))
        out = xr.concat(parts, dim=xr.DataArray(members, dims=MEMBER, name=MEMBER))
        return out.transpose("chain", "draw", MEMBER, ...)
    # equal consecutive blocks (what pooling writes): one reshape per variable
    ds = ds.drop_vars(STACKED)
    data_vars: dict[Any, Any] = {}
    for name, da in ds.data_vars.items():
        if "chain" not in da.dims:
            data_vars[name] = da
            continue
        da = da.transpose("chain", ...)
        a = da.to_numpy().reshape(len(members), per, *da.shape[1:])
        a = np.moveaxis(a, 0, 2) if "draw" in da.dims else np.moveaxis(a, 0, 1)
        dims = (
            ("chain", "draw", MEMBER, *da.dims[2:])
            if "draw" in da.dims
            else ("chain", MEMBER, *da.dims[1:])
        )
        data_vars[name] = xr.Variable(dims, a, attrs=da.attrs)
    coords = {k: v for k, v in ds.coords.items() if "chain" not in v.dims}
    coords.update(chain=np.arange(per), **{MEMBER: members})
    out = xr.Dataset(data_vars, coords=coords, attrs=ds.attrs)
    return out.transpose("chain", "draw", MEMBER, ...) if "draw" in out.dims else out


def _stack(ds: xr.Dataset) -> xr.Dataset:
    members = ds[MEMBER].to_numpy()
    ds = ds.load()  # one read of each variable, not one per member
    data_vars: dict[Any, Any] = {}
    n_chain = ds.sizes["chain"]
    for name, da in ds.data_vars.items():
        if MEMBER not in da.dims:
            data_vars[name] = da.variable
            continue
        rest = [d for d in da.dims if d not in (MEMBER, "chain", "draw")]
        head = [d for d in (MEMBER, "chain", "draw") if d in da.dims]
        a = da.transpose(*head, *rest).to_numpy()
        a = a.reshape(len(members) * n_chain, *a.shape[2:])
        data_vars[name] = xr.Variable(("chain", *head[2:], *rest), a, attrs=da.attrs)
    coords = {k: v for k, v in ds.coords.items() if MEMBER not in v.dims and k != "chain"}
    out = xr.Dataset(data_vars, coords=coords, attrs=ds.attrs)
    out = out.assign_coords(
        {
            "chain": np.arange(len(members) * n_chain),
            STACKED: ("chain", np.repeat(members, n_chain)),
        }
    )
    return out.transpose("chain", "draw", ...) if "draw" in out.dims else out


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
