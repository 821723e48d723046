"""docs/weights.md quotes the Williams-Savitsky figures of the generated benchmark CSVs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks/results"


def _wide(name: str) -> pd.DataFrame:
    d = pd.read_csv(RESULTS / name)
    return d.pivot_table(index="term", columns="statistic", values="value", aggfunc="first")


def test_coverage_table_is_the_generated_csvs():
    text = (ROOT / "docs/weights.md").read_text(encoding="utf-8")
    lap, mc = _wide("weights_coverage.csv"), _wide("weights_coverage_mcmc.csv")
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in text.splitlines()
        if line.startswith("| ") and line.count("|") == 8
    }
    cols = [
        (lap, "raw_ratio"),
        (lap, "adjusted_ratio"),
        (lap, "coverage_raw"),
        (lap, "coverage_adjusted"),
        (mc, "coverage_raw"),
        (mc, "coverage_adjusted"),
    ]
    for term in lap.index:
        cells = rows["all terms" if term == "all" else term]
        for cell, (tab, col) in zip(cells, cols):
            v = tab.loc[term, col] if col in tab.columns else float("nan")
            assert cell == ("" if pd.isna(v) else f"{v:.3f}"), (term, col)
