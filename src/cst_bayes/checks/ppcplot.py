"""Figure, console summary and files of the posterior predictive checks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cst_bayes.core.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

# ----------------------------------------------------------------------------- plotting
_TITLES = {
    "table1": "Table 1: cases by stratum, chi-square",
    "fig1": "Figure 1: approach by any case",
    "table3": "Table 3: refitted ORs (logit) / PRs (log link)",
    "count": "Approach count by stratum, ANOVA F",
    "approach_by_case": "Within-stratum approach x case counts (outside the published tables)",
    "rate_by_count": "Case rate by number of approaches (outside the published tables)",
    "calibration": "Cases per decile of posterior mean risk",
    "loo_pit": "LOO-PIT distance from uniform",
}


def plot_ppc_tables(
    ppc: pd.DataFrame, *, title: str | None = None, synthetic: bool | None = None
) -> Figure:
    """Observed vs replicated statistics, one panel per table.

    Every statistic is drawn on a common standardised axis, ``(value - rep_median) /
    ((rep_high - rep_low) / 2)``, so the replicated 95% interval is the band [-1, 1]
    whatever the statistic's units; the observed value (dot; red when flagged) and the
    published value (open diamond) are placed on the same axis.

    Parameters
    ----------
    ppc
        Output of :func:`ppc_tables` / :func:`ppc_from_replicates`.
    title
        Figure title (e.g. the model name).
    synthetic
        Whether the data are synthetic reconstructions (default: ``ppc.attrs['synthetic']``);
        then the title says so.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from cst_bayes.checks.ppc import ALL_TABLES

    synthetic = bool(ppc.attrs.get("synthetic", False)) if synthetic is None else synthetic
    tables = [t for t in ALL_TABLES if t in set(ppc["table"])]
    if not tables:
        raise InputError("nothing to plot: the PPC table is empty")
    heights = [max(2.0, 0.16 * (ppc["table"] == t).sum()) for t in tables]
    fig, axes = plt.subplots(
        len(tables),
        1,
        figsize=(8.5, sum(heights) + 1.2),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for ax, t in zip(axes[:, 0], tables):
        d = ppc[ppc["table"] == t].reset_index(drop=True)
        half = (d["rep_high"] - d["rep_low"]) / 2
        half = half.where(half > 0, 1.0)
        obs = pd.to_numeric(d["observed"], errors="coerce")
        z_obs = ((obs - d["rep_median"]) / half).clip(-4, 4)
        z_pub = ((d["published"] - d["rep_median"]) / half).clip(-4, 4)
        yy = np.arange(len(d))[::-1]
        ax.axvspan(-1, 1, color="0.88", zorder=0, label="replicated 95% interval")
        ax.axvline(0, color="0.5", lw=0.8)
        flag = d["flag"].to_numpy(dtype=bool)
        ax.scatter(z_obs[~flag], yy[~flag], s=14, color="tab:blue", zorder=3, label="observed")
        ax.scatter(
            z_obs[flag], yy[flag], s=18, color="tab:red", zorder=3, label="observed (flagged)"
        )
        ax.scatter(
            z_pub,
            yy,
            s=26,
            marker="D",
            facecolors="none",
            edgecolors="k",
            zorder=4,
            label="published",
        )
        ax.set_yticks(yy)
        ax.set_yticklabels(
            [f"{s} | {r}" for s, r in zip(d["statistic"], d["stratum_or_term"])], fontsize=5.5
        )
        ax.set_xlim(-4.2, 4.2)
        ax.set_title(_TITLES.get(t, t), fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    axes[-1, 0].set_xlabel(
        "(value - replicated median) / half-width of the replicated 95% interval "
        "(values beyond +/-4 drawn at the edge)",
        fontsize=8,
    )
    axes[0, 0].legend(fontsize=6, loc="lower right")
    head = title or "Posterior predictive check of the published tables"
    if synthetic:
        head = f"SYNTHETIC DATA (reconstruction) - {head}"
    fig.suptitle(head, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    return fig


# ----------------------------------------------------------------------------- files
def summary_text(ppc: pd.DataFrame) -> str:
    """A few lines: how many statistics, which fall outside the replicated interval.

    Statistics the model has fitted (``fitted_by_model``) are counted apart: they cannot
    fall outside, so they are no evidence of fit.
    """
    from cst_bayes.checks.ppc import n_outside

    out, checked = n_outside(ppc)
    fitted = len(ppc) - checked
    head = (
        f"{checked} statistics not fitted by the model, {out} outside the replicated 95% "
        f"interval ({fitted} more are functions of the model's sufficient statistic)"
    )
    if ppc.attrs.get("synthetic"):
        head = "SYNTHETIC data (reconstruction): " + head
    lines = [head]
    show = ppc["flag"].astype(bool)
    if "fitted_by_model" in ppc:
        show &= ~ppc["fitted_by_model"].astype(bool)
    for r in ppc[show].itertuples(index=False):
        lines.append(
            f"  {r.table:<16} {r.statistic:<24} {r.stratum_or_term:<20} observed {r.observed:.4g} "
            f"replicated [{r.rep_low:.4g}, {r.rep_high:.4g}] ppp {r.ppp:.3f}"
        )
    return "\n".join(lines)


def write_ppc(
    fit_path: str | Path,
    data: str | Path,
    out_dir: str | Path,
    *,
    n_draws: int = 500,
    seed: int = 0,
    prob: float = 0.95,
) -> dict[str, Any]:
    """Run :func:`ppc_tables` for a fit file and write ``ppc.csv`` and ``ppc.png``.

    Parameters
    ----------
    fit_path
        ``MODEL.nc`` from ``cst-bayes fit`` (one dataset, or pooled over an ensemble).
    data
        The data file it was fitted on, or the ensemble folder for a pooled fit (a pooled
        fit with one member's file checks that member).
    out_dir
        Output folder (created if missing); files are written atomically.
    n_draws, seed, prob
        See :func:`ppc_tables`.

    Returns
    -------
    dict
        ``table`` (as written), ``paths``, ``summary_text``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cst_bayes.bayes import models
    from cst_bayes.checks.ppc import is_pooled, ppc_tables
    from cst_bayes.core.disclosure import protect_ppc, small_cells
    from cst_bayes.core.fileio import atomic_path, write_csv
    from cst_bayes.core.provenance import status_of
    from cst_bayes.data.ensemble import load_frames

    fit = models.read_fit(fit_path)
    frames = load_frames(data)
    if Path(data).is_dir() and not is_pooled(fit):
        raise InputError(
            "an ensemble folder needs a fit pooled over it (cst-bayes fit MODEL --data DIR)",
            path=data,
        )
    table = ppc_tables(
        fit, frames if Path(data).is_dir() else frames[0], n_draws=n_draws, seed=seed, prob=prob
    )
    restricted = any(
        bool(d.attrs.get("restricted", False)) and not d.attrs.get("synthetic") for d in frames
    )
    written = protect_ppc(table, small_cells(frames[0])) if restricted else table
    notes = [
        f"cst-bayes ppc of {Path(fit_path).name} on {data}: {table.attrs['n_draws']} replicates, seed {seed}"
    ]
    if restricted:
        notes.append(
            "restricted microdata: observed values that reveal a cell below 5 are suppressed"
        )
    out = Path(out_dir)
    paths = {"ppc": write_csv(out / "ppc.csv", written, status=status_of(frames[0]), notes=notes)}
    fig = plot_ppc_tables(
        written,
        title=f"{fit.spec.name}: observed vs replicated",
        synthetic=bool(table.attrs.get("synthetic")),
    )
    with atomic_path(out / "ppc.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    paths["figure"] = out / "ppc.png"
    return {"table": written, "paths": paths, "summary_text": summary_text(written)}
