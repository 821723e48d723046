"""Simulated agency-level data with known truth, for tests and benchmarks.

Not a reconstruction of the study (see :mod:`cst_bayes.reconstruct`): a generative model
of the study's *shape* (stratum sizes, approach prevalences of the right order, correlated
approaches, a logistic outcome) whose parameters are known, so estimators can be checked
for recovery.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cst_bayes.core.config import APPROACHES, COUNT, N_BY_STRATUM, OUTCOME, STRATA, STRATUM
from cst_bayes.data.microdata import stratum_dtype

#: Approach prevalences by stratum, rounded from Table 1 (order: config.STRATA).
DEFAULT_PREVALENCE: dict[str, tuple[float, float, float, float]] = {
    "court": (0.18, 0.29, 0.21, 0.32),
    "prosecutor": (0.27, 0.44, 0.58, 0.65),
    "training": (0.64, 0.80, 0.95, 0.88),
    "victim_service": (0.46, 0.62, 0.74, 0.94),
    "offense_code": (0.54, 0.54, 0.58, 0.50),
    "child_welfare": (0.68, 0.75, 0.74, 0.88),
    "task_force": (0.58, 0.74, 0.79, 0.88),
    "advocates": (0.88, 0.93, 0.89, 0.97),
    "mdt": (0.06, 0.11, 0.32, 0.53),
}
#: Log-odds effects on any_cst, of the order of Table 3's adjusted model.
DEFAULT_BETA: dict[str, float] = {
    "court": -0.2,
    "prosecutor": 0.3,
    "training": 0.1,
    "victim_service": 0.6,
    "offense_code": -0.35,
    "child_welfare": 0.0,
    "task_force": 0.6,
    "advocates": 0.2,
    "mdt": 0.4,
}
#: Stratum intercepts on the log-odds scale (order: config.STRATA).
DEFAULT_ALPHA: tuple[float, float, float, float] = (-3.6, -1.8, -1.1, 0.3)


@dataclass
class Truth:
    """Parameters that generated a simulated dataset."""

    alpha: dict[str, float]
    beta: dict[str, float]
    prevalence: dict[str, tuple[float, ...]] = field(default_factory=dict)
    rho: float = 0.3


def simulate(
    seed: int,
    *,
    n_by_stratum: dict[str, int] | None = None,
    alpha: tuple[float, ...] = DEFAULT_ALPHA,
    beta: dict[str, float] | None = None,
    prevalence: dict[str, tuple[float, ...]] | None = None,
    rho: float = 0.3,
    scale: int = 1,
) -> tuple[pd.DataFrame, Truth]:
    """Simulate agencies from a Gaussian-copula model of the approaches and a logistic outcome.

    Parameters
    ----------
    seed
        Seed of the numpy Generator; the same seed gives the same data.
    n_by_stratum
        Agencies per stratum (default: the study's 872/381/19/34).
    alpha, beta, prevalence
        Stratum intercepts (log-odds), approach log-ORs, approach prevalence by stratum.
    rho
        Equicorrelation of the latent Gaussians behind the approaches (induces positive phi).
    scale
        Multiply every stratum size (for timing at N x 10, N x 100).

    Returns
    -------
    (DataFrame, Truth)
        Data in the microdata contract (with ``n_approaches``) and the generating parameters.
    """
    from scipy.stats import norm

    rng = np.random.default_rng(seed)
    n_by_stratum = dict(n_by_stratum or N_BY_STRATUM)
    beta = dict(beta or DEFAULT_BETA)
    prevalence = dict(prevalence or DEFAULT_PREVALENCE)
    k = len(APPROACHES)
    corr = np.full((k, k), rho) + (1 - rho) * np.eye(k)
    chol = np.linalg.cholesky(corr)
    frames = []
    for j, s in enumerate(STRATA):
        n = int(n_by_stratum[s]) * scale
        z = rng.standard_normal((n, k)) @ chol.T
        thresholds = norm.ppf([prevalence[a][j] for a in APPROACHES])
        x = (z < thresholds).astype(np.int8)
        eta = alpha[j] + x @ np.array([beta[a] for a in APPROACHES])
        y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(np.int8)
        f = pd.DataFrame(x, columns=list(APPROACHES))
        f.insert(0, STRATUM, s)
        f[OUTCOME] = y
        frames.append(f)
    df = pd.concat(frames, ignore_index=True)
    df[STRATUM] = df[STRATUM].astype(stratum_dtype())
    df[COUNT] = df[list(APPROACHES)].sum(axis=1).astype(np.int8)
    df.attrs.update(source=f"simulate(seed={seed})", synthetic=True, restricted=False)
    truth = Truth(alpha=dict(zip(STRATA, alpha)), beta=beta, prevalence=prevalence, rho=rho)
    return df, truth
