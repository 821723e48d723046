"""Agency rows -> stratum codes and the fixed-effect design matrix -> covariate patterns.

The design matrix of a spec is its predictors (``predictors = [...]``), plus stratum dummies when
the strata are fixed, or the columns formulae builds from the spec's ``formula`` (interactions,
any data column, categorical levels). Columns are centred on the fit data's means inside the
model. Categorical levels are recorded (:class:`Design.levels`), so the same columns come back
for new data (g-computation, a fit read from disk).

Why the likelihood is written on covariate patterns
    Agencies with the same stratum and the same design row are exchangeable, so the
    likelihood of the 1,306 agencies is that of a few hundred patterns with summed (possibly
    weighted) successes and failures; the gradient cost depends on the number of patterns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cst_bayes.bayes.spec import ModelSpec
from cst_bayes.core.config import APPROACHES, COUNT, STRATA, STRATUM, WEIGHT
from cst_bayes.core.errors import InputError


@dataclass
class Design:
    """Stratum codes, design matrix and its column names for agency rows."""

    codes: np.ndarray  # (n,) int stratum codes
    X: np.ndarray  # (n, K)
    columns: tuple[str, ...]
    levels: dict[str, list[str]] = field(default_factory=dict)


def stratum_codes(df: pd.DataFrame) -> np.ndarray:
    if STRATUM not in df.columns:
        raise InputError(
            "data lack the stratum column", path=df.attrs.get("source"), column=STRATUM
        )
    s: Any = df[STRATUM]
    if not isinstance(s.dtype, pd.CategoricalDtype) or list(s.cat.categories) != list(STRATA):
        s = pd.Categorical(s.astype(str), categories=list(STRATA))
    codes = np.asarray(pd.Categorical(s).codes, dtype=np.int64)
    if (codes < 0).any():
        raise InputError(
            f"unknown stratum labels (allowed: {list(STRATA)})",
            path=df.attrs.get("source"),
            column=STRATUM,
            rows=[int(i) + 1 for i in np.flatnonzero(codes < 0)],
        )
    return codes


def _formula_design(
    spec: ModelSpec, df: pd.DataFrame, levels: dict[str, list[str]] | None
) -> tuple[np.ndarray, tuple[str, ...], dict[str, list[str]]]:
    from formulae import design_matrices, model_description

    rhs = spec.formula.split("~", 1)[1]
    names = sorted(model_description(spec.formula).var_names - {spec.outcome})
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise InputError(
            f"data lack column(s) {missing} named in the formula of {spec.name}",
            path=df.attrs.get("source"),
            column=missing[0],
        )
    d = df[names].copy()
    # ordered: formulae keeps the order of ordered categories (reference = first level) and sorts
    # the others, which would make 1000+ the second stratum
    d[STRATUM] = pd.Categorical(df[STRATUM].astype(str), categories=list(STRATA), ordered=True)
    levels = dict(levels or {})
    for c in names:
        if c == STRATUM or pd.api.types.is_numeric_dtype(d[c]) or pd.api.types.is_bool_dtype(d[c]):
            continue
        cats = levels.get(c) or (
            list(d[c].cat.categories)
            if isinstance(d[c].dtype, pd.CategoricalDtype)
            else sorted(d[c].astype(str).unique())
        )
        levels[c] = [str(v) for v in cats]
        d[c] = pd.Categorical(d[c].astype(str), categories=levels[c], ordered=True)
        if d[c].isna().any():
            raise InputError(
                f"values of {c!r} outside the levels of the fit ({levels[c]})",
                path=df.attrs.get("source"),
                column=c,
                rows=[int(i) + 1 for i in np.flatnonzero(d[c].isna().to_numpy())],
            )
    fixed = " + ".join(spec.predictors) if spec.predictors else "1"
    try:
        dm = design_matrices(f"{fixed}", d, na_action="error")
    except Exception as exc:
        raise InputError(
            f"cannot build the design of {spec.name} ({type(exc).__name__}: {exc}); formula {rhs.strip()}",
            path=df.attrs.get("source"),
        ) from None
    frame = dm.common.as_dataframe()
    frame = frame.drop(columns=[c for c in frame.columns if c == "Intercept"])
    return frame.to_numpy(dtype=float), tuple(str(c) for c in frame.columns), levels


def model_matrix(spec: ModelSpec, df: pd.DataFrame) -> np.ndarray:
    """The fixed-effect columns of ``spec`` on ``df`` (formula terms, fixed strata, a count
    the loader did not derive), as the fit builds them."""
    if COUNT not in df.columns and (spec.formula or COUNT in spec.predictors):
        df = df.assign(**{COUNT: df[list(APPROACHES)].sum(axis=1)})
    return design(spec, df).X


def design(spec: ModelSpec, df: pd.DataFrame, levels: dict[str, list[str]] | None = None) -> Design:
    """Stratum codes and the fixed-effect design of ``spec`` on agency rows ``df``."""
    codes = stratum_codes(df)
    if spec.formula:
        X, cols, lv = _formula_design(spec, df, levels)
        return Design(codes, X, cols, lv)
    missing = [c for c in spec.predictors if c not in df.columns]
    if missing:
        raise InputError(
            f"data lack column(s) {missing} needed by model {spec.name}",
            path=df.attrs.get("source"),
            column=missing[0],
        )
    names = list(spec.predictors)
    Xp = df[names].to_numpy(dtype=float) if names else np.zeros((len(df), 0))
    if spec.stratum_intercepts == "fixed":
        dummies = (codes[:, None] == np.arange(1, len(STRATA))[None, :]).astype(float)
        Xp = np.column_stack([Xp, dummies])
        names += [f"{STRATUM}[{s}]" for s in STRATA[1:]]
    return Design(codes, np.ascontiguousarray(Xp, dtype=float), tuple(names))


def slope_columns(spec: ModelSpec, columns: tuple[str, ...]) -> np.ndarray:
    """Indices of the design columns whose effect varies by stratum (the slope terms' columns)."""
    if not spec.varying_slopes:
        return np.zeros(0, dtype=np.int64)
    out = [
        i
        for i, c in enumerate(columns)
        if any(c == t or c.startswith(f"{t}[") for t in spec.slopes)
    ]
    return np.asarray(out, dtype=np.int64)


def outcome(spec: ModelSpec, df: pd.DataFrame) -> np.ndarray:
    if spec.outcome not in df.columns:
        raise InputError(
            f"data lack the outcome column {spec.outcome!r}",
            path=df.attrs.get("source"),
            column=spec.outcome,
        )
    return df[spec.outcome].to_numpy(dtype=float)


def normalise_weights(weights: Any, n: int, *, source: str | None = None) -> np.ndarray:
    """Survey weights scaled to sum to ``n`` (Savitsky & Toth 2016); all-equal weights -> exactly 1.

    Exactly ones for equal weights, so a weighted fit with equal weights reproduces the
    unweighted one bit for bit (floating-point rescaling would otherwise differ in the last digit).
    """
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=float)
    if w.shape != (n,):
        raise InputError(
            f"weights must have one value per agency ({n}), got shape {w.shape}",
            path=source,
            column=WEIGHT,
        )
    bad = ~np.isfinite(w) | (w <= 0)
    if bad.any():
        raise InputError(
            "weights must be positive finite numbers",
            path=source,
            column=WEIGHT,
            rows=[int(i) + 1 for i in np.flatnonzero(bad)],
        )
    if np.all(w == w[0]):
        return np.ones(n)
    return w * (n / w.sum())


