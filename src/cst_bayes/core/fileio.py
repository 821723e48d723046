"""Atomic file output: write to a temporary file in the same folder, then rename.

A crash (even ``kill -9``) leaves either the old file or the new one, never half of one.
Files are readable by collaborators (0644) unless they hold restricted results (0640).

Output tables (:func:`write_csv`) open with their header row, carry a ``data_status``
column, write booleans as ``TRUE``/``FALSE`` (the one spelling both R's ``read.csv``
and pandas read as logical) and put banner and notes in a
``<name>.meta.json`` sidecar. Microdata files (:func:`write_microdata`) are inputs, not
results: a synthetic one starts with the package banner line, which is how the loader knows.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cst_bayes.core.config import SYNTHETIC_BANNER
from cst_bayes.core.options import DataStatus
from cst_bayes.core.provenance import STATUS_COLUMN, sidecar

#: File modes: results anyone on a shared server may read, restricted results group-only.
MODE_PUBLIC = 0o644
MODE_RESTRICTED = 0o640
DIR_MODE_RESTRICTED = 0o750


@contextlib.contextmanager
def atomic_path(path: str | Path, *, mode: int = MODE_PUBLIC) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` (with ``mode``) on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:  # flush to disk before the rename makes it visible
            os.fsync(fh.fileno())
        os.chmod(tmp_path, mode)  # mkstemp creates 0600, which collaborators cannot read
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | Path, text: str, *, mode: int = MODE_PUBLIC) -> Path:
    """Write ``text`` atomically."""
    with atomic_path(path, mode=mode) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, obj: Any, *, mode: int = MODE_PUBLIC) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    return write_text(
        path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n", mode=mode
    )


def mode_for(status: DataStatus) -> int:
    """The file mode of an output with this data status."""
    return MODE_RESTRICTED if status == "RESTRICTED" else MODE_PUBLIC


def _csv_ready(df: pd.DataFrame, status: DataStatus) -> pd.DataFrame:
    out = df.copy()
    for col in out.columns:
        vals = out[col].dropna()
        if len(vals) and vals.map(lambda v: isinstance(v, bool | np.bool_)).all():
            out[col] = out[col].map(lambda v: v if pd.isna(v) else ("TRUE" if v else "FALSE"))
    out[STATUS_COLUMN] = status
    return out


def write_csv(
    path: str | Path,
    df: pd.DataFrame,
    *,
    status: DataStatus,
    notes: str | list[str] | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write an output table: header row first, a ``data_status`` column, a meta sidecar.

    Parameters
    ----------
    status
        What the numbers describe (``SYNTHETIC``, ``RESTRICTED``, ``PUBLIC``): required, so
        no writer can label restricted numbers by default; restricted tables are 0640.
    notes
        Lines for the sidecar (what the table is, what was suppressed).
    meta
        Further sidecar fields.
    """
    path = Path(path)
    mode = mode_for(status)
    with atomic_path(path, mode=mode) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        _csv_ready(df, status).to_csv(fh, index=False, lineterminator="\n")
    write_json(meta_path(path), sidecar(status, notes, **(meta or {})), mode=mode)
    return path


def meta_path(path: str | Path) -> Path:
    """The sidecar of an output file: ``name.csv`` -> ``name.meta.json``."""
    path = Path(path)
    return path.with_name(path.stem + ".meta.json")


def write_microdata(
    path: str | Path, df: pd.DataFrame, *, synthetic: bool, note: str | None = None
) -> Path:
    """Write an agency-level data file; a synthetic one opens with exactly the package banner.

    ``note`` becomes a second comment line (e.g. the member's seed); the loader reads a file
    as synthetic only when its first line is the banner, so nothing else can label real data.
    """
    mode = MODE_PUBLIC if synthetic else MODE_RESTRICTED
    with atomic_path(path, mode=mode) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        if synthetic:
            fh.write(f"# {SYNTHETIC_BANNER}\n")
            for line in (note or "").splitlines():
                fh.write(f"# {line}\n")
        df.to_csv(fh, index=False, lineterminator="\n")
    return Path(path)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_frame(df: pd.DataFrame) -> str:
    """Hex SHA-256 of a DataFrame's values and column names (order-sensitive)."""
    h = hashlib.sha256()
    h.update(",".join(map(str, df.columns)).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).values.tobytes())
    return h.hexdigest()
