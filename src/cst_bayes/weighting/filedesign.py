"""A data file's own survey design: weights, strata and fpc taken from its columns.

``cst-bayes weights --weight-column COL [--strata-column COL --fpc-column COL]`` analyses a
file under the design it carries instead of weights rebuilt from the published sampling
frames. The design becomes one scenario, :data:`FILE_SCENARIO`, whose
:func:`weights.make_design` reads the columns (:func:`design`) and whose adjustment-steps rows
(:func:`steps`) give, per size stratum, the weight total as the population the respondents
stand for (the poststratification target of MRP and the tipping point's stratum shares).

Strata default to the contract's ``stratum`` column (the study's sampling strata). An fpc
column holds either the stratum population (``N_h``, values > 1) or the sampling fraction
(every value <= 1), as in R's ``svydesign(fpc = ~col)``; it must be constant within a stratum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cst_bayes.core.config import STRATA, STRATUM
from cst_bayes.core.errors import InputError
from cst_bayes.weighting.design import Design

#: Name of the scenario that uses the file's own weights.
FILE_SCENARIO = "file_weights"


@dataclass(frozen=True)
class DesignColumns:
    """Columns of a data file that carry its survey design."""

    weight: str
    strata: str | None = None
    fpc: str | None = None
    source: str = ""

    @property
    def strata_column(self) -> str:
        """The strata column actually used (the contract's size strata by default)."""
        return self.strata or STRATUM

    def names(self) -> list[str]:
        """Every named column that is not part of the microdata contract's fixed set."""
        return [c for c in (self.weight, self.strata, self.fpc) if c is not None]

    def describe(self) -> str:
        """One line for stderr saying which weights are used."""
        fpc = f"fpc '{self.fpc}'" if self.fpc else "no fpc"
        return f"weights: column '{self.weight}' of {self.source} (strata '{self.strata_column}', {fpc})"


def _rows(mask: np.ndarray) -> list[int]:
    return [int(i) + 1 for i in np.flatnonzero(mask)]


def check(df: pd.DataFrame, cols: DesignColumns) -> None:
    """Raise :class:`InputError` (file, column, rows) unless the columns make a valid design."""
    for c in cols.names():
        if c not in df.columns:
            raise InputError(
                f"no column {c!r} in the file (design columns)", path=cols.source, column=c
            )
    design(df, cols)


def _numeric(df: pd.DataFrame, col: str, source: str, what: str) -> np.ndarray:
    v = pd.to_numeric(df[col], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(v) | (v <= 0)
    if bad.any():
        raise InputError(
            f"{what} must be positive finite numbers", path=source, column=col, rows=_rows(bad)
        )
    return v


def design(df: pd.DataFrame, cols: DesignColumns) -> Design:
    """The :class:`Design` the file's columns describe."""
    src = cols.source
    w = _numeric(df, cols.weight, src, "weights")
    s_raw = df[cols.strata_column].astype(str)
    if df[cols.strata_column].isna().any():
        bad = df[cols.strata_column].isna().to_numpy()
        raise InputError("missing strata", path=src, column=cols.strata_column, rows=_rows(bad))
    codes, _ = pd.factorize(s_raw, sort=True)
    fpc = None
    if cols.fpc is not None:
        f = _numeric(df, cols.fpc, src, "fpc values")
        per = pd.Series(f).groupby(codes).nunique()
        if (per > 1).any():
            h = int(per.index[per > 1][0])
            raise InputError(
                "fpc must be constant within a stratum",
                path=src,
                column=cols.fpc,
                rows=_rows(codes == h)[:5],
            )
        if np.all(f <= 1):  # sampling fractions: population = respondents / fraction
            n_h = pd.Series(codes).map(pd.Series(codes).value_counts()).to_numpy(float)
            f = n_h / f
        small = np.zeros(len(f), dtype=bool)
        for h in np.unique(codes):
            m = codes == h
            if f[m][0] < m.sum() - 1e-9:
                small |= m
        if small.any():
            raise InputError(
                "fpc: a stratum's population is below its number of respondents",
                path=src,
                column=cols.fpc,
                rows=_rows(small)[:5],
            )
        fpc = f
    return Design(weights=w, strata=codes.astype(int), fpc=fpc)


def steps(df: pd.DataFrame, cols: DesignColumns, frames: pd.DataFrame | None) -> pd.DataFrame:
    """Adjustment-steps rows of the file's weights by size stratum.

    The weight total is the population the stratum's respondents represent
    (``eligible_frame``); ``weight`` is their mean weight. The file does not say which sampled
    agencies were ineligible, so ``eligible`` is the published sample size (the tipping point's
    response share ``respondents / eligible`` uses it).
    """
    from cst_bayes.data.published import load_sampling_frames

    if frames is None:
        frames = load_sampling_frames()

    w = pd.to_numeric(df[cols.weight], errors="coerce").to_numpy(float)
    s = df[STRATUM].astype(str).to_numpy()
    f = (
        frames.set_index("stratum")
        .loc[list(STRATA)]
        .astype({"population": float, "sampled": float})
    )
    rows = []
    for h in STRATA:
        m = s == h
        r = int(m.sum())
        total = float(w[m].sum())
        sampled = float(f["sampled"][h])
        rows.append(
            {
                "scenario": FILE_SCENARIO,
                "stratum": h,
                "population": float(f["population"][h]),
                "sampled": sampled,
                "ineligible": np.nan,
                "eligible": max(sampled, float(r)),
                "respondents": r,
                "eligible_frame": total,
                "base_weight": np.nan,
                "nonresponse_factor": np.nan,
                "weight_untrimmed": total / r if r else np.nan,
                "weight": total / r if r else np.nan,
                "weight_total": total,
            }
        )
    return pd.DataFrame(rows)
