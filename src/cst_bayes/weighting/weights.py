"""Survey weights for the LEA-CST sample under named scenarios, and design-based estimates.

The published analysis is unweighted; the sample is stratified by agency size with very
different sampling fractions, so unweighted shares over-represent large agencies. Eligibility (245 ineligible of 3,591 sampled) and response (1,306) are
published only in total or by stratum respectively, so weights are built under explicit,
named **scenarios** read from ``models/weighting.toml`` (:func:`load_scenarios`).

Weights (:func:`stratum_weights`) are, within stratum ``h`` with frame ``N_h``, sample
``n_h``, ineligible ``i_h`` and respondents ``r_h``:

* base weight ``N_h / n_h``;
* eligibility adjustment: ineligible sampled agencies drop out, so the eligible frame is
  estimated as ``N*_h = N_h (n_h - i_h) / n_h``;
* nonresponse adjustment within the stratum: ``(n_h - i_h) / r_h``, giving
  ``w_h = N*_h / r_h`` (respondents represent their stratum's eligible frame);
* optional trimming at ``k x median`` with redistribution (:func:`trim_weights`) and
  calibration back to the stratum totals ``N*_h``.

Design-based estimates (:func:`design_estimates`, :func:`design_tests`,
:func:`design_models`) use :mod:`cst_bayes.weighting.design` (checked against R's survey package).
The Bayesian side (pseudo-likelihood, MRP) and the sensitivity analysis are in
:mod:`cst_bayes.weighting.mrp` and :mod:`cst_bayes.weighting.sensitivity`.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd
from scipy import stats

from cst_bayes.core.config import (
    APPROACHES,
    OUTCOME,
    REFERENCE_STRATUM,
    STRATA,
    STRATUM,
    WEIGHTING_FILE,
)
from cst_bayes.core.errors import InputError, SpecError
from cst_bayes.weighting.design import Design, marginal_rd, svychisq, svyglm_logit, svymean

Allocation = Literal["sample", "frame"]
ALLOCATIONS: tuple[str, ...] = get_args(Allocation)
SCENARIO_KEYS: frozenset[str] = frozenset(
    {
        "description",
        "weighted",
        "ineligible",
        "ineligible_total",
        "ineligible_allocation",
        "trim_k",
        "calibrate",
        "stratified",
        "fpc",
    }
)

WEIGHTS_COLUMNS = ["scenario", "stratum", "weight"]
STRATUM_TABLE_COLUMNS = [
    "scenario",
    "stratum",
    "population",
    "sampled",
    "ineligible",
    "eligible",
    "respondents",
    "eligible_frame",
    "base_weight",
    "nonresponse_factor",
    "weight_untrimmed",
    "weight",
    "weight_total",
]
DESIGN_ESTIMATE_COLUMNS = ["scenario", "estimand", "estimate", "se"]
DESIGN_TEST_COLUMNS = [
    "scenario",
    "variable",
    "by",
    "chi2",
    "F",
    "ndf",
    "ddf",
    "p_value",
    "difference",
]
DESIGN_MODEL_COLUMNS = [
    "scenario",
    "term",
    "adjusted_for_size",
    "log_or",
    "se",
    "or",
    "ci_low",
    "ci_high",
    "p_value",
    "rd",
    "rd_se",
    "rd_ci_low",
    "rd_ci_high",
]
#: Two-sided 95% normal quantile (the risk-difference intervals).
Z95: float = 1.959963984540054


@dataclass(frozen=True)
class Scenario:
    """One named weighting assumption (a table of ``models/weighting.toml``)."""

    name: str
    description: str = ""
    weighted: bool = True
    ineligible: Mapping[str, float] = field(default_factory=dict)
    ineligible_total: float | None = None
    ineligible_allocation: Allocation = "sample"
    trim_k: float | None = None
    calibrate: bool = False
    stratified: bool = True
    fpc: bool = True
    #: A file's own design columns (:class:`filedesign.DesignColumns`); never from the TOML.
    columns: object = None

    def ineligible_by_stratum(self, frames: pd.DataFrame) -> dict[str, float]:
        """Ineligible sampled agencies per stratum under this scenario (fractional allowed)."""
        if self.ineligible_total is not None:
            basis = frames.set_index("stratum")[
                "sampled" if self.ineligible_allocation == "sample" else "population"
            ]
            basis = basis.astype(float)
            return {s: float(self.ineligible_total * basis[s] / basis.sum()) for s in STRATA}
        return {s: float(self.ineligible.get(s, 0.0)) for s in STRATA}


def _bool(value: object, key: str, path: Path) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"must be true or false, got {value!r}", path=path, column=key)
    return value


def _number(value: object, key: str, path: Path, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpecError(f"must be a finite number, got {value!r}", path=path, column=key)
    if value < 0 or (positive and value == 0):
        raise SpecError(
            f"must be {'positive' if positive else 'non-negative'}, got {value!r}",
            path=path,
            column=key,
        )
    return float(value)


def parse_scenario(  # noqa: C901 - one check per key, each naming it
    name: str, table: Mapping[str, object], path: str | Path = "<scenario>"
) -> Scenario:
    """Validate one scenario table; every problem is a :class:`SpecError` naming file and key."""
    path = Path(path)
    prefix = f"scenario.{name}"
    if not isinstance(table, Mapping):
        raise SpecError("must be a table of keys", path=path, column=prefix)
    unknown = sorted(set(table) - SCENARIO_KEYS)
    if unknown:
        raise SpecError(
            f"unknown key (allowed: {sorted(SCENARIO_KEYS)})",
            path=path,
            column=f"{prefix}.{unknown[0]}",
        )
    kw: dict[str, object] = {"name": name}
    if "description" in table:
        if not isinstance(table["description"], str):
            raise SpecError("must be text", path=path, column=f"{prefix}.description")
        kw["description"] = table["description"]
    for key in ("weighted", "calibrate", "stratified", "fpc"):
        if key in table:
            kw[key] = _bool(table[key], f"{prefix}.{key}", path)
    if "ineligible" in table and "ineligible_total" in table:
        raise SpecError(
            "give either 'ineligible' or 'ineligible_total', not both",
            path=path,
            column=f"{prefix}.ineligible",
        )
    if "ineligible" in table:
        inel = table["ineligible"]
        if not isinstance(inel, Mapping):
            raise SpecError(
                'must be a table like { "1-49" = 245 }', path=path, column=f"{prefix}.ineligible"
            )
        bad = [s for s in inel if s not in STRATA]
        if bad:
            raise SpecError(
                f"unknown stratum {bad[0]!r} (allowed: {list(STRATA)})",
                path=path,
                column=f"{prefix}.ineligible.{bad[0]}",
            )
        kw["ineligible"] = {
            s: _number(v, f"{prefix}.ineligible.{s}", path) for s, v in inel.items()
        }
    if "ineligible_total" in table:
        kw["ineligible_total"] = _number(
            table["ineligible_total"], f"{prefix}.ineligible_total", path
        )
    if "ineligible_allocation" in table:
        alloc = table["ineligible_allocation"]
        if alloc not in ALLOCATIONS:
            raise SpecError(
                f"must be one of {list(ALLOCATIONS)}, got {alloc!r}",
                path=path,
                column=f"{prefix}.ineligible_allocation",
            )
        if "ineligible_total" not in table:
            raise SpecError(
                "needs 'ineligible_total'", path=path, column=f"{prefix}.ineligible_allocation"
            )
        kw["ineligible_allocation"] = alloc
    if "trim_k" in table:
        kw["trim_k"] = _number(table["trim_k"], f"{prefix}.trim_k", path, positive=True)
    if "trim_k" in table and not table.get("calibrate", False):
        # Weights are constant within a stratum: trimming alone moves weight between strata, so
        # a trimmed stratum would stand for more (or fewer) agencies than its eligible frame.
        raise SpecError(
            "trimming without calibrate = true contradicts the frame counts "
            "(weights are constant within a stratum)",
            path=path,
            column=f"{prefix}.trim_k",
        )
    sc = Scenario(**kw)  # type: ignore[arg-type]
    if not sc.weighted:
        used = sorted(set(table) - {"description", "weighted", "stratified", "fpc"})
        if used:
            raise SpecError(
                "has no effect when weighted = false", path=path, column=f"{prefix}.{used[0]}"
            )
    return sc


def load_scenarios(path: str | Path | None = None) -> dict[str, Scenario]:
    """Read and validate every scenario of a weighting TOML file (default ``models/weighting.toml``)."""
    path = Path(path) if path is not None else WEIGHTING_FILE
    if not path.exists():
        raise SpecError("weighting scenario file not found", path=path)
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"not valid TOML ({exc})", path=path) from None
    unknown = sorted(set(doc) - {"scenario"})
    if unknown:
        raise SpecError(
            "unknown top-level key (expected [scenario.NAME] tables)", path=path, column=unknown[0]
        )
    tables = doc.get("scenario")
    if not isinstance(tables, Mapping) or not tables:
        raise SpecError("no [scenario.NAME] tables", path=path, column="scenario")
    return {name: parse_scenario(name, t, path) for name, t in tables.items()}


def select_scenarios(
    scenarios: Mapping[str, Scenario], names: Sequence[str] | None
) -> list[Scenario]:
    """The scenarios named (all, in file order, when ``names`` is empty or None)."""
    if not names:
        return list(scenarios.values())
    missing = [n for n in names if n not in scenarios]
    if missing:
        raise SpecError(
            f"unknown scenario {missing[0]!r} (available: {list(scenarios)})", column="scenario"
        )
    return [scenarios[n] for n in names]


def respondent_counts(df: pd.DataFrame) -> dict[str, int]:
    """Respondents per stratum in a microdata frame."""
    counts = df[STRATUM].astype(str).value_counts()
    return {s: int(counts.get(s, 0)) for s in STRATA}


def trim_weights(
    w: np.ndarray, k: float, *, max_iter: int = 10000, tol: float = 1e-12
) -> np.ndarray:
    """Cap weights at ``k x median(w)``, sharing the excess equally among the other weights, iterated.

    This is R survey's ``trimWeights(design, upper = k * median(w), strict = TRUE)``: capped
    weights are set to the cap and the trimmed total is added in equal shares to every weight
    not above the cap, repeated until none exceeds it. The total weight is preserved; the cap
    is fixed from the initial weights.

    Raises
    ------
    SpecError
        If the cap is below the mean weight: no set of weights under the cap keeps the total.
    """
    w = np.asarray(w, dtype=float).copy()
    cap = k * float(np.median(w))
    total = w.sum()
    if cap * len(w) < total * (1 - 1e-12):
        raise SpecError(
            f"trim_k = {k:g} caps weights at {cap:.4g}, below the mean weight {total / len(w):.4g}: "
            "the total cannot be kept",
            column="trim_k",
        )
    for _ in range(max_iter):
        over = w > cap * (1 + tol)
        if not over.any():
            break
        excess = float((w[over] - cap).sum())
        w[over] = cap
        w[~over] += excess / float((~over).sum())
    else:  # pragma: no cover - converges geometrically when feasible
        raise SpecError(f"trimming at trim_k = {k:g} did not converge", column="trim_k")
    return w


def stratum_weights(
    scenario: Scenario,
    respondents: Mapping[str, int],
    frames: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The weight of a respondent in each stratum under a scenario, with every adjustment step.

    Parameters
    ----------
    scenario
        The weighting assumption.
    respondents
        Respondents per stratum in the data analysed (``respondent_counts(df)``).
    frames
        ``published.load_sampling_frames()`` (default: the shipped one).

    Returns
    -------
    pandas.DataFrame
        One row per stratum with columns :data:`STRATUM_TABLE_COLUMNS`. ``eligible_frame`` is the
        number of agencies the stratum's respondents represent (the poststratification
        target); for the unweighted scenario it is the respondent count itself.
    """
    if frames is None:
        from cst_bayes.data.published import load_sampling_frames

        frames = load_sampling_frames()
    f = frames.set_index("stratum").loc[list(STRATA)]
    r = np.array([int(respondents.get(s, 0)) for s in STRATA], dtype=float)
    if np.any(r <= 0):
        empty = [s for s, v in zip(STRATA, r) if v <= 0]
        raise InputError(
            f"no respondents in stratum {empty}: that stratum's frame cannot be represented",
            column=STRATUM,
        )
    N = f["population"].to_numpy(float)
    n = f["sampled"].to_numpy(float)
    if not scenario.weighted:  # every respondent stands for itself
        inel, elig, elig_frame = np.zeros(4), n, r
        base = nr_factor = w0 = w = np.ones(4)
    else:
        inel_map = scenario.ineligible_by_stratum(frames)
        inel = np.array([inel_map[s] for s in STRATA])
        elig = n - inel
        too_many = r > elig + 1e-9
        if too_many.any():
            s = STRATA[int(np.flatnonzero(too_many)[0])]
            raise SpecError(
                f"{inel_map[s]:g} ineligible leave {elig[STRATA.index(s)]:g} eligible sampled agencies in stratum {s}, "
                f"fewer than its {int(r[STRATA.index(s)])} respondents",
                column=f"scenario.{scenario.name}.ineligible",
            )
        base = N / n
        elig_frame = base * elig
        nr_factor = elig / r
        w0 = base * nr_factor
        w = w0.copy()
        if scenario.trim_k is not None:
            unit = np.repeat(w0, r.astype(int))
            try:
                trimmed = trim_weights(unit, scenario.trim_k)
            except SpecError as exc:
                raise SpecError(str(exc), column=f"scenario.{scenario.name}.trim_k") from None
            bounds = np.concatenate([[0], np.cumsum(r.astype(int))])
            w = np.array([trimmed[bounds[j] : bounds[j + 1]].mean() for j in range(4)])
        if scenario.calibrate:
            # Calibration to the stratum totals N*_h (poststratification on the stratum).
            w = w * elig_frame / (w * r)
    out = pd.DataFrame(
        {
            "scenario": scenario.name,
            "stratum": list(STRATA),
            "population": N,
            "sampled": n,
            "ineligible": inel,
            "eligible": elig,
            "respondents": r,
            "eligible_frame": elig_frame,
            "base_weight": base,
            "nonresponse_factor": nr_factor,
            "weight_untrimmed": w0,
            "weight": w,
            "weight_total": w * r,
        }
    )
    return out[STRATUM_TABLE_COLUMNS]


