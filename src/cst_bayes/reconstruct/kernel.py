"""The numba kernel of :mod:`cst_bayes.reconstruct` (simulated annealing over swaps).

Kept in its own module, at module level, so numba's on-disk cache (``cache=True``) is hit by
every worker process instead of recompiling the kernel in each (about 10 s per process).
Only :mod:`cst_bayes.reconstruct` imports it, lazily.
"""

# ruff: noqa: E741
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def design_row(m, v, s, out):
    """Row of model m's design matrix for state row v in stratum s (intercept first).

    Models: 0 nine approaches; 1 nine approaches + three stratum dummies; 2 the count;
    3 the count + three stratum dummies (reference stratum index 0, ``1-49``).
    """
    out[0] = 1.0
    if m <= 1:
        for k in range(9):
            out[1 + k] = v[k]
        if m == 1:
            out[10] = 1.0 if s == 1 else 0.0
            out[11] = 1.0 if s == 2 else 0.0
            out[12] = 1.0 if s == 3 else 0.0
    else:
        tot = 0.0
        for k in range(9):
            tot += v[k]
        out[1] = tot
        if m == 3:
            out[2] = 1.0 if s == 1 else 0.0
            out[3] = 1.0 if s == 2 else 0.0
            out[4] = 1.0 if s == 3 else 0.0


@njit(cache=True)
def _mean_weight(eta, link):
    """Mean and IRLS weight of a canonical-link GLM: logit (Bernoulli) or log (Poisson)."""
    if link == 1:
        mu = np.exp(eta)
        return mu, mu
    mu = 1.0 / (1.0 + np.exp(-eta))
    return mu, mu * (1.0 - mu)


@njit(cache=True)
def refit(m, V, strat, beta, hinv, iters, link, meat):
    """Newton iterations of model m from beta; hinv = inverse information.

    ``link`` 0: logistic regression; 1: Poisson regression with log link, whose standard
    errors are the HC0 sandwich ``hinv meat hinv``; ``meat`` (sum of d d' (y - mu)^2) is
    recomputed at the final coefficients.
    """
    n = V.shape[0]
    p = 13 if m == 1 else (10 if m == 0 else (2 if m == 2 else 5))
    d = np.zeros(13)
    ok = True
    for _ in range(iters):
        H = np.zeros((p, p))
        g = np.zeros(p)
        for i in range(n):
            design_row(m, V[i], strat[i], d)
            eta = 0.0
            for k in range(p):
                eta += d[k] * beta[k]
            mu, w = _mean_weight(eta, link)
            r = V[i, 9] - mu
            for k in range(p):
                g[k] += d[k] * r
                wk = w * d[k]
                for l in range(k + 1):
                    H[k, l] += wk * d[l]
        for k in range(p):
            for l in range(k):
                H[l, k] = H[k, l]
        Hi = np.linalg.inv(H)
        for k in range(p):
            for l in range(p):
                hinv[k, l] = Hi[k, l]
        step = Hi @ g
        mx = 0.0
        for k in range(p):
            beta[k] += step[k]
            mx = max(mx, abs(step[k]))
        if not np.isfinite(mx):
            ok = False
            break
        # hinv is at the pre-step beta; after a step this small the difference is ~1e-10
        if mx < 1e-10:
            break
    if link == 1:
        sandwich_meat(m, V, strat, beta, meat)
    return ok


@njit(cache=True)
def sandwich_meat(m, V, strat, beta, meat):
    """meat = sum over rows of d d' (y - exp(d'beta))^2 (the HC0 sandwich's middle)."""
    p = 13 if m == 1 else (10 if m == 0 else (2 if m == 2 else 5))
    d = np.zeros(13)
    for k in range(p):
        for l in range(p):
            meat[k, l] = 0.0
    for i in range(V.shape[0]):
        design_row(m, V[i], strat[i], d)
        eta = 0.0
        for k in range(p):
            eta += d[k] * beta[k]
        r = V[i, 9] - np.exp(eta)
        _meat_update(meat, p, d, r * r)


@njit(cache=True)
def _meat_update(meat, p, d, c):
    if c == 0.0:
        return
    for k in range(p):
        for l in range(p):
            meat[k, l] += c * d[k] * d[l]


