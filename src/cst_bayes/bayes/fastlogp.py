"""Hand-written log-density and gradient of the pattern models, in numba with an on-disk cache.

Why this module exists
    nutpie's PyTensor/numba path compiles its numba callbacks anew in every process (15-35 s
    on the shared 2-core machine), and PyTensor's disk-cached C path pays a Python call into
    a PyTensor function per gradient. The functions here are plain ``@njit(cache=True)``
    functions of a module file: numba stores their machine code under ``__pycache__`` and a
    fresh process loads it in a fraction of a second. nutpie calls them as C functions
    (:func:`c_functions`, the data behind a pointer from :func:`pack`), so no Python and no
    GIL sit between the chains and the density.

What it covers (anything else falls back to the PyMC/PyTensor path, see :func:`supports`)
    * likelihood on collapsed covariate patterns: bernoulli-logit and binomial-logit (``a``
      successes and ``b`` failures per pattern, weighted), Poisson-log (``a * eta - b *
      exp(eta)``), beta-binomial-logit (count ``a`` of ``n_trials`` with weighted multiplicity
      ``b``, concentration ``kappa``), plus a constant; the log-binomial's bounded log link
      (log P(y=1) = -softplus(-eta) = log sigmoid(eta)) is exactly the bernoulli-logit density;
    * a single intercept, or partially pooled stratum intercepts, centered or non-centered;
    * fixed coefficients on any centred design matrix (interactions, fixed strata), each with
      its own prior;
    * varying slopes on any subset ``sl`` of the design columns (with pooled intercepts):
      ``sigma_slope`` and a (stratum, slope) block ``z_slope`` (non-centered, ``beta_stratum =
      beta[sl] + sigma_slope * z_slope``) or ``beta_stratum ~ N(beta[sl], sigma_slope)``;
    * priors normal, student_t (location slots), halfnormal, halfstudent_t, exponential,
      gamma (scale slot, sampled on the log scale with its Jacobian, as PyMC does).

The density is exactly PyMC's (normalising constants included): the tests compare log-density
and gradient with the PyMC model's compiled ``logp``/``dlogp`` at random points.

Layout of the ``priors`` rows: intercept (or mu_stratum), sigma_stratum, one per coefficient,
[sigma_slope], [concentration].

Layout of the unconstrained vector (PyMC's order of free variables)
    no strata: ``[intercept, beta[K], (log(concentration))]``;
    pooled: ``[mu_stratum, log(sigma_stratum), alpha[S] or z_stratum[S], beta[K],
    (log(sigma_slope), z_slope or beta_stratum [S, L] row-major), (log(concentration))]``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import carray, cfunc, njit, types

#: prior codes (rows of the ``priors`` array: code, p1, p2, p3, constant)
NORMAL, STUDENT_T, HALFNORMAL, HALFSTUDENT_T, EXPONENTIAL, GAMMA = range(6)
PRIOR_CODES = {
    "normal": NORMAL,
    "student_t": STUDENT_T,
    "halfnormal": HALFNORMAL,
    "halfstudent_t": HALFSTUDENT_T,
    "exponential": EXPONENTIAL,
    "gamma": GAMMA,
}
#: family codes: logistic (a log p + b log(1-p)), log-linear (a eta - b exp(eta)) or
#: beta-binomial (count ``a`` of ``n_trials``, multiplicity ``b``, mean logit eta, concentration)
LOGISTIC, LOGLINEAR, BETABINOMIAL = 0, 1, 2
#: the family code of each spec family the density covers
FAMILY_CODES = {
    "bernoulli": LOGISTIC,
    "logbinomial": LOGISTIC,  # log P(y=1) = -softplus(-eta) is log sigmoid(eta): the logit density
    "binomial": LOGISTIC,
    "poisson": LOGLINEAR,
    "betabinomial": BETABINOMIAL,
}
#: structure codes
NO_STRATA, CENTERED, NONCENTERED = 0, 1, 2

_LOG_2PI = math.log(2.0 * math.pi)


def prior_row(dist: str, params: dict[str, float]) -> np.ndarray:
    """``[code, p1, p2, p3, constant]`` for one prior (the constant holds the log-normaliser)."""
    p = params
    if dist == "normal":
        return np.array([NORMAL, p["mu"], p["sigma"], 0.0, -math.log(p["sigma"]) - 0.5 * _LOG_2PI])
    if dist == "halfnormal":
        return np.array(
            [HALFNORMAL, 0.0, p["sigma"], 0.0, 0.5 * math.log(2.0 / math.pi) - math.log(p["sigma"])]
        )
    if dist in ("student_t", "halfstudent_t"):
        nu, s = p["nu"], p["sigma"]
        c = (
            math.lgamma((nu + 1) / 2)
            - math.lgamma(nu / 2)
            - 0.5 * math.log(nu * math.pi)
            - math.log(s)
        )
        if dist == "student_t":
            return np.array([STUDENT_T, p["mu"], s, nu, c])
        return np.array([HALFSTUDENT_T, 0.0, s, nu, c + math.log(2.0)])
    if dist == "exponential":
        return np.array([EXPONENTIAL, p["lam"], 0.0, 0.0, math.log(p["lam"])])
    if dist == "gamma":
        a, b = p["alpha"], p["beta"]
        return np.array([GAMMA, a, b, 0.0, a * math.log(b) - math.lgamma(a)])
    raise ValueError(f"prior {dist!r} has no fast implementation")


def support_point(dist: str, params: dict[str, float]) -> float:
    """PyMC's initial value of a prior (its ``support_point``), on the natural scale."""
    if dist in ("normal", "student_t"):
        return float(params["mu"])
    if dist in ("halfnormal", "halfstudent_t"):
        return float(params["sigma"])
    if dist == "exponential":
        return 1.0 / float(params["lam"])
    return float(params["alpha"]) / float(params["beta"])


@njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
def _prior(row, v):
    """Log-density of one prior at ``v`` (natural scale) and its derivative."""
    code = int(row[0])
    c = row[4]
    # integer comparisons, not tuple membership: the cheapest branch in numba's machine code
    if code == NORMAL or code == HALFNORMAL:  # noqa: SIM109
        s = row[2]
        z = (v - row[1]) / s
        return c - 0.5 * z * z, -z / s
    if code == STUDENT_T or code == HALFSTUDENT_T:  # noqa: SIM109
        s, nu = row[2], row[3]
        r = v - row[1]
        q = nu * s * s
        return c - 0.5 * (nu + 1.0) * math.log1p(r * r / q), -(nu + 1.0) * r / (q + r * r)
    if code == EXPONENTIAL:
        lam = row[1]
        return c - lam * v, -lam
    # gamma(alpha, beta)
    a, b = row[1], row[2]
    return c + (a - 1.0) * math.log(v) - b * v, (a - 1.0) / v - b


@njit(cache=True, nogil=True, error_model="numpy")
def _betabinomial(y, n, p, q, kappa):
    """Beta-binomial log-density of count ``y`` of ``n`` with mean ``p`` (``q = 1 - p``) and
    concentration ``kappa``, binomial coefficient left out, and its derivatives in ``p`` (at
    fixed kappa, through both shape parameters) and in ``kappa`` (at fixed p).

    For integer ``y`` and ``n`` the beta functions are rising factorials:
    ``B(y + A, n - y + B) / B(A, B) = prod_{i<y}(A + i) prod_{i<n-y}(B + i) / prod_{i<n}(kappa + i)``
    with ``A = p kappa``, ``B = q kappa``, so the log-density is a sum of ``n`` logarithms and
    its derivatives (differences of digammas) are exact finite sums of reciprocals.
    """
    A = p * kappa
    B = q * kappa
    lp = 0.0
    dA = 0.0
    dB = 0.0
    dk = 0.0
    for i in range(y):
        lp += math.log(A + i)
        dA += 1.0 / (A + i)
    for i in range(n - y):
        lp += math.log(B + i)
        dB += 1.0 / (B + i)
    for i in range(n):
        lp -= math.log(kappa + i)
        dk -= 1.0 / (kappa + i)
    return lp, kappa * (dA - dB), p * dA + q * dB + dk