def agency_weights(
    df: pd.DataFrame, scenario: Scenario, frames: pd.DataFrame | None = None
) -> np.ndarray:
    """One weight per agency (row of ``df``) under a scenario."""
    if scenario.columns is not None:
        return make_design(df, scenario, frames).weights
    table = stratum_weights(scenario, respondent_counts(df), frames)
    by = dict(zip(table["stratum"], table["weight"]))
    return df[STRATUM].astype(str).map(by).to_numpy(dtype=float)


def make_design(df: pd.DataFrame, scenario: Scenario, frames: pd.DataFrame | None = None) -> Design:
    """The survey design of ``df`` under a scenario (weights, strata, fpc).

    The fpc of a stratum is its (eligible) frame ``N*_h``, so respondents are a simple random
    subsample of that frame. Trimming changes the weights, not the sampling fraction, so a
    trimmed scenario keeps its base scenario's fpc (as R's ``trimWeights`` does).
    """
    if scenario.columns is not None:
        from cst_bayes.weighting import filedesign

        return filedesign.design(df, scenario.columns)  # type: ignore[arg-type]
    table = stratum_weights(scenario, respondent_counts(df), frames)
    s = df[STRATUM].astype(str)
    w = s.map(dict(zip(table["stratum"], table["weight"]))).to_numpy(float)
    codes = s.map({lab: i for i, lab in enumerate(STRATA)}).to_numpy(int)
    strata = codes if (scenario.stratified and scenario.weighted) else np.zeros(len(df), dtype=int)
    fpc = None
    if scenario.fpc and scenario.weighted:
        if scenario.stratified:
            fpc = s.map(dict(zip(table["stratum"], table["eligible_frame"]))).to_numpy(float)
        else:
            fpc = np.full(len(df), float(table["eligible_frame"].sum()))
    return Design(weights=w, strata=strata, fpc=fpc)


