"""The posterior report: BARG sections, banners, figures beside report.md and embedded in HTML,
numbers copied faithfully from the run, missing stages named."""

from __future__ import annotations

import base64
import io
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
    "What the tables leave open",
    "Nonresponse tipping point",
    "BARG checklist",
)


def test_not_a_run_directory(tmp_path, capsys):
    with pytest.raises(InputError, match=r"run\.json"):
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


# --------------------------------------------------------------------------- hand-made run folder


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _run_folder(tmp_path, *, bad_fit=False, extras=True):
    """A small run folder written by hand: one model, tables, and optionally every extra file."""
    write_json(
        tmp_path / "run.json",
        {"profile": "quick", "seed": 1, "synthetic": True, "restricted": False, "settings": {}},
    )
    m = tmp_path / "models" / "logit_approaches_strata"
    _write(m / "spec.toml", '[model]\nname = "logit_approaches_strata"\n')
    _write(
        m / "summary.csv",
        "term,estimate,ci_low,ci_high,r_hat,ess_bulk,ess_tail,p_gt_1,p_rope,mcse_estimate,"
        "mcse_ci_low,mcse_ci_high,data_status\n"
        f"court,0.8,0.5,1.2,{1.036 if bad_fit else 1.002},1306.0,{239 if bad_fit else 900},"
        "0.12,0.41,0.004,0.01,0.02,SYNTHETIC\n"
        "mdt,,,,,,,,,,,,SYNTHETIC\n",
    )
    diag = {
        "divergences": 3 if bad_fit else 0,
        "max_r_hat": 1.036 if bad_fit else 1.002,
        "min_ess_bulk": 1306.0,
        "min_ess_tail": 239.0 if bad_fit else 900.0,
        "min_bfmi": 0.2 if bad_fit else 0.9,
        "ok": not bad_fit,
        "messages": ["a", "b"],
    }
    write_json(m / "manifest.json", {"seconds": 2.0, "info": {"diagnostics": diag}})
    _write(
        tmp_path / "tables" / "comparison.csv",
        "dataset,table,item,quantity,link,published,reproduced,matches,data_status\n"
        "d,table1,x,n_yes,,5,5,TRUE,SYNTHETIC\n"
        "d,table3,a,or,logit,1.2,1.2,TRUE,SYNTHETIC\n"
        "d,table3,a,or,log,1.2,1.1,FALSE,SYNTHETIC\n"
        "d,table3,b,or,logit,2.0,1.5,FALSE,SYNTHETIC\n"
        "d,table3,b,or,log,2.0,2.0,TRUE,SYNTHETIC\n",
    )
    if not extras:
        return tmp_path
    _write(
        tmp_path / "prior_check" / "logit_approaches_strata" / "prior_check.csv",
        "table,statistic,stratum_or_term,observed,published,rep_median,rep_low,rep_high,ppp\n"
        "table1,n_yes,all,218,218,420,47,1153,0.44\n"
        "table3,analysis1_adjusted_OR,stratum[1000+],61.2,61.2,0.98,0.07,7.9,0\n",
    )
    _write(
        tmp_path / "psense" / "logit_approaches_strata" / "psense.csv",
        "quantity,kind,prior_sensitivity,likelihood_sensitivity,diagnosis,n_members,data_status\n"
        "court,term,0.002,0.08,,1,SYNTHETIC\n"
        "stratum[state],term,0.09,0.11,prior-data conflict,1,SYNTHETIC\n",
    )
    _write(
        tmp_path / "compare" / "loo.csv",
        "group,model,rank,elpd_loo,weight\nany_cst,logit_approaches_strata,0,-500.5,1.0\n",
    )
    _write(
        tmp_path / "compare" / "stacked.csv",
        "quantity,estimate,ci_low,ci_high\nnational_share,0.171,0.15,0.19\n",
    )
    _write(
        tmp_path / "data" / "bounds.csv",
        "statistic,stratum,lower,upper,starts,converged,seconds\n"
        "count_sd,all,1.8,2.3,4,TRUE,10\ncount_sd,state,1.2,2.6,4,TRUE,10\n",
    )
    _write(
        tmp_path / "data" / "bounds_members.csv",
        "statistic,stratum,value,member\ncount_sd,all,2.0,0\ncount_sd,all,2.1,1\n"
        "count_sd,state,1.7,0\ncount_sd,state,2.2,1\n",
    )
    _write(
        tmp_path / "weights" / "tipping_point.csv",
        "claim,quantity,published,delta_low,delta_high,holds_at_zero\n"
        "Table 3: court OR is not significant,rd:court,0,-0.5,,TRUE\n",
    )
    return tmp_path


