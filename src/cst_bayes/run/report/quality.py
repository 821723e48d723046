"""Is the run fit to read? Sampler diagnostics per model, the red banner naming fits that fail
their own thresholds, and the BARG checklist (Kruschke 2021) decided by the files a run holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cst_bayes.bayes.convergence import (
    BFMI_MIN,
    ESS_MIN,
    EXTEND_TARGET_ACCEPT,
    EXTEND_THIN,
    RHAT_MAX,
)
from cst_bayes.run.report.base import Block, Section, num, read_csv, read_json, true
from cst_bayes.run.report.extra import bounds_source
from cst_bayes.weighting.stage import fit_label

THRESHOLDS_TEXT = (
    f"R-hat &le; {RHAT_MAX}, bulk and tail ESS &ge; {ESS_MIN}, no divergences, BFMI &ge; {BFMI_MIN}"
)
EXTENSION_TEXT = (
    f"A fit that fails a threshold is sampled once more: fresh warm-up, {EXTEND_THIN} times the "
    f"draws, every {EXTEND_THIN}th kept (so it keeps its number of draws), target acceptance "
    f"{EXTEND_TARGET_ACCEPT}. Only the second run's draws are used. A fit that still fails is "
    "named under 'problems'."
)
DIAG_COLUMNS = [
    "model",
    "divergences",
    "max_r_hat",
    "min_ess_bulk",
    "min_ess_tail",
    "min_bfmi",
    "problems",
    "extended",
    "seconds",
]
#: Pass/fail flags of a pooled fit's members -> (number they stand for, problem text).
_FLAGS = {
    "ok_divergences": ("divergences", "divergences"),
    "ok_r_hat": ("max_r_hat", f"R-hat > {RHAT_MAX}"),
    "ok_ess_bulk": ("min_ess_bulk", f"bulk ESS < {ESS_MIN}"),
    "ok_ess_tail": ("min_ess_tail", f"tail ESS < {ESS_MIN}"),
    "ok_bfmi": ("min_bfmi", f"BFMI < {BFMI_MIN}"),
}


def _worst(values: list[Any], how: str) -> float:
    v = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").dropna()
    if v.empty:
        return float("nan")
    return float(v.max() if how == "max" else v.min())


def extended_text(d: dict[str, Any]) -> str:
    """Which fits were extended once (:func:`cst_bayes.bayes.convergence.extension_plan`), e.g.
    ``reconstruction-001 x3, reconstruction-016 x4``; empty when none."""
    ext = d.get("members_extended") or {}
    if ext:
        return ", ".join(f"{m} x{k}" for m, k in ext.items())
    k = int(d.get("extended_thin") or 1)
    return f"x{k}" if k > 1 else ""


def model_diagnostics(run_dir: Path, names: list[str] | None = None) -> pd.DataFrame:
    """One row per fitted model: divergences, worst R-hat, ESS and BFMI, and the thresholds it
    fails (``problems``, empty when none). R-hat and ESS are the worst of the sampler's
    diagnostics (every parameter) and the summary (every reported term)."""
    mdir = run_dir / "models"
    if names is None:
        names = sorted(p.parent.name for p in mdir.glob("*/summary.csv")) if mdir.is_dir() else []
    rows = []
    for name in names:
        man = read_json(mdir / name / "manifest.json") or {}
        d = (man.get("info") or {}).get("diagnostics") or {}
        summ = read_csv(mdir / name / "summary.csv")

        def col(c: str, summ: pd.DataFrame | None = summ) -> list[Any]:
            return list(num(summ[c])) if summ is not None and c in summ else []

        r = {
            "model": name,
            "divergences": _worst([d.get("divergences")], "max"),
            "max_r_hat": _worst([d.get("max_r_hat"), *col("r_hat")], "max"),
            "min_ess_bulk": _worst([d.get("min_ess_bulk"), *col("ess_bulk")], "min"),
            "min_ess_tail": _worst([d.get("min_ess_tail"), *col("ess_tail")], "min"),
            "min_bfmi": _worst([d.get("min_bfmi")], "min"),
            "seconds": man.get("seconds", ""),
        }
        probs = []
        if r["divergences"] > 0:
            probs.append(f"{r['divergences']:.0f} divergences")
        if r["max_r_hat"] > RHAT_MAX:
            probs.append(f"R-hat {r['max_r_hat']:.3f} > {RHAT_MAX}")
        if r["min_ess_bulk"] < ESS_MIN:
            probs.append(f"bulk ESS {r['min_ess_bulk']:.0f} < {ESS_MIN}")
        if r["min_ess_tail"] < ESS_MIN:
            probs.append(f"tail ESS {r['min_ess_tail']:.0f} < {ESS_MIN}")
        if r["min_bfmi"] < BFMI_MIN:
            probs.append(f"BFMI {r['min_bfmi']:.2f} < {BFMI_MIN}")
        # files of runs that recorded only whether every member passed each check
        for flag, (key, text) in _FLAGS.items():
            if d.get(flag) is False and np.isnan(r[key]):
                probs.append(text + " (some member)")
        per = d.get("member_messages") or {}
        if per:
            probs.extend(f"{m}: {msg}" for m, msg in per.items())
        elif d.get("members_with_trouble"):
            probs.append(
                "trouble in members " + ", ".join(str(m) for m in d["members_with_trouble"])
            )
        r["problems"] = "; ".join(probs)
        r["extended"] = extended_text(d)
        rows.append(r)
    return pd.DataFrame(rows, columns=DIAG_COLUMNS)


def weighting_diagnostics(run_dir: Path) -> pd.DataFrame | None:
    """``weights/mcmc_diagnostics.csv`` (one row per MCMC fit of the weighting stage), or None
    when the run made none."""
    return read_csv(run_dir / "weights" / "mcmc_diagnostics.csv")


def weighting_failures(run_dir: Path) -> pd.DataFrame:
    """The weighting stage's MCMC fits that fail a threshold (empty when none)."""
    t = weighting_diagnostics(run_dir)
    if t is None or t.empty:
        return pd.DataFrame()
    return t[~true(t["ok"])]


