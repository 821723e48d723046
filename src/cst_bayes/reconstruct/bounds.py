"""Certified bounds on statistics the published tables do not fix (SYNTHETIC).

For each statistic the tables leave open (the approach-count distribution per stratum, the
2x2 table of each approach with ``any_cst`` per stratum, pooled count shares and three-way
patterns) the annealer searches for the smallest and the largest value over datasets that meet
every published target: the statistic, times a signed weight, is added to the kernel's energy
(:func:`cst_bayes.reconstruct.kernel.stat_delta`), and the run keeps the best state that meets
every forced target after an exact refit. Each bound is *certified* in one direction only: it
is attained by a dataset that meets every target (checked again with
:mod:`cst_bayes.frequentist`), so the set of datasets consistent with the tables is at least
this wide. It is not proven to be the true minimum or maximum: a longer search could push it
further. Starts are feasible datasets (ensemble members), so every search starts at zero energy.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cst_bayes.core.config import APPROACHES, OUTCOME, STRATA, STRATUM
from cst_bayes.core.errors import InputError
from cst_bayes.reconstruct.anneal import COUNT_WEIGHT
from cst_bayes.reconstruct.stats import TRIPLES
from cst_bayes.reconstruct.targets import COLUMNS, K, Targets, Y, _kernel, _kernel_targets
from cst_bayes.reconstruct.targets import load_targets as _load_targets

BOUNDS_COLUMNS = ["statistic", "stratum", "lower", "upper", "starts", "converged", "seconds"]
SPAN_COLUMNS = [
    "statistic",
    "stratum",
    "lower",
    "upper",
    "member_min",
    "member_max",
    "span_share",
]
#: Largest change of each kernel statistic kind in one move (sets the energy weight).
_MAX_STEP = {0: 20.0, 1: 2.0, 2: 9.0, 3: 1.0, 4: 1.0}


@dataclass(frozen=True)
class Statistic:
    """One statistic: its kernel kind and parameters, or the searched statistic it follows.

    ``derived`` statistics are monotone functions of a searched one (the mean count without a
    case, given the fixed stratum total, falls as the mean with a case rises; a stratum's crude
    OR rises with its 2x2 count ``n11`` because the 2x2 margins are fixed by Table 1), so the
    same two datasets attain their bounds.
    """

    name: str
    stratum: str
    kind: int = -1
    params: tuple[int, int, int] = (0, 0, 0)
    derived_from: str | None = None
    increasing: bool = True

    @property
    def key(self) -> str:
        return f"{self.name}|{self.stratum}"


def statistics() -> list[Statistic]:
    """Every statistic bounded by :func:`compute_bounds`, in ``bounds.csv`` order."""
    out: list[Statistic] = []
    for s in STRATA:
        out.append(Statistic("count_sd", s, 0))
        out += [Statistic(f"count_share_{v}", s, 1, (v, 0, 0)) for v in range(K + 1)]
        out.append(Statistic("count_mean_case", s, 2))
        out.append(
            Statistic("count_mean_nocase", s, derived_from="count_mean_case", increasing=False)
        )
        for j, a in enumerate(APPROACHES):
            out.append(Statistic(f"n_case_{a}", s, 3, (j, 0, 0)))
        for a in APPROACHES:
            out.append(Statistic(f"or_{a}", s, derived_from=f"n_case_{a}"))
    out += [Statistic(f"count_share_{v}", "all", 1, (v, 0, 0)) for v in range(K + 1)]
    for tri in TRIPLES:
        idx = tuple(APPROACHES.index(a) for a in tri)
        out.append(Statistic(f"all3_{'+'.join(tri)}", "all", 4, idx))  # type: ignore[arg-type]
    return out


def statistic_values(df: pd.DataFrame) -> pd.DataFrame:
    """Every statistic of :func:`statistics` computed directly from a dataset (pandas/numpy).

    Returns
    -------
    pandas.DataFrame
        Columns ``statistic, stratum, value``.
    """
    x = df[list(APPROACHES)].to_numpy(dtype=np.int64)
    y = df[OUTCOME].to_numpy(dtype=np.int64)
    cnt = x.sum(axis=1)
    strata = df[STRATUM].astype(str).to_numpy()
    rows = []
    for s in STRATA:
        m = strata == s
        c, ys, xs = cnt[m], y[m], x[m]
        rows.append(("count_sd", s, float(c.std(ddof=1))))
        rows += [(f"count_share_{v}", s, float(np.mean(c == v))) for v in range(K + 1)]
        rows.append(("count_mean_case", s, float(c[ys == 1].mean())))
        rows.append(("count_mean_nocase", s, float(c[ys == 0].mean())))
        for j, a in enumerate(APPROACHES):
            rows.append((f"n_case_{a}", s, float(np.sum((xs[:, j] == 1) & (ys == 1)))))
        for j, a in enumerate(APPROACHES):
            n11 = np.sum((xs[:, j] == 1) & (ys == 1))
            n10 = np.sum((xs[:, j] == 1) & (ys == 0))
            n01 = np.sum((xs[:, j] == 0) & (ys == 1))
            n00 = np.sum((xs[:, j] == 0) & (ys == 0))
            den = n10 * n01
            rows.append((f"or_{a}", s, float(n11 * n00 / den) if den else math.inf))
    rows += [(f"count_share_{v}", "all", float(np.mean(cnt == v))) for v in range(K + 1)]
    for tri in TRIPLES:
        idx = [APPROACHES.index(a) for a in tri]
        rows.append((f"all3_{'+'.join(tri)}", "all", float(np.mean(x[:, idx].all(axis=1)))))
    return pd.DataFrame(rows, columns=["statistic", "stratum", "value"])


def _value(st: Statistic, S: float, tg: Targets) -> float:
    """The reported value of a searched statistic from the kernel's integer statistic S."""
    if st.stratum == "all":
        return S / tg.n
    s = STRATA.index(st.stratum)
    n = int(tg.n_by_stratum[s])
    tot = float(tg.counts[s, :K].sum())
    if st.kind == 0:
        return math.sqrt(max(0.0, (S - tot * tot / n) / (n - 1)))
    if st.kind == 1:
        return S / n
    if st.kind == 2:
        return S / int(tg.counts[s, Y])
    raise AssertionError(st)


