"""Model specs: one TOML file per model (``models/NAME.toml``), validated into a :class:`ModelSpec`.

Two ways to say what the linear predictor is:

* ``predictors = [...]`` plus a ``[hierarchy]`` table (the shipped specs);
* ``formula = "any_cst ~ court + victim_service:task_force + (1 | stratum)"`` (formulae's
  syntax, as bambi): main effects, interactions, any data column, fixed strata (``stratum`` as
  a term), partially pooled strata (``(1 | stratum)``) and varying slopes
  (``(victim_service | stratum)``). ``[hierarchy]`` then only holds parameterisations.

Every error is a :class:`~cst_bayes.core.errors.SpecError` naming the file and the key.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pandas as pd

from cst_bayes.bayes.families import (
    FAMILIES,
    FAMILY_LINKS,
    OUTCOME_FAMILIES,
    PRIOR_DISTS,
    PRIOR_SLOTS,
    Parameterisation,
)
from cst_bayes.core.config import APPROACHES, COUNT, MODELS_DIR, OUTCOME, STRATUM
from cst_bayes.core.errors import SpecError

#: Stratum terms: none, partially pooled intercepts, or fixed effects (dummies, reference 1-49).
POOLING = ("none", "partial_pooling", "fixed")
_TOP_KEYS = {"model", "hierarchy", "priors", "published"}
_MODEL_KEYS = {"name", "description", "outcome", "family", "link", "predictors", "formula", "note"}
_HIER_KEYS = {
    "stratum_intercepts",
    "intercept_parameterisation",
    "varying_slopes",
    "slope_parameterisation",
}
_PUB_KEYS = {"table", "analysis", "adjusted_for_size", "link"}


@dataclass(frozen=True)
class Prior:
    """One prior: distribution name, its parameters and the one-line reason for it."""

    dist: str
    params: dict[str, float]
    reason: str

    def scaled(self, factor: float) -> Prior:
        """The prior of ``factor`` times the parameter's scale, location kept.

        normal / student_t / halfnormal / halfstudent_t: ``sigma`` x factor; exponential:
        ``lam`` / factor; gamma: ``beta`` / factor (the distribution of factor x the variable).
        """
        if factor == 1.0:
            return self
        p = dict(self.params)
        if "sigma" in p:
            p["sigma"] *= factor
        elif self.dist == "exponential":
            p["lam"] /= factor
        elif self.dist == "gamma":
            p["beta"] /= factor
        return Prior(self.dist, p, self.reason)


@dataclass(frozen=True)
class ModelSpec:
    """A validated model spec (see ``docs/models.md`` for the TOML format).

    For formula specs ``predictors`` holds the formula's fixed terms (``"victim_service:task_force"``,
    ``"stratum"``), ``slopes`` the terms whose effect varies by stratum, and ``priors`` may hold
    per-term priors keyed by term name beside the slot priors.
    """

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
    formula: str = ""
    slopes: tuple[str, ...] = ()

    @property
    def hash(self) -> str:
        """SHA-256 of the spec file's text (provenance)."""
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def pooled_strata(self) -> bool:
        return self.stratum_intercepts == "partial_pooling"

    @property
    def predictor_dim(self) -> str:
        """Name of the coefficient dimension: ``approach`` / ``predictor``, ``term`` for formulas."""
        if self.formula:
            return "term"
        return (
            "approach"
            if self.predictors and set(self.predictors) <= set(APPROACHES)
            else "predictor"
        )

    @property
    def ratio(self) -> str:
        """What exp(coefficient) is: OR for logit, PR (or rate ratio) for log link."""
        return "OR" if self.link == "logit" else "PR"

    def term_prior(self, term: str) -> Prior:
        """The prior of a fixed term's coefficients: its own entry, else the ``beta`` class prior."""
        return self.priors.get(term, self.priors.get("beta"))  # type: ignore[return-value]


def spec_path(name_or_path: str | Path) -> Path:
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


def _check_param(key: str, n: str, v: Any, path: Path) -> float:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v):
        raise SpecError(
            f"parameter {n!r} must be a finite number, got {v!r}", path=path, column=f"{key}.{n}"
        )
    if n != "mu" and v <= 0:
        raise SpecError(
            f"parameter {n!r} must be positive, got {v!r}", path=path, column=f"{key}.{n}"
        )
    return float(v)


def parse_prior(slot: str, raw: Any, path: Path, allowed: tuple[str, ...] | None = None) -> Prior:
    """One ``[priors.SLOT]`` table -> :class:`Prior` (distribution allowed for the slot, reason)."""
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
    allowed = allowed or PRIOR_SLOTS[slot]
    if dist not in allowed:
        raise SpecError(
            f"distribution {dist!r} is not allowed for {slot} (allowed: {list(allowed)})",
            path=path,
            column=f"{key}.dist",
        )
    names = PRIOR_DISTS[dist]
    _check_keys(raw, {"dist", "reason", *names}, key, path)
    params: dict[str, float] = {}
    for n in names:
        if n not in raw:
            raise SpecError(f"prior {dist} needs parameter {n!r}", path=path, column=f"{key}.{n}")
        params[n] = _check_param(key, n, raw[n], path)
    reason = raw.get("reason", "")
    if not isinstance(reason, str) or not reason.strip():
        raise SpecError("every prior needs a one-line reason", path=path, column=f"{key}.reason")
    return Prior(dist, params, reason.strip())


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        known = ", ".join(list_specs()["name"]) if MODELS_DIR.exists() else ""
        raise SpecError(f"no such model spec (known: {known})", path=path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"not valid TOML: {exc}", path=path) from None