def failure_banner(run_dir: Path) -> str | None:
    """The red banner's text when some fit fails its own diagnostics, else None."""
    t = model_diagnostics(run_dir)
    bad = t[t["problems"] != ""]
    wbad = weighting_failures(run_dir)
    if bad.empty and wbad.empty:
        return None
    parts = [f"{r.model} ({r.problems})" for r in bad.itertuples(index=False)]
    if not wbad.empty:
        n = len(weighting_diagnostics(run_dir))  # type: ignore[arg-type]
        what = "; ".join(f"{fit_label(r)}: {r['messages']}" for r in wbad.to_dict("records"))
        parts.append(f"weighting: {len(wbad)} of {n} MCMC fits ({what})")
    return (
        f"SAMPLER DIAGNOSTICS FAILED for {len(bad)} of {len(t)} model(s)"
        + (" and in the weighting stage" if not wbad.empty else "")
        + ": "
        + "; ".join(parts)
        + f". Thresholds: R-hat <= {RHAT_MAX}, bulk and tail ESS >= {ESS_MIN}, no divergences, "
        f"BFMI >= {BFMI_MIN}. Their posterior numbers are not reliable until a rerun with more "
        "draws, or a reparameterised model, passes."
    )


# --------------------------------------------------------------------------- BARG checklist


def _any(run_dir: Path, pattern: str) -> bool:
    return any(run_dir.glob(pattern))


def _summaries_with(run_dir: Path, column: str) -> bool:
    for p in run_dir.glob("models/*/summary.csv"):
        t = read_csv(p)
        if t is not None and column in t.columns:
            return True
    return False


