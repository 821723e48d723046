"""Choosing ensemble members that span the bounds (SYNTHETIC).

The bound searches of :mod:`cst_bayes.reconstruct.bounds` leave one dataset per bound, each
meeting every published target. An ensemble spans the open range of a statistic when its
members' values cover much of [lower, upper]; :func:`select_extremes` adds attaining datasets
to generated members, greedily, until every statistic is covered to a target share.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from cst_bayes.core.errors import InputError
from cst_bayes.reconstruct.bounds import span_table, statistic_values


def widen_with(bounds: pd.DataFrame, members: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Bounds widened to every given dataset's value (each must meet every target).

    A member more extreme than a searched bound is itself a dataset meeting every target, so
    the bound moves to it and ``file_min``/``file_max`` name it.
    """
    out = bounds.copy()
    key = ["statistic", "stratum"]
    for name, df in members.items():
        v = out[key].merge(statistic_values(df), on=key, how="left")["value"].to_numpy()
        lo = v < out["lower"].to_numpy()
        hi = v > out["upper"].to_numpy()
        out.loc[lo, "lower"] = v[lo]
        out.loc[lo, "file_min"] = name
        out.loc[hi, "upper"] = v[hi]
        out.loc[hi, "file_max"] = name
    return out


def select_extremes(
    bounds: pd.DataFrame,
    members: list[pd.DataFrame],
    candidates: dict[str, pd.DataFrame],
    *,
    target: float = 0.6,
    max_extra: int = 16,
) -> list[str]:
    """Candidate names to add, greedily, until every statistic's span share reaches ``target``.

    Each step adds the candidate that brings the most statistics to ``target`` (ties: the
    largest gain in total span share). Stops at ``max_extra`` or when nothing improves.
    """
    if not members:
        raise InputError("no members to extend")
    key = ["statistic", "stratum"]
    rows = bounds[key]

    def vals(df: pd.DataFrame) -> np.ndarray:
        return rows.merge(statistic_values(df), on=key, how="left")["value"].to_numpy()

    lo, hi = bounds["lower"].to_numpy(), bounds["upper"].to_numpy()
    finite = np.isfinite(lo) & np.isfinite(hi) & ~rows["statistic"].str.startswith("or_").to_numpy()
    width = np.where(hi > lo, hi - lo, np.nan)
    cur = np.vstack([vals(m) for m in members])
    mn, mx = cur.min(axis=0), cur.max(axis=0)
    names = list(candidates)
    cand = np.vstack([vals(candidates[n]) for n in names])

    def score(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(np.isnan(width), 1.0, (b - a) / width)[finite]
        return int((share >= target).sum()), float(np.minimum(share, 1).sum())

    chosen: list[str] = []
    while len(chosen) < max_extra:
        base = score(mn, mx)
        if base[0] == int(finite.sum()):
            break
        best, best_s = None, base
        for q, n in enumerate(names):
            if n in chosen:
                continue
            s = score(np.minimum(mn, cand[q]), np.maximum(mx, cand[q]))
            if s > best_s:
                best, best_s = q, s
        if best is None:
            break
        chosen.append(names[best])
        mn, mx = np.minimum(mn, cand[best]), np.maximum(mx, cand[best])
    return chosen


__all__ = ["select_extremes", "span_table", "widen_with"]


def extremes_for(
    bounds_dir,
    generated: list[pd.DataFrame],
    *,
    name: Callable[[int], str],
    target: float = 0.6,
    max_extra: int = 20,
) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    """Extreme members for an ensemble: attaining datasets from ``bounds_dir`` chosen to span.

    Reads ``bounds_dir/bounds.csv`` and its ``extreme-*.csv`` datasets, widens the bounds to
    the generated members (named ``name(i)``, i = 1, 2, ...), picks extremes with
    :func:`select_extremes` and returns them (``attrs['extreme']`` lists the bounds each
    attains; their file names become the members' names in the bounds table) and the bounds.
    """
    from pathlib import Path

    from cst_bayes.data.microdata import load
    from cst_bayes.reconstruct.bounds import read_bounds

    bounds_dir = Path(bounds_dir)
    bounds = read_bounds(bounds_dir)
    names = sorted(set(bounds["file_min"].dropna()) | set(bounds["file_max"].dropna()))
    cands = {n: load(bounds_dir / n) for n in names if (bounds_dir / n).exists()}
    if not cands:
        raise InputError("no extreme-*.csv datasets beside bounds.csv", path=bounds_dir)
    # identical datasets (a derived statistic shares its source's) are one candidate
    uniq: dict[int, str] = {}
    for n, df in cands.items():
        uniq.setdefault(int(pd.util.hash_pandas_object(df.iloc[:, 1:], index=False).sum()), n)
    cands = {n: cands[n] for n in uniq.values()}
    # every candidate and every generated member meets every target: the bounds widen to all
    gen_names = {name(i): df for i, df in enumerate(generated, start=1)}
    bounds = widen_with(bounds, {**cands, **gen_names})
    chosen = select_extremes(bounds, generated, cands, target=target, max_extra=max_extra)
    extra = []
    for k, n in enumerate(chosen, start=len(generated) + 1):
        df = cands[n]
        new = name(k)
        sv = statistic_values(df).set_index(["statistic", "stratum"])["value"]
        same = [
            f"{r.statistic}|{r.stratum}|{side}"
            for r in bounds.itertuples(index=False)
            for side in ("min", "max")
            if sv[(r.statistic, r.stratum)] == (r.lower if side == "min" else r.upper)
        ]
        df.attrs["extreme"] = dict(source=n, attains=same)
        extra.append(df)
        for col, side in (("file_min", "min"), ("file_max", "max")):
            hit = [f"{r.statistic}|{r.stratum}|{side}" in same for r in bounds.itertuples()]
            bounds.loc[hit, col] = new
    return extra, bounds


def _md(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in df.itertuples(index=False):
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in r]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_summary(
    bounds: pd.DataFrame,
    span: pd.DataFrame,
    statistics: tuple[str, ...] = ("count_sd", "count_share_0", "count_share_5", "count_share_9"),
    raw: pd.DataFrame | None = None,
) -> str:
    """Markdown tables for the docs: selected bounds with the ensemble's span, the span share
    per statistic kind, and the bound search's CPU time and k vs 2k stability (from ``raw``,
    the search's own bounds before they were widened to the members; default ``bounds``)."""
    sel = span[span["statistic"].isin(statistics)].copy()
    b = bounds.set_index(["statistic", "stratum"])
    sel["lower_k"] = [b.loc[(r.statistic, r.stratum), "lower_half"] for r in sel.itertuples()]
    sel["upper_k"] = [b.loc[(r.statistic, r.stratum), "upper_half"] for r in sel.itertuples()]
    kind = span["statistic"].str.replace(r"^(n_case|or|all3|count_share)_.*$", r"\1", regex=True)
    kind = kind + " (" + np.where(span["stratum"] == "all", "pooled", "per stratum") + ")"
    raw = bounds if raw is None else raw
    rw = raw.set_index(["statistic", "stratum"])
    rw = (rw["upper_half"] - rw["lower_half"]) / (rw["upper"] - rw["lower"]).where(
        rw["upper"] > rw["lower"]
    )
    k_ratio = [rw.get((r.statistic, r.stratum), np.nan) for r in span.itertuples()]
    by_kind = (
        span.assign(kind=kind, k_ratio=k_ratio)
        .groupby("kind")
        .agg(
            n=("span_share", "size"),
            span_min=("span_share", "min"),
            span_median=("span_share", "median"),
            below_60pct=("span_share", lambda x: int((x < 0.6).sum())),
            k_over_2k_width_median=("k_ratio", "median"),
        )
        .reset_index()
    )
    searched = raw[~raw["statistic"].str.startswith(("or_", "count_mean_nocase"))]
    w = raw["upper"] - raw["lower"]
    rel = ((raw["upper_half"] - raw["lower_half"]) / w.where(w > 0)).dropna()
    rel = rel[np.isfinite(rel)]
    lines = [
        _md(sel.round(4)),
        "",
        _md(by_kind.round(3)),
        "",
        f"Bound searches: {len(searched)} statistics searched (both directions), "
        f"{searched['seconds'].sum():.0f} CPU s in all, {searched['seconds'].mean():.1f} CPU s "
        f"per statistic (min {searched['seconds'].min():.1f}, max {searched['seconds'].max():.1f}); "
        f"all converged: {bool(raw['converged'].all())}. "
        f"k vs 2k starts (k = {max(1, int(raw['starts'].iloc[0]) // 2)}): the k-start "
        f"intervals are a median {100 * rel.median():.0f}% as wide as the 2k-start ones "
        f"(10th percentile {100 * rel.quantile(0.1):.0f}%; {int((rel < 0.999).sum())} of "
        f"{len(rel)} intervals widened with more starts).",
    ]
    return "\n".join(lines)