def _barg(md):
    rows = re.findall(r"^\| (\d) \| ([^|]+) \| ([^|]+) \| ([^|]*) \|", md, flags=re.M)
    return {item.strip(): (status.strip(), link.strip()) for _, item, status, link in rows}


def test_numbers_as_a_reader_expects():
    from cst_bayes.run.report.base import display

    df = pd.DataFrame(
        {
            "n": [1306.0, 34.0, float("nan")],
            "text": ["1306.0", "<5", "nan"],
            "x": [1.0362, 0.000123, 12345.6],
            "lst": [[1, 2], None, "a"],
            "r_hat": ["1.0064", "1.0", ""],
        }
    )
    d = display(df)
    assert list(d["n"]) == ["1306", "34", ""]
    assert list(d["text"]) == ["1306", "<5", ""]
    assert list(d["x"]) == ["1.04", "0.000123", "12346"]
    assert list(d["lst"]) == ["1; 2", "", "a"]
    assert list(d["r_hat"]) == ["1.006", "1", ""]


def test_reproduced_count_uses_the_expected_link():
    from cst_bayes.run.report import reproduced_count

    comp = pd.read_csv(
        io.StringIO(
            "table,link,matches\ntable1,,TRUE\ntable3,logit,TRUE\ntable3,log,FALSE\n"
            "table3,logit,FALSE\ntable3,log,TRUE\ntable3,logit,\n"
        ),
        dtype=str,
        keep_default_na=False,
    )
    # table1 + the two logit rows with a flag; the log rows and the hidden cell do not count
    assert reproduced_count(comp) == (2, 3)


def test_hand_made_run_shows_every_extra(tmp_path):
    run = _run_folder(tmp_path)
    build_report(run)
    md = (run / "report.md").read_text()
    html = (run / "index.html").read_text()
    assert "SAMPLER DIAGNOSTICS FAILED" not in md
    assert "**2 of 3** published numbers reproduced" in md
    # prior check, power-scaling and decisions shown
    assert "prior predictive check. The published number lies inside" in md
    assert (
        "| table3 | analysis1_adjusted_OR | stratum[1000+] | 61.2 | 0.07 | 0.98 | 7.9 | 0 | no |"
        in md
    )
    assert "Prior-data conflict in 1 and strong prior / weak likelihood in 0 of 2" in md
    assert "| court | 0.8 | 0.5 | 1.2 | 0.12 | 0.41 | 0.004 | 0.01 | 0.02 |" in md
    assert "| national_share | 0.171 | 0.15 | 0.19 |" in md
    # bounds table with the members' range and the figure; tipping point table
    assert "## What the tables leave open" in md
    assert "| count_sd | state | 1.2 | 2.6 | 1.7 | 2.2 | 0.357 |" in md
    assert "figures/bounds.png" in md and (run / "figures" / "bounds.png").is_file()
    assert "## Nonresponse tipping point" in md
    assert "| Table 3: court OR is not significant | rd:court | 0 | -0.5 |  | TRUE |" in md
    # diagnostics: integers, empty cells, no Python lists, no nan
    assert "| logit_approaches_strata | 0 | 1.002 | 1306 | 900 | 0.9 |  |  | 2 |" in md
    assert not re.search(r"\bnan\b", md) and "1.31e+03" not in md and "['" not in md
    # BARG checklist: linked where done
    barg = _barg(md)
    assert barg["Prior predictive check"] == ("done", "[Models and priors](#models)")
    assert barg["Prior sensitivity (power-scaling)"][0] == "done"
    assert barg["Decisions: P(ratio > 1), ROPE probability, Monte Carlo error"] == (
        "done",
        "[Results: published, frequentist refit and Bayesian, side by side](#results)",
    )
    assert barg["What the published tables leave open (reconstruction bounds)"][0] == "done"
    assert barg["Posterior predictive check"] == ("not done", "")
    assert '<a href="#models">Models and priors</a>' in html
    assert 'id="barg"' in html


