"""The posterior report of a run directory (``cst-bayes report RUN_DIR``).

Reads what :mod:`cst_bayes.run.pipeline` (and optionally :mod:`cst_bayes.run.sweep`) wrote into a run
directory and renders two documents with the same content:

``index.html``
    Self-contained: styles inline, every figure embedded as a base64 PNG, no script, no
    external resource, so it can be mailed or archived as one file.
``report.md``
    Markdown with the figures beside it in ``figures/``.

The sections follow the Bayesian Analysis Reporting Guidelines (Kruschke 2021, *Nature
Human Behaviour* 5:1282): data and provenance, models and priors, computation and
diagnostics, posterior results (with the published and frequentist numbers side by side),
posterior predictive checks, sensitivity (weighting, sweep), model comparison, and the
computational environment needed to reproduce the run. A stage that did not run is named
as *not available*; nothing is filled in for it.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cst_bayes.core import config
from cst_bayes.core.errors import InputError
from cst_bayes.core.fileio import atomic_path, write_text

#: Shipped models that correspond to the four published Table 3 models: (analysis, adjusted).
TABLE3_MODELS: dict[str, tuple[int, str]] = {
    "logit_approaches": (1, "no"),
    "logit_approaches_strata": (1, "yes"),
    "logit_count": (2, "no"),
    "logit_count_strata": (2, "yes"),
}
RESTRICTED_NOTE = (
    f"RESTRICTED DATA: these results come from restricted-use microdata. No row-level data are "
    f'shown or stored, and every count below {config.SMALL_CELL} is suppressed as "<{config.SMALL_CELL}".'
)


@dataclass
class Block:
    """One piece of a section: a paragraph, a warning, a table, a figure or preformatted text."""

    kind: str  # "p", "warn", "table", "figure", "pre"
    text: str = ""
    table: pd.DataFrame | None = None
    figure: str = ""  # file name under figures/
    png_b64: str = ""
    caption: str = ""


@dataclass
class Section:
    """A report section (an ``<h2>`` with an anchor)."""

    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)

    def p(self, text: str) -> None:
        self.blocks.append(Block("p", text))

    def warn(self, text: str) -> None:
        self.blocks.append(Block("warn", text))

    def table(self, df: pd.DataFrame, caption: str = "") -> None:
        self.blocks.append(Block("table", table=df, caption=caption))

    def pre(self, text: str, caption: str = "") -> None:
        self.blocks.append(Block("pre", text, caption=caption))


# --------------------------------------------------------------------------- reading the run


def _csv(path: Path) -> pd.DataFrame | None:
    """A run CSV as text cells (keeps "<5" and printed numbers as they are)."""
    if not path.is_file():
        return None
    return pd.read_csv(path, comment="#", dtype=str, keep_default_na=False)


def _num(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce")


def _json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _fmt(df: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Round numeric-looking text cells for display; keep everything else as is."""
    out = df.copy()
    for c in out.columns:
        v = _num(out[c])
        if v.notna().any() and (v.notna() | (out[c].astype(str).str.strip() == "")).all():
            out[c] = [
                ("" if pd.isna(x) else (f"{x:.{digits}g}" if abs(x) < 1e4 else f"{x:.0f}"))
                for x in v
            ]
    return out