@njit(cache=True, nogil=True, error_model="numpy")
def _pattern_loglik(
    x, structure, family, S, sidx, Xc, a, b, off, alpha, g, n_trials, kappa, sl, dev
):
    """Pattern log-likelihood; adds the coefficients' gradient to ``g`` and returns the
    log-likelihood, the intercept's gradient, the stratum intercepts' gradients, the
    derivative in the beta-binomial concentration (natural scale) and the gradient in the
    stratum slope deviations ``dev`` (stratum, slope) of the design columns ``sl``."""
    P, K = Xc.shape
    L = sl.shape[0]
    lp = 0.0
    galpha = np.zeros(S)
    gdev = np.zeros((S, L))
    gint = 0.0
    gkappa = 0.0
    for p in range(P):
        eta = alpha[sidx[p]] if structure != NO_STRATA else x[0]
        for k in range(K):
            eta += Xc[p, k] * x[off + k]
        for j in range(L):
            eta += Xc[p, sl[j]] * dev[sidx[p], j]
        if family == LOGISTIC:
            # one exp and one log1p per pattern: softplus(eta) = max(eta, 0) + log1p(exp(-|eta|)),
            # softplus(-eta) = softplus(eta) - eta, sigmoid from the same exp
            e = math.exp(-abs(eta))
            sp = max(eta, 0.0) + math.log1p(e)
            q = 1.0 / (1.0 + e)  # sigmoid(|eta|)
            s = q if eta >= 0.0 else e * q  # sigmoid(eta)
            lp += -a[p] * (sp - eta) - b[p] * sp
            gp = a[p] * (1.0 - s) - b[p] * s
        elif family == LOGLINEAR:
            e = math.exp(eta)
            lp += a[p] * eta - b[p] * e
            gp = a[p] - b[p] * e
        else:
            e = math.exp(-abs(eta))
            big = 1.0 / (1.0 + e)  # sigmoid(|eta|); 1 - sigmoid(|eta|) = e * big, no cancellation
            pr, qr = (big, e * big) if eta >= 0.0 else (e * big, big)
            lb, dp, dk = _betabinomial(int(a[p]), n_trials, pr, qr, kappa)
            lp += b[p] * lb
            gp = b[p] * dp * pr * qr
            gkappa += b[p] * dk
        if structure == NO_STRATA:
            gint += gp
        else:
            galpha[sidx[p]] += gp
        for k in range(K):
            g[off + k] += Xc[p, k] * gp
        for j in range(L):
            gdev[sidx[p], j] += Xc[p, sl[j]] * gp
    return lp, gint, galpha, gkappa, gdev


@njit(cache=True, nogil=True, error_model="numpy")
def logp_grad(
    x,
    structure,
    family,
    n_strata,
    priors,
    sidx,
    Xc,
    a,
    b,
    const,
    n_trials=0,
    sl=None,
    slope_structure=NONCENTERED,
):
    """Log-density and gradient at the unconstrained point ``x``.

    ``priors``: rows for the intercept (or mu_stratum), sigma_stratum (ignored without strata),
    one per coefficient, sigma_slope (with varying slopes) and, for the beta-binomial, the
    concentration. ``sidx``: stratum code per pattern; ``Xc``: centred design columns (P, K);
    ``a``/``b``: the family's per-pattern weights (beta-binomial: the count and its weighted
    multiplicity); ``const``: additive constant of the likelihood; ``n_trials``: the
    beta-binomial's trials (unused otherwise); ``sl``: indices of the design columns whose
    coefficient varies by stratum (None: none), ``slope_structure`` CENTERED or NONCENTERED.

    The scale ``sigma_stratum = exp(u)`` enters only through ``exp(u)`` and ``exp(-u)``
    (products, never a division), and numpy's error model turns an overflow into inf instead
    of an exception: far out in the tails the density is -inf with a zero gradient, which the
    sampler treats as a divergence and rejects, where an exception would abort the sampler.
    """
    n = x.shape[0]
    g = np.empty(n)
    if sl is None:
        sl_ = np.zeros(0, dtype=np.int64)
    else:
        sl_ = sl
    lp = _density(
        x, g, structure, family, n_strata, priors, sidx, Xc, a, b, const, n_trials, sl_,
        slope_structure,
    )  # fmt: skip
    if not _all_finite(lp, g):
        return -math.inf, np.zeros(n)
    return lp, g


