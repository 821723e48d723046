"""Fixtures of the bayes tests."""

from __future__ import annotations

import pytest
from bayes_support import INTERACTION, write_spec


@pytest.fixture
def interaction_spec(tmp_path):
    from cst_bayes.bayes.spec import load_spec

    return load_spec(write_spec(tmp_path, INTERACTION, "logit_interaction"))
