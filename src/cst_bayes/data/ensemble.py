"""The one loader of reconstruction ensembles (and of ``--data FILE|DIR``).

A member is a ``reconstruction-NNN.csv`` that :func:`cst_bayes.data.microdata.load` reads as
synthetic; members come in file-name order, the order every stage fits and reports them in.
Each frame's ``attrs['member']`` is its file stem, so tables can carry a ``dataset`` column.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from cst_bayes.core.config import RECONSTRUCTED_DIR
from cst_bayes.core.errors import InputError
from cst_bayes.data.microdata import is_synthetic, load

MEMBER_GLOB = "reconstruction-*.csv"


def load_ensemble(
    directory: str | Path = RECONSTRUCTED_DIR, n: int | None = None
) -> list[pd.DataFrame]:
    """Every member of an ensemble folder (the first ``n`` when given).

    Raises
    ------
    InputError
        If the folder is missing, holds no members, or a member does not declare itself
        synthetic.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(
            "reconstruction folder not found (build it with `cst-bayes reconstruct`)",
            path=directory,
        )
    files = sorted(directory.glob(MEMBER_GLOB))
    if not files:
        raise InputError(
            "no reconstruction-*.csv files (build them with `cst-bayes reconstruct`)",
            path=directory,
        )
    if n is not None:
        if n > len(files):
            raise InputError(
                f"asked for {n} reconstructions but the folder holds {len(files)}", path=directory
            )
        files = files[:n]
    frames = []
    for f in files:
        df = load(f)
        if not is_synthetic(df):
            raise InputError(
                "a reconstruction file must declare itself SYNTHETIC in its first line", path=f
            )
        df.attrs["member"] = f.stem
        frames.append(df)
    return frames


def read_manifest(directory: str | Path = RECONSTRUCTED_DIR) -> dict[str, Any] | None:
    """The ensemble's ``manifest.json`` (None when the folder has none)."""
    path = Path(directory) / "manifest.json"
    if not path.exists():
        return None
    try:
        out: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc})", path=path) from None
    return out


def load_frames(path: str | Path) -> list[pd.DataFrame]:
    """The datasets behind ``--data``: one file, or every member of an ensemble folder."""
    p = Path(path)
    if not p.exists():
        raise InputError("no such file or folder", path=p)
    if not p.is_dir():
        df = load(p)
        df.attrs.setdefault("member", p.stem)
        return [df]
    return load_ensemble(p)
