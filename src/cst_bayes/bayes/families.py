"""The one registry of likelihood families, links and prior distributions (bambi style).

Everything a spec may name is declared here once: which outcomes a family fits, which links it
accepts, which extra parameter (and prior slot) it needs, whether the numba density covers it,
and how each prior distribution is parameterised and which slots accept it. The spec parser,
the PyMC builder, the fast sampler and the NumPy post-processing all read these tables.

The functions below are the family's densities and random draws in PyTensor (the model) and
NumPy (pointwise log-likelihood and replicates after sampling); each dispatches on
``Family.name`` so adding a family is one entry plus its formulas here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from cst_bayes.core.config import APPROACHES, COUNT, OUTCOME

Sampler = Literal["nutpie", "nutpie-c", "pymc"]
Parameterisation = Literal["centered", "noncentered"]

#: Number of approaches: the trial count of the binomial models of ``n_approaches``.
N_TRIALS = len(APPROACHES)


@dataclass(frozen=True)
class Family:
    """One likelihood family: outcomes it fits, links it accepts, extra parameters."""

    name: str
    outcomes: tuple[str, ...]
    links: tuple[str, ...]
    extra: tuple[str, ...] = ()  # prior slots of family parameters (beta-binomial concentration)
    note: str = ""


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("bernoulli", (OUTCOME,), ("logit",), note="bounded log link: family logbinomial"),
        Family(
            "logbinomial",
            (OUTCOME,),
            ("log",),
            note="Bernoulli with a log link bounded below 0: log P(y=1) = log sigmoid(eta), so "
            "exp(coefficient) approximates a prevalence ratio where risks are small",
        ),
        Family(
            "poisson",
            (OUTCOME, COUNT),
            ("log",),
            note="on a 0/1 outcome a working likelihood: log-link prevalence ratios",
        ),
        Family("binomial", (COUNT,), ("logit",)),
        Family("betabinomial", (COUNT,), ("logit",), extra=("concentration",)),
    )
}
#: Which links each family accepts. The log-binomial model is its own family (``logbinomial``):
#: its linear predictor is capped below 0 by a smooth map (:func:`log_risk`), so P(y=1) < 1.
FAMILY_LINKS: dict[str, tuple[str, ...]] = {k: f.links for k, f in FAMILIES.items()}
#: Outcome -> families allowed for it.
OUTCOME_FAMILIES: dict[str, tuple[str, ...]] = {
    o: tuple(k for k, f in FAMILIES.items() if o in f.outcomes) for o in (OUTCOME, COUNT)
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
_SCALES = ("halfnormal", "halfstudent_t", "exponential", "gamma")
#: Which distributions each prior slot accepts (location parameters vs positive scales).
PRIOR_SLOTS: dict[str, tuple[str, ...]] = {
    "intercept": ("normal", "student_t"),
    "beta": ("normal", "student_t"),
    "sigma_stratum": _SCALES,
    "sigma_slope": _SCALES,
    "concentration": ("gamma", "exponential", "halfnormal", "halfstudent_t"),
}

#: Cap of the log-binomial linear predictor: eta is mapped through -softplus(-eta), which is
#: below 0 everywhere (so the risk exp(eta) < 1) and equal to eta for eta << 0.
LOG_RISK = "smooth cap -softplus(-eta) < 0"


def log_risk(eta: Any, xp: Any = np) -> Any:
    """log P(y = 1) of the log-binomial model: ``-softplus(-eta)`` (< 0, ~eta for eta << 0)."""
    if xp is np:
        return -np.logaddexp(0.0, -eta)
    return -xp.softplus(-eta)


# --------------------------------------------------------------------------------------------
# PyTensor: the observed variable of the patterns
# --------------------------------------------------------------------------------------------
def observe(
    pm: Any, family: str, outcome: str, eta: Any, data: dict[str, Any], kappa: Any = None
) -> Any:
    """Observed variable of the pattern data, and the Potential that makes the model's
    log-density exactly the (weighted) agency-level one.

    Binary outcome: a pattern's unweighted successes ``n1`` of ``n1 + n0`` agencies are
    Binomial (Poisson for the working likelihood); the Potential ``weights_and_constant``
    removes the binomial coefficient (the agency-level likelihood has none) and adds the
    difference between the weighted and the unweighted pattern sums (zero without weights).
    Count outcome: one observed row per (stratum, design row, count); the Potential
    ``multiplicity`` adds the row's log-density (weighted multiplicity - 1) times more.
    Prior and posterior predictive sampling ignore Potentials, so they draw from the
    generative model: cases per pattern, or a count per row.
    """
    import pytensor.tensor as pt

    w1, w0, n1, n0 = data["w1"], data["w0"], data["n1"], data["n0"]
    if outcome == OUTCOME:
        n = n1 + n0
        if family == "poisson":  # working likelihood: the sum of n Poisson(exp(eta)) agencies
            obs = pm.Poisson(outcome, mu=n * pt.exp(eta), observed=n1)
            corr = (
                (w1 - n1) * eta - (w1 + w0 - n) * pt.exp(eta) - n1 * pt.log(n) + pt.gammaln(n1 + 1)
            )
        else:
            if family == "logbinomial":
                lp1 = log_risk(eta, pt)
                lp0 = pt.log1mexp(lp1)
                obs = pm.Binomial(outcome, n=n, p=pt.exp(lp1), observed=n1)
            else:
                lp1, lp0 = -pt.softplus(-eta), -pt.softplus(eta)
                obs = pm.Binomial(outcome, n=n, logit_p=eta, observed=n1)
            lchoose = pt.gammaln(n + 1) - pt.gammaln(n1 + 1) - pt.gammaln(n0 + 1)
            corr = (w1 - n1) * lp1 + (w0 - n0) * lp0 - lchoose
        pm.Potential("weights_and_constant", corr.sum())
        return obs
    if family == "poisson":
        obs = pm.Poisson(outcome, mu=pt.exp(eta), observed=n1)
    elif family == "binomial":
        obs = pm.Binomial(outcome, n=N_TRIALS, logit_p=eta, observed=n1)
    else:
        p = pt.sigmoid(eta)
        obs = pm.BetaBinomial(
            outcome, alpha=p * kappa, beta=(1 - p) * kappa, n=N_TRIALS, observed=n1
        )
    pm.Potential("multiplicity", ((w0 - 1.0) * pm.logp(obs, n1)).sum())
    return obs


# --------------------------------------------------------------------------------------------
# NumPy: mean, pointwise log-likelihood, replicates
# --------------------------------------------------------------------------------------------
def mean_from_eta(family: str, link: str, eta: np.ndarray) -> np.ndarray:
    """Mean outcome given the linear predictor: P(y=1), exp(eta) or the mean count."""
    if family == "logbinomial":
        return np.exp(log_risk(eta))
    if link == "log":
        return np.exp(eta)
    p = 1.0 / (1.0 + np.exp(-eta))
    return p * N_TRIALS if family in ("binomial", "betabinomial") else p


def pointwise_loglik(
    family: str, link: str, outcome: str, eta: np.ndarray, y: np.ndarray, kappa: Any = None
) -> np.ndarray:
    """Agency-level log-density of the observed outcome (draws, agencies), unweighted."""
    from scipy.special import betaln, gammaln

    if outcome == OUTCOME:
        if family == "logbinomial":
            lr = log_risk(eta)
            return np.where(y == 1, lr, np.log(-np.expm1(lr)))
        if family == "bernoulli":
            return -np.logaddexp(0.0, np.where(y == 1, -eta, eta))
        return y * eta - np.exp(eta)
    if family == "poisson":
        return y * eta - np.exp(eta) - gammaln(y + 1)
    lchoose = gammaln(N_TRIALS + 1) - gammaln(y + 1) - gammaln(N_TRIALS - y + 1)
    if family == "binomial":
        return lchoose - y * np.logaddexp(0, -eta) - (N_TRIALS - y) * np.logaddexp(0, eta)
    p = 1.0 / (1.0 + np.exp(-eta))
    a, b = p * kappa, (1 - p) * kappa
    return lchoose + betaln(y + a, N_TRIALS - y + b) - betaln(a, b)


def draw_outcome(
    family: str, link: str, eta: np.ndarray, rng: np.random.Generator, kappa: Any = None
) -> np.ndarray:
    """Replicated outcomes from the family given the linear predictor (draws, rows)."""
    if family in ("bernoulli", "logbinomial"):
        return (rng.random(eta.shape) < mean_from_eta(family, link, eta)).astype(np.int8)
    if family == "poisson":  # on the 0/1 outcome this can exceed 1: it is a working likelihood
        # a rate beyond e^20 only arises in prior draws; capped so the count stays a count
        return rng.poisson(np.exp(np.minimum(eta, 20.0))).astype(np.int64)
    p = 1.0 / (1.0 + np.exp(-eta))
    if family == "betabinomial":
        p = rng.beta(p * kappa, (1 - p) * kappa)
    return rng.binomial(N_TRIALS, p).astype(np.int8)