class _Figures:
    """Collects PNG figures: bytes for embedding, files for the Markdown."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir / "figures"
        self.files: list[str] = []

    def add(self, section: Section, name: str, fig: Any, caption: str) -> None:
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        self._store(section, name, buf.getvalue(), caption)

    def add_png(self, section: Section, name: str, png: bytes, caption: str) -> None:
        self._store(section, name, png, caption)

    def _store(self, section: Section, name: str, png: bytes, caption: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.dir / name) as tmp:
            tmp.write_bytes(png)
        self.files.append(name)
        section.blocks.append(
            Block(
                "figure",
                figure=name,
                png_b64=base64.b64encode(png).decode("ascii"),
                caption=caption,
            )
        )


def _stamp(fig: Any, synthetic: bool, restricted: bool) -> None:
    """Label a figure synthetic (or restricted) in its own pixels, not only in the caption."""
    if synthetic:
        fig.text(
            0.01,
            0.005,
            "SYNTHETIC DATA (reconstructions of published tables)",
            fontsize=7,
            color="#b00020",
            ha="left",
            va="bottom",
        )
    elif restricted:
        fig.text(
            0.01,
            0.005,
            f"restricted data: counts < {config.SMALL_CELL} suppressed",
            fontsize=7,
            color="#555555",
            ha="left",
            va="bottom",
        )


# --------------------------------------------------------------------------- sections


def _section_overview(run: dict[str, Any], run_dir: Path) -> Section:
    sec = Section("overview", "Overview of the run")
    s = run.get("settings", {})
    sec.p(
        f"Profile <b>{run.get('profile')}</b>, seed {run.get('seed')}, "
        f"{len(run.get('datasets', []))} dataset(s) from <code>{html.escape(str(run.get('data_source', '')))}</code>; "
        f"chains {s.get('chains')} x {s.get('draws')} draws after {s.get('tune')} tuning steps "
        f"(sampler {s.get('sampler')}); {s.get('ppc_draws')} posterior predictive replicates."
    )
    units = pd.DataFrame(run.get("units", []))
    if len(units):
        units = units[["unit", "status", "seconds", "message"]].copy()
        units["seconds"] = units["seconds"].map(lambda x: f"{float(x):.1f}")
        sec.table(units, "Stage units: done in this run, reused from cache, or not available.")
    return sec


def _section_data(run: dict[str, Any], run_dir: Path, figs: _Figures) -> Section:
    sec = Section("data", "Data and provenance")
    if run.get("synthetic"):
        sec.warn(
            config.SYNTHETIC_BANNER + ". Every estimate below describes what the published tables "
            "are consistent with, not the study's agencies; the spread across reconstructions shows "
            "what the tables cannot pin down."
        )
    if run.get("restricted"):
        sec.warn(RESTRICTED_NOTE)
    pub = run.get("published", {})
    if pub:
        sec.table(
            pd.DataFrame({"file": list(pub), "sha256": [h[:16] for h in pub.values()]}),
            "Published tables (transcribed from Mitchell et al. 2024, CC BY 4.0) and their hashes.",
        )
    audit = _csv(run_dir / "audit" / "audit.csv")
    if audit is None:
        sec.warn("Stage audit not available: no audit of the published tables in this run.")
    else:
        counts = audit["status"].value_counts()
        sec.p(
            "Audit of the published numbers: "
            + ", ".join(f"{v} {k}" for k, v in counts.items())
            + "."
        )
        bad = audit[audit["status"] != "pass"]
        if len(bad):
            sec.table(
                bad,
                "Audit checks that did not pass (flag: inconsistent in the article; fail: error).",
            )
    ds = _csv(run_dir / "data" / "datasets.csv")
    if ds is not None:
        ds = ds.assign(sha256=ds["sha256"].str[:16])
        sec.table(ds, "Datasets analysed (hash of values; no rows are copied into the run).")
    man = _json(run_dir / "data" / "reconstruction_manifest.json")
    if man and man.get("method"):
        sec.p("Reconstruction method: " + html.escape(str(man["method"])))
    fid = _csv(run_dir / "data" / "fidelity.csv")
    if fid is not None and len(fid) and {"table", "met", "total"} <= set(fid.columns):
        g = (
            fid.assign(met=_num(fid["met"]), total=_num(fid["total"]))
            .groupby("table", sort=False)[["met", "total"]]
            .sum()
        )
        g = g.reset_index().astype({"met": int, "total": int})
        sec.table(
            g,
            "Reconstruction fidelity: published targets met, summed over the ensemble members used "
            "(recomputed with the package's frequentist code when the ensemble was built).",
        )
    spread = _csv(run_dir / "data" / "untargeted_spread.csv")
    if spread is not None and len(spread):
        sec.table(
            _fmt(spread),
            "Spread across the whole shipped ensemble of statistics that no published table "
            "fixes: what the tables cannot tell us.",
        )
    return sec


def _section_tables(run: dict[str, Any], run_dir: Path) -> Section:
    sec = Section("frequentist", "Frequentist reproduction of the published tables")
    comp = _csv(run_dir / "tables" / "comparison.csv")
    if comp is None:
        sec.warn("Stage tables not available.")
        return sec
    comp = comp.assign(_m=comp["matches"].str.lower() == "true")
    g = comp.groupby(["table", "link"], dropna=False)["_m"].agg(["sum", "size"]).reset_index()
    g["share"] = (g["sum"] / g["size"]).map(lambda x: f"{x:.0%}")
    g.columns = ["table", "link", "matched", "compared", "share"]
    sec.table(
        g, "Published numbers reproduced (rounds to the printed value), summed over datasets."
    )
    t3 = g[g["table"] == "table3"].set_index("link")
    if {"logit", "log"} <= set(t3.index):
        lo, lg = int(t3.loc["logit", "matched"]), int(t3.loc["log", "matched"])
        sec.p(
            f"Table 3 is called Poisson regression in the article. Refitted both ways, {lo} published "
            f"numbers agree with logistic odds ratios and {lg} with Poisson risk ratios: "
            f"the printed figures behave like {'odds ratios' if lo > lg else 'risk ratios'}."
        )
    t1 = _csv(run_dir / "tables" / "table1.csv")
    if t1 is not None:
        first = t1[t1["dataset"] == t1["dataset"].iloc[0]]
        cols = [
            c for c in ("variable", "stratum", "n_yes", "n_stratum", "pct", "p_value") if c in first
        ]
        sec.table(_fmt(first[cols]), f"Table 1 recomputed on {first['dataset'].iloc[0]}.")
    return sec


def _load_table3_sources(run_dir: Path) -> pd.DataFrame:
    """Published, frequentist and Bayesian Table 3 ORs in one tidy frame."""
    rows = []
    pub = _csv(run_dir / "data" / "published" / "table3_odds_ratios.csv")
    if pub is not None:
        for r in pub.to_dict("records"):
            rows.append(
                {
                    "analysis": int(r["analysis"]),
                    "adjusted_for_size": r["adjusted_for_size"],
                    "term": r["term"],
                    "source": "published",
                    "estimate": float(r["or"]),
                    "ci_low": float(r["ci_low"]),
                    "ci_high": float(r["ci_high"]),
                }
            )
    t3 = _csv(run_dir / "tables" / "table3.csv")
    if t3 is not None:
        t3 = t3[t3["link"] == "logit"]
        for c in ("estimate", "ci_low", "ci_high"):
            t3[c] = _num(t3[c])
        # across reconstructions: the median of each number (members differ only slightly)
        g = t3.groupby(["analysis", "adjusted_for_size", "term"], sort=False)[
            ["estimate", "ci_low", "ci_high"]
        ].median()
        for (a, adj, term), v in g.iterrows():
            rows.append(
                {
                    "analysis": int(a),
                    "adjusted_for_size": adj,
                    "term": term,
                    "source": "frequentist",
                    **v.to_dict(),
                }
            )
    for model, (a, adj) in TABLE3_MODELS.items():
        s = _csv(run_dir / "models" / model / "summary.csv")
        if s is None:
            continue
        for r in s.itertuples(index=False):
            rows.append(
                {
                    "analysis": a,
                    "adjusted_for_size": adj,
                    "term": r.term,
                    "source": "Bayesian",
                    # blank where restricted mode hid a term
                    "estimate": pd.to_numeric(r.estimate, errors="coerce"),
                    "ci_low": pd.to_numeric(r.ci_low, errors="coerce"),
                    "ci_high": pd.to_numeric(r.ci_high, errors="coerce"),
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "analysis",
            "adjusted_for_size",
            "term",
            "source",
            "estimate",
            "ci_low",
            "ci_high",
        ],
    )


def forest_figure(df: pd.DataFrame, *, synthetic: bool, restricted: bool) -> Any:
    """Forest plot of Table 3 ORs, one panel per published model, sources side by side."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    panels = sorted({(int(a), adj) for a, adj in zip(df["analysis"], df["adjusted_for_size"])})
    colors = {"published": "#222222", "frequentist": "#1f77b4", "Bayesian": "#d62728"}
    offsets = {"published": -0.22, "frequentist": 0.0, "Bayesian": 0.22}
    nterms = max(
        len(set(df[(df["analysis"] == a) & (df["adjusted_for_size"] == adj)]["term"]))
        for a, adj in panels
    )
    fig, axes = plt.subplots(
        1, len(panels), figsize=(3.4 * len(panels), 0.42 * nterms + 1.6), squeeze=False
    )
    for ax, (a, adj) in zip(axes[0], panels):
        d = df[(df["analysis"] == a) & (df["adjusted_for_size"] == adj)]
        terms = list(dict.fromkeys(d[d["source"] == "published"]["term"])) or list(
            dict.fromkeys(d["term"])
        )
        terms += [t for t in dict.fromkeys(d["term"]) if t not in terms]
        for src, g in d.groupby("source"):
            y = np.array([terms.index(t) for t in g["term"]]) + offsets.get(src, 0)
            ax.errorbar(
                g["estimate"],
                y,
                xerr=[g["estimate"] - g["ci_low"], g["ci_high"] - g["estimate"]],
                fmt="o",
                ms=3.5,
                lw=1,
                color=colors.get(src, "gray"),
                label=src,
            )
        ax.axvline(1.0, color="gray", lw=0.8, ls="--")
        ax.set_xscale("log")
        # plain numbers on the log axis: a narrow range (e.g. 1.1-1.5) gets unreadable 10^x labels
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_yticks(range(len(terms)), terms, fontsize=8)
        ax.set_ylim(
            len(terms) - 0.5, -0.5
        )  # fixed rows: one-term panels must not stretch the offsets
        ax.set_title(f"Analysis {a}, {'adjusted' if adj == 'yes' else 'unadjusted'}", fontsize=9)
        ax.set_xlabel("odds ratio (95% interval)", fontsize=8)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    _stamp(fig, synthetic, restricted)
    return fig


