"""Shared pieces of the audit: the check record, printed-number helpers, the text's figures."""

from __future__ import annotations

import math
from typing import TypedDict

import pandas as pd

from cst_bayes.core.config import APPROACHES, OUTCOME

TABLE1_ORDER: tuple[str, ...] = (*APPROACHES, OUTCOME)
AUDIT_COLUMNS: list[str] = ["id", "table", "description", "status", "expected", "observed"]
STATUSES: tuple[str, ...] = ("pass", "flag", "fail")


#: Figures printed in the running text (see ../shared/STUDY.md).
class _Figure1Text(TypedDict):
    pct_no_case: float
    n_no_case: int
    pct_case: float
    n_case: int


class _ArticleText(TypedDict):
    sampled: int
    sampled_alt: int
    ineligible: dict[str, int]
    ineligible_total: int
    eligible: int
    response_rate_pct: int
    any_approach_pct: float
    fig1_offense_code: _Figure1Text
    training_p: float


TEXT: _ArticleText = {
    "sampled": 3591,
    "sampled_alt": 3564,
    "ineligible": {"no jurisdiction over CST": 151, "duplicates": 52, "no longer existed": 42},
    "ineligible_total": 245,
    "eligible": 3346,
    "response_rate_pct": 39,
    "any_approach_pct": 97.5,
    "fig1_offense_code": {"pct_no_case": 54.7, "n_no_case": 1088, "pct_case": 49.5, "n_case": 218},
    "training_p": 0.07,
}


def _fmt(x: float, digits: int = 3) -> str:
    """Compact number for the expected/observed columns."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "nan"
    if x != 0 and (abs(x) < 10 ** (-digits) or abs(x) >= 1e6):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}" if abs(x) < 1 else f"{x:.{digits}f}".rstrip("0").rstrip(".")


def _round_half_up(x: float, decimals: int) -> float:
    """Round as a reader expects (0.05 -> 0.1), not banker's rounding; tolerant of FP noise."""
    q = 10.0**decimals
    return math.floor(x * q + 0.5 + 1e-9) / q


def _in_printed(p: float, op: str, value: float, decimals: int) -> bool:
    """Whether a computed p-value prints as ``op value`` at ``decimals`` decimals."""
    if op == "<":
        return p < value
    return _round_half_up(p, decimals) == round(value, decimals)


class _Checks:
    """Collects check rows in order."""

    def __init__(self) -> None:
        self.rows: list[dict[str, str]] = []

    def add(
        self,
        id_: str,
        table: str,
        description: str,
        status: str,
        expected: object,
        observed: object,
    ) -> None:
        assert status in STATUSES, status
        self.rows.append(
            dict(
                id=id_,
                table=table,
                description=description,
                status=status,
                expected=str(expected),
                observed=str(observed),
            )
        )

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=AUDIT_COLUMNS)
