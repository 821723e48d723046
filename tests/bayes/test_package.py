"""``import cst_bayes`` is fast and exposes the main verbs lazily."""

from __future__ import annotations

import subprocess
import sys


def test_top_level_verbs_resolve_and_import_is_light():
    code = (
        "import sys, cst_bayes as cb\n"
        "heavy = [m for m in ('pymc', 'arviz', 'numba', 'pandas') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "missing = [n for n in cb.__all__ if not callable(getattr(cb, n)) and n != '__version__']\n"
        "assert not missing, missing\n"
        "from cst_bayes.bayes.fit import fit\n"
        "assert cb.fit is fit\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_fast_path_fit_imports_no_pymc():
    """A fit the numba density covers never imports PyMC or PyTensor (process start-up time)."""
    code = (
        "import sys\n"
        "from cst_bayes.bayes.fit import fit\n"
        "from cst_bayes.data.simulate import simulate\n"
        "fit('logit_approaches_strata', simulate(1)[0], draws=50, tune=50, chains=1, progress=False)\n"
        "print(sorted(m for m in ('pymc', 'pytensor', 'formulae') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