def _section_models(run: dict[str, Any], run_dir: Path) -> tuple[Section, Section]:
    sec = Section("models", "Models and priors")
    diag = Section("diagnostics", "Computation and diagnostics")
    mdir = run_dir / "models"
    names = (
        sorted(p.name for p in mdir.iterdir() if p.is_dir() and not p.name.startswith("."))
        if mdir.is_dir()
        else []
    )
    if not names:
        sec.warn("Stage models not available: no Bayesian model was fitted in this run.")
        diag.warn("Stage models not available: no sampler diagnostics.")
        return sec, diag
    s = run.get("settings", {})
    diag.p(
        f"Sampler {s.get('sampler')}, {s.get('chains')} chains x {s.get('draws')} draws after {s.get('tune')} "
        f"tuning steps, seed {run.get('seed')}. Thresholds: R-hat &le; 1.01, bulk and tail ESS &ge; 400, "
        "no divergences."
    )
    rows = []
    for name in names:
        spec_file = mdir / name / "spec.toml"
        if spec_file.is_file():
            sec.pre(
                spec_file.read_text(encoding="utf-8"),
                f"Spec of {name} (priors with their reasons).",
            )
        else:
            sec.p(f"{name}: spec file not stored with the fit.")
        summ = _csv(mdir / name / "summary.csv")
        man = _json(mdir / name / "manifest.json") or {}
        row: dict[str, Any] = {"model": name}
        if summ is not None:
            row["max_r_hat"] = f"{_num(summ.get('r_hat', pd.Series(dtype=str))).max():.3f}"
            row["min_ess_bulk"] = f"{_num(summ.get('ess_bulk', pd.Series(dtype=str))).min():.0f}"
            row["min_ess_tail"] = f"{_num(summ.get('ess_tail', pd.Series(dtype=str))).min():.0f}"
        d = (man.get("info") or {}).get("diagnostics") or {}
        for k, v in d.items():
            row[k] = v
        row["seconds"] = man.get("seconds", "")
        rows.append(row)
    diag.table(
        pd.DataFrame(rows),
        "Convergence per model (pooled over the reconstructions when there are several).",
    )
    return sec, diag


