"""Render a run folder's report: ``index.html`` (self-contained) and ``report.md`` + ``figures/``."""

from __future__ import annotations

from pathlib import Path

from cst_bayes.core import config
from cst_bayes.core.errors import InputError
from cst_bayes.core.fileio import write_text
from cst_bayes.run.report import base, extra, quality, sections


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
    run = base.read_json(run_dir / "run.json")
    if run is None:
        raise InputError(
            "not a run directory (no readable run.json); create one with `cst-bayes reproduce`",
            path=run_dir,
        )
    import matplotlib

    matplotlib.use("Agg", force=False)
    figs = base.Figures(run_dir)
    models_sec, diag_sec = sections._section_models(run, run_dir, figs)
    secs = [
        sections._section_overview(run, run_dir),
        sections._section_data(run, run_dir, figs),
        extra.section_bounds(run, run_dir, figs),
        sections._section_tables(run, run_dir),
        models_sec,
        diag_sec,
        sections._section_results(run, run_dir, figs),
        sections._section_ppc(run, run_dir, figs),
        sections._section_weights(run, run_dir, figs),
        extra.section_tipping(run, run_dir, figs),
        sections._section_compare(run, run_dir),
    ]
    sweep = sections._section_sweep(run_dir, figs, run)
    if sweep is not None:
        secs.append(sweep)
    secs.append(sections._section_environment(run))
    secs.append(quality.section_checklist(run_dir, secs))
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cst_bayes.run", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["html_table"] = lambda df: jinja2.utils.markupsafe.Markup(base.html_table(df))
    env.filters["md_table"] = base.md_table
    env.filters["safe_text"] = lambda t: jinja2.utils.markupsafe.Markup(t)
    env.filters["plain"] = base.strip_tags
    banners = []
    failed = quality.failure_banner(run_dir)
    if failed:
        banners.append(failed)
    if run.get("synthetic"):
        banners.append(config.SYNTHETIC_BANNER)
    if run.get("restricted"):
        banners.append(base.RESTRICTED_NOTE)
    unavailable = [u for u in run.get("units", []) if u.get("status") in ("unavailable", "failed")]
    ctx = {
        "title": "Bayesian reanalysis of Mitchell et al. (2024): posterior report",
        "sections": secs,
        "banners": banners,
        "unavailable": unavailable,
        "run": run,
    }
    html_text = env.get_template("report.html.j2").render(**ctx)
    md = env.get_template("report.md.j2").render(**ctx)
    write_text(run_dir / "report.md", md)
    return write_text(run_dir / "index.html", html_text)
