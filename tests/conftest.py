"""Shared fixtures. Fixtures private to one test module live in that module."""

from __future__ import annotations

import os

import pytest

# The one quick `cst-bayes reproduce` run (killed and resumed) shared by the pipeline, report
# and browser tests: a session fixture must be registered here to run once per session.
from pipeline_support import quick_run  # noqa: F401

# Fits in tests must not fight over the two cores with pytest-xdist's workers.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def sim():
    """A simulated study-shaped dataset (1,306 agencies) and its known truth, seed 20240101."""
    from cst_bayes.data.simulate import simulate

    return simulate(20240101)


@pytest.fixture(scope="session")
def sim_df(sim):
    """The simulated dataset alone (microdata contract)."""
    return sim[0]