def _section_results(run: dict[str, Any], run_dir: Path, figs: _Figures) -> Section:
    sec = Section("results", "Results: published, frequentist refit and Bayesian, side by side")
    t3 = _load_table3_sources(run_dir)
    if t3.empty:
        sec.warn("No Table 3 estimates available.")
        return sec
    if not (t3["source"] == "Bayesian").any():
        sec.warn("Stage models not available: only the published and frequentist ORs are shown.")
    wide = t3.assign(
        cell=[
            f"{e:.2f} ({lo:.2f}, {hi:.2f})"
            for e, lo, hi in zip(t3["estimate"], t3["ci_low"], t3["ci_high"])
        ]
    )
    wide = wide.pivot_table(
        index=["analysis", "adjusted_for_size", "term"],
        columns="source",
        values="cell",
        aggfunc="first",
        sort=False,
    ).reset_index()
    wide.columns.name = None
    sec.table(
        wide,
        "Odds ratios with 95% intervals (Bayesian: posterior median and equal-tailed interval).",
    )
    fig = forest_figure(
        t3, synthetic=bool(run.get("synthetic")), restricted=bool(run.get("restricted"))
    )
    figs.add(
        sec,
        "forest_table3.png",
        fig,
        "Forest plot of the Table 3 odds ratios: published (black), "
        "frequentist refit (blue), Bayesian posterior (red)."
        + (" Synthetic data." if run.get("synthetic") else ""),
    )
    for name in (
        sorted(p.parent.name for p in (run_dir / "models").glob("*/summary.csv"))
        if (run_dir / "models").is_dir()
        else []
    ):
        if name in TABLE3_MODELS:
            continue
        s = _csv(run_dir / "models" / name / "summary.csv")
        if s is not None:
            sec.table(_fmt(s), f"Posterior summary of {name}.")
        b = _csv(run_dir / "models" / name / "between.csv")
        if b is not None:
            sec.table(
                _fmt(b),
                f"{name}: share of posterior variance from differences between reconstructions.",
            )
    for model in TABLE3_MODELS:
        b = _csv(run_dir / "models" / model / "between.csv")
        if b is not None:
            sec.table(
                _fmt(b),
                f"{model}: share of posterior variance from differences between reconstructions.",
            )
    return sec


