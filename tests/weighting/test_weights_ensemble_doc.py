"""The figures docs/weights.md includes from docs/generated/weights_ensemble.md match the code.

Re-derives every member's design-based size-adjusted OR (95% CI) under ``design`` from the
shipped members, and the "CI excludes 1 in k of n" lines. A failure means the ensemble or the
code changed: regenerate with ``python benchmarks/weights_ensemble.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cst_bayes.core.config import RECONSTRUCTED_DIR
from cst_bayes.data.ensemble import load_ensemble
from cst_bayes.weighting import weights as W

PAGE = Path(__file__).resolve().parents[2] / "docs/generated/weights_ensemble.md"
CELL = re.compile(r"([\d.]+) \(([\d.]+)-([\d.]+)\)")


def _table() -> tuple[list[str], dict[str, list[tuple[float, float, float]]]]:
    text = PAGE.read_text(encoding="utf-8")
    head = next(x for x in text.splitlines() if x.startswith("| member |"))
    terms = [c.strip().split(" OR")[0] for c in head.strip("|").split("|")[1:]]
    rows = {}
    for line in text.splitlines():
        if line.startswith("| reconstruction-"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = [tuple(map(float, CELL.fullmatch(c).groups())) for c in cells[1:]]
    return terms, rows


@pytest.mark.skipif(not PAGE.exists(), reason="page not generated")
def test_quoted_member_ors_are_the_design_based_estimates():
    assert "SYNTHETIC" in PAGE.read_text(encoding="utf-8")
    terms, rows = _table()
    frames = {f.attrs["member"]: f for f in load_ensemble(RECONSTRUCTED_DIR)}
    assert sorted(rows) == sorted(frames), "the page covers another ensemble: regenerate it"
    sc = W.load_scenarios()["design"]
    sig = dict.fromkeys(terms, 0)
    for member, cells in rows.items():
        m = W.design_models(frames[member], [sc])
        m = m[m["adjusted_for_size"] == "yes"].set_index("term")
        for t, (o, lo, hi) in zip(terms, cells):
            assert (o, lo, hi) == tuple(
                round(float(m.loc[t, k]), 2) for k in ("or", "ci_low", "ci_high")
            ), (member, t)
            sig[t] += bool(m.loc[t, "ci_low"] > 1 or m.loc[t, "ci_high"] < 1)
    text = PAGE.read_text(encoding="utf-8")
    for t, k in sig.items():
        assert f"{t}: OR " in text and f"excludes 1 in {k} of {len(rows)}." in text