def _family_and_link(m: Mapping[str, Any], outcome: str, path: Path) -> tuple[str, str]:
    family, link = m["family"], m["link"]
    if outcome not in OUTCOME_FAMILIES:
        raise SpecError(
            f"unknown outcome {outcome!r} (known: {list(OUTCOME_FAMILIES)})",
            path=path,
            column="model.outcome",
        )
    if family not in FAMILIES:
        raise SpecError(
            f"unknown family {family!r} (known: {list(FAMILIES)})", path=path, column="model.family"
        )
    if link not in ("logit", "log"):
        raise SpecError(
            f"unknown link {link!r} (known: ['logit', 'log'])", path=path, column="model.link"
        )
    if family not in OUTCOME_FAMILIES[outcome]:
        raise SpecError(
            f"family {family!r} does not fit outcome {outcome!r} (allowed: {list(OUTCOME_FAMILIES[outcome])})",
            path=path,
            column="model.family",
        )
    if link not in FAMILY_LINKS[family]:
        hint = (
            " (the log-binomial model is family = 'logbinomial')" if family == "bernoulli" else ""
        )
        raise SpecError(
            f"link {link!r} is not offered for family {family!r} (allowed: {list(FAMILY_LINKS[family])}){hint}",
            path=path,
            column="model.link",
        )
    return family, link


