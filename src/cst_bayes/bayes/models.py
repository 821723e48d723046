"""Bayesian models of the LEA-CST survey: TOML specs -> PyMC models -> fits and summaries.

A model is one TOML file in ``models/`` (see ``docs/models.md``): outcome, predictors, family
and link, hierarchical terms and priors, each prior with a one-line reason. :func:`load_spec`
validates a spec (unknown keys, predictors, families, links and priors are a
:class:`~cst_bayes.core.errors.SpecError` naming file and key); :func:`build` turns it into a PyMC
model with named coords (``stratum``, ``approach``); :func:`fit` samples it and returns a
:class:`Fit` with an ArviZ ``InferenceData``, a tidy summary and diagnostics.

Why the likelihood is written on covariate patterns
    Agencies with the same stratum and the same predictor values are exchangeable, so the
    likelihood of the 1,306 agencies is that of a few hundred patterns with summed (possibly
    weighted) successes and failures. The gradient cost then depends on the number of
    distinct patterns, not of agencies (the N x 100 benchmark shows it). The likelihood is a
    ``pm.Potential`` of the weighted pattern sums, which is also exactly the Savitsky-Toth
    pseudo-likelihood when survey weights are given (weights normalised to sum to n).
    Pointwise (agency-level) log-likelihood and posterior-predictive draws are computed after
    sampling from the posterior draws, in NumPy, so LOO works agency by agency.

Why the compiled model is cached
    The data enter the PyMC model only as ``pm.Data``; a compiled sampler is cached per
    (spec, prior_scale, sampler) in the process and re-used with new data
    (``with_data``), so the ensemble, the sweep and the tests compile each model once.
"""

from __future__ import annotations

import hashlib
import time
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from cst_bayes.core.config import (
    APPROACHES,
    COUNT,
    MODELS_DIR,
    OUTCOME,
    PUBLISHED_DIR,
    STRATA,
    STRATUM,
    WEIGHT,
)
from cst_bayes.core.errors import InputError, SamplerTrouble, SpecError

Family = Literal["bernoulli", "poisson", "binomial", "betabinomial"]
Link = Literal["logit", "log"]
Sampler = Literal["nutpie", "nutpie-c", "pymc"]
Parameterisation = Literal["centered", "noncentered"]
Pooling = Literal["none", "partial_pooling"]

#: Number of approaches: the trial count of the binomial models of ``n_approaches``.
N_TRIALS = len(APPROACHES)
#: Which links each family accepts (bernoulli-log would need p <= 1 constraints; not offered).
FAMILY_LINKS: dict[str, tuple[str, ...]] = {
    "bernoulli": ("logit",),
    "poisson": ("log",),
    "binomial": ("logit",),
    "betabinomial": ("logit",),
}
#: Outcome -> families allowed for it.
OUTCOME_FAMILIES: dict[str, tuple[str, ...]] = {
    OUTCOME: ("bernoulli", "poisson"),
    COUNT: ("poisson", "binomial", "betabinomial"),
}
#: Prior distributions and their parameters.
PRIOR_DISTS: dict[str, tuple[str, ...]] = {
    "normal": ("mu", "sigma"),
    "student_t": ("nu", "mu", "sigma"),
    "halfnormal": ("sigma",),
    "halfstudent_t": ("nu", "sigma"),
    "exponential": ("lam",),
    "gamma": ("alpha", "beta"),
}
#: Which distributions each prior slot accepts (location parameters vs positive scales).
PRIOR_SLOTS: dict[str, tuple[str, ...]] = {
    "intercept": ("normal", "student_t"),
    "beta": ("normal", "student_t"),
    "sigma_stratum": ("halfnormal", "halfstudent_t", "exponential", "gamma"),
    "sigma_slope": ("halfnormal", "halfstudent_t", "exponential", "gamma"),
    "concentration": ("gamma", "exponential", "halfnormal", "halfstudent_t"),
}
_TOP_KEYS = {"model", "hierarchy", "priors", "published"}
_MODEL_KEYS = {"name", "description", "outcome", "family", "link", "predictors", "note"}
_HIER_KEYS = {
    "stratum_intercepts",
    "intercept_parameterisation",
    "varying_slopes",
    "slope_parameterisation",
}
_PUB_KEYS = {"table", "analysis", "adjusted_for_size", "link"}

#: Diagnostic thresholds (issue 4): any breach is a loud warning; ``strict`` makes it an error.
RHAT_MAX = 1.01
ESS_MIN = 400
BFMI_MIN = 0.3

#: NUTS target acceptance. 0.8 left a handful of scattered divergences (not a funnel: at ordinary
#: values of sigma_stratum) in the stratum models; 0.9 removes them for ~15% more leapfrog steps.
TARGET_ACCEPT = 0.9

SUMMARY_COLUMNS = ["term", "estimate", "ci_low", "ci_high", "r_hat", "ess_bulk", "ess_tail"]


class SamplerWarning(UserWarning):
    """Divergences, R-hat, ESS or BFMI outside their thresholds."""


# --------------------------------------------------------------------------------------------
# Specs
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prior:
    """One prior: distribution name, its parameters and the one-line reason for it."""

    dist: str
    params: dict[str, float]
    reason: str

    def scaled(self, factor: float) -> Prior:
        """The same prior with its scale (``sigma``) multiplied by ``factor``."""
        if factor == 1.0 or "sigma" not in self.params:
            return self
        return Prior(
            self.dist, {**self.params, "sigma": self.params["sigma"] * factor}, self.reason
        )


@dataclass(frozen=True)
class ModelSpec:
    """A validated model spec (see ``docs/models.md`` for the TOML format)."""

    name: str
    description: str
    outcome: str
    family: str
    link: str
    predictors: tuple[str, ...]
    stratum_intercepts: str
    intercept_parameterisation: str
    varying_slopes: bool
    slope_parameterisation: str
    priors: dict[str, Prior]
    published: dict[str, Any] | None
    note: str
    path: str
    text: str = field(repr=False)

    @property
    def hash(self) -> str:
        """SHA-256 of the spec file's text (provenance)."""
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def pooled_strata(self) -> bool:
        return self.stratum_intercepts == "partial_pooling"

    @property
    def predictor_dim(self) -> str:
        """Name of the coefficient dimension: ``approach`` when the predictors are approaches."""
        return (
            "approach"
            if self.predictors and set(self.predictors) <= set(APPROACHES)
            else "predictor"
        )

    @property
    def ratio(self) -> str:
        """What exp(coefficient) is: OR for logit, PR (or rate ratio) for log link."""
        return "OR" if self.link == "logit" else "PR"


def _spec_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists() or len(p.parts) > 1:
        return p
    return MODELS_DIR / f"{name_or_path}.toml"


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str, path: Path) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise SpecError(
            f"unknown key(s) {unknown} in [{where}] (allowed: {sorted(allowed)})",
            path=path,
            column=f"{where}.{unknown[0]}",
        )


def _parse_prior(slot: str, raw: Any, path: Path) -> Prior:
    key = f"priors.{slot}"
    if not isinstance(raw, Mapping):
        raise SpecError(
            "a prior must be a table with dist, its parameters and reason", path=path, column=key
        )
    dist = raw.get("dist")
    if dist not in PRIOR_DISTS:
        raise SpecError(
            f"unknown prior distribution {dist!r} (known: {sorted(PRIOR_DISTS)})",
            path=path,
            column=f"{key}.dist",
        )
    if dist not in PRIOR_SLOTS[slot]:
        raise SpecError(
            f"distribution {dist!r} is not allowed for {slot} (allowed: {list(PRIOR_SLOTS[slot])})",
            path=path,
            column=f"{key}.dist",
        )
    names = PRIOR_DISTS[dist]
    _check_keys(raw, {"dist", "reason", *names}, key, path)
    params: dict[str, float] = {}
    for n in names:
        if n not in raw:
            raise SpecError(f"prior {dist} needs parameter {n!r}", path=path, column=f"{key}.{n}")
        v = raw[n]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v):
            raise SpecError(
                f"parameter {n!r} must be a finite number, got {v!r}",
                path=path,
                column=f"{key}.{n}",
            )
        if n != "mu" and v <= 0:
            raise SpecError(
                f"parameter {n!r} must be positive, got {v!r}", path=path, column=f"{key}.{n}"
            )
        params[n] = float(v)
    reason = raw.get("reason", "")
    if not isinstance(reason, str) or not reason.strip():
        raise SpecError("every prior needs a one-line reason", path=path, column=f"{key}.reason")
    return Prior(dist, params, reason.strip())


