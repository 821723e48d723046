"""Errors that the CLI turns into a clear message and exit status 2.

Every error about bad input names the file, the column and the first offending rows, so a
user can fix the input without reading a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class InputError(ValueError):
    """Bad user input (table, microdata, model spec, scenario, grid). CLI exit status 2.

    Parameters
    ----------
    message
        What is wrong, in words.
    path
        The file at fault, if any.
    column
        The column or key at fault, if any.
    rows
        Offending row numbers (1-based data rows, header excluded); the first few are shown.
    """

    exit_status = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        column: str | None = None,
        rows: Sequence[int] | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.column = column
        self.rows = list(rows) if rows is not None else []
        parts = []
        if self.path:
            parts.append(f"{self.path}")
        if column:
            parts.append(f"column {column!r}")
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:10])
            more = f" (+{len(self.rows) - 10} more)" if len(self.rows) > 10 else ""
            parts.append(f"rows {shown}{more}")
        where = ": ".join(parts)
        super().__init__(f"{where}: {message}" if where else message)


class SpecError(InputError):
    """A model spec, weighting scenario or sweep grid with an unknown or malformed key."""


class SamplerTrouble(RuntimeError):
    """Raised under ``--strict`` when divergences, R-hat or ESS fail their thresholds."""

    exit_status = 3