@njit(cache=True)
def sm_update(hinv, p, d, c, u):
    """hinv <- (H + c d d')^-1 by Sherman-Morrison (u: work buffer)."""
    for k in range(p):
        acc = 0.0
        for l in range(p):
            acc += hinv[k, l] * d[l]
        u[k] = acc
    den = 1.0
    for k in range(p):
        den += c * d[k] * u[k]
    f = c / den
    for k in range(p):
        for l in range(p):
            hinv[k, l] -= f * u[k] * u[l]


@njit(cache=True)
def propose_model(m, beta, hinv, old, new, s, nbeta, nhinv, g, do, dn, u, link, meat, nmeat):
    """One Newton step for model m after rows old[0..1] -> new[0..1] (same stratum).

    g, do, dn, u are work buffers (no allocation in the hot loop). With ``link`` 1 the
    sandwich's meat is updated for the changed rows too (at the current coefficients).
    """
    p = 13 if m == 1 else (10 if m == 0 else (2 if m == 2 else 5))
    for k in range(p):
        g[k] = 0.0
        for l in range(p):
            nhinv[k, l] = hinv[k, l]
            nmeat[k, l] = meat[k, l]
    for r in range(2):
        design_row(m, old[r], s, do)
        design_row(m, new[r], s, dn)
        same = True
        for k in range(p):
            if do[k] != dn[k]:
                same = False
                break
        eta = 0.0
        for k in range(p):
            eta += do[k] * beta[k]
        mo, wo = _mean_weight(eta, link)
        if same:
            dy = new[r, 9] - old[r, 9]
            if dy != 0:
                for k in range(p):
                    g[k] += do[k] * dy
                dr = (new[r, 9] - mo) ** 2 - (old[r, 9] - mo) ** 2
                _meat_update(nmeat, p, do, dr * link)
            continue
        eta = 0.0
        for k in range(p):
            eta += dn[k] * beta[k]
        mn, wn = _mean_weight(eta, link)
        for k in range(p):
            g[k] += dn[k] * (new[r, 9] - mn) - do[k] * (old[r, 9] - mo)
        sm_update(nhinv, p, do, -wo, u)
        sm_update(nhinv, p, dn, wn, u)
        # the meat only matters (and is only kept up to date) with the log link
        _meat_update(nmeat, p, do, -link * (old[r, 9] - mo) ** 2)
        _meat_update(nmeat, p, dn, link * (new[r, 9] - mn) ** 2)
    for k in range(p):
        acc = 0.0
        for l in range(p):
            acc += nhinv[k, l] * g[l]
        nbeta[k] = beta[k] + acc


@njit(cache=True)
def model_energy(betas, hinvs, tm, tc, win, wt, forced, scale, link, meats):
    """Distance of each Table 3 estimate and CI bound outside its log window, in ``scale`` units.

    Returns (forced energy, soft energy); soft terms (not forced) are weighted by ``wt``.
    ``link`` 1: standard errors from the sandwich ``hinv meat hinv`` (HC0).
    """
    ef = 0.0
    es = 0.0
    for q in range(tm.shape[0]):
        m = tm[q]
        c = tc[q]
        b = betas[m, c]
        if link == 1:
            v = 0.0
            for k in range(13):
                hk = hinvs[m, c, k]
                if hk == 0.0:
                    continue
                for l in range(13):
                    v += hk * meats[m, k, l] * hinvs[m, l, c]
        else:
            v = hinvs[m, c, c]
        se = np.sqrt(v) if v > 0 else 1e9
        for k in range(3):
            x = (
                b
                if k == 0
                else (b - 1.959963984540054 * se if k == 1 else b + 1.959963984540054 * se)
            )
            lo = win[q, k, 0]
            hi = win[q, k, 1]
            dist = 0.0
            if x < lo:
                dist = lo - x
            elif x > hi:
                dist = x - hi
            if forced[q, k]:
                ef += dist / scale
            else:
                es += wt * dist / scale
    return ef, es