def test_hand_made_run_without_extras_says_not_done(tmp_path):
    import cst_bayes.run.report.extra as extra

    run = _run_folder(tmp_path, extras=False)
    shipped = extra.bounds_source(run)
    build_report(run)
    md = (run / "report.md").read_text()
    assert "prior predictive check not done (no prior_check/logit_approaches_strata" in md
    assert "power-scaling prior sensitivity not done" in md
    assert "Stacked predictions not done" not in md  # no compare stage at all
    assert "Stage compare not available" in md
    assert "Not done: the weighting stage wrote no weights/tipping_point.csv." in md
    barg = _barg(md)
    assert barg["Prior predictive check"] == ("not done", "")
    assert barg["Prior sensitivity (power-scaling)"] == ("not done", "")
    assert barg["Model comparison (PSIS-LOO, stacking)"] == ("not done", "")
    if shipped is None:
        assert "Not done: no reconstruction bounds" in md
        assert barg["What the published tables leave open (reconstruction bounds)"][0] == "not done"
    # a compare stage without stacked.csv says so
    _write(run / "compare" / "loo.csv", "group,model,weight\na,b,1\n")
    build_report(run)
    assert "Stacked predictions not done" in (run / "report.md").read_text()


def test_red_banner_names_failing_models_and_thresholds(tmp_path):
    run = _run_folder(tmp_path, bad_fit=True, extras=False)
    build_report(run)
    md = (run / "report.md").read_text()
    html = html_unescape((run / "index.html").read_text())
    first = md.split("## ")[0]
    assert "SAMPLER DIAGNOSTICS FAILED for 1 of 1 model(s): logit_approaches_strata" in first
    for text in ("3 divergences", "R-hat 1.036 > 1.01", "tail ESS 239 < 400", "BFMI 0.20 < 0.3"):
        assert text in first, text
    assert 'class="banner" role="alert">SAMPLER DIAGNOSTICS FAILED' in html
    barg = _barg(md)
    assert (
        barg["MCMC diagnostics: R-hat, ESS, divergences, BFMI"][0] == "done: fails its thresholds"
    )


def test_banner_names_failing_members_and_weighting_fits_and_the_extended(tmp_path):
    run = _run_folder(tmp_path, extras=False)
    man = run / "models" / "logit_approaches_strata" / "manifest.json"
    info = json.loads(man.read_text())
    info["info"]["diagnostics"].update(
        ok=False,
        members_with_trouble=[2],
        member_messages={"reconstruction-016": "1 divergent transitions"},
        members_extended={"reconstruction-001": 3, "reconstruction-016": 2},
    )
    man.write_text(json.dumps(info))
    _write(
        run / "weights" / "mcmc_diagnostics.csv",
        "scenario,fit,divergences,max_r_hat,min_ess_bulk,min_ess_tail,min_bfmi,extended_thin,"
        "ok,messages,dataset\n"
        "design,pseudo_likelihood adjusted,0,1.004,900,700,0.9,1,True,,reconstruction-001\n"
        "design,pseudo_likelihood unadjusted,0,1.02,300,250,0.9,4,False,"
        "R-hat up to 1.020 > 1.01,reconstruction-001\n",
    )
    build_report(run)
    md = (run / "report.md").read_text()
    first = md.split("## ")[0]
    assert "reconstruction-016: 1 divergent transitions" in first
    assert "and in the weighting stage" in first
    assert (
        "weighting: 1 of 2 MCMC fits (reconstruction-001 design pseudo_likelihood unadjusted: "
        "R-hat up to 1.020 > 1.01)" in first
    )
    assert "reconstruction-001 x3, reconstruction-016 x2" in md
    assert "2 fits, 1 extended, 1 failing a threshold" in md
    # all passing: no banner
    _write(
        run / "weights" / "mcmc_diagnostics.csv",
        "scenario,fit,divergences,max_r_hat,min_ess_bulk,min_ess_tail,min_bfmi,extended_thin,"
        "ok,messages,dataset\n"
        "design,pseudo_likelihood adjusted,0,1.004,900,700,0.9,1,True,,reconstruction-001\n",
    )
    info["info"]["diagnostics"].update(ok=True, members_with_trouble=[], member_messages={})
    man.write_text(json.dumps(info))
    build_report(run)
    assert "SAMPLER DIAGNOSTICS FAILED" not in (run / "report.md").read_text()
