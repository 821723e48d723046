"""docs/tutorial.md runs top to bottom (short chains) as a notebook."""

from __future__ import annotations

import pytest

from cst_bayes.core.config import ROOT

pytestmark = pytest.mark.slow


def test_tutorial_executes(monkeypatch):
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("CST_TUTORIAL_DRAWS", "150")
    nb = jupytext.read(ROOT / "docs" / "tutorial.md")
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3")
    client.execute()
    outputs = "".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )
    assert "True" in outputs  # the read_fit round trip kept the formula
    assert "victim_service:task_force" in outputs