def _value_any(st: Statistic, S: float, tg: Targets) -> float:
    """Value of any statistic, searched or derived, from the searched statistic's S."""
    if st.derived_from is None:
        return float(S) if st.kind == 3 else _value(st, S, tg)
    s = STRATA.index(st.stratum)
    n = int(tg.n_by_stratum[s])
    m = int(tg.counts[s, Y])
    if st.name == "count_mean_nocase":
        return (float(tg.counts[s, :K].sum()) - S) / (n - m)
    j = APPROACHES.index(st.name[3:])
    a = int(tg.counts[s, j])
    den = (a - S) * (m - S)
    return S * (n - a - m + S) / den if den else math.inf


def _state(df: pd.DataFrame) -> np.ndarray:
    """``(n, 10)`` int64 state, rows grouped by stratum in ``STRATA`` order."""
    codes = pd.Categorical(df[STRATUM].astype(str), categories=list(STRATA)).codes
    order = np.argsort(codes, kind="stable")
    return df[list(COLUMNS)].to_numpy(dtype=np.int64)[order]


#: A bound search from one start: (T start, T end, log-OR scale, proposals, weight of the
#: statistic). A cool stage pushes the statistic while staying near the feasible set; a warm
#: push stage (coarser Table 3 scale) crosses barriers that need several moves (e.g. a Figure 1
#: count moved in one stratum and moved back in another); a cold repair stage, the statistic at
#: a third of its weight, brings the state back inside every window. The kernel records the best
#: state meeting every target at any point, and each stage starts from the best state so far.
SCHEDULE: tuple[tuple[float, float, float, int, float], ...] = (
    (0.05, 0.003, 0.005, 150_000, 1.0),
    (0.3, 0.05, 0.01, 60_000, 1.0),
    (0.05, 0.002, 0.005, 140_000, 0.3),
)
#: Share of each Table 3 window kept free on each side during a bound search. Smaller than for
#: members (0.05): every attaining dataset is checked again with statsmodels, and wider windows
#: let the search move where the members' margin would pin it.
BOUND_MARGIN = 0.005


