"""Weighted pseudo-posterior of Table 3 Analysis 1 with the Williams-Savitsky design correction.

The weighted pseudo-likelihood (Savitsky and Toth 2016) multiplies each agency's
log-likelihood by its survey weight normalised to sum to the sample size. Its posterior is
centred where ``svyglm`` is, but its spread is the model-based ``H^-1``: it ignores the
strata, the finite population correction and the extra variance unequal weights bring.
Williams and Savitsky (2021, *Bayesian Analysis* 16(1); R package ``csSampling``) rotate the
draws so their covariance becomes the design-based sandwich ``H^-1 J H^-1``:

* ``H``: the negative Hessian of the log pseudo-posterior at the posterior mean;
* ``J``: the design covariance of the total of the weighted scores ``w~_i s_i(theta)``
  (strata + fpc, :func:`cst_bayes.weighting.design.design_variance`, R's ``svyrecvar``);
* ``theta_adj = (theta - theta_bar) R2^-1 R1 + theta_bar`` with ``R1' R1 = H^-1 J H^-1`` and
  ``R2' R2`` the posterior covariance of the raw draws.

The model is a logistic regression with *fixed* effects (intercept, nine approaches and, in
the size-adjusted model, three stratum contrasts against 1-49: ``svyglm``'s design matrix),
because the correction needs every parameter to enter the scores: a hierarchical stratum
variance has no score, ``J`` would be singular and the rotation undefined. Priors are
Normal(-1.5, 2.5) on the (centred) intercept and Normal(0, ``prior_sd``) on every
coefficient, as the package's logit specs. Sampling is nutpie over the package's numba
log-density (:mod:`cst_bayes.bayes.fastlogp`); ``method="laplace"`` replaces the MCMC with
draws from the normal approximation at the posterior mode (for the coverage simulation,
whose hundreds of replicate fits would otherwise take an hour; the two agree, see tests).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from cst_bayes.core.errors import InputError
from cst_bayes.weighting.design import Design, design_variance

Method = Literal["mcmc", "laplace"]
#: Prior of the centred intercept (logit(0.17) = -1.6; as ``models/logit_*.toml``).
INTERCEPT_PRIOR: tuple[float, float] = (-1.5, 2.5)
#: Prior SD of every coefficient (Gelman et al. 2008, as ``models/logit_*.toml``).
PRIOR_SD: float = 2.5


class SamplerTrouble(UserWarning):
    """Divergences, high R-hat or low ESS in a pseudo-posterior fit."""


@dataclass(frozen=True)
class PseudoPosterior:
    """Raw and design-adjusted draws of a weighted logistic regression.

    ``raw``/``adjusted`` hold ``(chains, draws, p)`` coefficients on the usual (uncentred)
    scale, ``names`` their terms (``(Intercept)`` first). ``V`` is the sandwich covariance
    the adjusted draws have, ``H`` and ``J`` its parts (centred parameterisation).
    """

    names: list[str]
    raw: np.ndarray
    adjusted: np.ndarray
    V: np.ndarray
    H: np.ndarray
    J: np.ndarray
    X: np.ndarray
    weights: np.ndarray  #: normalised to sum to n
    diagnostics: dict[
        str, Any
    ]  #: :func:`cst_bayes.bayes.convergence.diagnose`'s (MCMC), empty otherwise

    def draws(self, adjusted: bool) -> np.ndarray:
        """``(chains, draws, p)`` coefficient draws, raw or adjusted."""
        return self.adjusted if adjusted else self.raw


def expit(x: np.ndarray) -> np.ndarray:
    """Inverse logit (tanh form: no overflow for large |x|)."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _prior_precision(p: int, prior_sd: float) -> np.ndarray:
    return np.diag([1 / INTERCEPT_PRIOR[1] ** 2] + [1 / prior_sd**2] * (p - 1))


def _mode(Z: np.ndarray, y: np.ndarray, w: np.ndarray, prior_sd: float) -> np.ndarray:
    """Posterior mode of the pseudo-posterior (Newton on the penalised weighted log-likelihood)."""
    p = Z.shape[1]
    P = _prior_precision(p, prior_sd)
    m0 = np.zeros(p)
    m0[0] = INTERCEPT_PRIOR[0]
    th = m0.copy()
    for _ in range(100):
        mu = expit(Z @ th)
        g = Z.T @ (w * (y - mu)) - P @ (th - m0)
        H = Z.T @ (Z * (w * mu * (1 - mu))[:, None]) + P
        step = np.linalg.solve(H, g)
        th = th + step
        if np.max(np.abs(step)) < 1e-10:
            return th
    raise InputError("pseudo-posterior mode did not converge (separation?)")