@njit(cache=True, nogil=True, error_model="numpy")
def _density(
    x, g, structure, family, n_strata, priors, sidx, Xc, a, b, const, n_trials, sl, slope_structure
):
    """Log-density at ``x``; overwrites ``g`` with its gradient (may be non-finite)."""
    K = Xc.shape[1]
    L = sl.shape[0]
    g[:] = 0.0
    lp = const
    # intercept / hyper-mean
    l0, d0 = _prior(priors[0], x[0])
    lp += l0
    g[0] += d0
    S = 0
    sig = 1.0
    inv = 1.0
    u = 0.0
    if structure == NO_STRATA:
        off = 1
    else:
        S = n_strata
        off = 2 + S
        u = x[1]
        sig = math.exp(u)
        inv = math.exp(-u)
        ls, ds = _prior(priors[1], sig)
        lp += ls + u  # log-Jacobian of sigma = exp(u)
        g[1] += ds * sig + 1.0
    # coefficients
    for k in range(K):
        lk, dk = _prior(priors[2 + k], x[off + k])
        lp += lk
        g[off + k] += dk
    # stratum slopes: sigma_slope = exp(t) then (stratum, slope) z_slope or beta_stratum
    it = off + K
    tau = 1.0
    dev = np.zeros((S, L))
    if L > 0:
        lt, tau = _slopes_prior(x, g, priors[2 + K], sl, S, off, it, slope_structure, dev)
        lp += lt
    # beta-binomial concentration kappa = exp(v), the last free variable (PyMC creates it last)
    kappa = 1.0
    if family == BETABINOMIAL:
        v = x[x.shape[0] - 1]
        kappa = math.exp(v)
        lk, dk = _prior(priors[priors.shape[0] - 1], kappa)
        lp += lk + v  # log-Jacobian
        g[x.shape[0] - 1] += dk * kappa + 1.0
    alpha = np.empty(S)
    if structure == CENTERED:
        mu = x[0]
        for j in range(S):
            aj = x[2 + j]
            alpha[j] = aj
            r = (aj - mu) * inv
            lp += -0.5 * r * r - u - 0.5 * 1.8378770664093453  # log(2 pi)
            g[2 + j] += -r * inv
            g[0] += r * inv
            g[1] += r * r - 1.0
    elif structure == NONCENTERED:
        mu = x[0]
        for j in range(S):
            zj = x[2 + j]
            alpha[j] = mu + sig * zj
            lp += -0.5 * zj * zj - 0.5 * 1.8378770664093453
            g[2 + j] += -zj
    # likelihood
    llp, gint, galpha, gkappa, gdev = _pattern_loglik(
        x, structure, family, S, sidx, Xc, a, b, off, alpha, g, n_trials, kappa, sl, dev
    )
    lp += llp
    if L > 0:
        _slopes_chain(x, g, gdev, tau, sl, off, it, slope_structure)
    if family == BETABINOMIAL:
        g[x.shape[0] - 1] += gkappa * kappa
    if structure == NO_STRATA:
        g[0] += gint
    elif structure == CENTERED:
        for j in range(S):
            g[2 + j] += galpha[j]
    else:
        for j in range(S):
            g[0] += galpha[j]
            g[1] += galpha[j] * sig * x[2 + j]
            g[2 + j] += galpha[j] * sig
    return lp


@njit(cache=True, nogil=True, error_model="numpy")
def _slopes_prior(x, g, row, sl, S, off, it, slope_structure, dev):
    """Prior of sigma_slope = exp(x[it]) (with its log-Jacobian) and of the (stratum, slope)
    block after it: z_slope ~ N(0, 1) with ``dev = sigma_slope * z`` (non-centered) or
    beta_stratum ~ N(beta[sl], sigma_slope) with ``dev = beta_stratum - beta[sl]`` (centered).
    Adds the gradient to ``g``, writes ``dev``; returns the log-density and sigma_slope."""
    L = sl.shape[0]
    t = x[it]
    tau = math.exp(t)
    itau = math.exp(-t)
    lt, dt = _prior(row, tau)
    lp = lt + t
    g[it] += dt * tau + 1.0
    for j in range(S):
        for k in range(L):
            i = it + 1 + j * L + k
            v = x[i]
            if slope_structure == NONCENTERED:
                lp += -0.5 * v * v - 0.5 * 1.8378770664093453
                g[i] -= v
                dev[j, k] = tau * v
            else:
                d = v - x[off + sl[k]]
                r = d * itau
                lp += -0.5 * r * r - t - 0.5 * 1.8378770664093453
                g[i] -= r * itau
                g[off + sl[k]] += r * itau
                g[it] += r * r - 1.0
                dev[j, k] = d
    return lp, tau