def _section_ppc(run: dict[str, Any], run_dir: Path, figs: _Figures) -> Section:
    sec = Section("ppc", "Posterior predictive checks of the published tables")
    pdir = run_dir / "ppc"
    names = sorted(p.parent.name for p in pdir.glob("*/ppc.csv")) if pdir.is_dir() else []
    if not names:
        sec.warn("Stage ppc not available: no posterior predictive checks in this run.")
        return sec
    rows = []
    for name in names:
        t = _csv(pdir / name / "ppc.csv")
        flag = t["flag"].str.lower().isin(["true", "1"]) if "flag" in t else t["table"] == ""
        fitted = (
            t["fitted_by_model"].str.lower().isin(["true", "1"])
            if "fitted_by_model" in t
            else t["table"] == ""
        )
        # statistics the model has fitted (functions of its sufficient statistic) cannot
        # fall outside the band: they are counted apart, not as evidence of fit
        flagged = t[flag & ~fitted]
        rows.append(
            {
                "model": name,
                "statistics checked": int((~fitted).sum()),
                "outside 95% interval": len(flagged),
                "fitted by the model (not counted)": int(fitted.sum()),
            }
        )
        if len(flagged):
            cols = [
                c
                for c in (
                    "table",
                    "statistic",
                    "stratum_or_term",
                    "observed",
                    "published",
                    "rep_median",
                    "rep_low",
                    "rep_high",
                    "ppp",
                )
                if c in flagged
            ]
            sec.table(
                _fmt(flagged[cols]), f"{name}: statistics outside the replicated 95% interval."
            )
        png = pdir / name / "ppc.png"
        if png.is_file():
            figs.add_png(
                sec,
                f"ppc_{name}.png",
                png.read_bytes(),
                f"{name}: observed (dot) and published (diamond) statistics against the replicated "
                "95% band [-1, 1] on a standardised axis.",
            )
    sec.blocks.insert(
        0,
        Block("table", table=pd.DataFrame(rows), caption="Posterior predictive checks per model."),
    )
    return sec