def _sample_mcmc(
    Zc: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    prior_sd: float,
    *,
    draws: int,
    tune: int,
    chains: int,
    seed: int,
    extend: bool = False,
) -> tuple[np.ndarray, dict[str, Any]]:
    """nutpie over the compiled :mod:`cst_bayes.bayes.fastlogp` density (no strata, centred
    predictors), the weighted likelihood summed over distinct covariate rows (exact: agencies
    with the same row share ``log p`` and ``log(1 - p)``). Diagnostics and the one extension
    (``extend``) are the models' own (:func:`cst_bayes.bayes.convergence.sample_checked`)."""
    from cst_bayes.bayes import fastlogp as F
    from cst_bayes.bayes.compiled import fast_model
    from cst_bayes.bayes.convergence import SamplerWarning, sample_checked
    from cst_bayes.bayes.samplers import groups_from_trace, thin_groups
    from cst_bayes.core.lazy import nutpie

    Xc = np.ascontiguousarray(Zc[:, 1:])
    K = Xc.shape[1]
    rows, inverse = np.unique(Xc, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).ravel()
    a = np.bincount(inverse, weights=w * y, minlength=len(rows))
    b = np.bincount(inverse, weights=w * (1 - y), minlength=len(rows))
    # fastlogp's layout: intercept, sigma_stratum (unused without strata), one row per coefficient.
    priors = np.vstack(
        [
            F.prior_row("normal", {"mu": INTERCEPT_PRIOR[0], "sigma": INTERCEPT_PRIOR[1]}),
            F.prior_row("halfnormal", {"sigma": 1.0}),
            *[F.prior_row("normal", {"mu": 0.0, "sigma": prior_sd})] * K,
        ]
    )
    args = dict(
        structure=F.NO_STRATA,
        family=F.LOGISTIC,
        n_strata=1,
        priors=priors,
        sidx=np.zeros(len(rows), dtype=np.int64),
        Xc=np.ascontiguousarray(rows),
        a=np.ascontiguousarray(a),
        b=np.ascontiguousarray(b),
        const=0.0,
    )
    x0 = np.zeros(K + 1)
    x0[0] = INTERCEPT_PRIOR[0]
    compiled = fast_model(args, x0, ["theta"], [(K + 1,)], coords={}, dims={})

    def run(thin: int, run_seed: int, target_accept: float) -> dict[str, Any]:
        raw = nutpie().sample(
            compiled,
            draws=draws * thin,
            tune=tune,
            chains=chains,
            seed=run_seed,
            progress_bar=False,
            target_accept=target_accept,
            return_raw_trace=True,
        )
        return thin_groups(groups_from_trace(raw, {}), thin)

    groups, diag = sample_checked(run, seed, extend=extend)
    th = groups["posterior"]["theta"].to_numpy()  # (chains, draws, p)
    if diag["messages"]:
        warnings.warn(
            "pseudo-posterior fit: " + "; ".join(diag["messages"]), SamplerWarning, stacklevel=3
        )
    return th, diag