def load_spec(name_or_path: str | Path) -> ModelSpec:
    """Load and validate a model spec by name (``models/NAME.toml``) or path.

    Raises
    ------
    SpecError
        Naming the file and the key: unknown keys, outcome, predictors, family, link,
        hierarchy options or priors; missing or superfluous priors.
    """
    path = _spec_path(name_or_path)
    if not path.exists():
        known = ", ".join(list_specs()["name"]) if MODELS_DIR.exists() else ""
        raise SpecError(f"no such model spec (known: {known})", path=path)
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"not valid TOML: {exc}", path=path) from None
    _check_keys(raw, _TOP_KEYS, "top level", path)
    m = raw.get("model")
    if not isinstance(m, Mapping):
        raise SpecError("missing [model] table", path=path, column="model")
    _check_keys(m, _MODEL_KEYS, "model", path)
    for k in ("name", "outcome", "family", "link"):
        if not isinstance(m.get(k), str):
            raise SpecError(f"[model] needs a string {k!r}", path=path, column=f"model.{k}")
    outcome, family, link = m["outcome"], m["family"], m["link"]
    if outcome not in OUTCOME_FAMILIES:
        raise SpecError(
            f"unknown outcome {outcome!r} (known: {list(OUTCOME_FAMILIES)})",
            path=path,
            column="model.outcome",
        )
    if family not in get_args(Family):
        raise SpecError(
            f"unknown family {family!r} (known: {list(get_args(Family))})",
            path=path,
            column="model.family",
        )
    if link not in get_args(Link):
        raise SpecError(
            f"unknown link {link!r} (known: {list(get_args(Link))})", path=path, column="model.link"
        )
    if family not in OUTCOME_FAMILIES[outcome]:
        raise SpecError(
            f"family {family!r} does not fit outcome {outcome!r} (allowed: {list(OUTCOME_FAMILIES[outcome])})",
            path=path,
            column="model.family",
        )
    if link not in FAMILY_LINKS[family]:
        raise SpecError(
            f"link {link!r} is not offered for family {family!r} (allowed: {list(FAMILY_LINKS[family])})",
            path=path,
            column="model.link",
        )
    preds = m.get("predictors", [])
    if not isinstance(preds, list) or not all(isinstance(p, str) for p in preds):
        raise SpecError(
            "predictors must be a list of column names", path=path, column="model.predictors"
        )
    allowed_preds = (*APPROACHES, COUNT) if outcome == OUTCOME else ()
    for p in preds:
        if p not in allowed_preds:
            raise SpecError(
                f"unknown predictor {p!r} for outcome {outcome!r} (allowed: {list(allowed_preds)})",
                path=path,
                column="model.predictors",
            )
    if len(set(preds)) != len(preds):
        raise SpecError("duplicate predictors", path=path, column="model.predictors")
    if COUNT in preds and len(preds) > 1:
        raise SpecError(
            "n_approaches is the sum of the approaches: use it alone",
            path=path,
            column="model.predictors",
        )

    h = raw.get("hierarchy", {})
    _check_keys(h, _HIER_KEYS, "hierarchy", path)
    si = h.get("stratum_intercepts", "none")
    if si not in get_args(Pooling):
        raise SpecError(
            f"unknown stratum_intercepts {si!r} (known: {list(get_args(Pooling))})",
            path=path,
            column="hierarchy.stratum_intercepts",
        )
    ip = h.get("intercept_parameterisation", "centered")
    sp = h.get("slope_parameterisation", "noncentered")
    for key, v in (("intercept_parameterisation", ip), ("slope_parameterisation", sp)):
        if v not in get_args(Parameterisation):
            raise SpecError(
                f"unknown {key} {v!r} (known: {list(get_args(Parameterisation))})",
                path=path,
                column=f"hierarchy.{key}",
            )
    vs = h.get("varying_slopes", False)
    if not isinstance(vs, bool):
        raise SpecError(
            "varying_slopes must be true or false", path=path, column="hierarchy.varying_slopes"
        )
    if vs and (si != "partial_pooling" or not preds):
        raise SpecError(
            "varying_slopes needs stratum_intercepts = 'partial_pooling' and predictors",
            path=path,
            column="hierarchy.varying_slopes",
        )

    needed = {"intercept"}
    if preds:
        needed.add("beta")
    if si == "partial_pooling":
        needed.add("sigma_stratum")
    if vs:
        needed.add("sigma_slope")
    if family == "betabinomial":
        needed.add("concentration")
    pr = raw.get("priors", {})
    if not isinstance(pr, Mapping):
        raise SpecError("[priors] must be a table", path=path, column="priors")
    for k in pr:
        if k not in PRIOR_SLOTS:
            raise SpecError(
                f"unknown prior {k!r} (known: {sorted(PRIOR_SLOTS)})",
                path=path,
                column=f"priors.{k}",
            )
        if k not in needed:
            raise SpecError(
                f"prior {k!r} is not used by this model (needed: {sorted(needed)})",
                path=path,
                column=f"priors.{k}",
            )
    for k in sorted(needed):
        if k not in pr:
            raise SpecError(f"missing prior {k!r}", path=path, column=f"priors.{k}")
    priors = {k: _parse_prior(k, pr[k], path) for k in sorted(needed)}

    pub = raw.get("published")
    if pub is not None:
        _check_keys(pub, _PUB_KEYS, "published", path)
        if (
            pub.get("table") != "table3"
            or pub.get("analysis") not in (1, 2)
            or pub.get("adjusted_for_size") not in ("yes", "no")
        ):
            raise SpecError(
                "published must say table = 'table3', analysis = 1 or 2, adjusted_for_size = 'yes'/'no'",
                path=path,
                column="published",
            )
    return ModelSpec(
        name=m["name"],
        description=str(m.get("description", "")),
        outcome=outcome,
        family=family,
        link=link,
        predictors=tuple(preds),
        stratum_intercepts=si,
        intercept_parameterisation=ip,
        varying_slopes=vs,
        slope_parameterisation=sp,
        priors=priors,
        published=dict(pub) if pub else None,
        note=str(m.get("note", "")),
        path=str(path),
        text=text,
    )