def _section_weights(run: dict[str, Any], run_dir: Path, figs: _Figures) -> Section:
    sec = Section("weights", "Weighting sensitivity")
    wdir = run_dir / "weights"
    if not wdir.is_dir():
        sec.warn(
            "Stage weights not available: the unweighted analysis was not compared with weighted ones."
        )
        return sec
    sec.p(
        "The published analysis is unweighted. Eligibility and response by stratum were not published, "
        "so weighting is a set of named scenarios; the tables show how the key estimands move across them."
    )
    for name in ("sensitivity", "design_estimates", "mrp_estimates"):
        t = _csv(wdir / f"{name}.csv")
        if t is not None:
            sec.table(_fmt(t), name.replace("_", " ").capitalize() + ".")
    for png in sorted(wdir.glob("*.png")):
        figs.add_png(
            sec, f"weights_{png.name}", png.read_bytes(), f"Weighting sensitivity ({png.stem})."
        )
    text = wdir / "sensitivity.md"
    if text.is_file():
        sec.pre(text.read_text(encoding="utf-8"), "What survives every scenario.")
    return sec


def _section_compare(run: dict[str, Any], run_dir: Path) -> Section:
    sec = Section("comparison", "Model comparison (PSIS-LOO)")
    t = _csv(run_dir / "compare" / "loo.csv")
    if t is None:
        sec.warn("Stage compare not available: no PSIS-LOO comparison in this run.")
        return sec
    sec.table(
        _fmt(t), "Expected log predictive density (elpd_loo), differences and Pareto-k diagnostics."
    )
    return sec


def _section_sweep(run_dir: Path, figs: _Figures, run: dict[str, Any]) -> Section | None:
    sdir = run_dir / "sweep"
    t = _csv(sdir / "summary.csv")
    if t is None:
        return None
    sec = Section("sweep", "Sensitivity sweep")
    sec.p(
        "A grid of reconstructions x weighting scenarios x prior scales x models, run as independent tasks "
        "on dask.distributed; each cell is cached by a hash of its inputs."
    )
    sec.table(_fmt(t), "Sweep summary: spread of each estimate across the grid.")
    png = sdir / "sweep.png"
    if png.is_file():
        figs.add_png(sec, "sweep.png", png.read_bytes(), "Posterior medians across the sweep grid.")
    return sec