def rotate(draws: np.ndarray, center: np.ndarray, target_cov: np.ndarray) -> np.ndarray:
    """Rotate ``(..., p)`` draws about ``center`` so their covariance is ``target_cov`` (csSampling).

    ``(theta - center) R2^-1 R1 + center`` with ``R1' R1 = target_cov`` (``R1`` its symmetric square root) and ``R2' R2`` the
    draws' own covariance: a linear map, so the adjusted draws keep the raw draws' shape
    (skewness, chains) and their covariance is exactly ``target_cov``.
    """
    flat = draws.reshape(-1, draws.shape[-1])
    # Symmetric square root, not Cholesky: a census stratum (fpc = 1) contributes no design
    # variance, so the target can be singular in its contrast's direction.
    vals, vecs = np.linalg.eigh(0.5 * (target_cov + target_cov.T))
    R1 = (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T
    R2 = np.linalg.cholesky(np.cov(flat, rowvar=False)).T
    A = np.linalg.solve(R2, R1)  # R2^-1 R1
    return (draws - center) @ A + center


def fit_pseudo_posterior(
    X: np.ndarray,
    y: np.ndarray,
    design: Design,
    names: list[str],
    *,
    method: Method = "mcmc",
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 2,
    seed: int = 0,
    prior_sd: float = PRIOR_SD,
    extend: bool = False,
) -> PseudoPosterior:
    """Weighted pseudo-posterior of a logistic regression and its Williams-Savitsky adjustment.

    Parameters
    ----------
    X
        ``(n, p)`` design matrix with an intercept column first (:func:`weights.model_matrix`).
    y
        0/1 outcome.
    design
        Survey design (weights, strata, fpc); the weights are normalised to sum to ``n``.
    method
        ``"mcmc"`` (nutpie) or ``"laplace"`` (normal approximation at the mode).
    extend
        MCMC only: sample once more when a diagnostic threshold fails
        (:func:`cst_bayes.bayes.convergence.extension_plan`).
    """
    X = np.asarray(X, float)
    y = np.asarray(y, float)
    n, p = X.shape
    if names[0] != "(Intercept)" or len(names) != p:
        raise InputError("the first column of X must be the intercept, one name per column")
    w = np.asarray(design.weights, float)
    w = w * n / w.sum()
    xbar = X[:, 1:].mean(axis=0)
    Zc = np.column_stack([np.ones(n), X[:, 1:] - xbar])  # centred, as the package's models
    rng = np.random.default_rng(seed)
    if method == "mcmc":
        th, diag = _sample_mcmc(
            Zc, y, w, prior_sd, draws=draws, tune=tune, chains=chains, seed=seed, extend=extend
        )
    elif method == "laplace":
        mode = _mode(Zc, y, w, prior_sd)
        mu = expit(Zc @ mode)
        H0 = Zc.T @ (Zc * (w * mu * (1 - mu))[:, None]) + _prior_precision(p, prior_sd)
        th = rng.multivariate_normal(mode, np.linalg.inv(H0), size=(chains, draws))
        diag = {}  # independent draws from the normal approximation: nothing to diagnose
    else:
        raise InputError(f"unknown method {method!r} (mcmc or laplace)", column="method")
    center = th.reshape(-1, p).mean(axis=0)
    mu = expit(Zc @ center)
    H = Zc.T @ (Zc * (w * mu * (1 - mu))[:, None]) + _prior_precision(p, prior_sd)
    scores = Zc * (w * (y - mu))[:, None]
    J = design_variance(design, scores)
    Hi = np.linalg.inv(H)
    V = Hi @ J @ Hi
    V = 0.5 * (V + V.T)
    adj = rotate(th, center, V)

    def uncentre(t: np.ndarray) -> np.ndarray:
        out = t.copy()
        out[..., 0] = t[..., 0] - t[..., 1:] @ xbar
        return out

    return PseudoPosterior(
        names=list(names),
        raw=uncentre(th),
        adjusted=uncentre(adj),
        V=V,
        H=H,
        J=J,
        X=X,
        weights=w,
        diagnostics=diag,
    )


#: Probabilities of the +-1 SD interval of a quantile's beta posterior (arviz).
_SD_PROBS: np.ndarray = np.array([0.1586553, 0.8413447])


def _geyer_tau(rho: np.ndarray) -> float:
    """Integrated autocorrelation time from one slice's lag autocorrelations (arviz ``_ess``).

    Geyer's initial positive then initial monotone sequence, step for step as arviz 0.23
    (so the numbers are arviz's to the last bit).
    """
    n_draw = len(rho)
    r = rho.tolist()
    rho_hat_t = np.zeros(n_draw)
    rho_hat_even = 1.0
    rho_hat_t[0] = rho_hat_even
    rho_hat_odd = r[1]
    rho_hat_t[1] = rho_hat_odd
    t = 1
    while t < (n_draw - 3) and (rho_hat_even + rho_hat_odd) > 0.0:
        rho_hat_even = r[t + 1]
        rho_hat_odd = r[t + 2]
        if (rho_hat_even + rho_hat_odd) >= 0:
            rho_hat_t[t + 1] = rho_hat_even
            rho_hat_t[t + 2] = rho_hat_odd
        t += 2
    max_t = t - 2
    if rho_hat_even > 0:
        rho_hat_t[max_t + 1] = rho_hat_even
    t = 1
    while t <= max_t - 2:
        if (rho_hat_t[t + 1] + rho_hat_t[t + 2]) > (rho_hat_t[t - 1] + rho_hat_t[t]):
            rho_hat_t[t + 1] = (rho_hat_t[t - 1] + rho_hat_t[t]) / 2.0
            rho_hat_t[t + 2] = rho_hat_t[t + 1]
        t += 2
    if np.isnan(rho_hat_t).any():
        return math.nan
    return float(
        -1.0 + 2.0 * np.sum(rho_hat_t[: max_t + 1]) + np.sum(rho_hat_t[max_t + 1 : max_t + 2])
    )


def mcse_quantiles(d: np.ndarray, prob: float) -> np.ndarray:
    """Monte Carlo standard error of the ``prob`` quantile of each of ``(k, chains, draws)`` draws.

    arviz 0.23's ``mcse(method="quantile")`` (ESS of the split-chain indicator ``d <= q``,
    the quantile's beta posterior, the half-width of its +-1 SD interval in sorted draws),
    with the sorts, quantiles and autocovariance FFTs done for all ``k`` slices at once; only
    Geyer's truncation runs per slice. ``k`` of arviz's calls would cost ~1 ms each.
    """
    d = np.asarray(d, float)
    k, n_chain, n = d.shape
    out = np.full(k, math.nan)
    if n < 4 or n_chain < 1 or k == 0:
        return out
    size = n_chain * n
    srt = np.sort(d.reshape(k, size), axis=1)
    # The quantile as arviz takes it (scipy's mquantiles, R type 7), in its arithmetic.
    m = 1.0 + prob * (1.0 - 1.0 - 1.0)
    aleph = size * prob + m
    j = int(np.floor(np.clip(aleph, 1, size - 1)))
    gamma = float(np.clip(aleph - j, 0, 1))
    q = (1.0 - gamma) * srt[:, j - 1] + gamma * srt[:, j]
    ind = (d <= q[:, None, None]).astype(float)
    half = n // 2
    split = np.concatenate([ind[:, :, :half], ind[:, :, -half:]], axis=1)  # (k, 2 chains, half)
    c2 = split.shape[1]
    flat = split.reshape(k, -1)
    constant = (flat.max(axis=1) - flat.min(axis=1)) < np.finfo(float).resolution
    from scipy.fftpack import next_fast_len  # arviz's padding (not scipy.fft's)

    mlen = next_fast_len(2 * half)
    cen = split - split.mean(axis=2, keepdims=True)
    f = np.fft.rfft(cen, n=mlen, axis=2)
    f *= np.conjugate(f)
    acov = np.fft.irfft(f, n=mlen, axis=2)[:, :, :half]
    acov /= half
    chain_mean = split.mean(axis=2)
    mean_var = np.mean(acov[:, :, 0], axis=1) * half / (half - 1.0)
    var_plus = mean_var * (half - 1.0) / half
    if c2 > 1:  # numba's one-pass variance, as arviz computes it when numba is installed
        a_a = np.zeros(k)
        b_b = np.zeros(k)
        for c in range(c2):
            a_a = a_a + chain_mean[:, c]
            b_b = b_b + chain_mean[:, c] * chain_mean[:, c]
        var_plus = var_plus + (b_b / c2 - (a_a / c2) ** 2) * (c2 / (c2 - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (mean_var[:, None] - np.mean(acov, axis=1)) / var_plus[:, None]
    ess_n = c2 * half
    ess = np.empty(k)
    for i in range(k):
        if constant[i]:
            ess[i] = flat.shape[1]
            continue
        tau = _geyer_tau(rho[i])
        ess[i] = ess_n / max(tau, 1 / np.log10(ess_n)) if not math.isnan(tau) else math.nan
    from scipy import stats

    with np.errstate(invalid="ignore"):
        ppf = stats.beta.ppf(
            _SD_PROBS[None, :], (ess * prob + 1)[:, None], (ess * (1 - prob) + 1)[:, None]
        )
    ppf_size = ppf * size - 1
    i1 = np.floor(np.fmax(ppf_size[:, 0], 0)).astype(int)
    i2 = np.ceil(np.fmin(ppf_size[:, 1], size - 1)).astype(int)
    rows = np.arange(k)
    out = (srt[rows, i2] - srt[rows, i1]) / 2
    out[np.isnan(d).any(axis=(1, 2))] = math.nan
    return out


def mcse_quantile(d: np.ndarray, prob: float) -> float:
    """Monte Carlo standard error of a quantile of ``(chains, draws)`` draws (as arviz)."""
    d = np.atleast_2d(np.asarray(d, float))
    return float(mcse_quantiles(d[None], prob)[0])


def summarise_many(d: np.ndarray, *, prob: float = 0.95) -> dict[str, np.ndarray]:
    """:func:`summarise_draws` of each ``(chains, draws)`` slice of ``(k, chains, draws)``."""
    d = np.asarray(d, float)
    k = d.shape[0]
    flat = d.reshape(k, -1)
    a = (1 - prob) / 2
    lo, med, hi = np.quantile(flat, [a, 0.5, 1 - a], axis=1)
    out = {"median": med, "ci_low": lo, "ci_high": hi, "p_positive": np.mean(flat > 0, axis=1)}
    if d.ndim == 3 and d.shape[2] >= 4:
        out["mcse_low"] = mcse_quantiles(d, a)
        out["mcse_high"] = mcse_quantiles(d, 1 - a)
    else:
        out["mcse_low"] = out["mcse_high"] = np.full(k, math.nan)
    return out


def summarise_draws(d: np.ndarray, *, prob: float = 0.95) -> dict[str, float]:
    """Median, equal-tailed interval, P(> 0) and the MCSE of both interval ends.

    ``d`` is ``(chains, draws)``; ``p_positive`` is on the scale given (log-OR or RD).
    """
    d = np.asarray(d, float)
    if d.ndim == 2:
        return {key: float(v[0]) for key, v in summarise_many(d[None], prob=prob).items()}
    a = (1 - prob) / 2
    lo, med, hi = np.quantile(d, [a, 0.5, 1 - a])
    return {
        "median": float(med),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "p_positive": float(np.mean(d > 0)),
        "mcse_low": math.nan,
        "mcse_high": math.nan,
    }


@dataclass(frozen=True)
class Patterns:
    """The distinct covariate rows an average over agencies needs, observed and counterfactual.

    ``rows``: distinct rows among ``X`` and its copies with each column of ``columns`` set to 1
    and to 0; ``observed[i]``, ``set1[c, i]``, ``set0[c, i]``: the row of agency ``i`` as
    observed, with ``columns[c]`` set to 1, set to 0. Agencies sharing a row share its risk,
    so a weighted average of risks is ``expit(theta @ rows.T) @ M`` for a matrix of summed
    weights ``M`` (:meth:`weights`): one risk per distinct row instead of one per agency and
    counterfactual.
    """

    rows: np.ndarray
    observed: np.ndarray
    set1: np.ndarray
    set0: np.ndarray

    @classmethod
    def of(cls, X: np.ndarray, columns: list[int]) -> Patterns:
        X = np.asarray(X, float)
        U, inv = np.unique(X, axis=0, return_inverse=True)
        copies = [U]
        for j in columns:
            for v in (1.0, 0.0):
                c = U.copy()
                c[:, j] = v
                copies.append(c)
        rows, where = np.unique(np.vstack(copies), axis=0, return_inverse=True)
        where = where.ravel().reshape(len(copies), len(U))[:, inv.ravel()]
        return cls(rows=rows, observed=where[0], set1=where[1::2], set0=where[2::2])

    def weights(self, which: np.ndarray, w: np.ndarray) -> np.ndarray:
        """``w`` (one weight per agency) summed onto the rows ``which`` assigns them."""
        return np.bincount(which, weights=w, minlength=len(self.rows))


def derived_draws(
    post: PseudoPosterior,
    *,
    adjusted: bool,
    columns: list[int],
    max_draws: int = 1000,
    patterns: Patterns | None = None,
) -> dict[str | int, np.ndarray]:
    """Prevalence and marginal risk differences from the coefficient draws.

    Returns ``{"prevalence": (chains, k), j: (chains, k)}`` with ``j`` each column index in
    ``columns``: the weighted average over agencies of the risk with that 0/1 predictor set to
    1 minus set to 0 (standardised, as :func:`design.marginal_rd`). Draws are thinned evenly
    to ``max_draws`` per chain. ``patterns``: :meth:`Patterns.of` ``(post.X, columns)``, to
    reuse across fits of one design matrix.
    """
    th = post.draws(adjusted)
    d = th.shape[1]
    keep = np.linspace(0, d - 1, min(d, max_draws)).round().astype(int)
    th = th[:, keep]
    pat = Patterns.of(post.X, columns) if patterns is None else patterns
    w = post.weights / post.weights.sum()
    M = np.column_stack(
        [pat.weights(pat.observed, w)]
        + [pat.weights(pat.set1[c], w) - pat.weights(pat.set0[c], w) for c in range(len(columns))]
    )
    est = expit(th @ pat.rows.T) @ M
    out: dict[str | int, np.ndarray] = {"prevalence": est[..., 0]}
    for c, j in enumerate(columns):
        out[j] = est[..., c + 1]
    return out
