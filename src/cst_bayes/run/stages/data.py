"""Stage ``data``: provenance of the datasets (never their rows) and reconstruction fidelity."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from cst_bayes.core.fileio import write_csv, write_json
from cst_bayes.reconstruct.bounds import member_values, read_bounds, span_table

if TYPE_CHECKING:
    from cst_bayes.run.context import RunContext


def fidelity_table(man: dict[str, Any], ids: Sequence[str]) -> pd.DataFrame | None:
    """Targets met per member and table, from the reconstruction manifest."""
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


def _copy_published(ctx: RunContext, work: Path) -> None:
    """Keep the published tables the run used beside its outputs (the report reads them).

    Read as text, so every printed figure is kept exactly as transcribed, and written as
    every other table (header first, ``data_status`` PUBLIC, a sidecar naming the source).
    In restricted mode Table 1 is left out: it is public, but its small printed counts would
    sit among outputs that promise no count below the threshold.
    """
    for p in sorted(ctx.published_dir.glob("*.csv")):
        if ctx.restricted and p.name.startswith("table1"):
            continue
        table = pd.read_csv(p, dtype=str, keep_default_na=False)
        write_csv(work / "published" / p.name, table, status="PUBLIC", notes=f"copy of {p}")


def run(ctx: RunContext, work: Path) -> dict[str, Any]:
    rows = [
        {"dataset": ds, "n_rows": len(df), "sha256": h, "synthetic": ctx.synthetic}
        for ds, df, h in zip(ctx.dataset_ids, ctx.frames, ctx.data_hashes, strict=True)
    ]
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
        fid = fidelity_table(man, ctx.dataset_ids)
        if fid is not None:
            write_csv(work / "fidelity.csv", fid, status="SYNTHETIC")
            info["fidelity_met"] = int(fid["met"].sum())
            info["fidelity_total"] = int(fid["total"].sum())
        spread = man.get("untargeted_spread")
        if isinstance(spread, list) and spread:
            write_csv(work / "untargeted_spread.csv", pd.DataFrame(spread), status="SYNTHETIC")
    bounds_file = Path(ctx.data_source) / "bounds.csv"
    if ctx.synthetic and bounds_file.is_file():
        # what the tables leave open, beside where the members used here fall
        bounds = read_bounds(bounds_file)
        write_csv(work / "bounds.csv", bounds, status="SYNTHETIC", notes="certified bounds")
        values = member_values(ctx.frames)
        write_csv(work / "bounds_members.csv", values, status="SYNTHETIC")
        span = span_table(bounds, ctx.frames)
        write_csv(work / "bounds_span.csv", span, status="SYNTHETIC")
        info["bounds"] = len(bounds)
        info["min_span_share"] = round(float(span["span_share"].min()), 3)
    return info