def design_estimates(
    df: pd.DataFrame,
    scenarios: Iterable[Scenario],
    frames: pd.DataFrame | None = None,
    designs: Mapping[str, Design] | None = None,
) -> pd.DataFrame:
    """National share of agencies with any CST case and using each approach, with design SEs.

    ``designs`` (here and in :func:`design_tests`, :func:`design_models`): each scenario's
    :func:`make_design` by name, when the caller has built them already.

    Returns
    -------
    pandas.DataFrame
        Columns ``scenario, estimand, estimate, se``; ``estimand`` is ``any_cst`` or an approach.
    """
    variables = [OUTCOME, *APPROACHES]
    rows = []
    for sc in scenarios:
        d = designs[sc.name] if designs else make_design(df, sc, frames)
        mean, cov = svymean(d, df[variables].to_numpy(float))
        se = np.sqrt(np.diag(cov))
        rows += [
            {"scenario": sc.name, "estimand": v, "estimate": float(m), "se": float(e)}
            for v, m, e in zip(variables, mean, se)
        ]
    return pd.DataFrame(rows, columns=DESIGN_ESTIMATE_COLUMNS)


def design_tests(
    df: pd.DataFrame,
    scenarios: Iterable[Scenario],
    frames: pd.DataFrame | None = None,
    designs: Mapping[str, Design] | None = None,
) -> pd.DataFrame:
    """Rao-Scott tests of Table 1 (each variable by stratum) and Figure 1 (each approach by any_cst).

    Returns
    -------
    pandas.DataFrame
        Columns ``scenario, variable, by, chi2, F, ndf, ddf, p_value, difference``; ``by`` is
        ``stratum`` or ``any_cst``. ``difference`` (``by = any_cst`` only) is the weighted share
        using the approach among agencies with a case minus among those without: the
        direction Figure 1 describes.
    """
    rows = []
    strat = df[STRATUM].astype(str).map({lab: i for i, lab in enumerate(STRATA)}).to_numpy(int)
    for sc in scenarios:
        d = designs[sc.name] if designs else make_design(df, sc, frames)
        for v in (*APPROACHES, OUTCOME):
            rows.append(
                {
                    "scenario": sc.name,
                    "variable": v,
                    "by": STRATUM,
                    **svychisq(d, df[v].to_numpy(), strat),
                }
            )
        case = df[OUTCOME].to_numpy() == 1
        w = np.asarray(d.weights)
        for v in APPROACHES:
            x = df[v].to_numpy(float)
            diff = (
                float(np.average(x[case], weights=w[case]) - np.average(x[~case], weights=w[~case]))
                if case.any() and (~case).any()
                else np.nan
            )
            rows.append(
                {
                    "scenario": sc.name,
                    "variable": v,
                    "by": OUTCOME,
                    **svychisq(d, df[v].to_numpy(), df[OUTCOME].to_numpy()),
                    "difference": diff,
                }
            )
    return pd.DataFrame(rows, columns=DESIGN_TEST_COLUMNS)