def _search(
    st: Statistic,
    sign: int,
    V0: np.ndarray,
    tg: Targets,
    seed: int,
    steps_scale: float = 1.0,
    margin: float = BOUND_MARGIN,
) -> tuple[float, np.ndarray | None, int]:
    """Push ``st`` down (sign +1) or up (-1) from the feasible ``V0``: (best S, its state, steps).

    The kernel keeps, across stages, the best state that meets every forced target after an
    exact refit (``best``/``Vbest``); a state that never does gives ``(nan, None, steps)``.
    """
    k = _kernel()
    sstart = np.concatenate([[0], np.cumsum(tg.n_by_stratum)[:-1]]).astype(np.int64)
    send = np.cumsum(tg.n_by_stratum).astype(np.int64)
    strat = np.repeat(np.arange(len(STRATA)), tg.n_by_stratum).astype(np.int64)
    sw = tg.n_by_stratum.astype(float) ** 0.6
    sw /= sw.sum()
    if st.stratum != "all":  # half of the proposals in the statistic's own stratum
        sw = 0.5 * sw + 0.5 * (np.arange(len(STRATA)) == STRATA.index(st.stratum))
    scum = np.cumsum(sw)
    scum[-1] = 1.0
    cw = np.full(K + 1, 0.7 / K)
    cw[Y] = 0.3
    if st.kind in (3, 4):  # and half on the columns it is made of
        cols = [st.params[0], Y] if st.kind == 3 else list(st.params)
        focus = np.zeros(K + 1)
        focus[cols] = 1.0 / len(cols)
        cw = 0.5 * cw + 0.5 * focus
    ccum = np.cumsum(cw)
    ccum[-1] = 1.0
    tm, tc, win, forced = _kernel_targets(tg, margin)
    spec = np.array(
        [st.kind, -1 if st.stratum == "all" else STRATA.index(st.stratum), *st.params],
        dtype=np.int64,
    )
    rng = np.random.default_rng(seed)
    Vbest = V0.copy()
    best = np.zeros(2)
    total = 0
    for T0, T1, scale, steps, w in SCHEDULE:
        V = Vbest.copy()
        C = V.T @ V
        betas = np.zeros((4, 13))
        hinvs = np.zeros((4, 13, 13))
        for m in range(4):
            betas[m, 0] = math.log(tg.counts[:, Y].sum() / (tg.n - tg.counts[:, Y].sum()))
        _, n_steps, *_ = k["anneal"](
            V,
            strat,
            sstart,
            send,
            scum,
            ccum,
            C,
            tg.phi_lo,
            tg.phi_hi,
            tg.t_lo,
            tg.t_hi,
            betas,
            hinvs,
            tm,
            tc,
            win,
            forced,
            0.2,
            scale,
            T0,
            T1,
            max(1, int(steps * steps_scale)),
            200,
            1e-9,
            0.5,
            COUNT_WEIGHT,
            int(rng.integers(2**31 - 1)),
            spec,
            w * sign / _MAX_STEP[st.kind],
            Vbest,
            best,
            0,
            np.zeros((4, 13, 13)),
        )
        total += int(n_steps)
    if best[1] != 1.0:
        return math.nan, None, total
    return float(best[0]), Vbest, total


