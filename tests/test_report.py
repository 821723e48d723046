"""The posterior report: BARG sections, banners, figures beside report.md and embedded in HTML,
numbers copied faithfully from the run, missing stages named."""

from __future__ import annotations

import base64
import json
import re
from html import unescape as html_unescape

import pandas as pd
import pytest

from cst_bayes import cli
from cst_bayes.core import config
from cst_bayes.core.errors import InputError
from cst_bayes.core.fileio import write_json
from cst_bayes.run.report import build_report

SECTIONS = (
    "Overview of the run",
    "Data and provenance",
    "Frequentist reproduction",
    "Models and priors",
    "Computation and diagnostics",
    "Results: published, frequentist refit and Bayesian",
    "Posterior predictive checks",
    "Weighting sensitivity",
    "Model comparison (PSIS-LOO)",
    "Computational environment and reproducibility",
)


def test_not_a_run_directory(tmp_path, capsys):
    with pytest.raises(InputError, match="run.json"):
        build_report(tmp_path)
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_empty_run_names_every_missing_stage(tmp_path):
    write_json(
        tmp_path / "run.json",
        {
            "profile": "quick",
            "seed": 1,
            "synthetic": True,
            "restricted": False,
            "settings": {},
            "units": [
                {
                    "unit": "models",
                    "status": "unavailable",
                    "seconds": 0,
                    "message": "module cst_bayes.bayes.models is not available",
                }
            ],
        },
    )
    build_report(tmp_path)
    md = (tmp_path / "report.md").read_text()
    for stage in ("audit", "tables", "models", "ppc", "weights", "compare"):
        assert re.search(rf"Stage {stage} not available", md), stage
    assert config.SYNTHETIC_BANNER in md
    assert "<script" not in (tmp_path / "index.html").read_text()


@pytest.mark.slow
@pytest.mark.xdist_group("quick_run")
def test_report_of_the_quick_run(quick_run):
    out = quick_run["out"]
    md = (out / "report.md").read_text()
    html = (out / "index.html").read_text()
    run = json.loads((out / "run.json").read_text())
    for s in SECTIONS:
        assert f"## {s}" in md, s
        assert s in html, s
    assert config.SYNTHETIC_BANNER in md and config.SYNTHETIC_BANNER in html_unescape(html)
    # figures: every file referenced by report.md exists, and the HTML embeds the same bytes
    refs = re.findall(r"\]\(figures/([^)]+\.png)\)", md)
    assert "forest_table3.png" in refs
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(embedded) == len(refs)
    for name, b64 in zip(refs, embedded):
        assert (out / "figures" / name).read_bytes() == base64.b64decode(b64), name
    # environment: versions, seed, data and spec hashes, git commit
    env = run["environment"]
    assert env["packages"]["pymc"] in md and env["git_commit"] in md
    for d in run["datasets"]:
        assert d["sha256"] in md
    for h in run["specs"].values():
        assert h in md
    # the Bayesian column shows the model's own summary numbers
    s = pd.read_csv(
        out / "models" / "logit_approaches_strata" / "summary.csv", comment="#"
    ).set_index("term")
    court = s.loc["court"]
    assert f"{court.estimate:.2f} ({court.ci_low:.2f}, {court.ci_high:.2f})" in md
    # published Table 3 is beside it, as printed
    assert "| 1 | yes | court | 0.80 (0.50, 1.30) |" in md
