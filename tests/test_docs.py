"""Figures the docs quote are re-derived from the code that defines them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cst_bayes.run.context import PROFILES, QUICK_MODELS

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _profile_table() -> dict[str, list[str]]:
    text = (DOCS / "pipeline.md").read_text()
    block = text[text.index("| | `quick` (CI)") :].split("\n\n")[0].splitlines()
    rows = {}
    for line in block[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.parametrize(("col", "profile"), [(0, "quick"), (1, "standard"), (2, "full")])
def test_pipeline_doc_profiles_match_the_code(col, profile):
    rows, s = _profile_table(), PROFILES[profile]
    for key, value in (("draws", s.draws), ("tune", s.tune), ("chains", s.chains)):
        assert rows[key][col] == str(value), (profile, key)
    assert rows["PPC replicates"][col] == str(s.ppc_draws)
    n = rows["reconstructions"][col]
    if s.members is not None:
        assert n == f"{len(s.members)}: " + ", ".join(m.split("-")[1] for m in s.members)
    else:
        assert n == ("all" if s.n_reconstructions is None else str(s.n_reconstructions))
    models = rows["models"][col]
    assert (models == "every spec in `models/`") == (s.models is None)
    if s.models is not None:
        assert [m.strip() for m in models.split(",")] == list(QUICK_MODELS)
    mcmc = rows["MCMC in the weighting stage"][col]
    want = {True: "every member", False: "none"}.get(s.weights_mcmc)  # type: ignore[call-overload]
    if want is None:
        want = ", ".join(s.weights_mcmc)  # type: ignore[arg-type]
    assert mcmc == want
    assert rows["failing fits sampled once more"][col] == ("yes" if s.extend else "no")


def test_pipeline_doc_names_every_stage():
    from cst_bayes.run.pipeline import STAGES

    text = (DOCS / "pipeline.md").read_text()
    for st in STAGES:
        assert re.search(rf"^\| `{st}` \|", text, re.M), st