def _bound_job(
    st: Statistic,
    sign: int,
    starts: list[np.ndarray],
    seeds: list[int],
    settings: dict[str, Any],
) -> dict[str, Any]:
    """Every start of one (statistic, direction); the best state and each start's best S."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    tg = _load_targets()
    cpu = time.process_time()
    wall = time.perf_counter()
    per_start: list[float] = []
    best_S, best_V = math.nan, None
    for V0, seed in zip(starts, seeds):
        S, V, _ = _search(st, sign, V0, tg, seed, **settings)
        per_start.append(S)
        if V is not None and (best_V is None or sign * S < sign * best_S):
            best_S, best_V = S, V
    return dict(
        key=st.key,
        sign=sign,
        S=best_S,
        V=best_V,
        per_start=per_start,
        cpu=time.process_time() - cpu,
        wall=time.perf_counter() - wall,
    )


def extreme_filename(st_name: str, stratum: str, side: str) -> str:
    """``extreme-<statistic>-<stratum>-{min,max}.csv``."""
    return f"extreme-{st_name}-{stratum}-{side}.csv"


def _side(st: Statistic, sign: int) -> str:
    """Which bound a search direction gives: a falling derived statistic swaps min and max."""
    down = sign == 1
    return "min" if down == st.increasing else "max"


def compute_bounds(
    out_dir: str | Path | None = None,
    *,
    starts: list[pd.DataFrame] | None = None,
    n_starts: int = 2,
    steps_scale: float = 1.0,
    margin: float = BOUND_MARGIN,
    seed: int | None = None,
    jobs: int | None = None,
    only: list[str] | None = None,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Lower and upper bound of every statistic over datasets that meet every target.

    Parameters
    ----------
    out_dir
        When given: writes ``bounds.csv`` and one ``extreme-*.csv`` dataset per bound there.
    starts
        Feasible datasets to start from (default: the shipped ensemble); search ``q``'s start
        ``i`` uses ``starts[(q + i) % len(starts)]``.
    n_starts
        Searches per (statistic, direction); the bound is the best of them.
    steps_scale
        Multiplies the proposals of every :data:`SCHEDULE` stage (tests use a small value).
    margin
        Share of each Table 3 window kept free on each side (:data:`BOUND_MARGIN`).
    seed
        Master seed (default :data:`cst_bayes.core.options.DEFAULT_SEED`).
    jobs
        Worker processes (default: the available cores).
    only
        Restrict to statistics whose ``name|stratum`` key starts with one of these strings.

    Returns
    -------
    (DataFrame, dict)
        ``bounds`` (columns :data:`BOUNDS_COLUMNS` plus ``lower_half``/``upper_half``, the
        bounds from the first half of the starts (the k vs 2k check), ``wall_seconds`` and the
        attaining files ``file_min``/``file_max``) and the attaining datasets by file name.
        ``seconds`` is the CPU time of both directions' searches.
    """
    from concurrent.futures import ProcessPoolExecutor

    from cst_bayes.core.options import DEFAULT_SEED

    if n_starts < 1 or steps_scale <= 0:
        raise InputError(
            f"n_starts must be >= 1 and steps_scale > 0, got {n_starts}, {steps_scale}"
        )
    if starts is None:
        from cst_bayes.data.ensemble import load_ensemble

        starts = load_ensemble()
    V_starts = [_state(df) for df in starts]
    stats = _select(statistics(), only)
    searched = [st for st in stats if st.kind >= 0]
    rng = np.random.default_rng(DEFAULT_SEED if seed is None else int(seed))
    settings = dict(steps_scale=float(steps_scale), margin=float(margin))
    tasks = []
    for q, st in enumerate(searched):
        for sign in (1, -1):
            idx = [(q + i) % len(V_starts) for i in range(n_starts)]
            seeds = [int(x) for x in rng.integers(2**31 - 1, size=n_starts)]
            tasks.append((st, sign, [V_starts[i] for i in idx], seeds, settings))
    jobs = max(1, min(int(jobs or len(os.sched_getaffinity(0)) or 1), len(tasks)))
    _kernel()
    if jobs == 1:
        results = [_bound_job(*t) for t in tasks]
    else:
        with ProcessPoolExecutor(max_workers=jobs) as ex:
            results = list(ex.map(_bound_job, *zip(*tasks)))
    bounds, files = _collect(stats, searched, {(r["key"], r["sign"]): r for r in results}, n_starts)
    if out_dir is not None:
        write_bounds(out_dir, bounds, files, dict(settings, n_starts=n_starts, schedule=SCHEDULE))
    return bounds, files


