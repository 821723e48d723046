"""Derived quantities: predictions, replicates, g-computation prevalence ratios, Table 3.

Every derived quantity goes through the spec's design: setting an approach to 0 or 1 rebuilds
the design matrix from the formula, so interaction and product terms (``victim_service:task_force``)
move with it, and fixed stratum dummies stay those of each agency.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cst_bayes.bayes import families as fam
from cst_bayes.bayes.design import design
from cst_bayes.bayes.fit import Fit, _kappa, fit_columns, fit_levels, linear_predictor
from cst_bayes.core.config import APPROACHES, COUNT, OUTCOME, STRATUM
from cst_bayes.core.errors import InputError
from cst_bayes.core.provenance import status_of


def _eta_for(fit: Fit, newdata: pd.DataFrame) -> np.ndarray:
    """Linear predictor (draws, rows) of new agency rows through the fit's own design."""
    nd = newdata
    if COUNT not in nd.columns and set(APPROACHES) <= set(nd.columns):
        nd = nd.assign(**{COUNT: nd[list(APPROACHES)].sum(axis=1)})
    dz = design(fit.spec, nd, fit_levels(fit.idata))
    cols = fit_columns(fit.idata)
    if dz.columns != cols:
        raise InputError(
            f"new data give design columns {list(dz.columns)}, the fit has {list(cols)}",
            path=newdata.attrs.get("source"),
        )
    return linear_predictor(fit.spec, fit.idata, dz.codes, dz.X, fit.xbar, dz.columns)


def predict_risk(fit: Fit, newdata: pd.DataFrame) -> np.ndarray:
    """Posterior mean outcome for arbitrary agency rows: (chain*draw, rows).

    P(any_cst = 1) for the logistic and log-binomial models; exp(eta) for the Poisson models of
    any_cst (a working-likelihood "risk" that can exceed 1); the mean count (0-9) for count
    models. ``newdata`` needs ``stratum`` and the columns the model uses (``n_approaches`` is
    derived from the approaches when absent).
    """
    return fam.mean_from_eta(fit.spec.family, fit.spec.link, _eta_for(fit, newdata))


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
    eta = _eta_for(fit, df)[idx]
    return fam.draw_outcome(
        fit.spec.family, fit.spec.link, eta, rng, _kappa(fit.spec, fit.idata, idx)
    )


def switchable_terms(fit: Fit, df: pd.DataFrame) -> list[str]:
    """The data columns a prevalence ratio can switch: the approaches (or ``n_approaches``) the
    model uses, and for a formula every 0/1 column it names."""
    spec = fit.spec
    if not spec.formula:
        return [t for t in spec.predictors]
    from formulae import model_description

    names = model_description(spec.formula).var_names - {spec.outcome, STRATUM}
    out = []
    for c in sorted(names, key=lambda c: (c not in APPROACHES, c)):
        if c == COUNT or (c in df.columns and set(pd.unique(df[c].dropna())) <= {0, 1}):
            out.append(c)
    return out


PR_COLUMNS = ["term", "scope", "estimate", "ci_low", "ci_high", "risk1", "risk0"]


def frame_populations() -> dict[str, float]:
    """Agencies in each sampling frame (``data/published/sampling_frames.csv``)."""
    from cst_bayes.data.published import load_sampling_frames

    t = load_sampling_frames()
    return {str(s): float(v) for s, v in zip(t["stratum"], t["population"])}


def prevalence_ratios(
    fit: Fit,
    df: pd.DataFrame,
    *,
    frame_weights: bool | Mapping[str, float] | None = None,
    terms: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Prevalence ratios by g-computation from a posterior of ``any_cst``.

    For each approach, the average predicted risk with the approach set to 1 for every agency
    divided by the average with it set to 0 (set in the data and passed through the spec's
    design, so interaction terms that contain it move with it) (for ``n_approaches``: every agency's count plus
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
    terms
        The 0/1 columns (or ``n_approaches``) to switch; default :func:`switchable_terms`.

    Returns
    -------
    DataFrame[term, scope, estimate, ci_low, ci_high, risk1, risk0]
        ``risk1``/``risk0`` are posterior medians of the two average risks.
    """
    spec = fit.spec
    if spec.outcome != OUTCOME or not fit_columns(fit.idata):
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
    for term in terms if terms is not None else switchable_terms(fit, df):
        if term != COUNT and term not in df.columns:
            raise InputError(f"no column {term!r} to switch", column=term)
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
    from cst_bayes.data.published import load_table3

    pub = load_table3()
    pub = pub[(pub["analysis"] == an) & (pub["adjusted_for_size"] == adj)].set_index("term")
    link = spec.link
    from cst_bayes.frequentist import table3

    fr = table3(df, link=link)  # type: ignore[arg-type]  # a spec link is "logit" | "log"
    fr = fr[
        (fr["analysis"] == an) & (fr["adjusted_for_size"] == adj) & (fr["link"] == link)
    ].set_index("term")
    rows = []
    summary: Any = fit.summary
    for r in summary.itertuples():
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


def write_vs_published(fit: Fit, df: pd.DataFrame, out_dir: str | Path) -> Path:
    """Write ``DIR/MODEL-vs-published.csv`` (atomically) from :func:`compare_published`."""
    from cst_bayes.core.fileio import write_csv

    return write_csv(
        Path(out_dir) / f"{fit.spec.name}-vs-published.csv",
        compare_published(fit, df),
        status=status_of(df),
        notes=f"posterior of {fit.spec.name} beside published Table 3 and the frequentist refit",
    )


PR_COMPARE_COLUMNS = [
    "term",
    "gcomp_estimate",
    "gcomp_ci_low",
    "gcomp_ci_high",
    "logbinomial_estimate",
    "logbinomial_ci_low",
    "logbinomial_ci_high",
    "logbinomial_p_gt_1",
]


def compare_prevalence_ratios(
    logit_fit: Fit, logbinomial_fit: Fit, df: pd.DataFrame
) -> pd.DataFrame:
    """g-computation PRs of a logistic fit beside the PRs of a log-binomial fit, term by term.

    The log-binomial coefficient is a conditional PR (the other terms and the stratum fixed);
    the g-computation PR averages over the agencies in ``df``. Where risks are small the two
    agree; where they approach 1 the conditional PR is pulled toward 1 (and the bounded log
    link bends it further), so a difference is expected there, not a failure.
    """
    if logbinomial_fit.spec.family != "logbinomial":
        raise InputError(f"{logbinomial_fit.spec.name} is not a log-binomial model", column="model")
    g = prevalence_ratios(logit_fit, df).set_index("term")
    s = logbinomial_fit.summary.set_index("term")
    rows = []
    for t in g.index:
        if t not in s.index:
            continue
        rows.append(
            [
                t,
                g.at[t, "estimate"],
                g.at[t, "ci_low"],
                g.at[t, "ci_high"],
                s.at[t, "estimate"],
                s.at[t, "ci_low"],
                s.at[t, "ci_high"],
                s.at[t, "p_gt_1"] if "p_gt_1" in s.columns else np.nan,
            ]
        )
    return pd.DataFrame(rows, columns=PR_COMPARE_COLUMNS)
