"""What a file says about where its numbers come from: the one banner and the sidecars.

Tables start with their header row (any reader opens them); what they describe travels in a
``data_status`` column of every row and in a ``<name>.meta.json`` sidecar beside the file.
"""

from __future__ import annotations

from typing import Any, Final

import pandas as pd

from cst_bayes import __version__
from cst_bayes.core.config import SMALL_CELL, SYNTHETIC_BANNER
from cst_bayes.core.options import DataStatus

STATUS_COLUMN: Final[str] = "data_status"

BANNERS: Final[dict[str, str]] = {
    "SYNTHETIC": SYNTHETIC_BANNER,
    "RESTRICTED": (
        f"RESTRICTED DATA: computed from restricted-use microdata; counts below "
        f"{SMALL_CELL} and the statistics that would reveal them are suppressed"
    ),
    "PUBLIC": "PUBLIC DATA: computed from data the user declared public (no suppression)",
}


def banner(status: DataStatus) -> str:
    """The one-line banner for a data status."""
    return BANNERS[status]


def status_of(df: pd.DataFrame) -> DataStatus:
    """The data status a loaded frame declares (restricted unless it says otherwise)."""
    if df.attrs.get("synthetic"):
        return "SYNTHETIC"
    if df.attrs.get("data_class") == "public":
        return "PUBLIC"
    return "RESTRICTED"


def sidecar(
    status: DataStatus, notes: str | list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    """The provenance record written beside a table."""
    if isinstance(notes, str):
        notes = notes.splitlines()
    return {
        "data_status": status,
        "banner": banner(status),
        "notes": list(notes or []),
        "cst_bayes_version": __version__,
        **extra,
    }