def _predictors(m: Mapping[str, Any], outcome: str, path: Path) -> tuple[str, ...]:
    preds = m.get("predictors", [])
    if not isinstance(preds, list) or not all(isinstance(p, str) for p in preds):
        raise SpecError(
            "predictors must be a list of column names", path=path, column="model.predictors"
        )
    allowed = (*APPROACHES, COUNT) if outcome == OUTCOME else ()
    for p in preds:
        if p not in allowed:
            raise SpecError(
                f"unknown predictor {p!r} for outcome {outcome!r} (allowed: {list(allowed)}); "
                "interactions and other columns: use formula = '...'",
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
    return tuple(preds)


def _parameterisations(h: Mapping[str, Any], path: Path) -> tuple[str, str]:
    ip = h.get("intercept_parameterisation", "centered")
    sp = h.get("slope_parameterisation", "noncentered")
    for key, v in (("intercept_parameterisation", ip), ("slope_parameterisation", sp)):
        if v not in get_args(Parameterisation):
            raise SpecError(
                f"unknown {key} {v!r} (known: {list(get_args(Parameterisation))})",
                path=path,
                column=f"hierarchy.{key}",
            )
    return ip, sp


def _hierarchy(h: Mapping[str, Any], preds: tuple[str, ...], path: Path) -> tuple[str, bool]:
    si = h.get("stratum_intercepts", "none")
    if si not in POOLING:
        raise SpecError(
            f"unknown stratum_intercepts {si!r} (known: {list(POOLING)})",
            path=path,
            column="hierarchy.stratum_intercepts",
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
    return si, vs


def parse_formula(formula: Any, path: Path) -> tuple[str, tuple[str, ...], str, tuple[str, ...]]:
    """``formula`` -> (outcome, fixed terms, stratum pooling, varying-slope terms).

    Only ``stratum`` may group (``(1 | stratum)``, ``(TERM | stratum)``); the model always has
    an intercept (the stratum intercepts' mean when they are pooled).
    """
    key = "model.formula"
    if not isinstance(formula, str) or "~" not in formula:
        raise SpecError("formula must be a string 'outcome ~ terms'", path=path, column=key)
    from formulae import model_description

    try:
        d = model_description(formula)
    except Exception as exc:  # formulae raises its own parse errors
        raise SpecError(f"cannot parse formula ({exc})", path=path, column=key) from None
    outcome = d.response.term.name if d.response is not None else ""
    fixed: list[str] = []
    slopes: list[str] = []
    pooled = has_intercept = False
    for t in d.terms:
        kind = type(t).__name__
        if kind == "Intercept":
            has_intercept = True
        elif kind == "GroupSpecificTerm":
            factor = getattr(t.factor, "name", str(t.factor))
            if factor != STRATUM:
                raise SpecError(
                    f"only {STRATUM!r} may group terms, got {factor!r}", path=path, column=key
                )
            if type(t.expr).__name__ == "Intercept":
                pooled = True
            else:
                slopes.append(t.expr.name)
        else:
            fixed.append(t.name)
    if not has_intercept:
        raise SpecError(
            "the model always has an intercept: drop '0 +' / '- 1'", path=path, column=key
        )
    for s in slopes:
        if s not in fixed:
            raise SpecError(
                f"varying slope {s!r} needs {s!r} as a fixed term too (its common effect)",
                path=path,
                column=key,
            )
    if slopes and not pooled:
        raise SpecError("varying slopes need (1 | stratum)", path=path, column=key)
    if pooled and STRATUM in fixed:
        raise SpecError(
            "stratum both fixed and partially pooled: choose 'stratum' or '(1 | stratum)'",
            path=path,
            column=key,
        )
    si = "partial_pooling" if pooled else "fixed" if STRATUM in fixed else "none"
    return outcome, tuple(fixed), si, tuple(slopes)


def _priors(
    pr: Any, needed: set[str], terms: tuple[str, ...], formula: bool, path: Path
) -> dict[str, Prior]:
    if not isinstance(pr, Mapping):
        raise SpecError("[priors] must be a table", path=path, column="priors")
    for k in pr:
        if formula and k in terms:
            continue
        if k not in PRIOR_SLOTS:
            extra = " or a term of the formula" if formula else ""
            raise SpecError(
                f"unknown prior {k!r} (known: {sorted(PRIOR_SLOTS)}{extra})",
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
    out = {k: parse_prior(k, pr[k], path) for k in sorted(needed)}
    for k in terms:
        if k in pr:
            out[k] = parse_prior(k, pr[k], path, allowed=PRIOR_SLOTS["beta"])
    return out


def _published(pub: Any, path: Path) -> dict[str, Any] | None:
    if pub is None:
        return None
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
    return dict(pub)


def load_spec(name_or_path: str | Path) -> ModelSpec:
    """Load and validate a model spec by name (``models/NAME.toml``) or path.

    Raises
    ------
    SpecError
        Naming the file and the key: unknown keys, outcome, predictors or formula terms,
        family, link, hierarchy options or priors; missing or superfluous priors.
    """
    path = spec_path(name_or_path)
    raw = _read_toml(path)
    _check_keys(raw, _TOP_KEYS, "top level", path)
    m = raw.get("model")
    if not isinstance(m, Mapping):
        raise SpecError("missing [model] table", path=path, column="model")
    _check_keys(m, _MODEL_KEYS, "model", path)
    formula = m.get("formula", "")
    for k in ("name", "family", "link") + (() if formula else ("outcome",)):
        if not isinstance(m.get(k), str):
            raise SpecError(f"[model] needs a string {k!r}", path=path, column=f"model.{k}")
    h = raw.get("hierarchy", {})
    _check_keys(h, _HIER_KEYS, "hierarchy", path)
    ip, sp = _parameterisations(h, path)
    if formula:
        clash = [k for k in ("predictors",) if k in m] + [
            f"hierarchy.{k}" for k in ("stratum_intercepts", "varying_slopes") if k in h
        ]
        if clash:
            raise SpecError(
                f"{clash[0]} and formula say the same thing twice: keep the formula",
                path=path,
                column=clash[0] if "." in clash[0] else f"model.{clash[0]}",
            )
        outcome, preds, si, slopes = parse_formula(formula, path)
        if m.get("outcome", outcome) != outcome:
            raise SpecError(
                f"outcome {m['outcome']!r} differs from the formula's {outcome!r}",
                path=path,
                column="model.outcome",
            )
        vs = bool(slopes)
    else:
        outcome = m["outcome"]
        preds = ()
    family, link = _family_and_link(m, outcome, path)
    if not formula:
        preds = _predictors(m, outcome, path)
        si, vs = _hierarchy(h, preds, path)
        slopes = preds if vs else ()
    needed = {"intercept", *FAMILIES[family].extra}
    if preds or si == "fixed":
        needed.add("beta")
    if si == "partial_pooling":
        needed.add("sigma_stratum")
    if vs:
        needed.add("sigma_slope")
    priors = _priors(raw.get("priors", {}), needed, preds, bool(formula), path)
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
        published=_published(raw.get("published"), path),
        note=str(m.get("note", "")),
        path=str(path),
        text=path.read_text(encoding="utf-8"),
        formula=str(formula),
        slopes=tuple(slopes),
    )


def spec_from_text(text: str, name: str, origin: str) -> ModelSpec:
    """Rebuild a spec from its TOML text (as stored in a fit file); ``path`` records ``origin``."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"{name}.toml"
        p.write_text(text, encoding="utf-8")
        spec = load_spec(p)
    object.__setattr__(spec, "path", origin)
    return spec


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


def describe_spec(name_or_path: str | Path) -> str:
    """A readable account of one spec: structure, priors with their reasons, notes."""
    s = load_spec(name_or_path)
    lines = [
        f"{s.name}: {s.description}",
        f"  file: {s.path}",
        f"  outcome {s.outcome}, family {s.family}, link {s.link} (exp(coef) = {s.ratio})",
    ]
    if s.formula:
        lines.append(f"  formula: {s.formula}")
    lines += [
        f"  predictors: {', '.join(s.predictors) or 'none'}",
        f"  stratum intercepts: {s.stratum_intercepts}"
        + (f" ({s.intercept_parameterisation})" if s.pooled_strata else "")
        + (
            f"; varying slopes of {', '.join(s.slopes)} ({s.slope_parameterisation})"
            if s.varying_slopes
            else ""
        ),
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