def _select(stats: list[Statistic], only: list[str] | None) -> list[Statistic]:
    """The statistics matching ``only`` plus the searched ones they are derived from."""
    if not only:
        return stats
    keep = [st for st in stats if st.key.startswith(tuple(only))]
    if not keep:
        raise InputError(f"no statistic matches {only}", column="only")
    need = {(st.derived_from or st.name, st.stratum) for st in keep}
    return [st for st in stats if st in keep or (st.kind >= 0 and (st.name, st.stratum) in need)]


def _collect(
    stats: list[Statistic], searched: list[Statistic], res: dict, n_starts: int
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """bounds table and attaining datasets from the searches; each dataset checked by fidelity."""
    from cst_bayes.reconstruct.fidelity import _to_frame, fidelity

    tg = _load_targets()
    strat = np.repeat(np.arange(len(STRATA)), tg.n_by_stratum)
    checked: dict[tuple[str, int], tuple[pd.DataFrame, bool]] = {}
    rows, files = [], {}
    half = max(1, n_starts // 2)
    for st in stats:
        src = next(
            s
            for s in searched
            if s.name == (st.derived_from or st.name) and s.stratum == st.stratum
        )
        out: dict[str, Any] = dict(statistic=st.name, stratum=st.stratum)
        conv, cpu, wall = True, 0.0, 0.0
        for sign in (1, -1):
            r = res[(src.key, sign)]
            cpu += r["cpu"]
            wall += r["wall"]
            side = _side(st, sign)
            col = "lower" if side == "min" else "upper"
            first = [S for S in r["per_start"][:half] if not math.isnan(S)]
            hb = (min if sign == 1 else max)(first) if first else math.nan
            out[col] = _value_any(st, r["S"], tg) if r["V"] is not None else math.nan
            out[col + "_half"] = _value_any(st, hb, tg) if first else math.nan
            out[f"file_{side}"] = extreme_filename(st.name, st.stratum, side)
            if r["V"] is None:
                conv = False
                continue
            if (src.key, sign) not in checked:
                df = _to_frame(r["V"], strat)
                fid = fidelity(df, tg)
                checked[(src.key, sign)] = (df, bool((fid["agrees"] | ~fid["forced"]).all()))
            df, ok = checked[(src.key, sign)]
            conv &= ok
            files[out[f"file_{side}"]] = df
        out.update(
            starts=n_starts, converged=conv, seconds=round(cpu, 2), wall_seconds=round(wall, 2)
        )
        rows.append(out)
    cols = [*BOUNDS_COLUMNS, "lower_half", "upper_half", "wall_seconds", "file_min", "file_max"]
    return pd.DataFrame(rows)[cols], files


def write_bounds(
    out_dir: str | Path, bounds: pd.DataFrame, files: dict[str, pd.DataFrame], settings: dict
) -> None:
    """Write ``bounds.csv`` (SYNTHETIC table) and the attaining datasets (microdata contract)."""
    from cst_bayes.core.config import AGENCY_ID
    from cst_bayes.core.fileio import write_csv, write_microdata

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cols = [AGENCY_ID, STRATUM, *APPROACHES, OUTCOME]
    for name, df in files.items():
        write_microdata(
            out_dir / name,
            df[cols],
            synthetic=True,
            note=f"SYNTHETIC dataset attaining a bound ({name}); meets every published target",
        )
    write_csv(
        out_dir / "bounds.csv",
        bounds,
        status="SYNTHETIC",
        notes=(
            "min and max of statistics no published number fixes, over SYNTHETIC datasets that "
            f"meet every target (attained, so the true range is at least this wide); {settings}"
        ),
    )


def read_bounds(path: str | Path) -> pd.DataFrame:
    """``bounds.csv`` as written by :func:`write_bounds`."""
    path = Path(path)
    if path.is_dir():
        path = path / "bounds.csv"
    if not path.exists():
        raise InputError("no bounds.csv (run `cst-bayes reconstruct --bounds`)", path=path)
    df = pd.read_csv(path, comment="#")
    missing = [c for c in BOUNDS_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"missing columns {missing}", path=path)
    return df


def span_table(bounds: pd.DataFrame, members: list[pd.DataFrame]) -> pd.DataFrame:
    """How much of each bound interval the members cover.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SPAN_COLUMNS`: ``span_share = (member_max - member_min) /
        (upper - lower)`` (1 when the bounds coincide).
    """
    if not members:
        raise InputError("no members to compare with the bounds")
    vals = pd.concat([statistic_values(m).assign(member=i) for i, m in enumerate(members)])
    agg = vals.groupby(["statistic", "stratum"])["value"].agg(member_min="min", member_max="max")
    out = bounds[["statistic", "stratum", "lower", "upper"]].merge(
        agg.reset_index(), on=["statistic", "stratum"], how="left"
    )
    width = out["upper"] - out["lower"]
    share = (out["member_max"] - out["member_min"]) / width.where(width > 0)
    out["span_share"] = share.fillna(1.0).clip(upper=1.0)
    # A stratum's crude OR is a monotone function of its n_case count (Table 1 fixes the 2x2
    # margins), and may be infinite at a bound: its share is the count's.
    key = out.set_index(["statistic", "stratum"])["span_share"]
    is_or = out["statistic"].str.startswith("or_")
    for i in out.index[is_or]:
        src = ("n_case_" + out.at[i, "statistic"][3:], out.at[i, "stratum"])
        if src in key.index:
            out.at[i, "span_share"] = key[src]
    return out[SPAN_COLUMNS]


def member_values(members: list[pd.DataFrame]) -> pd.DataFrame:
    """:func:`statistic_values` of every member, with a ``member`` column (0-based)."""
    return pd.concat(
        [statistic_values(m).assign(member=i) for i, m in enumerate(members)], ignore_index=True
    )


def plot_bounds(bounds: pd.DataFrame, values: pd.DataFrame, statistics: list[str] | None = None):
    """Bounds as horizontal bars with the members' values as dots; returns a matplotlib Figure.

    ``values`` is :func:`member_values`; ``statistics`` picks rows by name (default: the SD of
    the approach count and the count shares 0, 5 and 9 per stratum). Every label says SYNTHETIC.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cst_bayes.core.config import SYNTHETIC_BANNER

    pick = statistics or ["count_sd", "count_share_0", "count_share_5", "count_share_9"]
    b = bounds[bounds["statistic"].isin(pick)].reset_index(drop=True)
    fig, axes = plt.subplots(1, len(pick), figsize=(3.2 * len(pick), 0.35 * 5 + 1.6), squeeze=False)
    for ax, name in zip(axes[0], pick):
        sub = b[b["statistic"] == name].reset_index(drop=True)
        for i, r in sub.iterrows():
            ax.plot([r["lower"], r["upper"]], [i, i], lw=8, color="0.8", solid_capstyle="butt")
            v = values[(values["statistic"] == name) & (values["stratum"] == r["stratum"])]
            ax.plot(v["value"], np.full(len(v), i), "o", ms=3, color="C0", alpha=0.7)
        ax.set_yticks(range(len(sub)), sub["stratum"])
        ax.set_title(name, fontsize=9)
        ax.invert_yaxis()
    fig.suptitle(f"bounds (bars) and members (dots); {SYNTHETIC_BANNER}", fontsize=8)
    fig.tight_layout()
    return fig