def list_specs(models_dir: str | Path | None = None) -> pd.DataFrame:
    """The shipped model specs: ``DataFrame[name, outcome, family, link, predictors, strata, published, description]``.

    ``models/weighting.toml`` (the weighting scenarios) is not a model and is skipped.
    """
    d = Path(models_dir) if models_dir else MODELS_DIR
    rows = []
    for f in sorted(d.glob("*.toml")):
        try:
            raw = tomllib.loads(f.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError:
            continue
        if "model" not in raw:
            continue
        s = load_spec(f)
        pub = (
            f"table3 analysis {s.published['analysis']} adjusted={s.published['adjusted_for_size']}"
            if s.published
            else ""
        )
        strata = s.stratum_intercepts + (" + varying slopes" if s.varying_slopes else "")
        rows.append(
            dict(
                name=s.name,
                outcome=s.outcome,
                family=s.family,
                link=s.link,
                predictors=" ".join(s.predictors) if len(s.predictors) < 9 else "nine approaches",
                strata=strata,
                published=pub,
                description=s.description,
            )
        )
    cols = ["name", "outcome", "family", "link", "predictors", "strata", "published", "description"]
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------------------------
# Data -> covariate patterns
# --------------------------------------------------------------------------------------------
def _design(spec: ModelSpec, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Stratum codes (n,) and predictor matrix (n, K) for agency rows."""
    missing = [c for c in (STRATUM, *spec.predictors) if c not in df.columns]
    if missing:
        raise InputError(
            f"data lack column(s) {missing} needed by model {spec.name}",
            path=df.attrs.get("source"),
            column=missing[0],
        )
    s = df[STRATUM]
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
    X = (
        df[list(spec.predictors)].to_numpy(dtype=float)
        if spec.predictors
        else np.zeros((len(df), 0))
    )
    return codes, X


def _outcome(spec: ModelSpec, df: pd.DataFrame) -> np.ndarray:
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
    """Agencies collapsed to unique covariate patterns (stratum, predictors[, outcome])."""

    stratum: np.ndarray  # (P,) int codes
    X: np.ndarray  # (P, K)
    w1: np.ndarray  # binary outcome: weighted successes; count outcome: outcome value
    w0: np.ndarray  # binary outcome: weighted failures; count outcome: weighted multiplicity
    xbar: np.ndarray  # (K,) agency means of the predictors (centring)

    def data(self, spec: ModelSpec) -> dict[str, np.ndarray]:
        """The ``pm.Data`` values the spec's model uses (a compiled model knows no others)."""
        d = {"w1": self.w1, "w0": self.w0}
        if spec.pooled_strata:
            d["stratum_idx"] = self.stratum
        if spec.predictors:
            d.update(X=self.X, xbar=self.xbar)
        return d


def collapse(spec: ModelSpec, df: pd.DataFrame, weights: np.ndarray | None = None) -> Patterns:
    """Collapse agencies to covariate patterns with (weighted) outcome sums.

    For a 0/1 outcome a pattern keeps the weighted successes ``w1`` and failures ``w0``; for
    the count outcome a pattern is (stratum, predictors, count) with ``w1`` = the count and
    ``w0`` = the weighted number of agencies. The likelihood is unchanged up to a constant.
    """
    codes, X = _design(spec, df)
    y = _outcome(spec, df)
    w = np.ones(len(df)) if weights is None else weights
    key = np.column_stack([codes, X] + ([y] if spec.outcome == COUNT else []))
    uniq, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.ravel()
    P = len(uniq)
    if spec.outcome == COUNT:
        w1 = uniq[:, -1].astype(float)
        w0 = np.bincount(inv, weights=w, minlength=P)
        Xu = uniq[:, 1:-1]
    else:
        w1 = np.bincount(inv, weights=w * y, minlength=P)
        w0 = np.bincount(inv, weights=w * (1.0 - y), minlength=P)
        Xu = uniq[:, 1:]
    xbar = X.mean(axis=0) if X.shape[1] else np.zeros(0)
    return Patterns(
        uniq[:, 0].astype(np.int64), np.ascontiguousarray(Xu, dtype=float), w1, w0, xbar
    )


# --------------------------------------------------------------------------------------------
# Builder
# --------------------------------------------------------------------------------------------
def _prior_rv(pm: Any, name: str, prior: Prior, dims: Any = None) -> Any:
    p = prior.params
    if prior.dist == "normal":
        return pm.Normal(name, mu=p["mu"], sigma=p["sigma"], dims=dims)
    if prior.dist == "student_t":
        return pm.StudentT(name, nu=p["nu"], mu=p["mu"], sigma=p["sigma"], dims=dims)
    if prior.dist == "halfnormal":
        return pm.HalfNormal(name, sigma=p["sigma"], dims=dims)
    if prior.dist == "halfstudent_t":
        return pm.HalfStudentT(name, nu=p["nu"], sigma=p["sigma"], dims=dims)
    if prior.dist == "exponential":
        return pm.Exponential(name, lam=p["lam"], dims=dims)
    if prior.dist == "gamma":
        return pm.Gamma(name, alpha=p["alpha"], beta=p["beta"], dims=dims)
    raise SpecError(
        f"unknown prior distribution {prior.dist!r}", path=None, column=name
    )  # pragma: no cover


def _loglik_pt(spec: ModelSpec, eta: Any, w1: Any, w0: Any, kappa: Any = None) -> Any:
    """Summed (weighted) log-likelihood of the patterns as a PyTensor expression."""
    import pytensor.tensor as pt

    if spec.outcome == OUTCOME:
        if spec.family == "bernoulli":  # w1 log p + w0 log(1-p), p = logistic(eta)
            return (-w1 * pt.softplus(-eta) - w0 * pt.softplus(eta)).sum()
        # Poisson working likelihood on 0/1: y*eta - exp(eta) (log y! = 0)
        return (w1 * eta - (w1 + w0) * pt.exp(eta)).sum()
    y, m = w1, w0
    if spec.family == "poisson":
        return (m * (y * eta - pt.exp(eta) - pt.gammaln(y + 1))).sum()
    lchoose = pt.gammaln(N_TRIALS + 1) - pt.gammaln(y + 1) - pt.gammaln(N_TRIALS - y + 1)
    if spec.family == "binomial":
        return (m * (lchoose - y * pt.softplus(-eta) - (N_TRIALS - y) * pt.softplus(eta))).sum()
    p = pt.sigmoid(eta)
    a, b = p * kappa, (1 - p) * kappa
    betaln = lambda u, v: pt.gammaln(u) + pt.gammaln(v) - pt.gammaln(u + v)  # noqa: E731
    return (m * (lchoose + betaln(y + a, N_TRIALS - y + b) - betaln(a, b))).sum()


def build(
    spec: ModelSpec, df: pd.DataFrame, *, weights: Any = None, prior_scale: float = 1.0
) -> Any:
    """Build the PyMC model of ``spec`` on ``df``.

    Parameters
    ----------
    spec
        A spec from :func:`load_spec` (a name or path is accepted too).
    df
        Agency-level data (microdata contract).
    weights
        Survey weights per agency (pseudo-likelihood, normalised to sum to n), or None.
    prior_scale
        Multiplies the scale of the coefficient prior (``priors.beta``); the sweep varies it.

    Returns
    -------
    pymc.Model
        Free variables ``intercept`` or (``mu_stratum``, ``sigma_stratum``, ``alpha``
        [stratum]), ``beta`` [approach|predictor], and with varying slopes ``sigma_slope``,
        ``z_slope`` [stratum, approach] and the deterministic ``beta_stratum``; ``concentration``
        for the beta-binomial. Data are ``pm.Data`` (``w1, w0`` and, where used, ``stratum_idx, X, xbar``) on
        collapsed covariate patterns; the likelihood is the ``pm.Potential`` ``loglik``.
    """
    if not isinstance(spec, ModelSpec):
        spec = load_spec(spec)
    if not (np.isfinite(prior_scale) and prior_scale > 0):
        raise InputError(
            f"prior_scale must be a positive number, got {prior_scale!r}", column="prior_scale"
        )
    w = normalise_weights(weights, len(df), source=df.attrs.get("source"))
    pat = collapse(spec, df, w)
    return _build_from_patterns(spec, pat, prior_scale)


def _build_from_patterns(spec: ModelSpec, pat: Patterns, prior_scale: float) -> Any:
    import pymc as pm
    import pytensor.tensor as pt

    dim = spec.predictor_dim
    coords: dict[str, Any] = {"stratum": list(STRATA)}
    if spec.predictors:
        coords[dim] = list(spec.predictors)
    with pm.Model(coords=coords) as model:
        data = {k: pm.Data(k, v) for k, v in pat.data(spec).items()}
        w1, w0 = data["w1"], data["w0"]
        if spec.pooled_strata:
            s_idx = data["stratum_idx"]
            mu = _prior_rv(pm, "mu_stratum", spec.priors["intercept"])
            sigma = _prior_rv(pm, "sigma_stratum", spec.priors["sigma_stratum"])
            if spec.intercept_parameterisation == "centered":
                alpha = pm.Normal("alpha", mu=mu, sigma=sigma, dims="stratum")
            else:
                z = pm.Normal("z_stratum", 0.0, 1.0, dims="stratum")
                alpha = pm.Deterministic("alpha", mu + sigma * z, dims="stratum")
            eta = alpha[s_idx]
        else:
            intercept = _prior_rv(pm, "intercept", spec.priors["intercept"])
            eta = intercept + pt.zeros_like(w1)
        if spec.predictors:
            beta = _prior_rv(pm, "beta", spec.priors["beta"].scaled(prior_scale), dims=dim)
            Xc = data["X"] - data["xbar"]
            if spec.varying_slopes:
                tau = _prior_rv(pm, "sigma_slope", spec.priors["sigma_slope"])
                if spec.slope_parameterisation == "noncentered":
                    zs = pm.Normal("z_slope", 0.0, 1.0, dims=("stratum", dim))
                    bs = pm.Deterministic(
                        "beta_stratum", beta[None, :] + tau * zs, dims=("stratum", dim)
                    )
                else:
                    bs = pm.Normal(
                        "beta_stratum", mu=beta[None, :], sigma=tau, dims=("stratum", dim)
                    )
                eta = eta + (Xc * bs[s_idx]).sum(axis=1)
            else:
                eta = eta + pt.dot(Xc, beta)
        kappa = (
            _prior_rv(pm, "concentration", spec.priors["concentration"])
            if spec.family == "betabinomial"
            else None
        )
        pm.Potential("loglik", _loglik_pt(spec, eta, w1, w0, kappa))
    return model


# --------------------------------------------------------------------------------------------
# Samplers (compiled once per process and spec, re-used with new data)
# --------------------------------------------------------------------------------------------
_COMPILED: dict[tuple[str, float, str], Any] = {}


def _compile_nutpie_numba(model: Any) -> Any:
    import nutpie

    return nutpie.compile_pymc_model(model)


def _compile_nutpie_c(model: Any) -> Any:
    """nutpie driven by PyTensor's C backend through ``from_pyfunc``.

    Why: PyTensor caches compiled C modules on disk, so a fresh process compiles a known model
    in ~2-3 s, while the numba backend re-compiles its C callbacks every time (15-25 s here).
    The price is a Python call per gradient (GIL-serialised across chains), so for repeated
    fits in one process the numba backend is faster.
    """
    import pytensor
    import pytensor.tensor as pt
    from nutpie.compiled_pyfunc import from_pyfunc

    value_vars = [model.rvs_to_values[v] for v in model.free_RVs]
    ip = model.initial_point()
    shapes = [tuple(ip[v.name].shape) for v in value_vars]
    sizes = [int(np.prod(sh)) for sh in shapes]
    offs = np.cumsum([0, *sizes])
    n = int(offs[-1])
    x = pt.dvector("x")
    logp = model.logp()
    grad = pt.concatenate([g.ravel() for g in pytensor.grad(logp, value_vars)])
    rep = {v: x[offs[i] : offs[i + 1]].reshape(shapes[i]) for i, v in enumerate(value_vars)}
    logp, grad = pytensor.clone_replace([logp, grad], rep)
    outs = [v for v in model.unobserved_value_vars if not v.name.endswith("__")]
    names = [v.name for v in outs]
    expand_outs = pytensor.clone_replace(outs, rep)
    f_logp = pytensor.function([x], [logp, grad], mode="FAST_RUN", on_unused_input="ignore")
    f_exp = pytensor.function([x], expand_outs, mode="FAST_RUN", on_unused_input="ignore")
    x0 = np.concatenate([np.asarray(ip[v.name], dtype=float).ravel() for v in value_vars])
    shapes_out = [np.shape(v) for v in f_exp(x0)]

    def make_logp() -> Any:
        f = f_logp.copy()  # one per chain: a PyTensor function is not thread-safe

        def logp_fn(xv: np.ndarray) -> tuple[float, np.ndarray]:
            lp, g = f(xv)
            return float(lp), np.asarray(g, dtype=np.float64)

        return logp_fn

    def make_expand(seed1: int, seed2: int, chain: int) -> Any:
        f = f_exp.copy()

        def expand(xv: np.ndarray) -> dict[str, np.ndarray]:
            return {nm: np.asarray(v, dtype=np.float64) for nm, v in zip(names, f(xv))}

        return expand

    def init(
        seed: int,
    ) -> np.ndarray:  # PyMC's support point jittered by U(-1, 1), like nutpie and PyMC
        return x0 + np.random.default_rng(seed).uniform(-1, 1, n)

    dims = {nm: tuple(model.named_vars_to_dims.get(nm, ())) for nm in names}
    return from_pyfunc(
        n,
        make_logp,
        make_expand,
        [np.dtype("float64")] * len(names),
        shapes_out,
        names,
        coords={k: list(v) for k, v in model.coords.items()},
        dims=dims,
        make_initial_point_fn=init,
    )


#: Use the hand-written numba log-density (:mod:`cst_bayes.bayes.fastlogp`) for ``sampler="nutpie"`` when
#: the spec is one it covers; False forces nutpie's PyTensor/numba compile (benchmarks, checks).
FAST_LOGP = True


def _fast_supported(spec: ModelSpec) -> bool:
    """Whether :mod:`cst_bayes.bayes.fastlogp` implements this spec's density exactly."""
    from cst_bayes.bayes import fastlogp

    return (
        spec.family in ("bernoulli", "binomial", "poisson")
        and not spec.varying_slopes
        and all(p.dist in fastlogp.PRIOR_CODES for p in spec.priors.values())
    )


def _fast_args(spec: ModelSpec, pat: Patterns, prior_scale: float) -> dict[str, Any]:
    """Data and prior arrays of :func:`cst_bayes.bayes.fastlogp.logp_grad` for ``spec`` on ``pat``."""
    from scipy.special import gammaln

    from cst_bayes.bayes import fastlogp as F

    pr = spec.priors
    beta = (
        pr["beta"].scaled(prior_scale)
        if "beta" in pr
        else Prior("normal", {"mu": 0.0, "sigma": 1.0}, "")
    )
    sig = pr.get("sigma_stratum", Prior("halfnormal", {"sigma": 1.0}, ""))
    priors = np.vstack([F.prior_row(p.dist, p.params) for p in (pr["intercept"], beta, sig)])
    w1, w0 = np.asarray(pat.w1, dtype=float), np.asarray(pat.w0, dtype=float)
    if spec.outcome == OUTCOME:
        if spec.family == "bernoulli":
            fam, a, b, const = F.LOGISTIC, w1, w0, 0.0
        else:  # Poisson working likelihood on 0/1
            fam, a, b, const = F.LOGLINEAR, w1, w1 + w0, 0.0
    else:
        y, m = w1, w0
        if spec.family == "poisson":
            fam, a, b, const = F.LOGLINEAR, m * y, m, -float(np.sum(m * gammaln(y + 1)))
        else:  # binomial(9)
            lchoose = gammaln(N_TRIALS + 1) - gammaln(y + 1) - gammaln(N_TRIALS - y + 1)
            fam, a, b, const = F.LOGISTIC, m * y, m * (N_TRIALS - y), float(np.sum(m * lchoose))
    structure = (
        F.NO_STRATA
        if not spec.pooled_strata
        else F.CENTERED
        if spec.intercept_parameterisation == "centered"
        else F.NONCENTERED
    )
    K = len(spec.predictors)
    Xc = np.ascontiguousarray(pat.X - pat.xbar if K else np.zeros((len(w1), 0)), dtype=float)
    return dict(
        structure=structure,
        family=fam,
        n_strata=len(STRATA),
        priors=priors,
        sidx=np.ascontiguousarray(pat.stratum, dtype=np.int64),
        Xc=Xc,
        a=np.ascontiguousarray(a),
        b=np.ascontiguousarray(b),
        const=float(const),
    )


def _fast_x0(spec: ModelSpec, prior_scale: float) -> np.ndarray:
    """PyMC's initial point (support points, log scale for sigma) in the fast layout."""
    from cst_bayes.bayes import fastlogp as F

    pr = spec.priors
    mu0 = F.support_point(pr["intercept"].dist, pr["intercept"].params)
    parts = [[mu0]]
    if spec.pooled_strata:
        parts.append(
            [np.log(F.support_point(pr["sigma_stratum"].dist, pr["sigma_stratum"].params))]
        )
        parts.append([mu0 if spec.intercept_parameterisation == "centered" else 0.0] * len(STRATA))
    if spec.predictors:
        b = pr["beta"].scaled(prior_scale)
        parts.append([F.support_point(b.dist, b.params)] * len(spec.predictors))
    return np.concatenate([np.asarray(p, dtype=float) for p in parts])


def _compile_nutpie_fast(spec: ModelSpec, pat: Patterns, prior_scale: float) -> Any:
    """nutpie over the hand-written numba density of :mod:`cst_bayes.bayes.fastlogp`.

    Why: its machine code is cached on disk by numba (``cache=True``), so a fresh process
    loads it in well under a second, where nutpie's PyTensor/numba compile takes 15-35 s;
    each gradient is a cheap call into compiled code (the GIL is released inside it).
    Same density as the PyMC model (tests compare logp and gradient), same variable names.
    """
    from nutpie.compiled_pyfunc import from_pyfunc

    from cst_bayes.bayes import fastlogp as F

    args = _fast_args(spec, pat, prior_scale)
    x0 = _fast_x0(spec, prior_scale)
    n, S, K = len(x0), len(STRATA), len(spec.predictors)
    off = 2 + S if spec.pooled_strata else 1
    dim = spec.predictor_dim
    centered = spec.intercept_parameterisation == "centered"
    if spec.pooled_strata:
        names = ["mu_stratum", "sigma_stratum", "alpha" if centered else "z_stratum"]
        shapes = [(), (), (S,)]
        dims = {"alpha": ("stratum",), "z_stratum": ("stratum",)}
    else:
        names, shapes, dims = ["intercept"], [()], {}
    if K:
        names.append("beta")
        shapes.append((K,))
        dims["beta"] = (dim,)
    if spec.pooled_strata and not centered:
        names.append("alpha")
        shapes.append((S,))
    pos = tuple(
        args[k]
        for k in ("structure", "family", "n_strata", "priors", "sidx", "Xc", "a", "b", "const")
    )
    F.logp_grad(x0, *pos)  # load (or compile, once per machine) the cached machine code now

    def make_logp() -> Any:
        fn = F.logp_grad

        def logp_fn(x: np.ndarray) -> tuple[float, np.ndarray]:
            return fn(x, *pos)

        return logp_fn

    def make_expand(seed1: int, seed2: int, chain: int) -> Any:
        def expand(x: np.ndarray) -> dict[str, np.ndarray]:
            out = {}
            if spec.pooled_strata:
                out["mu_stratum"] = np.asarray(x[0])
                sig = np.exp(x[1])
                out["sigma_stratum"] = np.asarray(sig)
                out["alpha" if centered else "z_stratum"] = x[2 : 2 + S].copy()
                if not centered:
                    out["alpha"] = x[0] + sig * x[2 : 2 + S]
            else:
                out["intercept"] = np.asarray(x[0])
            if K:
                out["beta"] = x[off : off + K].copy()
            return out

        return expand

    def init(
        seed: int,
    ) -> np.ndarray:  # PyMC's support point jittered by U(-1, 1), like nutpie and PyMC
        return x0 + np.random.default_rng(seed).uniform(-1, 1, n)

    coords: dict[str, list] = {"stratum": list(STRATA)}
    if K:
        coords[dim] = list(spec.predictors)
    return from_pyfunc(
        n,
        make_logp,
        make_expand,
        [np.dtype("float64")] * len(names),
        shapes,
        names,
        coords=coords,
        dims=dims,
        make_initial_point_fn=init,
    )


def _sample(
    spec: ModelSpec,
    pat: Patterns,
    *,
    draws: int,
    tune: int,
    chains: int,
    seed: int,
    sampler: str,
    prior_scale: float,
    progress: bool,
) -> tuple[Any, dict[str, float]]:
    """Sample; return the posterior InferenceData (posterior + sample_stats) and timings."""
    import arviz as az

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    if sampler == "pymc":
        import pymc as pm

        model = _build_from_patterns(spec, pat, prior_scale)
        timings["compile_s"] = 0.0  # PyMC compiles inside pm.sample; reported as sampling time
        t1 = time.perf_counter()
        with model:
            idata = pm.sample(
                draws=draws,
                tune=tune,
                chains=chains,
                cores=min(chains, 2),
                random_seed=seed,
                progressbar=progress,
                target_accept=TARGET_ACCEPT,
                compute_convergence_checks=False,
                nuts_sampler="pymc",
            )
        timings["sample_s"] = time.perf_counter() - t1
    else:
        import nutpie

        key = (spec.hash, float(prior_scale), sampler)
        compiled = _COMPILED.get(key)
        if sampler == "nutpie" and FAST_LOGP and _fast_supported(spec):
            compiled = _compile_nutpie_fast(spec, pat, prior_scale)
        elif compiled is not None:
            compiled = compiled.with_data(**pat.data(spec))
        elif sampler == "nutpie":
            compiled = _COMPILED[key] = _compile_nutpie_numba(
                _build_from_patterns(spec, pat, prior_scale)
            )
        else:  # the C functions close over this dataset; their compiled modules are cached on disk
            compiled = _compile_nutpie_c(_build_from_patterns(spec, pat, prior_scale))
        timings["compile_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        idata = nutpie.sample(
            compiled,
            draws=draws,
            tune=tune,
            chains=chains,
            seed=seed,
            progress_bar=progress,
            save_warmup=False,
            target_accept=TARGET_ACCEPT,
        )
        timings["sample_s"] = time.perf_counter() - t1
    keep = [v for v in idata.posterior.data_vars if not str(v).endswith("__")]
    post = idata.posterior[keep]
    stats = idata.sample_stats
    if "diverging" not in stats and "divergences" in stats:
        stats = stats.rename({"divergences": "diverging"})
    out = az.InferenceData(posterior=post, sample_stats=stats)
    return out, timings


# --------------------------------------------------------------------------------------------
# Posterior quantities in NumPy
# --------------------------------------------------------------------------------------------
def _draws(idata: Any, name: str) -> np.ndarray:
    """Posterior draws of ``name`` flattened to (chain*draw, ...)."""
    a = idata.posterior[name].to_numpy()
    return a.reshape(a.shape[0] * a.shape[1], *a.shape[2:])


def _eta(
    spec: ModelSpec, idata: Any, codes: np.ndarray, X: np.ndarray, xbar: np.ndarray
) -> np.ndarray:
    """Linear predictor (draws, rows) for agency rows given stratum codes and predictors."""
    if spec.pooled_strata:
        eta = _draws(idata, "alpha")[:, codes]
    else:
        eta = np.repeat(_draws(idata, "intercept")[:, None], len(codes), axis=1)
    if spec.predictors:
        Xc = X - xbar
        if spec.varying_slopes:
            bs = _draws(idata, "beta_stratum")  # (D, S, K)
            eta = eta + np.einsum("dnk,nk->dn", bs[:, codes, :], Xc)
        else:
            eta = eta + _draws(idata, "beta") @ Xc.T
    return eta


def _mean_from_eta(spec: ModelSpec, eta: np.ndarray) -> np.ndarray:
    if spec.link == "log":
        return np.exp(eta)
    p = 1.0 / (1.0 + np.exp(-eta))
    return p * N_TRIALS if spec.family in ("binomial", "betabinomial") else p


def _pointwise_loglik(spec: ModelSpec, idata: Any, eta: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Agency-level log-density of the observed outcome (draws, agencies), unweighted."""
    from scipy.special import betaln, gammaln

    if spec.outcome == OUTCOME:
        if spec.family == "bernoulli":
            return -np.logaddexp(0.0, np.where(y == 1, -eta, eta))
        return y * eta - np.exp(eta)
    if spec.family == "poisson":
        return y * eta - np.exp(eta) - gammaln(y + 1)
    lchoose = gammaln(N_TRIALS + 1) - gammaln(y + 1) - gammaln(N_TRIALS - y + 1)
    if spec.family == "binomial":
        return lchoose - y * np.logaddexp(0, -eta) - (N_TRIALS - y) * np.logaddexp(0, eta)
    kappa = _draws(idata, "concentration")[:, None]
    p = 1.0 / (1.0 + np.exp(-eta))
    a, b = p * kappa, (1 - p) * kappa
    return lchoose + betaln(y + a, N_TRIALS - y + b) - betaln(a, b)


def _draw_outcome(
    spec: ModelSpec,
    idata: Any,
    eta: np.ndarray,
    rng: np.random.Generator,
    draw_idx: np.ndarray | None = None,
) -> np.ndarray:
    """Replicated outcomes from the family given the linear predictor (draws, rows)."""
    if spec.family == "bernoulli":
        return (rng.random(eta.shape) < 1.0 / (1.0 + np.exp(-eta))).astype(np.int8)
    if spec.family == "poisson":  # on the 0/1 outcome this can exceed 1: it is a working likelihood
        return rng.poisson(np.exp(eta)).astype(np.int16)
    p = 1.0 / (1.0 + np.exp(-eta))
    if spec.family == "betabinomial":
        kappa = _draws(idata, "concentration")
        if draw_idx is not None:
            kappa = kappa[draw_idx]
        kappa = kappa[:, None]
        p = rng.beta(p * kappa, (1 - p) * kappa)
    return rng.binomial(N_TRIALS, p).astype(np.int8)


# --------------------------------------------------------------------------------------------
# Fit, summary, diagnostics
# --------------------------------------------------------------------------------------------
@dataclass
class Fit:
    """A fitted model: InferenceData, summary table, diagnostics and the spec."""

    spec: ModelSpec
    idata: Any
    summary: pd.DataFrame
    diagnostics: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def xbar(self) -> np.ndarray:
        return np.asarray(self.idata.constant_data["xbar"].to_numpy(), dtype=float)


def _term_draws(spec: ModelSpec, idata: Any) -> dict[str, np.ndarray]:
    """Log-scale draws (chain, draw) of every reported term."""
    out: dict[str, np.ndarray] = {}
    post = idata.posterior
    if spec.predictors:
        b = post["beta"].to_numpy()
        for k, name in enumerate(spec.predictors):
            out[name] = b[..., k]
        if spec.varying_slopes:
            bs = post["beta_stratum"].to_numpy()
            for j, s in enumerate(STRATA):
                for k, name in enumerate(spec.predictors):
                    out[f"{name}[{s}]"] = bs[..., j, k]
    if spec.pooled_strata:
        a = post["alpha"].to_numpy()
        for j, s in enumerate(STRATA[1:], start=1):
            out[f"stratum[{s}]"] = a[..., j] - a[..., 0]
    return out


def summarise(spec: ModelSpec, idata: Any) -> pd.DataFrame:
    """Posterior median ratio (OR for logit, PR/rate ratio for log) with 95% equal-tailed interval.

    Returns ``DataFrame[term, estimate, ci_low, ci_high, r_hat, ess_bulk, ess_tail]``: one
    row per approach (or ``n_approaches``), per ``stratum[LABEL]`` contrast with the reference
    ``1-49``, and with varying slopes per ``approach[STRATUM]``.
    """
    import arviz as az

    rows = []
    for term, d in _term_draws(spec, idata).items():
        q = np.exp(np.quantile(d, [0.5, 0.025, 0.975]))  # exp is monotone: quantiles commute
        rows.append(
            dict(
                term=term,
                estimate=q[0],
                ci_low=q[1],
                ci_high=q[2],
                r_hat=float(az.rhat(d)),
                ess_bulk=float(az.ess(d, method="bulk")),
                ess_tail=float(az.ess(d, method="tail")),
            )
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def diagnose(idata: Any) -> dict[str, Any]:
    """Divergences, worst R-hat, bulk/tail ESS over all parameters, minimum BFMI, and flags."""
    import arviz as az

    post = idata.posterior
    rh = az.rhat(post)
    eb = az.ess(post, method="bulk")
    et = az.ess(post, method="tail")
    mx = lambda ds: float(max(np.nanmax(ds[v].to_numpy()) for v in ds.data_vars))  # noqa: E731
    mn = lambda ds: float(min(np.nanmin(ds[v].to_numpy()) for v in ds.data_vars))  # noqa: E731
    div = (
        int(idata.sample_stats["diverging"].to_numpy().sum())
        if "diverging" in idata.sample_stats
        else 0
    )
    try:
        bfmi = float(np.min(az.bfmi(idata)))
    except Exception:  # sampler without energy statistics
        bfmi = float("nan")
    d: dict[str, Any] = dict(
        divergences=div, max_r_hat=mx(rh), min_ess_bulk=mn(eb), min_ess_tail=mn(et), min_bfmi=bfmi
    )
    d["ok_divergences"] = div == 0
    d["ok_r_hat"] = d["max_r_hat"] <= RHAT_MAX
    d["ok_ess_bulk"] = d["min_ess_bulk"] >= ESS_MIN
    d["ok_ess_tail"] = d["min_ess_tail"] >= ESS_MIN
    d["ok_bfmi"] = bool(np.isnan(bfmi) or bfmi >= BFMI_MIN)
    msgs = []
    if not d["ok_divergences"]:
        msgs.append(f"{div} divergent transitions")
    if not d["ok_r_hat"]:
        msgs.append(f"R-hat up to {d['max_r_hat']:.3f} > {RHAT_MAX}")
    if not d["ok_ess_bulk"]:
        msgs.append(f"bulk ESS down to {d['min_ess_bulk']:.0f} < {ESS_MIN}")
    if not d["ok_ess_tail"]:
        msgs.append(f"tail ESS down to {d['min_ess_tail']:.0f} < {ESS_MIN}")
    if not d["ok_bfmi"]:
        msgs.append(f"BFMI {bfmi:.2f} < {BFMI_MIN}")
    d["ok"] = not msgs
    d["messages"] = msgs
    return d


def check_diagnostics(fit: Fit, *, strict: bool = False) -> None:
    """Warn loudly (stderr) about failed diagnostics; with ``strict`` raise :class:`SamplerTrouble`."""
    msgs = fit.diagnostics.get("messages", [])
    if not msgs:
        return
    text = f"model {fit.spec.name}: " + "; ".join(msgs)
    if strict:
        raise SamplerTrouble(text)
    warnings.warn(text, SamplerWarning, stacklevel=2)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("cst_bayes", "pymc", "pytensor", "nutpie", "arviz", "numpy", "pandas"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


def fit(
    spec: ModelSpec | str | Path,
    df: pd.DataFrame,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    seed: int = 0,
    sampler: Sampler = "nutpie",
    weights: Any = None,
    prior_scale: float = 1.0,
    progress: bool = True,
    pointwise: bool = True,
) -> Fit:
    """Fit a model spec to agency-level data.

    Parameters
    ----------
    spec
        A :class:`ModelSpec`, a spec name (``models/NAME.toml``) or a path.
    df
        Agency-level data in the microdata contract.
    draws, tune, chains
        Posterior draws and warm-up iterations per chain, and the number of chains.
    seed
        Seed of the sampler and of the posterior-predictive draws: same seed, same numbers.
    sampler
        ``"nutpie"`` (nutpie; for the specs :mod:`cst_bayes.bayes.fastlogp` covers, over its
        hand-written numba density whose machine code numba caches on disk, so also a fresh
        process needs no compile; otherwise nutpie's PyTensor/numba backend, compiled once per
        process), ``"nutpie-c"`` (nutpie over PyTensor's disk-cached C backend) or ``"pymc"``
        (PyMC's own NUTS).
    weights
        Survey weights per agency (array or column name): weighted pseudo-likelihood, each
        agency's log-likelihood scaled by its weight normalised to sum to n. Equal weights
        reproduce the unweighted fit exactly.
    prior_scale
        Multiplies the scale of the coefficient prior.
    progress
        Show the sampler's progress bar.
    pointwise
        Add agency-level ``log_likelihood`` and ``posterior_predictive`` groups (memory grows
        as draws x agencies; switch off for very large simulated data).

    Returns
    -------
    Fit
    """
    import arviz as az
    import xarray as xr

    if not isinstance(spec, ModelSpec):
        spec = load_spec(spec)
    if sampler not in get_args(Sampler):
        raise InputError(
            f"unknown sampler {sampler!r} (known: {list(get_args(Sampler))})", column="sampler"
        )
    for name, v, lo in (("draws", draws, 1), ("tune", tune, 0), ("chains", chains, 1)):
        if not isinstance(v, (int, np.integer)) or v < lo:
            raise InputError(f"{name} must be an integer >= {lo}, got {v!r}", column=name)
    if not (isinstance(prior_scale, (int, float)) and np.isfinite(prior_scale) and prior_scale > 0):
        raise InputError(
            f"prior_scale must be a positive number, got {prior_scale!r}", column="prior_scale"
        )
    source = df.attrs.get("source")
    if isinstance(weights, str):
        if weights not in df.columns:
            raise InputError(f"no weight column {weights!r}", path=source, column=weights)
        weights = df[weights].to_numpy(dtype=float)
    weighted = weights is not None
    w = normalise_weights(weights, len(df), source=source)
    pat = collapse(spec, df, w)
    t0 = time.perf_counter()
    post, timings = _sample(
        spec,
        pat,
        draws=int(draws),
        tune=int(tune),
        chains=int(chains),
        seed=int(seed),
        sampler=sampler,
        prior_scale=float(prior_scale),
        progress=progress,
    )
    t1 = time.perf_counter()

    codes, X = _design(spec, df)
    y = _outcome(spec, df)
    n = len(df)
    agency = df["agency_id"].astype(str).to_numpy() if "agency_id" in df.columns else np.arange(n)
    dim = spec.predictor_dim
    const = {
        "stratum_idx": (("agency",), codes),
        "weight": (("agency",), w),
        "xbar": ((dim,), pat.xbar) if spec.predictors else (("predictor",), pat.xbar),
    }
    if spec.predictors:
        const["X"] = (("agency", dim), X)
    coords = {"agency": agency, "stratum": list(STRATA)}
    if spec.predictors:
        coords[dim] = list(spec.predictors)
    groups: dict[str, Any] = dict(posterior=post.posterior, sample_stats=post.sample_stats)
    groups["observed_data"] = xr.Dataset(
        {spec.outcome: (("agency",), y.astype(np.int16))}, coords={"agency": agency}
    )
    groups["constant_data"] = xr.Dataset(
        const, coords={k: v for k, v in coords.items() if k != "stratum"}
    )
    if pointwise:
        eta = _eta(spec, post, codes, X, pat.xbar)
        nc, nd = post.posterior.sizes["chain"], post.posterior.sizes["draw"]
        ll = _pointwise_loglik(spec, post, eta, y).reshape(nc, nd, n)
        rng = np.random.default_rng([int(seed), 1])
        yrep = _draw_outcome(spec, post, eta, rng).reshape(nc, nd, n)
        cd = {
            "chain": post.posterior["chain"].to_numpy(),
            "draw": post.posterior["draw"].to_numpy(),
            "agency": agency,
        }
        groups["log_likelihood"] = xr.Dataset(
            {spec.outcome: (("chain", "draw", "agency"), ll)}, coords=cd
        )
        groups["posterior_predictive"] = xr.Dataset(
            {spec.outcome: (("chain", "draw", "agency"), yrep)}, coords=cd
        )
    idata = az.InferenceData(**groups)
    attrs = {
        "model": spec.name,
        "spec_hash": spec.hash,
        "spec_toml": spec.text,
        "data_hash": _data_hash(df, spec),
        "data_source": str(source or ""),
        "synthetic": int(bool(df.attrs.get("synthetic", False))),
        "seed": int(seed),
        "sampler": sampler,
        "draws": int(draws),
        "tune": int(tune),
        "chains": int(chains),
        "prior_scale": float(prior_scale),
        "weighted": int(weighted),
        "n_agencies": n,
        "n_patterns": len(pat.w1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **{f"version_{k}": v for k, v in _versions().items()},
    }
    if attrs["synthetic"]:
        from cst_bayes.core.config import SYNTHETIC_BANNER

        attrs["label"] = SYNTHETIC_BANNER
    for g in idata.groups():
        idata[g].attrs.update(attrs)
    summary = summarise(spec, idata)
    diag = diagnose(idata)
    timings["postprocess_s"] = time.perf_counter() - t1
    timings["total_s"] = time.perf_counter() - t0
    return Fit(spec=spec, idata=idata, summary=summary, diagnostics=diag, timings=timings)


def _data_hash(df: pd.DataFrame, spec: ModelSpec) -> str:
    from cst_bayes.core.fileio import sha256_frame

    cols = [c for c in (STRATUM, *APPROACHES, OUTCOME, WEIGHT) if c in df.columns]
    d = df[cols].copy()
    d[STRATUM] = d[STRATUM].astype(str)
    return sha256_frame(d)


# --------------------------------------------------------------------------------------------
# Prediction and replication
# --------------------------------------------------------------------------------------------
def predict_risk(fit: Fit, newdata: pd.DataFrame) -> np.ndarray:
    """Posterior mean outcome for arbitrary agency rows: (chain*draw, rows).

    P(any_cst = 1) for the logistic models; exp(eta) for the log-link models of any_cst (a
    working-likelihood "risk" that can exceed 1); the mean count (0-9) for count models.
    ``newdata`` needs ``stratum`` and the model's predictors (``n_approaches`` is derived from
    the approaches when absent).
    """
    nd = newdata
    if (
        COUNT in fit.spec.predictors
        and COUNT not in nd.columns
        and set(APPROACHES) <= set(nd.columns)
    ):
        nd = nd.assign(**{COUNT: nd[list(APPROACHES)].sum(axis=1)})
    codes, X = _design(fit.spec, nd)
    return _mean_from_eta(fit.spec, _eta(fit.spec, fit.idata, codes, X, fit.xbar))


def replicate(fit: Fit, df: pd.DataFrame, *, n_draws: int = 500, seed: int = 0) -> np.ndarray:
    """Posterior-predictive replicates of the outcome at the agency level: (n_draws, agencies).

    Rows follow ``df``'s order. Each replicate uses one posterior draw (drawn without
    replacement when there are enough) and draws every agency's outcome from the model's
    family given its own linear predictor, which has the same distribution as replicating
    a covariate pattern's total and sharing it among the pattern's exchangeable agencies.
    """
    if n_draws < 1:
        raise InputError(f"n_draws must be >= 1, got {n_draws}", column="n_draws")
    rng = np.random.default_rng([int(seed), 2])
    post = fit.idata.posterior
    total = post.sizes["chain"] * post.sizes["draw"]
    idx = rng.choice(total, size=n_draws, replace=n_draws > total)
    codes, X = _design(fit.spec, df)
    eta = _eta(fit.spec, fit.idata, codes, X, fit.xbar)[idx]
    return _draw_outcome(fit.spec, fit.idata, eta, rng, idx)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------
def write_fit(fit: Fit, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``DIR/MODEL.nc`` (InferenceData, netCDF via h5netcdf) and ``DIR/MODEL-summary.csv``, atomically."""
    from cst_bayes.core.fileio import atomic_path, write_csv

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    nc = out / f"{fit.spec.name}.nc"
    with atomic_path(nc) as tmp:
        fit.idata.to_netcdf(str(tmp), engine="h5netcdf")
    comment = None
    if fit.idata.posterior.attrs.get("synthetic"):
        from cst_bayes.core.config import SYNTHETIC_BANNER

        comment = SYNTHETIC_BANNER
    csv = write_csv(out / f"{fit.spec.name}-summary.csv", fit.summary, header_comment=comment)
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
    attrs = idata.posterior.attrs
    if "spec_toml" not in attrs:
        raise InputError(
            "not a cst_bayes fit (no spec_toml attribute)", path=path, column="spec_toml"
        )
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"{attrs['model']}.toml"
        p.write_text(str(attrs["spec_toml"]), encoding="utf-8")
        spec = load_spec(p)
    object.__setattr__(spec, "path", f"{path}#spec")
    return Fit(spec=spec, idata=idata, summary=summarise(spec, idata), diagnostics=diagnose(idata))


def describe_spec(name_or_path: str | Path) -> str:
    """A readable account of one spec: structure, priors with their reasons, notes."""
    s = load_spec(name_or_path)
    lines = [
        f"{s.name}: {s.description}",
        f"  file: {s.path}",
        f"  outcome {s.outcome}, family {s.family}, link {s.link} (exp(coef) = {s.ratio})",
        f"  predictors: {', '.join(s.predictors) or 'none'}",
        f"  stratum intercepts: {s.stratum_intercepts}"
        + (f" ({s.intercept_parameterisation})" if s.pooled_strata else "")
        + (f"; varying slopes ({s.slope_parameterisation})" if s.varying_slopes else ""),
    ]
    if s.published:
        lines.append(
            f"  published: Table 3, analysis {s.published['analysis']}, adjusted for size: "
            f"{s.published['adjusted_for_size']}"
        )
    lines.append("  priors:")
    for k, p in s.priors.items():
        par = ", ".join(f"{a}={v:g}" for a, v in p.params.items())
        lines.append(f"    {k} ~ {p.dist}({par}): {p.reason}")
    if s.note:
        lines.append(f"  note: {s.note}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# g-computation prevalence ratios, comparison with the paper
# --------------------------------------------------------------------------------------------
PR_COLUMNS = ["term", "scope", "estimate", "ci_low", "ci_high", "risk1", "risk0"]


def frame_populations() -> dict[str, float]:
    """Agencies in each sampling frame (``data/published/sampling_frames.csv``)."""
    path = PUBLISHED_DIR / "sampling_frames.csv"
    t = pd.read_csv(path)
    return {str(r.stratum): float(r.population) for r in t.itertuples()}


def prevalence_ratios(
    fit: Fit, df: pd.DataFrame, *, frame_weights: bool | Mapping[str, float] | None = None
) -> pd.DataFrame:
    """Prevalence ratios by g-computation from a posterior of ``any_cst``.

    For each approach, the average predicted risk with the approach set to 1 for every agency
    divided by the average with it set to 0 (for ``n_approaches``: every agency's count plus
    one vs as observed), per posterior draw; median and 95% equal-tailed interval. This is
    the proper PR of the logistic model, unlike the working Poisson likelihood.

    Parameters
    ----------
    fit
        A fit of a model of ``any_cst`` with predictors.
    df
        The agencies to average over (usually the data of the fit).
    frame_weights
        None/False: average over the sample (``scope = "sample"``). True: over the national
        frame, each agency standing for ``population / respondents`` of its stratum
        (``sampling_frames.csv``; ``scope = "frame"``). A mapping stratum -> population
        uses those populations instead.

    Returns
    -------
    DataFrame[term, scope, estimate, ci_low, ci_high, risk1, risk0]
        ``risk1``/``risk0`` are posterior medians of the two average risks.
    """
    spec = fit.spec
    if spec.outcome != OUTCOME or not spec.predictors:
        raise InputError(
            f"prevalence ratios need a model of {OUTCOME} with predictors; {spec.name} is not one",
            column="model",
        )
    if frame_weights:
        pops = frame_populations() if frame_weights is True else dict(frame_weights)
        s = df[STRATUM].astype(str)
        counts = s.value_counts()
        missing = sorted(set(s) - set(pops))
        if missing:
            raise InputError(f"no frame population for strata {missing}", column=STRATUM)
        w = s.map(lambda v: pops[v] / counts[v]).to_numpy(dtype=float)
        scope = "frame"
    else:
        w = np.ones(len(df))
        scope = "sample"
    w = w / w.sum()
    rows = []
    for term in spec.predictors:
        if term == COUNT:
            base = (
                df.assign(**{COUNT: df[list(APPROACHES)].sum(axis=1)})
                if COUNT not in df.columns
                else df
            )
            d1, d0 = base.assign(**{COUNT: base[COUNT] + 1}), base
        else:
            d1, d0 = df.assign(**{term: 1}), df.assign(**{term: 0})
        r1 = predict_risk(fit, d1) @ w
        r0 = predict_risk(fit, d0) @ w
        q = np.quantile(r1 / r0, [0.5, 0.025, 0.975])
        rows.append(
            dict(
                term=term,
                scope=scope,
                estimate=q[0],
                ci_low=q[1],
                ci_high=q[2],
                risk1=float(np.median(r1)),
                risk0=float(np.median(r0)),
            )
        )
    return pd.DataFrame(rows, columns=PR_COLUMNS)


COMPARE_COLUMNS = [
    "analysis",
    "adjusted_for_size",
    "term",
    "measure",
    "bayes_estimate",
    "bayes_ci_low",
    "bayes_ci_high",
    "published_or",
    "published_ci_low",
    "published_ci_high",
    "freq_link",
    "freq_estimate",
    "freq_ci_low",
    "freq_ci_high",
    "published_in_bayes_ci",
]


def compare_published(fit: Fit, df: pd.DataFrame) -> pd.DataFrame:
    """Posterior median ratios with 95% intervals beside published Table 3 and the frequentist refit.

    The frequentist refit is :func:`cst_bayes.frequentist.table3` on the same data with the
    spec's link (logistic ORs, or Poisson-GLM risk ratios for the log-link specs); the
    published numbers are the ORs of ``table3_odds_ratios.csv``.

    Returns
    -------
    DataFrame
        Columns ``analysis, adjusted_for_size, term, measure, bayes_estimate, bayes_ci_low,
        bayes_ci_high, published_or, published_ci_low, published_ci_high, freq_link,
        freq_estimate, freq_ci_low, freq_ci_high, published_in_bayes_ci``.
    """
    spec = fit.spec
    if not spec.published:
        raise InputError(
            f"model {spec.name} has no published counterpart ([published] table in its spec)",
            path=spec.path,
            column="published",
        )
    an, adj = int(spec.published["analysis"]), str(spec.published["adjusted_for_size"])
    pub = pd.read_csv(PUBLISHED_DIR / "table3_odds_ratios.csv", dtype={"adjusted_for_size": str})
    pub = pub[(pub["analysis"] == an) & (pub["adjusted_for_size"] == adj)].set_index("term")
    link = spec.link
    try:
        from cst_bayes.frequentist import table3

        fr = table3(df, link=link)
        fr = fr[
            (fr["analysis"] == an) & (fr["adjusted_for_size"] == adj) & (fr["link"] == link)
        ].set_index("term")
    except ImportError:
        fr = pd.DataFrame(columns=["estimate", "ci_low", "ci_high"])
    rows = []
    for r in fit.summary.itertuples():
        if "[" in r.term and not r.term.startswith("stratum["):
            continue  # stratum-specific slopes have no published counterpart
        p = pub.loc[r.term] if r.term in pub.index else None
        f = fr.loc[r.term] if r.term in fr.index else None
        po = float(p["or"]) if p is not None else np.nan
        rows.append(
            dict(
                analysis=an,
                adjusted_for_size=adj,
                term=r.term,
                measure=spec.ratio,
                bayes_estimate=r.estimate,
                bayes_ci_low=r.ci_low,
                bayes_ci_high=r.ci_high,
                published_or=po,
                published_ci_low=float(p["ci_low"]) if p is not None else np.nan,
                published_ci_high=float(p["ci_high"]) if p is not None else np.nan,
                freq_link=link,
                freq_estimate=float(f["estimate"]) if f is not None else np.nan,
                freq_ci_low=float(f["ci_low"]) if f is not None else np.nan,
                freq_ci_high=float(f["ci_high"]) if f is not None else np.nan,
                published_in_bayes_ci=bool(r.ci_low <= po <= r.ci_high)
                if np.isfinite(po)
                else None,
            )
        )
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def write_comparison(fit: Fit, df: pd.DataFrame, out_dir: str | Path) -> Path:
    """Write ``DIR/MODEL-vs-published.csv`` (atomically) from :func:`compare_published`."""
    from cst_bayes.core.fileio import write_csv

    comment = None
    if df.attrs.get("synthetic"):
        from cst_bayes.core.config import SYNTHETIC_BANNER

        comment = SYNTHETIC_BANNER
    return write_csv(
        Path(out_dir) / f"{fit.spec.name}-vs-published.csv",
        compare_published(fit, df),
        header_comment=comment,
    )
