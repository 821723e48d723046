"""Design-based estimators for a stratified single-stage sample with finite population correction.

The LEA-CST sample is a stratified simple random sample of agencies (two certainty strata, two
random strata). Treating each stratum's respondents as a simple random subsample of its
(eligible) frame, this module computes what R's ``survey`` package computes for
``svydesign(ids = ~1, strata = ~stratum, fpc = ~frame, weights = ~w)``:

* :func:`svymean` -- weighted (Hajek) means with Taylor-linearisation standard errors;
* :func:`svyglm_logit` -- survey-weighted logistic regression (``svyglm(family =
  quasibinomial)``): weighted MLE, sandwich variance of the estimating functions;
* :func:`svychisq` -- Rao-Scott second-order corrected Pearson test of a two-way table
  (``svychisq(statistic = "F")``, the default);
* :func:`marginal_rd` -- a g-computation (standardised) risk difference for one binary
  predictor with its linearisation standard error.

No maintained Python library does all of this with an fpc (samplics covers means, not
``svyglm``/``svychisq``), so it is written here in numpy and checked against R's survey
package in ``tests/test_weights.py`` (reference values: ``tests/reference/weights_survey.R``
and the CSV it wrote).

The variance of any linearised statistic with influence values ``z`` is R's ``svyrecvar`` for
one stage: ``sum_h (1 - n_h / N_h) * n_h / (n_h - 1) * sum_i (z_hi - zbar_h)^2``. A stratum in
which every frame unit responded (``n_h == N_h``) therefore contributes no variance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from cst_bayes.core.errors import InputError


@dataclass(frozen=True)
class Design:
    """A one-stage stratified design over ``n`` respondents.

    Attributes
    ----------
    weights
        Survey weight of each respondent (length ``n``).
    strata
        Integer stratum code of each respondent; all zero for an unstratified design.
    fpc
        Population size of the respondent's stratum (``N_h``), or ``None`` for sampling with
        replacement (no finite population correction).
    """

    weights: np.ndarray
    strata: np.ndarray
    fpc: np.ndarray | None = None

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, dtype=float)
        s = np.asarray(self.strata)
        if w.ndim != 1 or s.shape != w.shape:
            raise InputError("weights and strata must be 1-D arrays of the same length")
        if not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise InputError("survey weights must be positive and finite", column="weight")
        if self.fpc is not None:
            f = np.asarray(self.fpc, dtype=float)
            if f.shape != w.shape:
                raise InputError("fpc must have one value per respondent")
            for h in np.unique(s):
                n_h = int(np.sum(s == h))
                if np.any(f[s == h] < n_h - 1e-9):
                    raise InputError(
                        f"stratum {h}: population size {f[s == h][0]:g} is below the {n_h} respondents",
                        column="fpc",
                    )

    @property
    def n(self) -> int:
        """Number of respondents."""
        return len(self.weights)

    @property
    def n_strata(self) -> int:
        """Number of strata."""
        return len(np.unique(self.strata))

    @property
    def degf(self) -> int:
        """Design degrees of freedom: PSUs minus strata (R's ``degf``)."""
        return self.n - self.n_strata

    @classmethod
    def simple(cls, n: int) -> Design:
        """Equal weights, one stratum, no fpc: the unweighted analysis (``svydesign(ids=~1, weights=~1)``)."""
        return cls(weights=np.ones(n), strata=np.zeros(n, dtype=int), fpc=None)


def design_variance(design: Design, z: np.ndarray) -> np.ndarray:
    """Covariance matrix of a total of influence values ``z`` under the design (R's ``svyrecvar``).

    Parameters
    ----------
    design
        The design.
    z
        ``(n,)`` or ``(n, p)`` influence values (already multiplied by the weights).

    Returns
    -------
    numpy.ndarray
        ``(p, p)`` covariance matrix (``(1, 1)`` for a vector input).
    """
    z = np.asarray(z, dtype=float)
    if z.ndim == 1:
        z = z[:, None]
    p = z.shape[1]
    out = np.zeros((p, p))
    s = np.asarray(design.strata)
    for h in np.unique(s):
        idx = s == h
        zh = z[idx]
        n_h = zh.shape[0]
        if n_h < 2:
            # A lone PSU has no within-stratum variance estimate; R stops here by default
            # ("lonely.psu = fail"), so do we rather than silently return zero.
            raise InputError(
                f"stratum {h} has a single respondent: its variance is not estimable",
                column="stratum",
            )
        fpc = 1.0 if design.fpc is None else 1.0 - n_h / float(np.asarray(design.fpc)[idx][0])
        d = zh - zh.mean(axis=0)
        out += max(fpc, 0.0) * n_h / (n_h - 1) * (d.T @ d)
    return out


def svymean(design: Design, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted means and their covariance (R's ``svymean``).

    Parameters
    ----------
    design
        The design.
    y
        ``(n,)`` or ``(n, k)`` values.

    Returns
    -------
    (means, covariance)
        ``(k,)`` Hajek means and their ``(k, k)`` linearisation covariance.
    """
    y = np.asarray(y, dtype=float)
    if y.ndim == 1:
        y = y[:, None]
    w = np.asarray(design.weights, dtype=float)
    total = w.sum()
    mean = (w[:, None] * y).sum(axis=0) / total
    z = w[:, None] * (y - mean) / total
    return mean, design_variance(design, z)


@dataclass(frozen=True)
class GlmResult:
    """A survey-weighted logistic regression."""

    names: list[str]
    coef: np.ndarray
    cov: np.ndarray
    df_resid: int
    X: np.ndarray
    infl: np.ndarray  # (n, p) influence of each respondent on coef (estfun %*% Ainv)

    def table(self) -> pd.DataFrame:
        """``term, estimate, se, statistic, p_value`` on the log-odds scale (R's ``summary.svyglm``)."""
        se = np.sqrt(np.diag(self.cov))
        t = self.coef / se
        p = 2 * stats.t.sf(np.abs(t), self.df_resid)
        return pd.DataFrame(
            {"term": self.names, "estimate": self.coef, "se": se, "statistic": t, "p_value": p}
        )


def svyglm_logit(
    design: Design,
    X: np.ndarray,
    y: np.ndarray,
    names: list[str],
    *,
    tol: float = 1e-12,
    max_iter: int = 100,
) -> GlmResult:
    """Survey-weighted logistic regression, as R's ``svyglm(y ~ ..., family = quasibinomial)``.

    The point estimate solves the weighted score equations (IRLS); the covariance is the
    design-based sandwich ``Ainv B Ainv`` with ``B`` from :func:`design_variance` of the
    weighted scores. The residual degrees of freedom are ``degf + 1 - p`` as in R.

    Raises
    ------
    InputError
        If the design matrix is rank deficient or IRLS does not converge (separation).
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    # R rescales the weights to mean 1 first; the sandwich is invariant to the scale, the
    # IRLS convergence criterion is not, so do the same.
    w = np.asarray(design.weights, dtype=float)
    w = w / w.mean()
    if np.linalg.matrix_rank(X) < X.shape[1]:
        raise InputError(f"design matrix is rank deficient (terms {names})")
    beta = np.zeros(X.shape[1])
    for _ in range(max_iter):
        eta = X @ beta
        mu = 1 / (1 + np.exp(-eta))
        v = np.clip(mu * (1 - mu), 1e-300, None)
        A = X.T @ (X * (w * v)[:, None])
        step = np.linalg.solve(A, X.T @ (w * (y - mu)))
        beta = beta + step
        if np.max(np.abs(step)) < tol * (1 + np.max(np.abs(beta))):
            break
    else:
        raise InputError("survey-weighted logistic regression did not converge (separation?)")
    if np.max(np.abs(beta)) > 30:
        raise InputError(
            f"survey-weighted logistic regression diverges (separation in terms {names})"
        )
    mu = 1 / (1 + np.exp(-(X @ beta)))
    A = X.T @ (X * (w * mu * (1 - mu))[:, None])
    Ainv = np.linalg.inv(A)
    infl = (X * (w * (y - mu))[:, None]) @ Ainv
    cov = design_variance(design, infl)
    return GlmResult(
        names=list(names), coef=beta, cov=cov, df_resid=design.degf + 1 - X.shape[1], X=X, infl=infl
    )


def marginal_rd(design: Design, fit: GlmResult, column: int) -> tuple[float, float]:
    """Standardised risk difference of a 0/1 predictor, averaged over the weighted sample.

    ``RD = sum_i w_i [expit(x_i(1) b) - expit(x_i(0) b)] / sum_i w_i``, where ``x_i(a)`` is
    respondent i's covariates with column ``column`` set to ``a``. The standard error
    linearises both the weighted average and ``b`` (through ``fit.infl``).

    Returns
    -------
    (estimate, se)
    """
    X1 = fit.X.copy()
    X0 = fit.X.copy()
    X1[:, column] = 1.0
    X0[:, column] = 0.0
    p1 = 1 / (1 + np.exp(-(X1 @ fit.coef)))
    p0 = 1 / (1 + np.exp(-(X0 @ fit.coef)))
    d = p1 - p0
    w = np.asarray(design.weights, dtype=float)
    W = w.sum()
    rd = float((w * d).sum() / W)
    # d RD / d b: weighted average of p(1-p) x at a=1 minus at a=0.
    grad = ((w * p1 * (1 - p1))[:, None] * X1 - (w * p0 * (1 - p0))[:, None] * X0).sum(axis=0) / W
    # infl is on the scale of the rescaled weights used in the fit: its total is b's deviation.
    z = w * (d - rd) / W + fit.infl @ grad
    var = design_variance(design, z)[0, 0]
    return rd, float(np.sqrt(var))


def svychisq(design: Design, rows: np.ndarray, cols: np.ndarray) -> dict[str, float]:
    """Rao-Scott second-order corrected Pearson test of independence (R ``svychisq``, ``"F"``).

    Parameters
    ----------
    design
        The design.
    rows, cols
        Category codes of the two variables for each respondent.

    Returns
    -------
    dict
        ``chi2`` (Pearson X^2 of the weighted table rescaled to ``n``), ``F`` (X^2 over the
        trace of the design-effect matrix), ``ndf`` and ``ddf`` (Satterthwaite degrees of
        freedom ``d0`` and ``d0 * degf``), and ``p_value``.
    """
    rows = np.asarray(rows)
    cols = np.asarray(cols)
    rlev = np.unique(rows)
    clev = np.unique(cols)
    nr, nc = len(rlev), len(clev)
    if nr < 2 or nc < 2:
        return {"chi2": np.nan, "F": np.nan, "ndf": np.nan, "ddf": np.nan, "p_value": np.nan}
    ri = np.searchsorted(rlev, rows)
    ci = np.searchsorted(clev, cols)
    cell = ri + nr * ci  # rows vary fastest, as R's interaction() and expand.grid
    n = design.n
    mm = np.zeros((n, nr * nc))
    mm[np.arange(n), cell] = 1.0
    mean2, V = svymean(design, mm)

    # Pearson X^2 on the weighted table scaled to the sample size (svytable(Ntotal = n)).
    table = (mean2 * n).reshape(nc, nr).T
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = float(np.nansum((table - expected) ** 2 / expected))

    gr, gc = np.meshgrid(np.arange(nr), np.arange(nc), indexing="ij")
    gr = gr.T.ravel()  # expand.grid order: rows fastest
    gc = gc.T.ravel()
    R = (gr[:, None] == np.arange(1, nr)[None, :]).astype(float)
    C = (gc[:, None] == np.arange(1, nc)[None, :]).astype(float)
    X1 = np.column_stack([np.ones(nr * nc), R, C])
    inter = np.column_stack([R[:, i] * C[:, j] for j in range(nc - 1) for i in range(nr - 1)])
    # Cmat: the interaction contrasts made orthogonal to the main effects (qr.resid).
    Q, _ = np.linalg.qr(X1)
    Cmat = inter - Q @ (Q.T @ inter)
    inv = np.where(mean2 == 0, 0.0, 1.0 / np.where(mean2 == 0, 1.0, mean2))
    iD = np.diag(inv)
    denom = Cmat.T @ (iD / n) @ Cmat
    numr = Cmat.T @ iD @ V @ iD @ Cmat
    Delta = np.linalg.solve(denom, numr)
    tr = float(np.trace(Delta))
    d0 = tr**2 / float(np.trace(Delta @ Delta))
    F = chi2 / tr
    ddf = d0 * design.degf
    p = float(stats.f.sf(F, d0, ddf))
    return {"chi2": chi2, "F": F, "ndf": d0, "ddf": ddf, "p_value": p}