@njit(cache=True, nogil=True, error_model="numpy")
def _slopes_chain(x, g, gdev, tau, sl, off, it, slope_structure):
    """Adds to ``g`` the likelihood's gradient through the slope deviations (``gdev``)."""
    S, L = gdev.shape
    for j in range(S):
        for k in range(L):
            i = it + 1 + j * L + k
            if slope_structure == NONCENTERED:  # dev = tau * z
                g[i] += gdev[j, k] * tau
                g[it] += gdev[j, k] * tau * x[i]
            else:  # dev = beta_stratum - beta
                g[i] += gdev[j, k]
                g[off + sl[k]] -= gdev[j, k]


@njit(cache=True, nogil=True)
def _all_finite(lp, g):
    finite = math.isfinite(lp)
    for i in range(g.shape[0]):
        finite = finite and math.isfinite(g[i])
    return finite


# C entry points for nutpie.  The data travel in one packed float64 buffer behind nutpie's
# user-data pointer, not as closure constants, so one compiled (and disk-cached) pair of
# C functions serves every dataset and spec; they live in this file so that numba's cache,
# which is invalidated by its own source file only, never pairs them with a stale density.

#: buffer header: total length, structure, family, n_strata, patterns, columns, const, n_dim,
#: n_trials, slopes, slope structure
_HEADER = 11


@njit(cache=True, nogil=True)
def n_expanded(structure, n_strata, n_dim, n_slopes=0, slope_structure=NONCENTERED):
    """Length of the expanded draw: the free vector plus ``alpha`` and ``beta_stratum`` when
    they are derived (non-centered)."""
    n = n_dim + (n_strata if structure == NONCENTERED else 0)
    return n + (n_strata * n_slopes if slope_structure == NONCENTERED else 0)


@njit(cache=True, nogil=True)
def n_priors(family, K, n_slopes=0):
    """Rows of ``priors``: intercept, sigma_stratum, K coefficients[, sigma_slope][, concentration]."""
    return 2 + K + (1 if n_slopes > 0 else 0) + (1 if family == BETABINOMIAL else 0)


def pack(
    structure, family, n_strata, priors, sidx, Xc, a, b, const, n_trials=0, sl=None,
    slope_structure=NONCENTERED,
) -> np.ndarray:  # fmt: skip
    """The arguments of :func:`logp_grad` as one float64 buffer (integer codes as int64 bits)."""
    P, K = Xc.shape
    sl = np.zeros(0, dtype=np.int64) if sl is None else np.ascontiguousarray(sl, dtype=np.int64)
    L = len(sl)
    n_dim = 1 + K if structure == NO_STRATA else 2 + n_strata + K
    n_dim += (1 + n_strata * L if L else 0) + (family == BETABINOMIAL)
    if priors.shape != (n_priors(family, K, L), 5) or len(sidx) != P or len(a) != P or len(b) != P:
        raise ValueError("fast density arrays disagree in length")
    if L and (structure == NO_STRATA or np.any(sl < 0) or np.any(sl >= K)):
        raise ValueError("varying slopes need stratum intercepts and columns of the design")
    if family == BETABINOMIAL:
        y = np.asarray(a)
        if not (np.all(y == np.round(y)) and np.all(y >= 0) and np.all(y <= n_trials)):
            raise ValueError(f"beta-binomial counts must be integers from 0 to {n_trials}")
    body = [
        np.asarray(priors, dtype=np.float64).ravel(),
        np.ascontiguousarray(sidx, dtype=np.int64).view(np.float64),
        np.asarray(Xc, dtype=np.float64).ravel(),
        np.asarray(a, dtype=np.float64),
        np.asarray(b, dtype=np.float64),
        sl.view(np.float64),
    ]
    n = _HEADER + sum(len(v) for v in body)
    head = np.array(
        [n, structure, family, n_strata, P, K, const, n_dim, n_trials, L, slope_structure],
        dtype=np.float64,
    )
    return np.ascontiguousarray(np.concatenate([head, *body]))