def barg_items(run_dir: Path, sections: list[Section]) -> list[dict[str, str]]:
    """The BARG steps (Kruschke 2021, Table 1) with what this run holds for each.

    Each item: ``step``, ``item``, ``status`` (``done`` / ``not done`` / ``done: fails its
    thresholds``), ``section`` (anchor id of the section meeting it, empty when not done) and
    ``evidence`` (the files that decide it).
    """
    ids = {s.id for s in sections}
    diag = model_diagnostics(run_dir)
    fitted = len(diag) > 0
    diag_status = (
        "not done"
        if not fitted
        else ("done" if (diag["problems"] == "").all() else "done: fails its thresholds")
    )
    checks = [
        ("1", "Explain the model: data, likelihood, priors with reasons", fitted and _any(run_dir, "models/*/spec.toml"), "models", "models/*/spec.toml"),
        ("1", "Prior predictive check", _any(run_dir, "prior_check/*/prior_check.csv"), "models", "prior_check/*/prior_check.csv"),
        ("2", "MCMC diagnostics: R-hat, ESS, divergences, BFMI", fitted, "diagnostics", "models/*/manifest.json"),
        ("3", "Posterior: medians and 95% intervals of every reported quantity", fitted, "results", "models/*/summary.csv"),
        ("3", "Posterior predictive check", _any(run_dir, "ppc/*/ppc.csv"), "ppc", "ppc/*/ppc.csv"),
        ("4", "Decisions: P(ratio > 1), ROPE probability, Monte Carlo error", _summaries_with(run_dir, "p_gt_1"), "results", "p_gt_1 in models/*/summary.csv"),
        ("5", "Prior sensitivity (power-scaling)", _any(run_dir, "psense/*/psense.csv"), "models", "psense/*/psense.csv"),
        ("5", "Sensitivity to the prior scales (each slot x0.5, x2)", _any(run_dir, "prior_scale/*/prior_scale.csv"), "models", "prior_scale/*/prior_scale.csv"),
        ("5", "Sensitivity to weighting and nonresponse", (run_dir / "weights").is_dir(), "weights", "weights/"),
        ("5", "What the published tables leave open (reconstruction bounds)", bounds_source(run_dir) is not None, "bounds", "data/bounds.csv"),
        ("5", "Model comparison (PSIS-LOO, stacking)", (run_dir / "compare" / "loo.csv").is_file(), "comparison", "compare/loo.csv"),
        ("6", "Reproducibility: code version, seeds, data and spec hashes, packages", (run_dir / "run.json").is_file(), "environment", "run.json"),
    ]  # fmt: skip
    out = []
    for step, item, done, sid, evidence in checks:
        status = "done" if done else "not done"
        if sid == "diagnostics" and done:
            status = diag_status
        out.append(
            {
                "step": step,
                "item": item,
                "status": status,
                "section": sid if done and sid in ids else "",
                "evidence": evidence,
            }
        )
    return out


def section_checklist(run_dir: Path, sections: list[Section]) -> Section:
    sec = Section("barg", "BARG checklist")
    items = barg_items(run_dir, sections)
    n = sum(i["status"] != "not done" for i in items)
    sec.p(
        f"Bayesian Analysis Reporting Guidelines (Kruschke 2021, <i>Nature Human Behaviour</i> "
        f"5:1282), steps 1-6: {n} of {len(items)} items done in this run. An item is done when "
        "the run folder holds the files named under 'evidence'."
    )
    titles = {s.id: s.title for s in sections}
    for i in items:
        i["title"] = titles.get(i["section"], "")
    sec.blocks.append(Block("checklist", rows=items))
    return sec


def checklist_frame(items: list[dict[str, str]]) -> pd.DataFrame:
    """The checklist as a plain table (tests, CSV)."""
    return pd.DataFrame(items, columns=["step", "item", "status", "section", "evidence"]).replace(
        {np.nan: ""}
    )
