"""Deferred imports: the fit path loads neither ArviZ 0.x nor PyMC; ArviZ still works when used."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

HEAVY = ("arviz.plots", "matplotlib.pyplot", "pymc", "pytensor")


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def test_import_deferring_loads_arviz_only_on_use():
    last = _run(
        """
        import sys
        from cst_bayes.core.lazy import import_deferring
        import_deferring("nutpie", "arviz", users=("nutpie.sample",))
        before = "arviz.plots" in sys.modules
        import arviz
        loaded = arviz.InferenceData.__name__
        print(before, "arviz.plots" in sys.modules, loaded, sys.modules["nutpie.sample"].arviz is arviz)
        """
    )
    assert last == "False True InferenceData True"


def test_nutpie_default_conversion_still_works_after_deferring():
    # nutpie's own ArviZ conversion (what a user calling nutpie.sample gets) loads the real
    # ArviZ on first use: the placeholder never leaks
    last = _run(
        """
        import numpy as np
        from cst_bayes.core.lazy import import_deferring
        nutpie = import_deferring("nutpie", "arviz", users=("nutpie.sample",))
        from nutpie.compiled_pyfunc import from_pyfunc

        def make_logp():
            return lambda x: (float(-0.5 * x @ x), -x)

        def make_expand(*_):
            return lambda x: {"x": x.copy()}

        m = from_pyfunc(2, make_logp, make_expand, [np.dtype("float64")], [(2,)], ["x"])
        idata = nutpie.sample(m, draws=50, tune=50, chains=1, progress_bar=False)
        print(type(idata).__name__, idata.posterior["x"].shape)
        """
    )
    assert last == "InferenceData (1, 50, 2)"


@pytest.mark.slow
def test_cli_fit_imports_no_arviz_plots_pymc_or_pytensor(sim_df, tmp_path):
    from cst_bayes.core.fileio import write_microdata

    data = tmp_path / "d.csv"
    write_microdata(data, sim_df.drop(columns=["n_approaches"]), synthetic=True)
    last = _run(
        f"""
        import sys
        from cst_bayes.cli import main
        rc = main(["fit", "logit_approaches_strata", "--data", {str(data)!r}, "--out",
                   {str(tmp_path / "o")!r}, "--draws", "100", "--tune", "100", "--quiet"])
        print(rc, sorted(m for m in {HEAVY!r} if m in sys.modules))
        """
    )
    assert last == "0 []"