def _section_environment(run: dict[str, Any]) -> Section:
    sec = Section("environment", "Computational environment and reproducibility")
    env = run.get("environment", {})
    sec.p(
        f"cst_bayes {run.get('cst_bayes_version')}, Python {env.get('python')} on {env.get('platform')} "
        f"({env.get('cpus')} CPUs), git commit <code>{env.get('git_commit')}</code>, seed {run.get('seed')}."
    )
    pk = env.get("packages", {})
    sec.table(
        pd.DataFrame({"package": list(pk), "version": list(pk.values())}), "Package versions."
    )
    ds = run.get("datasets", [])
    if ds:
        sec.table(pd.DataFrame(ds), "Data hashes (SHA-256 of the validated frame).")
    specs = run.get("specs", {})
    if specs:
        sec.table(
            pd.DataFrame({"model": list(specs), "sha256": list(specs.values())}),
            "Model spec hashes.",
        )
    st = run.get("stage_seconds", {})
    if st:
        sec.table(
            pd.DataFrame({"stage": list(st), "seconds": [f"{v:.1f}" for v in st.values()]}),
            "Stage timings of the last run (cached stages take ~0 s).",
        )
    sec.p(
        "Rerun with: <code>cst-bayes reproduce --profile "
        f"{run.get('profile')} --seed {run.get('seed')}</code>; an unchanged stage is reused from its cache."
    )
    return sec


# --------------------------------------------------------------------------- rendering


def _md_table(df: pd.DataFrame) -> str:
    def cell(x: Any) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(cell(c) for c in df.columns) + " |"
    sep = "| " + " | ".join("---" for _ in df.columns) + " |"
    body = ["| " + " | ".join(cell(x) for x in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def _html_table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, escape=True, na_rep="", border=0, classes="tbl")


def _strip_tags(text: str) -> str:
    import re

    text = re.sub(r"</?code>", "`", text)
    text = re.sub(r"</?b>", "**", text)
    # paragraphs are HTML: entities (&le;, &amp;) become their characters in Markdown
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def build_report(run_dir: str | Path) -> Path:
    """Write ``index.html``, ``report.md`` and ``figures/`` into ``run_dir``.

    Parameters
    ----------
    run_dir
        A run directory written by :func:`cst_bayes.run.pipeline.reproduce` (it must hold
        ``run.json``).

    Returns
    -------
    pathlib.Path
        The path of ``index.html``.

    Raises
    ------
    InputError
        When ``run_dir`` is not a run directory.
    """
    import jinja2

    run_dir = Path(run_dir)
    run = _json(run_dir / "run.json")
    if run is None:
        raise InputError(
            "not a run directory (no readable run.json); create one with `cst-bayes reproduce`",
            path=run_dir,
        )
    import matplotlib

    matplotlib.use("Agg", force=False)
    figs = _Figures(run_dir)
    models_sec, diag_sec = _section_models(run, run_dir)
    sections = [
        _section_overview(run, run_dir),
        _section_data(run, run_dir, figs),
        _section_tables(run, run_dir),
        models_sec,
        diag_sec,
        _section_results(run, run_dir, figs),
        _section_ppc(run, run_dir, figs),
        _section_weights(run, run_dir, figs),
        _section_compare(run, run_dir),
    ]
    sweep = _section_sweep(run_dir, figs, run)
    if sweep is not None:
        sections.append(sweep)
    sections.append(_section_environment(run))
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cst_bayes.run", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["html_table"] = lambda df: jinja2.utils.markupsafe.Markup(_html_table(df))
    env.filters["md_table"] = _md_table
    env.filters["safe_text"] = lambda t: jinja2.utils.markupsafe.Markup(t)
    env.filters["plain"] = _strip_tags
    banners = []
    if run.get("synthetic"):
        banners.append(config.SYNTHETIC_BANNER)
    if run.get("restricted"):
        banners.append(RESTRICTED_NOTE)
    unavailable = [u for u in run.get("units", []) if u.get("status") in ("unavailable", "failed")]
    ctx = {
        "title": "Bayesian reanalysis of Mitchell et al. (2024): posterior report",
        "sections": sections,
        "banners": banners,
        "unavailable": unavailable,
        "run": run,
    }
    html_text = env.get_template("report.html.j2").render(**ctx)
    md = env.get_template("report.md.j2").render(**ctx)
    write_text(run_dir / "report.md", md)
    return write_text(run_dir / "index.html", html_text)