@njit(cache=True)
def count_energy(C, phi_lo, phi_hi, t_lo, t_hi):
    """Counts outside their windows: Table 2 pair counts and Figure 1 ``t_j`` (C = V'V)."""
    e = 0.0
    for i in range(9):
        for j in range(i):
            x = C[i, j]
            if x < phi_lo[i, j]:
                e += phi_lo[i, j] - x
            elif x > phi_hi[i, j]:
                e += x - phi_hi[i, j]
        x = C[i, 9]
        if x < t_lo[i]:
            e += t_lo[i] - x
        elif x > t_hi[i]:
            e += x - t_hi[i]
    return e


@njit(cache=True)
def stat_delta(kind, ss, pa, pb, pc, V, rowcnt, a, b, c, s):
    """Change of statistic ``kind`` when column c goes 1 -> 0 in row a and 0 -> 1 in row b.

    Kinds (all integer-valued, restricted to stratum ``ss`` unless ``ss < 0``):
    0 sum of squared approach counts; 1 rows whose approach count is ``pa``; 2 sum of approach
    counts over rows with a case; 3 rows with approach ``pa`` and a case; 4 rows with all of
    approaches ``pa``, ``pb``, ``pc``.
    """
    if kind < 0 or (ss >= 0 and s != ss):
        return 0.0
    y = 9
    ca = rowcnt[a]
    cb = rowcnt[b]
    if kind == 0:
        return 0.0 if c == y else 2.0 * (cb - ca) + 2.0
    if kind == 1:
        if c == y:
            return 0.0
        d = 0.0
        d += (1.0 if ca - 1 == pa else 0.0) - (1.0 if ca == pa else 0.0)
        d += (1.0 if cb + 1 == pa else 0.0) - (1.0 if cb == pa else 0.0)
        return d
    if kind == 2:
        return float(cb - ca) if c == y else float(V[b, y] - V[a, y])
    if kind == 3:
        if c == pa:
            return float(V[b, y] - V[a, y])
        if c == y:
            return float(V[b, pa] - V[a, pa])
        return 0.0
    if kind == 4:
        if c != pa and c != pb and c != pc:
            return 0.0
        if c == pa:
            o1, o2 = pb, pc
        elif c == pb:
            o1, o2 = pa, pc
        else:
            o1, o2 = pa, pb
        gb = 1.0 if (V[b, o1] == 1 and V[b, o2] == 1) else 0.0
        ga = 1.0 if (V[a, o1] == 1 and V[a, o2] == 1) else 0.0
        return gb - ga
    return 0.0


@njit(cache=True)
def stat_value(kind, ss, pa, pb, pc, V, strat, rowcnt):
    """Value of statistic ``kind`` (see :func:`stat_delta`) computed from scratch."""
    tot = 0.0
    if kind < 0:
        return tot
    for i in range(V.shape[0]):
        if ss >= 0 and strat[i] != ss:
            continue
        ci = rowcnt[i]
        if kind == 0:
            tot += ci * ci
        elif kind == 1:
            tot += 1.0 if ci == pa else 0.0
        elif kind == 2:
            tot += ci if V[i, 9] == 1 else 0.0
        elif kind == 3:
            tot += 1.0 if (V[i, pa] == 1 and V[i, 9] == 1) else 0.0
        elif kind == 4:
            tot += 1.0 if (V[i, pa] == 1 and V[i, pb] == 1 and V[i, pc] == 1) else 0.0
    return tot