@njit(cache=True, nogil=True)
def _unpack(buf):
    structure, family, n_strata = int(buf[1]), int(buf[2]), int(buf[3])
    P, K, L = int(buf[4]), int(buf[5]), int(buf[9])
    o = _HEADER
    R = n_priors(family, K, L)
    priors = buf[o : o + R * 5].reshape((R, 5))
    o += R * 5
    sidx = buf[o : o + P].view(np.int64)
    o += P
    Xc = buf[o : o + P * K].reshape((P, K))
    o += P * K
    a = buf[o : o + P]
    b = buf[o + P : o + 2 * P]
    sl = buf[o + 2 * P : o + 2 * P + L].view(np.int64)
    return structure, family, n_strata, priors, sidx, Xc, a, b, buf[6], int(buf[8]), sl


def _logp_c(dim, x_, grad_, logp_, user_data):
    buf = carray(user_data, (int(carray(user_data, (_HEADER,), np.float64)[0]),), np.float64)
    n = int(buf[7])
    if dim != n:
        return -1
    x = carray(x_, (n,))
    g = carray(grad_, (n,))
    structure, family, n_strata, priors, sidx, Xc, a, b, const, n_trials, sl = _unpack(buf)
    lp = _density(
        x, g, structure, family, n_strata, priors, sidx, Xc, a, b, const, n_trials, sl,
        int(buf[10]),
    )  # fmt: skip
    logp_[0] = lp
    # positive codes are recoverable for nutpie: the step becomes a divergence
    if not math.isfinite(lp):
        return 4
    if not _all_finite(lp, g):
        return 3
    return 0


def _expand_c(dim, n_out, x_, out_, user_data):
    buf = carray(user_data, (int(carray(user_data, (_HEADER,), np.float64)[0]),), np.float64)
    structure, family, S, n, K = int(buf[1]), int(buf[2]), int(buf[3]), int(buf[7]), int(buf[5])
    ss = int(buf[10])
    sl = _unpack(buf)[10]
    L = sl.shape[0]
    if dim != n or n_out != n_expanded(structure, S, n, L, ss):
        return -1
    x = carray(x_, (n,))
    out = carray(out_, (n_out,))
    for i in range(n):
        out[i] = x[i]
    o = n
    if structure != NO_STRATA:
        sig = math.exp(x[1])
        out[1] = sig
        if structure == NONCENTERED:
            for j in range(S):
                out[o + j] = x[0] + sig * x[2 + j]  # alpha
            o += S
    if L > 0:
        it = 2 + S + K
        tau = math.exp(x[it])
        out[it] = tau  # sigma_slope
        if ss == NONCENTERED:
            for j in range(S):
                for k in range(L):
                    out[o + j * L + k] = x[2 + S + sl[k]] + tau * x[it + 1 + j * L + k]
    if family == BETABINOMIAL:
        out[n - 1] = math.exp(x[n - 1])  # concentration
    return 0


@functools.cache
def c_functions():
    """``(logp, expand)`` numba C callbacks with nutpie's signatures, machine code from disk.

    ``logp(dim, x, grad_out, logp_out, user_data) -> int64``: 0, or 4 / 3 for a non-finite
    log-density / gradient; ``expand(dim, n_expanded, x, out, user_data) -> int64`` writes the
    draw in the order mu_stratum, sigma_stratum, alpha or z_stratum, beta, [sigma_slope,
    z_slope or beta_stratum], [concentration], [alpha], [beta_stratum] (pooled) or intercept,
    beta, [concentration]. ``user_data`` is a buffer from :func:`pack`.
    """
    dbl = types.CPointer(types.double)
    logp = cfunc(
        types.int64(types.uint64, dbl, dbl, dbl, types.voidptr),
        cache=True,
        error_model="numpy",
    )(_logp_c)
    expand = cfunc(
        types.int64(types.uint64, types.uint64, dbl, dbl, types.voidptr),
        cache=True,
        error_model="numpy",
    )(_expand_c)
    return logp, expand
