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


def validate_seed(seed: object, *, name: str = "seed") -> int:
    """A seed as an int in ``0 <= seed <= SEED_MAX`` (unsigned 32 bits), else InputError.

    numpy, nutpie and numba all take unsigned 32-bit seeds; a negative or larger one used
    to surface as an OverflowError deep inside a sampler.
    """
    from cst_bayes.core.options import SEED_MAX

    if isinstance(seed, bool) or not isinstance(seed, int | str):
        raise InputError(f"{name} must be an integer in 0..{SEED_MAX} (2**32 - 1), got {seed!r}")
    try:
        value = int(seed)
    except ValueError:
        raise InputError(
            f"{name} must be an integer in 0..{SEED_MAX} (2**32 - 1), got {seed!r}"
        ) from None
    if not 0 <= value <= SEED_MAX:
        raise InputError(f"{name} must be an integer in 0..{SEED_MAX} (2**32 - 1), got {value}")
    return value


def check_out_dir(path: str | Path) -> Path:
    """Fail before any work when an output folder cannot be created or written.

    An existing file in its place, a parent that is a file, or a folder without write
    permission (read-only file system included) is an :class:`InputError` naming the path.
    Nothing is created here.
    """
    import os

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError("the output path exists and is not a folder", path=p)
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"cannot create the output folder: {probe} is a file", path=p)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"cannot write the output folder ({probe} is not writable)", path=p)
    try:
        st = os.statvfs(probe)
    except OSError:
        return p
    if st.f_flag & os.ST_RDONLY:
        raise InputError(
            f"cannot write the output folder ({probe} is on a read-only file system)", path=p
        )
    return p