@njit(cache=True)
def anneal(  # noqa: C901 (one compiled hot loop: splitting it costs a call per proposal)
    V,
    strat,
    sstart,
    send,
    scum,
    ccum,
    C,
    phi_lo,
    phi_hi,
    t_lo,
    t_hi,
    betas,
    hinvs,
    tm,
    tc,
    win,
    forced,
    soft_wt,
    scale,
    T0,
    T1,
    max_steps,
    refit_every,
    near,
    p_target,
    count_w,
    seed,
    stat,
    stat_w,
    Vbest,
    best,
    link,
    meats,
):
    """Simulated annealing; returns (status, steps, accepted, E_forced, E_soft).

    ``V`` (n, 10: approaches then outcome, rows grouped by stratum ``sstart..send``) and
    ``C = V'V``, ``betas``/``hinvs`` (the four models) are updated in place. ``scum``/``ccum``
    are cumulative proposal probabilities of strata and columns. Temperature falls
    geometrically from ``T0`` to ``T1`` over ``max_steps``; a count outside its window costs
    ``count_w``, a log-OR distance ``scale`` costs 1. Exact refits every ``refit_every``
    accepted moves and whenever the tracked energy drops below ``near``. A share
    ``p_target`` of proposals is aimed at a violated count. Seeded by ``seed``.
    status 1: every forced target inside its (shrunk) window after an exact refit.

    Bound search: ``stat = (kind, stratum, a, b, c)`` with ``kind >= 0`` adds ``stat_w`` times
    the statistic (:func:`stat_delta`) to the energy. The run then does not stop at zero
    energy: it goes through the whole schedule and copies into ``Vbest`` every state that meets
    every forced target after an exact refit and beats ``best[0]`` (lower ``stat_w * S``);
    ``best[1]`` is set to 1 once such a state is found. status 1 then means one was found.

    ``link`` 1 reads the Table 3 targets as log-link (Poisson, HC0 sandwich) estimates;
    ``meats`` (4, 13, 13) holds the sandwich's middle matrices (unused with ``link`` 0).
    """
    np.random.seed(seed)
    kind = stat[0]
    ss = stat[1]
    pa = stat[2]
    pb = stat[3]
    pc = stat[4]
    search = kind >= 0
    n = V.shape[0]
    rowcnt = np.zeros(n, np.int64)
    for i in range(n):
        for k in range(9):
            rowcnt[i] += V[i, k]
    S = stat_value(kind, ss, pa, pb, pc, V, strat, rowcnt)
    for m in range(4):
        refit(m, V, strat, betas[m], hinvs[m], 25, link, meats[m])
    ec = count_w * count_energy(C, phi_lo, phi_hi, t_lo, t_hi)
    emf, ems = model_energy(betas, hinvs, tm, tc, win, soft_wt, forced, scale, link, meats)
    if search:
        if ec + emf == 0.0 and (best[1] == 0.0 or stat_w * S < stat_w * best[0]):
            best[0] = S
            best[1] = 1.0
            Vbest[:, :] = V
    elif ec + emf == 0.0:
        return 1, 0, 0, 0.0, ems
    nb = np.zeros((4, 13))
    nh = np.zeros((4, 13, 13))
    nmeats = np.zeros((4, 13, 13))
    old = np.zeros((2, 10))
    wg = np.zeros(13)
    wdo = np.zeros(13)
    wdn = np.zeros(13)
    wu = np.zeros(13)
    new = np.zeros((2, 10))
    acc = 0
    since = 0
    viol_i = np.zeros(45, np.int64)
    viol_j = np.zeros(45, np.int64)
    viol_d = np.zeros(45, np.int64)
    nviol = 0
    dirty = True
    lr = np.log(T1 / T0)
    for step in range(max_steps):
        T = T0 * np.exp(lr * step / max_steps)
        u = np.random.random()
        c = 0
        while ccum[c] < u:
            c += 1
        u = np.random.random()
        s = 0
        while scum[s] < u:
            s += 1
        # Targeted proposal: half of the time, a move that shifts a violated count by
        # one in the right direction (swap c between rows differing in column kk).
        kk = -1
        want = 0
        if dirty:
            nviol = 0
            for i in range(9):
                for j in range(i + 1):
                    if j == i:
                        x = C[i, 9]
                        lo_ = t_lo[i]
                        hi_ = t_hi[i]
                    else:
                        x = C[i, j]
                        lo_ = phi_lo[i, j]
                        hi_ = phi_hi[i, j]
                    if x < lo_ or x > hi_:
                        viol_i[nviol] = i
                        viol_j[nviol] = 9 if j == i else j
                        viol_d[nviol] = 1 if x < lo_ else -1
                        nviol += 1
            dirty = False
        if nviol > 0 and np.random.random() < p_target:
            q = int(np.random.random() * nviol)
            if np.random.random() < 0.5:
                c = viol_i[q]
                kk = viol_j[q]
            else:
                c = viol_j[q]
                kk = viol_i[q]
            want = viol_d[q]
        lo_r = sstart[s]
        width = send[s] - lo_r
        a = -1
        b = -1
        for _ in range(96):
            i = lo_r + int(np.random.random() * width)
            if kk >= 0:
                if V[i, c] == 1 and a < 0 and V[i, kk] == (1 if want < 0 else 0):
                    a = i
                elif V[i, c] == 0 and b < 0 and V[i, kk] == (1 if want > 0 else 0):
                    b = i
            elif V[i, c] == 1:
                if a < 0:
                    a = i
            elif b < 0:
                b = i
            if a >= 0 and b >= 0:
                break
        if a < 0 or b < 0:
            continue
        # count energy after the swap of column c between rows a (1 -> 0) and b (0 -> 1)
        dec = 0.0
        for k in range(10):
            if k == c:
                continue
            dd = V[b, k] - V[a, k]
            if dd == 0:
                continue
            i1 = max(c, k)
            j1 = min(c, k)
            x0 = C[i1, j1]
            x1 = x0 + dd
            if i1 == 9:  # t_j of approach j1
                lo_ = t_lo[j1]
                hi_ = t_hi[j1]
            else:
                lo_ = phi_lo[i1, j1]
                hi_ = phi_hi[i1, j1]
            e0 = (lo_ - x0) if x0 < lo_ else ((x0 - hi_) if x0 > hi_ else 0)
            e1 = (lo_ - x1) if x1 < lo_ else ((x1 - hi_) if x1 > hi_ else 0)
            dec += e1 - e0
        for k in range(10):
            old[0, k] = V[a, k]
            old[1, k] = V[b, k]
            new[0, k] = V[a, k]
            new[1, k] = V[b, k]
        new[0, c] = 0
        new[1, c] = 1
        for m in range(4):
            propose_model(
                m,
                betas[m],
                hinvs[m],
                old,
                new,
                s,
                nb[m],
                nh[m],
                wg,
                wdo,
                wdn,
                wu,
                link,
                meats[m],
                nmeats[m],
            )
        nf, ns = model_energy(nb, nh, tm, tc, win, soft_wt, forced, scale, link, nmeats)
        dec *= count_w
        dS = stat_delta(kind, ss, pa, pb, pc, V, rowcnt, a, b, c, s) if search else 0.0
        dE = dec + (nf + ns) - (emf + ems) + stat_w * dS
        if dE <= 0 or np.random.random() < np.exp(-dE / T):
            V[a, c] = 0
            V[b, c] = 1
            if c < 9:
                rowcnt[a] -= 1
                rowcnt[b] += 1
            S += dS
            for k in range(10):
                if k == c:
                    continue
                dd = V[b, k] - V[a, k]
                C[c, k] += dd
                C[k, c] += dd
            for m in range(4):
                for k in range(13):
                    betas[m, k] = nb[m, k]
                    for l in range(13):
                        hinvs[m, k, l] = nh[m, k, l]
                        if link == 1:
                            meats[m, k, l] = nmeats[m, k, l]
            ec += dec
            dirty = True
            emf = nf
            ems = ns
            acc += 1
            since += 1
            # A bound search checks (exact refit) only states that would improve its best.
            improves = search and (best[1] == 0.0 or stat_w * S < stat_w * best[0])
            if since >= refit_every or (ec + emf < near and (improves or not search)):
                for m in range(4):
                    refit(m, V, strat, betas[m], hinvs[m], 3, link, meats[m])
                emf, ems = model_energy(
                    betas, hinvs, tm, tc, win, soft_wt, forced, scale, link, meats
                )
                since = 0
                if ec + emf == 0.0:
                    if not search:
                        return 1, step + 1, acc, 0.0, ems
                    if improves:
                        best[0] = S
                        best[1] = 1.0
                        Vbest[:, :] = V
    for m in range(4):
        refit(m, V, strat, betas[m], hinvs[m], 25, link, meats[m])
    emf, ems = model_energy(betas, hinvs, tm, tc, win, soft_wt, forced, scale, link, meats)
    if search:
        return (1 if best[1] == 1.0 else 0), max_steps, acc, ec + emf, ems
    return (1 if ec + emf == 0.0 else 0), max_steps, acc, ec + emf, ems
