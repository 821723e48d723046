"""Paths and study constants in one place (cookiecutter-data-science style).

Everything that names a file, a column or a stratum label reads it from here, so the
published CSV columns, the microdata contract and the CLI cannot drift apart.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

#: Repository root (``src/cst_bayes/config.py`` -> two levels up from ``src``).
ROOT: Final[Path] = Path(os.environ.get("CST_BAYES_ROOT", Path(__file__).resolve().parents[3]))
DATA_DIR: Final[Path] = ROOT / "data"
PUBLISHED_DIR: Final[Path] = DATA_DIR / "published"
RECONSTRUCTED_DIR: Final[Path] = DATA_DIR / "reconstructed"
MODELS_DIR: Final[Path] = ROOT / "models"
WEIGHTING_FILE: Final[Path] = MODELS_DIR / "weighting.toml"
REPORTS_DIR: Final[Path] = ROOT / "reports"

#: Sampling frames used as "agency size". Order: reference level first (as in the article,
#: ``1-49`` is the reference), then increasing size / the two certainty strata.
STRATA: Final[tuple[str, ...]] = ("1-49", "50-999", "state", "1000+")
REFERENCE_STRATUM: Final[str] = "1-49"

#: The nine victim-centred approaches, in the article's (Table 1 / Table 2) order.
APPROACHES: Final[tuple[str, ...]] = (
    "court",
    "prosecutor",
    "training",
    "victim_service",
    "offense_code",
    "child_welfare",
    "task_force",
    "advocates",
    "mdt",
)
OUTCOME: Final[str] = "any_cst"
COUNT: Final[str] = "n_approaches"
STRATUM: Final[str] = "stratum"
AGENCY_ID: Final[str] = "agency_id"
WEIGHT: Final[str] = "weight"

#: Respondents by stratum (Table 1 / sampling_frames.csv): 34 + 19 + 381 + 872 = 1,306.
N_BY_STRATUM: Final[dict[str, int]] = {"1-49": 872, "50-999": 381, "state": 19, "1000+": 34}
N_TOTAL: Final[int] = 1306

#: Cells below this count are suppressed as "<5" in restricted-data mode.
SMALL_CELL: Final[int] = 5

#: Banner used wherever reconstructed data appear (files, reports, figures).
SYNTHETIC_BANNER: Final[str] = (
    "SYNTHETIC DATA: reconstructed from the published tables of Mitchell et al. (2024); "
    "not the study's microdata"
)