@dataclass
class Patterns:
    """Agencies collapsed to unique covariate patterns (stratum, design row[, outcome])."""

    stratum: np.ndarray  # (P,) int codes
    X: np.ndarray  # (P, K)
    w1: np.ndarray  # binary outcome: weighted successes; count outcome: outcome value
    w0: np.ndarray  # binary outcome: weighted failures; count outcome: weighted multiplicity
    xbar: np.ndarray  # (K,) agency means of the design columns (centring)
    columns: tuple[str, ...] = ()
    levels: dict[str, list[str]] = field(default_factory=dict)
    n1: np.ndarray | None = None  # unweighted: successes (binary) or the count (count outcome)
    n0: np.ndarray | None = None  # unweighted: failures (binary) or the multiplicity (count)

    def data(self, spec: ModelSpec) -> dict[str, np.ndarray]:
        """The ``pm.Data`` values the spec's model uses (a compiled model knows no others)."""
        d = {"w1": self.w1, "w0": self.w0}
        if self.n1 is not None and self.n0 is not None:
            d.update(n1=self.n1, n0=self.n0)
        if spec.pooled_strata:
            d["stratum_idx"] = self.stratum
        if self.X.shape[1]:
            d.update(X=self.X, xbar=self.xbar)
        return d


def unique_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(a, axis=0, return_index=True, return_inverse=True)``, the same arrays.

    NumPy sorts the rows as records, which costs seconds at 100,000 rows; a design has few
    distinct values per column, so each column is coded by rank and the codes are combined
    into one integer per row (mixed radix, first column most significant: the integer order
    is the rows' lexicographic order), whose 1-D unique is fast.
    """
    a = np.asarray(a, dtype=float) + 0.0  # -0.0 and 0.0 are one value, as in np.unique
    n, k = a.shape
    combined = np.zeros(n, dtype=np.int64)
    radix = 1
    for j in range(k - 1, -1, -1):
        vals, codes = np.unique(a[:, j], return_inverse=True)
        if radix > np.iinfo(np.int64).max // max(len(vals), 1):  # too many values to combine
            u, first, inv = np.unique(a, axis=0, return_index=True, return_inverse=True)
            return u, first, np.asarray(inv).ravel()
        combined += np.asarray(codes).ravel().astype(np.int64) * radix
        radix *= len(vals)
    _, first, inv = np.unique(combined, return_index=True, return_inverse=True)
    return a[first], first, np.asarray(inv).ravel()


def collapse(spec: ModelSpec, df: pd.DataFrame, weights: np.ndarray | None = None) -> Patterns:
    """Collapse agencies to covariate patterns with (weighted) outcome sums.

    For a 0/1 outcome a pattern keeps the weighted successes ``w1`` and failures ``w0``; for
    the count outcome a pattern is (stratum, design row, count) with ``w1`` = the count and
    ``w0`` = the weighted number of agencies. The likelihood is unchanged up to a constant.
    """
    dz = design(spec, df)
    codes, X = dz.codes, dz.X
    y = outcome(spec, df)
    w = np.ones(len(df)) if weights is None else weights
    key = np.column_stack([codes, X] + ([y] if spec.outcome == COUNT else []))
    uniq, _, inv = unique_rows(key)
    P = len(uniq)
    if spec.outcome == COUNT:
        w1 = uniq[:, -1].astype(float)
        w0 = np.bincount(inv, weights=w, minlength=P)
        n1, n0 = w1.astype(np.int64), np.bincount(inv, minlength=P).astype(np.int64)
        Xu = uniq[:, 1:-1]
    else:
        w1 = np.bincount(inv, weights=w * y, minlength=P)
        w0 = np.bincount(inv, weights=w * (1.0 - y), minlength=P)
        n1 = np.bincount(inv, weights=y, minlength=P).round().astype(np.int64)
        n0 = np.bincount(inv, weights=1.0 - y, minlength=P).round().astype(np.int64)
        Xu = uniq[:, 1:]
    xbar = X.mean(axis=0) if X.shape[1] else np.zeros(0)
    return Patterns(
        uniq[:, 0].astype(np.int64),
        np.ascontiguousarray(Xu, dtype=float),
        w1,
        w0,
        xbar,
        dz.columns,
        dz.levels,
        n1,
        n0,
    )


def column_term(spec: ModelSpec, column: str) -> str:
    """The spec term a design column belongs to (``stratum[state]`` -> ``stratum``)."""
    for t in spec.predictors:
        if column == t or column.startswith(f"{t}["):
            return t
    if column.startswith(f"{STRATUM}["):
        return STRATUM
    return column