def model_matrix(df: pd.DataFrame, adjusted: bool) -> tuple[np.ndarray, list[str]]:
    """Table 3 Analysis 1 design matrix: intercept, nine approaches[, stratum dummies vs 1-49]."""
    cols = [np.ones(len(df)), *(df[a].to_numpy(float) for a in APPROACHES)]
    names = ["(Intercept)", *APPROACHES]
    if adjusted:
        s = df[STRATUM].astype(str)
        for lab in STRATA:
            if lab != REFERENCE_STRATUM:
                cols.append((s == lab).to_numpy(float))
                names.append(f"stratum[{lab}]")
    return np.column_stack(cols), names


def design_models(
    df: pd.DataFrame,
    scenarios: Iterable[Scenario],
    frames: pd.DataFrame | None = None,
    designs: Mapping[str, Design] | None = None,
) -> pd.DataFrame:
    """Survey-weighted Table 3 Analysis 1 (logit) with standardised risk differences.

    For each scenario and for the model without and with agency size: each approach's odds
    ratio (95% CI from the t distribution with the design's residual df, as ``svyglm``) and
    its marginal risk difference averaged over the weighted sample (95% normal CI).
    """
    rows = []
    y = df[OUTCOME].to_numpy(float)
    for sc in scenarios:
        d = designs[sc.name] if designs else make_design(df, sc, frames)
        for adjusted in (False, True):
            X, names = model_matrix(df, adjusted)
            fit = svyglm_logit(d, X, y, names)
            tab = fit.table()[["estimate", "se", "p_value"]].to_numpy(float)  # rows: names
            q = stats.t.ppf(0.975, fit.df_resid)
            for j, term in enumerate(names):
                if term == "(Intercept)":
                    continue
                b, se, p = tab[j]
                rd = rd_se = np.nan
                if term in APPROACHES:
                    rd, rd_se = marginal_rd(d, fit, j)
                rows.append(
                    {
                        "scenario": sc.name,
                        "term": term,
                        "adjusted_for_size": "yes" if adjusted else "no",
                        "log_or": b,
                        "se": se,
                        "or": math.exp(b),
                        "ci_low": math.exp(b - q * se),
                        "ci_high": math.exp(b + q * se),
                        "p_value": p,
                        "rd": rd,
                        "rd_se": rd_se,
                        "rd_ci_low": rd - Z95 * rd_se,
                        "rd_ci_high": rd + Z95 * rd_se,
                    }
                )
    return pd.DataFrame(rows, columns=DESIGN_MODEL_COLUMNS)


def weights_table(
    df: pd.DataFrame, scenarios: Iterable[Scenario], frames: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Every adjustment step by scenario and stratum (:data:`STRATUM_TABLE_COLUMNS`)."""
    from cst_bayes.weighting.filedesign import steps

    counts = respondent_counts(df)
    parts = [
        steps(df, sc.columns, frames).reindex(columns=STRATUM_TABLE_COLUMNS)
        if sc.columns
        else stratum_weights(sc, counts, frames)
        for sc in scenarios
    ]
    return pd.concat(parts, ignore_index=True)
