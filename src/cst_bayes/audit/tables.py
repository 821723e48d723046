"""Audit checks of Tables 1-3: tests, percentages, sums, bounds and p-values recomputed."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cst_bayes.audit.base import (
    TABLE1_ORDER,
    _Checks,
    _fmt,
    _in_printed,
    _round_half_up,
)
from cst_bayes.core.config import APPROACHES, OUTCOME, REFERENCE_STRATUM, STRATA
from cst_bayes.data.published import p_interval, phi_matrix


# --------------------------------------------------------------------------- Table 1
def _table1_chisq(t1: pd.DataFrame, out: _Checks) -> None:
    from scipy.stats import chi2_contingency

    for var, g in t1[t1["stratum"] != "all"].groupby("variable", sort=False):
        yes = g["n_yes"].to_numpy()
        tab = np.vstack([yes, g["n_stratum"].to_numpy() - yes])
        # Pearson's test without Yates' correction: the 2x4 table has 3 df, and Yates applies
        # only to 1-df tables (scipy would ignore the flag here anyway).
        res = chi2_contingency(tab, correction=False)
        r = g.iloc[0]
        ok = _in_printed(float(res.pvalue), r["p_op"], r["p_value"], int(r["p_decimals"]))
        out.add(
            f"t1.chisq.{var}",
            "table1",
            f"chi-square p of {var} by stratum (2x4, Pearson) recomputed from the counts",
            "pass" if ok else "fail",
            f"p {r['p_value_printed']}",
            f"chi2={res.statistic:.2f}, df={res.dof}, p={_fmt(float(res.pvalue))}; "
            f"smallest expected count {res.expected_freq.min():.1f}",
        )


def _table1_exact(t1: pd.DataFrame, out: _Checks, *, seed: int, draws: int = 10_000) -> None:
    """Monte Carlo exact test where the chi-square approximation is doubtful (an expected count < 5).

    Tables with Table 1's margins are drawn under independence (``scipy.stats.random_table``,
    the multivariate hypergeometric), and p is the share with a Pearson statistic at least as
    large as the observed one, ``(1 + hits) / (1 + draws)``.
    """
    from scipy.stats import chi2_contingency, random_table
    from scipy.stats.contingency import expected_freq

    for var, g in t1[t1["stratum"] != "all"].groupby("variable", sort=False):
        yes = g["n_yes"].to_numpy()
        tab = np.vstack([yes, g["n_stratum"].to_numpy() - yes])
        exp = expected_freq(tab)
        if exp.min() >= 5:
            continue
        stat = chi2_contingency(tab, correction=False).statistic
        # One stream per variable, from the audit's seed, so adding a check changes no other.
        rng = np.random.default_rng([seed, TABLE1_ORDER.index(var)])
        sims = random_table(tab.sum(1), tab.sum(0), seed=rng).rvs(size=draws)
        hits = int((((sims - exp) ** 2 / exp).sum(axis=(1, 2)) >= stat * (1 - 1e-12)).sum())
        p_mc = (1 + hits) / (1 + draws)
        se = math.sqrt(p_mc * (1 - p_mc) / draws)
        r = g.iloc[0]
        a, b = p_interval(r["p_op"], r["p_value"], int(r["p_decimals"]))
        ok = p_mc - 2 * se < b and p_mc + 2 * se >= a
        out.add(
            f"t1.exact.{var}",
            "table1",
            f"{var}: Monte Carlo exact p (smallest expected count {exp.min():.1f} < 5) agrees with the printed chi-square p",
            "pass" if ok else "flag",
            f"p {r['p_value_printed']}",
            f"p = {_fmt(p_mc)} +- {_fmt(2 * se, 2)} ({draws} tables with the same margins, seed {seed})",
        )


def _table1_pct(t1: pd.DataFrame, out: _Checks) -> None:
    for r in t1.to_dict("records"):
        d = int(r["pct_decimals"])
        exact = 100.0 * r["n_yes"] / r["n_stratum"]
        rounded = _round_half_up(exact, d)
        truncated = math.floor(exact * 10**d + 1e-9) / 10**d
        if rounded == r["pct_published"]:
            status, how = "pass", "rounds to the printed value"
        elif truncated == r["pct_published"]:
            status, how = "flag", "printed value is truncated, not rounded"
        else:
            status, how = "fail", "neither rounding nor truncation gives the printed value"
        out.add(
            f"t1.pct.{r['variable']}.{r['stratum']}",
            "table1",
            f"percentage vs count for {r['variable']}, stratum {r['stratum']}",
            status,
            f"{r['pct_published']:.{d}f}%",
            f"{r['n_yes']}/{r['n_stratum']} = {exact:.3f}% ({how})",
        )


def _feasible_counts(pct: float, n: int, decimals: int) -> tuple[list[int], list[int]]:
    """GRIM: the integer counts k in 0..n whose percentage k/n prints as ``pct``.

    Returns the counts that give ``pct`` by rounding and those that give it by truncation.
    """
    ks = np.arange(n + 1)
    exact = 100.0 * ks / n
    q = 10.0**decimals
    rounded = np.floor(exact * q + 0.5 + 1e-9) / q
    truncated = np.floor(exact * q + 1e-9) / q
    return ks[np.isclose(rounded, pct)].tolist(), ks[np.isclose(truncated, pct)].tolist()


def _table1_grim(t1: pd.DataFrame, out: _Checks) -> None:
    for r in t1.to_dict("records"):
        by_round, by_trunc = _feasible_counts(
            r["pct_published"], r["n_stratum"], int(r["pct_decimals"])
        )
        if by_round:
            status, obs = "pass", f"counts giving it: {by_round}"
        elif by_trunc:
            status, obs = "flag", f"only by truncation: {by_trunc}"
        else:
            status, obs = "fail", "no integer count out of n gives this percentage"
        out.add(
            f"t1.grim.{r['variable']}.{r['stratum']}",
            "table1",
            f"GRIM: is {r['pct_published']}% possible for n={r['n_stratum']} ({r['variable']}, {r['stratum']})?",
            status,
            f"some k in 0..{r['n_stratum']} with k/n = {r['pct_published']}%",
            obs,
        )


def _table1_sums(t1: pd.DataFrame, out: _Checks) -> None:
    for var, g in t1.groupby("variable", sort=False):
        total = g[g["stratum"] == "all"].iloc[0]
        parts = g[g["stratum"] != "all"]
        s_yes, s_n = int(parts["n_yes"].sum()), int(parts["n_stratum"].sum())
        ok = s_yes == total["n_yes"] and s_n == total["n_stratum"]
        out.add(
            f"t1.sum.{var}",
            "table1",
            f"strata of {var} sum to the 'all' row",
            "pass" if ok else "fail",
            f"{total['n_yes']}/{total['n_stratum']}",
            f"{s_yes}/{s_n}",
        )


def approach_count_bounds(t1: pd.DataFrame) -> pd.DataFrame:
    """Mean of the approach count by stratum, and the attainable range of its sum of squares.

    Given the nine yes-counts ``c_j`` of a stratum of ``n`` agencies, the total
    ``T = sum c_j`` and so the mean ``T / n`` are fixed. The within-stratum sum of squares of
    the agency counts is smallest when the counts are as equal as possible (``T mod n``
    agencies with ``ceil(T/n)``, the rest ``floor``) and largest when the approaches are
    nested (agency ``i`` has approach ``j`` iff ``i < c_j``). Both are attainable binary
    matrices (Gale-Ryser: the nested row sums majorise every feasible row-sum vector, the
    equal ones are majorised by all), and the sum of squares is Schur-convex, so these are
    the exact bounds.

    Returns
    -------
    pandas.DataFrame
        Index ``config.STRATA``; columns ``n, total, mean, ss_min, ss_max, sd_min, sd_max``
        (``ss`` = sum of squared deviations from the stratum mean; ``sd`` with ``n - 1``).
    """
    rows = {}
    for s in STRATA:
        g = t1[(t1["stratum"] == s) & t1["variable"].isin(APPROACHES)]
        n = int(g["n_stratum"].iloc[0])
        c = g["n_yes"].to_numpy(dtype=np.int64)
        total = int(c.sum())
        q, rem = divmod(total, n)
        sumsq_min = rem * (q + 1) ** 2 + (n - rem) * q**2
        sumsq_max = int(np.minimum.outer(c, c).sum())  # sum_i (#{j: c_j > i})^2
        ss_min, ss_max = sumsq_min - total**2 / n, sumsq_max - total**2 / n
        rows[s] = dict(
            n=n,
            total=total,
            mean=total / n,
            ss_min=ss_min,
            ss_max=ss_max,
            sd_min=math.sqrt(ss_min / (n - 1)),
            sd_max=math.sqrt(ss_max / (n - 1)),
        )
    return pd.DataFrame.from_dict(rows, orient="index")


def implied_count_variance(p: np.ndarray, phi: np.ndarray) -> float:
    """Population variance of the sum of binary variables with margins ``p`` and phi matrix ``phi``.

    ``Var(sum X_j) = sum_jk phi_jk s_j s_k`` with ``s_j = sqrt(p_j (1 - p_j))``: for 0/1
    variables phi is the Pearson correlation, so ``phi_jk s_j s_k`` is their covariance.
    """
    sd = np.sqrt(np.asarray(p, dtype=float) * (1 - np.asarray(p, dtype=float)))
    return float((np.outer(sd, sd) * np.asarray(phi, dtype=float)).sum())


def _anova(t1: pd.DataFrame, t2: pd.DataFrame, out: _Checks) -> None:
    from scipy.stats import f as f_dist

    b = approach_count_bounds(t1)
    for s, r in b.iterrows():
        out.add(
            f"t1.mean.{s}",
            "table1",
            f"mean approach count in stratum {s} implied by the nine marginals (GRIM: a multiple of 1/n)",
            "pass",
            f"T/n with T integer, 0 <= T <= 9n = {9 * int(r['n'])}",
            f"{int(r['total'])}/{int(r['n'])} = {r['mean']:.3f}; SD attainable {r['sd_min']:.2f}..{r['sd_max']:.2f}",
        )
    ordered = bool(np.all(np.diff(b.loc[["1-49", "50-999", "1000+"], "mean"].to_numpy()) > 0))
    out.add(
        "t1.mean.order",
        "table1",
        "text: larger agencies report a greater number of approaches",
        "pass" if ordered else "flag",
        "mean count rises 1-49 < 50-999 < 1000+",
        ", ".join(f"{s}: {m:.2f}" for s, m in b["mean"].items()),
    )
    n_tot, k = int(b["n"].sum()), len(b)
    grand = b["total"].sum() / n_tot
    ssb = float((b["n"] * (b["mean"] - grand) ** 2).sum())
    df1, df2 = k - 1, n_tot - k
    ssw_min, ssw_max = float(b["ss_min"].sum()), float(b["ss_max"].sum())
    f_max, f_min = (ssb / df1) / (ssw_min / df2), (ssb / df1) / (ssw_max / df2)
    p_lo, p_hi = float(f_dist.sf(f_max, df1, df2)), float(f_dist.sf(f_min, df1, df2))
    out.add(
        "anova.attainable",
        "anova",
        "one-way ANOVA of the approach count by stratum: is the printed p<0.001 attainable? "
        "(between SS fixed by the marginals, within SS bounded)",
        "pass" if p_lo < 0.001 else "fail",
        "p < 0.001",
        f"SSB={ssb:.1f}; SSW in [{ssw_min:.1f}, {ssw_max:.1f}]; F({df1},{df2}) in [{f_min:.2f}, {f_max:.2f}]; "
        f"p in [{_fmt(p_lo)}, {_fmt(p_hi)}]"
        + ("; p<0.001 for every arrangement" if p_hi < 0.001 else ""),
    )
    # Table 2 fixes the pooled variance of the count: Var = sum p_j q_j + 2 sum r_jk s_j s_k
    # (phi times the two population SDs is the covariance of two 0/1 variables). With the
    # margins exact, only the 2-decimal rounding of r (+-0.005) is uncertain.
    all_p = t1[(t1["stratum"] == "all") & t1["variable"].isin(APPROACHES)].set_index("variable")
    p = (all_p["n_yes"] / all_p["n_stratum"]).reindex(list(APPROACHES)).to_numpy()
    phi = phi_matrix(t2).to_numpy()
    var_c = implied_count_variance(p, phi)
    var_half = implied_count_variance(p, np.ones_like(phi)) - implied_count_variance(
        p, np.eye(len(p))
    )
    var_half *= 0.005
    sst = np.array([var_c - var_half, var_c, var_c + var_half]) * n_tot
    ssw = sst - ssb
    inside = bool(ssw[2] >= ssw_min and ssw[0] <= ssw_max)
    f_impl = (ssb / df1) / (ssw / df2)
    p_impl = f_dist.sf(f_impl, df1, df2)
    ok = inside and bool(np.all(p_impl < 0.001))
    out.add(
        "anova.implied_by_table2",
        "anova",
        "ANOVA implied by Table 2 (pooled variance of the count from the phi matrix and the margins)",
        "pass" if ok else "flag",
        f"p < 0.001 and SSW in [{ssw_min:.1f}, {ssw_max:.1f}]",
        f"SD of count {math.sqrt(var_c):.3f}; SSW {ssw[0]:.1f}..{ssw[2]:.1f}; F {f_impl[2]:.2f}..{f_impl[0]:.2f}; "
        f"p <= {_fmt(float(p_impl.max()))}",
    )


# --------------------------------------------------------------------------- Table 2
def frechet_phi_bounds(p1: float, p2: float) -> tuple[float, float]:
    """The range of phi for two binary variables with success probabilities ``p1``, ``p2``.

    Closed form from the Frechet bounds of the joint cell ``P(1,1)`` in
    ``[max(0, p1 + p2 - 1), min(p1, p2)]``, with ``phi = (P11 - p1 p2) / sqrt(p1 q1 p2 q2)``.
    """
    den = math.sqrt(p1 * (1 - p1) * p2 * (1 - p2))
    lo = (max(0.0, p1 + p2 - 1) - p1 * p2) / den
    hi = (min(p1, p2) - p1 * p2) / den
    return lo, hi


def _table2(t1: pd.DataFrame, t2: pd.DataFrame, out: _Checks) -> None:
    from scipy.stats import chi2

    m = phi_matrix(t2)
    eig = np.linalg.eigvalsh(m.to_numpy())
    out.add(
        "t2.positive_definite",
        "table2",
        "correlation matrix of the nine approaches is positive definite",
        "pass" if eig.min() > 0 else "fail",
        "smallest eigenvalue > 0",
        f"eigenvalues {eig.min():.3f} .. {eig.max():.3f}",
    )
    all_rows = t1[t1["stratum"] == "all"].set_index("variable")
    p = all_rows["n_yes"] / all_rows["n_stratum"]
    n = int(all_rows["n_stratum"].iloc[0])
    for r in t2.to_dict("records"):
        half = 0.5 * 10.0 ** (-int(r["r_decimals"]))
        lo, hi = frechet_phi_bounds(float(p[r["row"]]), float(p[r["col"]]))
        ok = lo <= r["r"] + half and r["r"] - half <= hi
        out.add(
            f"t2.frechet.{r['row']}.{r['col']}",
            "table2",
            f"phi({r['row']}, {r['col']}) inside the bounds its two margins allow",
            "pass" if ok else "fail",
            f"[{lo:.3f}, {hi:.3f}]",
            f"r = {r['r']:.{r['r_decimals']}f}",
        )
    # Stars: the phi test of a 2x2 table is chi2 = n r^2 on 1 df. The r interval of the
    # printed rounding maps to a p interval; the stars must be possible somewhere in it.
    for r in t2.to_dict("records"):
        half = 0.5 * 10.0 ** (-int(r["r_decimals"]))
        a = max(abs(r["r"]) - half, 0.0)
        b = abs(r["r"]) + half
        p_hi, p_lo = float(chi2.sf(n * a * a, 1)), float(chi2.sf(n * b * b, 1))
        # Star categories as intervals of p; a category is possible if it meets [p_lo, p_hi].
        cats = {"***": (0.0, 0.001), "**": (0.001, 0.01), "": (0.01, 1.0 + 1e-12)}
        possible = [s for s, (a2, b2) in cats.items() if p_lo < b2 and p_hi >= a2]
        possible_txt = "/".join(s or "none" for s in possible)
        if not r["stars_legible"]:
            status, exp = "pass", "stars illegible in the source"
        else:
            status = "pass" if r["stars"] in possible else "flag"
            exp = r["stars"] or "none"
        out.add(
            f"t2.stars.{r['row']}.{r['col']}",
            "table2",
            f"significance stars of phi({r['row']}, {r['col']}) agree with r at n={n} (*** p<.001, ** p<.01)",
            status,
            exp,
            f"p in [{_fmt(p_lo)}, {_fmt(p_hi)}] -> {possible_txt}",
        )


# --------------------------------------------------------------------------- Table 3
def wald_p_range(
    estimate: float,
    ci_low: float,
    ci_high: float,
    decimals: int = 1,
    *,
    level: float = 0.95,
    grid: int = 301,
) -> tuple[float, float, bool]:
    """Range of two-sided Wald p-values consistent with a rounded ratio and its rounded CI.

    A Wald CI is symmetric on the log scale: ``log est = (log lo + log hi) / 2`` and
    ``SE = (log hi - log lo) / (2 z)``, so ``p = 2 Phi(-z |log lo + log hi| / (log hi - log lo))``.
    The true limits lie anywhere in the rounding intervals of the printed ones (half a printed
    unit either side), subject to their log-midpoint rounding to the printed estimate. The
    feasible set is convex in log coordinates and p is continuous, so its image is an interval,
    found on a ``grid x grid`` lattice.

    Returns
    -------
    (p_min, p_max, symmetric)
        ``symmetric`` is False when no pair of limits has a log-midpoint that rounds to the
        printed estimate (the CI is then not a log-symmetric Wald CI); the range is then
        computed without that constraint.
    """
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + level / 2))
    half = 0.5 * 10.0 ** (-decimals)
    tiny = 10.0 ** (-decimals - 3)
    lo = np.exp(np.linspace(math.log(max(ci_low - half, tiny)), math.log(ci_low + half), grid))
    hi = np.exp(np.linspace(math.log(max(ci_high - half, tiny)), math.log(ci_high + half), grid))
    llo, lhi = np.meshgrid(np.log(lo), np.log(hi), indexing="ij")
    width = lhi - llo
    valid = width > 0
    mid = np.exp((llo + lhi) / 2)
    sym = valid & (mid >= estimate - half) & (mid <= estimate + half)
    symmetric = bool(sym.any())
    use = sym if symmetric else valid
    zstat = z * np.abs(llo + lhi)[use] / width[use]
    # p falls as |z| grows: only the extreme z values matter.
    return float(2 * norm.sf(zstat.max())), float(2 * norm.sf(zstat.min())), symmetric


def _table3(t1: pd.DataFrame, t3: pd.DataFrame, out: _Checks) -> None:
    from scipy.stats import norm

    z = float(norm.ppf(0.975))
    t3 = t3.rename(columns={"or": "estimate"})
    for r in t3.to_dict("records"):
        d = int(r["or_decimals"])
        est = r["estimate"]
        p_min, p_max, symmetric = wald_p_range(est, r["ci_low"], r["ci_high"], d)
        a, b = p_interval(r["p_op"], r["p_value"], int(r["p_decimals"]))
        ok = p_min < b and p_max >= a
        se = (math.log(r["ci_high"]) - math.log(r["ci_low"])) / (2 * z)
        p_point = float(2 * norm.sf(abs(math.log(est)) / se))
        note = "" if symmetric else "; CI not log-symmetric about the OR at printed precision"
        status = "pass" if ok and symmetric else "flag"
        out.add(
            f"t3.p_vs_ci.{r['analysis']}.{r['term']}.{r['adjusted_for_size']}",
            "table3",
            f"p agrees with the 95% CI (log-symmetric Wald) for analysis {r['analysis']}, {r['term']}, "
            f"adjusted={r['adjusted_for_size']}",
            status,
            f"p {r['p_value_printed']} (OR {est} [{r['ci_low']}, {r['ci_high']}])",
            f"implied p {_fmt(p_point)} at printed values; attainable within rounding "
            f"[{_fmt(p_min)}, {_fmt(p_max)}]{note}",
        )
    # "Poisson or logistic?": the stratum effects against the crude 2x2 ratios of Table 1.
    y = t1[t1["variable"] == OUTCOME].set_index("stratum")
    p_ref = int(y["n_yes"][REFERENCE_STRATUM]) / int(y["n_stratum"][REFERENCE_STRATUM])
    for r in t3[t3["term"].str.startswith("stratum[")].to_dict("records"):
        s = r["term"][len("stratum[") : -1]
        ys, ns = int(y.loc[s, "n_yes"]), int(y.loc[s, "n_stratum"])
        p_s = ys / ns
        crude_rr = p_s / p_ref
        crude_or = (p_s / (1 - p_s)) / (p_ref / (1 - p_ref))
        est = float(r["estimate"])
        max_rr = 1.0 / p_ref
        closer_or = abs(math.log(est / crude_or)) < abs(math.log(est / crude_rr))
        reasons = []
        if est > max_rr:
            reasons.append(
                f"as a risk ratio it implies a risk of {100 * est * p_ref:.0f}% against the {100 * p_ref:.1f}% reference rate"
            )
        if closer_or:
            reasons.append(
                "closer to the crude odds ratio than to the crude risk ratio (log scale)"
            )
        out.add(
            f"t3.scale.{r['analysis']}.{r['term']}",
            "table3",
            f'"Poisson" estimate for {r["term"]} (analysis {r["analysis"]}) behaves like a risk ratio?',
            "flag" if reasons else "pass",
            f"risk ratio <= 1/p(1-49) = {max_rr:.1f}",
            f"published {est}; crude RR {crude_rr:.2f}, crude OR {crude_or:.2f}"
            + (f"; {'; '.join(reasons)}" if reasons else ""),
        )
