"""The microdata contract: the agency-level data that every downstream stage takes.

One row per responding agency. Columns:

``stratum``
    Sampling frame used as agency size: ``1000+``, ``state``, ``50-999``, ``1-49``
    (the frame numbers ``1``-``4`` of ``sampling_frames.csv`` are accepted too).
``court`` ... ``mdt`` (the nine approaches) and ``any_cst``
    0/1. Text codes ``yes``/``no``/``not sure`` (any case) and ``1.0``/``0.0`` are accepted.
    ``not sure`` is coded by a documented, configurable rule (``not_sure=``): the article
    analyses each approach as *yes vs not yes*, so the default rule is ``"no"``.
``agency_id`` (optional)
    Unique identifier.
``weight`` (optional)
    Positive finite survey weight.

The loaded frame gets a derived ``n_approaches`` (0-9) column, ``stratum`` as an ordered
categorical with the reference level ``1-49`` first, and ``attrs`` recording the source,
whether the file declares itself synthetic, and its leading ``#`` comment lines.

Anything else is an :class:`~cst_bayes.core.errors.InputError` naming file, column and rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd

from cst_bayes.core.config import (
    AGENCY_ID,
    APPROACHES,
    COUNT,
    OUTCOME,
    STRATA,
    STRATUM,
    SYNTHETIC_BANNER,
    WEIGHT,
)
from cst_bayes.core.errors import InputError
from cst_bayes.core.options import DataClass

NotSureRule = Literal["no", "yes", "error"]
BINARY_COLUMNS: tuple[str, ...] = (*APPROACHES, OUTCOME)
REQUIRED_COLUMNS: tuple[str, ...] = (STRATUM, *BINARY_COLUMNS)
OPTIONAL_COLUMNS: tuple[str, ...] = (AGENCY_ID, WEIGHT)
#: Frame numbers of sampling_frames.csv, accepted as stratum codes.
FRAME_NUMBERS: dict[str, str] = {"1": "1000+", "2": "state", "3": "50-999", "4": "1-49"}

_YES = {"1", "1.0", "yes", "y", "true"}
_NO = {"0", "0.0", "no", "n", "false"}
_NOT_SURE = {"not sure", "not_sure", "notsure", "unsure", "don't know", "dont know"}


def stratum_dtype() -> pd.CategoricalDtype:
    """The ordered categorical dtype of ``stratum`` (reference level first)."""
    return pd.CategoricalDtype(categories=list(STRATA), ordered=True)


def _rows(mask: np.ndarray | pd.Series) -> list[int]:
    """1-based data-row numbers where ``mask`` is true."""
    return [int(i) + 1 for i in np.flatnonzero(np.asarray(mask))]


#: Leading bytes of the binary formats, so a file is read by what it is, not by its suffix
#: (archives rename files; an SPSS file saved as ``.csv`` should say so, not fail to decode).
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PAR1", "parquet"),
    (b"$FL2", "sav"),
    (b"$FL3", "sav"),
    (b"<stata_dta>", "dta"),
    (b"PK\x03\x04", "zip"),
    (b"\xd0\xcf\x11\xe0", "ole"),
)
_SUFFIX_KIND: dict[str, str] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".dta": "dta",
    ".sav": "sav",
    ".zsav": "sav",
}


def _sniff(path: Path) -> str:
    """The format of a file from its first bytes, falling back on its suffix.

    Returns ``parquet``, ``dta``, ``sav``, ``csv``, ``json`` or ``binary``.
    """
    with open(path, "rb") as fh:
        head = fh.read(8192)
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return "binary" if kind in {"zip", "ole"} else kind
    kind = _SUFFIX_KIND.get(path.suffix.lower())
    if kind:  # Stata before version 13 has no text magic: trust the suffix
        return kind
    if b"\x00" in head:
        return "binary"
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text[:1] in (b"{", b"["):
        return "json"
    return "csv"


def _file_kind(path: Path) -> str:
    """:func:`_sniff` after the checks that give one clear line instead of an OSError."""
    try:
        if not path.exists():
            raise InputError("file not found", path=path)
        if path.is_dir():
            raise InputError("expected a file, got a folder", path=path)
        if path.stat().st_size == 0:
            raise InputError("the file is empty", path=path)
        return _sniff(path)
    except OSError as exc:
        raise InputError(f"cannot read the file ({exc.strerror or exc})", path=path) from None


def _read_csv(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """A CSV as text columns, and its leading ``#`` comment lines."""
    comments: list[str] = []
    with open(path, encoding="utf-8-sig") as fh:
        for line in fh:
            if not line.startswith("#"):
                break
            comments.append(line[1:].strip())
    df = pd.read_csv(
        path, skiprows=len(comments), dtype=str, keep_default_na=True, encoding="utf-8-sig"
    )
    return df, comments


def read_table(path: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """Read a CSV, Parquet, Stata or SPSS file into a raw DataFrame (no validation).

    The format is recognised from the file's first bytes (Parquet ``PAR1``, SPSS ``$FL2``,
    Stata 13+ ``<stata_dta>``), else from the suffix (older Stata), else it is read as
    UTF-8 CSV (a byte-order mark, as Excel writes, is dropped). Returns the frame and the
    leading ``#`` comment lines of a CSV (empty otherwise). Value labels of Stata/SPSS files
    are applied, so labelled codes arrive as their text.

    Raises
    ------
    InputError
        Missing, empty, JSON, binary or otherwise unreadable files, and tables without rows.
    """
    path = Path(path)
    kind = _file_kind(path)
    if kind == "json":
        raise InputError(
            "this is JSON, not a table; expected CSV, Parquet, .dta or .sav", path=path
        )
    if kind == "binary":
        raise InputError(
            "not a table file (binary content: a spreadsheet, archive or other format); "
            "expected CSV, Parquet, .dta or .sav",
            path=path,
        )
    comments: list[str] = []
    try:
        if kind == "parquet":
            df = pd.read_parquet(path)
        elif kind == "dta":
            import pyreadstat

            df, _ = pyreadstat.read_dta(str(path), apply_value_formats=True)
        elif kind == "sav":
            import pyreadstat

            df, _ = pyreadstat.read_sav(str(path), apply_value_formats=True)
        else:
            df, comments = _read_csv(path)
    except InputError:
        raise
    except UnicodeDecodeError:
        raise InputError(
            "not a text table (cannot decode as UTF-8); expected CSV, Parquet, .dta or .sav",
            path=path,
        ) from None
    except pd.errors.EmptyDataError:
        raise InputError("the file has no header or rows", path=path) from None
    except Exception as exc:  # parser errors of four libraries: report them uniformly
        raise InputError(
            f"cannot read as a {kind} table ({type(exc).__name__}: {exc})", path=path
        ) from None
    if df.shape[1] <= 1 and not set(df.columns) & set(REQUIRED_COLUMNS):
        raise InputError(
            "not a table with the expected columns (is it CSV with commas?)", path=path
        )
    if len(df) == 0:
        raise InputError("the table has a header but no rows", path=path)
    return df, comments


def _code_binary(col: pd.Series, name: str, path: str | None, not_sure: NotSureRule) -> pd.Series:
    raw = col
    missing = raw.isna() | (raw.astype(str).str.strip() == "")
    if missing.any():
        raise InputError(
            "missing values (every agency needs 0/1 here)",
            path=path,
            column=name,
            rows=_rows(missing),
        )
    if pd.api.types.is_numeric_dtype(raw):
        vals = raw.to_numpy(dtype=float)
        bad = ~np.isin(vals, (0.0, 1.0))
        if bad.any():
            shown = sorted({str(v) for v in vals[bad]})[:5]
            raise InputError(
                f"codes outside {{0, 1}}: {shown}", path=path, column=name, rows=_rows(bad)
            )
        return pd.Series(vals.astype(np.int8), index=raw.index, name=name)
    text = raw.astype(str).str.strip().str.lower()
    out = np.full(len(text), -1, dtype=np.int8)
    out[text.isin(_YES).to_numpy()] = 1
    out[text.isin(_NO).to_numpy()] = 0
    unsure = text.isin(_NOT_SURE).to_numpy()
    if unsure.any():
        if not_sure == "error":
            raise InputError(
                "'not sure' answers present and the rule is 'error' (use not_sure='no' for the article's yes vs not-yes coding)",
                path=path,
                column=name,
                rows=_rows(unsure),
            )
        out[unsure] = 1 if not_sure == "yes" else 0
    bad = out < 0
    if bad.any():
        shown = sorted(set(raw[bad].astype(str)))[:5]
        raise InputError(
            f"codes outside the allowed set (0/1, yes/no, not sure): {shown}",
            path=path,
            column=name,
            rows=_rows(bad),
        )
    return pd.Series(out, index=raw.index, name=name)


def _code_ids(ids: pd.Series, path: str | None) -> pd.Series:
    miss = ids.isna() | (ids.astype(str).str.strip() == "")
    if miss.any():
        raise InputError("missing agency_id", path=path, column=AGENCY_ID, rows=_rows(miss))
    if pd.api.types.is_float_dtype(ids) and np.all(np.mod(ids.to_numpy(dtype=float), 1) == 0):
        ids = ids.astype("int64")  # Stata/SPSS store numeric ids as doubles: 17.0 -> "17"
    ids = ids.astype(str).str.strip()
    dup = ids.duplicated(keep=False)
    if dup.any():
        raise InputError(
            f"duplicate agency_id values: {sorted(set(ids[dup]))[:5]}",
            path=path,
            column=AGENCY_ID,
            rows=_rows(dup),
        )
    return ids


def _code_strata(s: pd.Series, path: str | None) -> pd.Categorical:
    miss = s.isna() | (s.astype(str).str.strip() == "")
    if miss.any():
        raise InputError("missing stratum", path=path, column=STRATUM, rows=_rows(miss))
    s = s.astype(str).str.strip()
    s = s.str.replace(r"\.0$", "", regex=True).map(lambda v: FRAME_NUMBERS.get(v, v))
    bad = ~s.isin(STRATA)
    if bad.any():
        raise InputError(
            f"unknown stratum labels {sorted(set(s[bad]))[:5]} (allowed: {list(STRATA)} or frame numbers 1-4)",
            path=path,
            column=STRATUM,
            rows=_rows(bad),
        )
    return pd.Categorical(s, dtype=stratum_dtype())


def validate(
    df: pd.DataFrame,
    *,
    source: str | Path | None = None,
    not_sure: NotSureRule = "no",
    allow_extra: bool = False,
) -> pd.DataFrame:
    """Check a raw frame against the contract and return it coded and typed.

    Parameters
    ----------
    df
        Raw agency-level data (any dtypes).
    source
        File name used in error messages.
    not_sure
        How a ``not sure`` answer is coded: ``"no"`` (default; the article's yes vs not-yes),
        ``"yes"`` (sensitivity), or ``"error"``.
    allow_extra
        Keep unknown columns instead of rejecting them.

    Returns
    -------
    pandas.DataFrame
        Columns ``[agency_id], stratum, <nine approaches>, any_cst, [weight], n_approaches``.

    Raises
    ------
    InputError
        On any breach of the contract, naming file, column and first offending rows.
    """
    if not_sure not in get_args(NotSureRule):
        raise InputError(f"not_sure must be one of {get_args(NotSureRule)}, got {not_sure!r}")
    path = None if source is None else str(source)
    if len(df) == 0:
        raise InputError("the table has no rows", path=path)
    cols = [str(c).strip() for c in df.columns]
    df = df.copy()
    df.columns = cols
    dup_cols = sorted({c for c in cols if cols.count(c) > 1})
    if dup_cols:
        raise InputError(f"duplicate column names: {dup_cols}", path=path)
    missing = [c for c in REQUIRED_COLUMNS if c not in cols]
    if missing:
        raise InputError(f"missing required columns: {missing}", path=path, column=missing[0])
    extra = [c for c in cols if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS and c != COUNT]
    if extra and not allow_extra:
        raise InputError(
            f"unexpected columns: {extra} (allowed: {list(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}; "
            "keep others with --keep-columns)",
            path=path,
            column=extra[0],
        )

    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    df = df.reset_index(drop=True)
    if AGENCY_ID in cols:
        out[AGENCY_ID] = _code_ids(df[AGENCY_ID], path)
    out[STRATUM] = _code_strata(df[STRATUM], path)

    for name in BINARY_COLUMNS:
        out[name] = _code_binary(df[name], name, path, not_sure).to_numpy()

    if WEIGHT in cols:
        w = pd.to_numeric(df[WEIGHT], errors="coerce")
        bad = w.isna() | ~np.isfinite(w) | (w <= 0)
        if bad.any():
            raise InputError(
                "weights must be positive finite numbers", path=path, column=WEIGHT, rows=_rows(bad)
            )
        out[WEIGHT] = w.astype(float).to_numpy()

    count = out[list(APPROACHES)].sum(axis=1).astype(np.int8)
    if COUNT in cols:
        given = pd.to_numeric(df[COUNT], errors="coerce")
        bad = given.isna() | (given.to_numpy() != count.to_numpy())
        if bad.any():
            raise InputError(
                "n_approaches disagrees with the sum of the nine approaches",
                path=path,
                column=COUNT,
                rows=_rows(bad),
            )
    out[COUNT] = count
    if allow_extra:
        for c in extra:
            out[c] = df[c].to_numpy()
    out.attrs["source"] = path
    return out


def _vouched_by_manifest(path: Path) -> bool:
    """Whether a ``manifest.json`` beside ``path`` records this very file as a synthetic member."""
    man = path.parent / "manifest.json"
    if not man.is_file():
        return False
    import json

    try:
        record = json.loads(man.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("synthetic") is not True:
        return False
    members = record.get("members")
    if not isinstance(members, list):
        return False
    from cst_bayes.core.fileio import sha256_file

    digest = sha256_file(path)
    return any(
        isinstance(m, dict)
        and m.get("sha256") == digest
        and Path(str(m.get("file", ""))).name == path.name
        for m in members
    )


def declares_synthetic(path: str | Path, comments: list[str]) -> bool:
    """Fail-closed test of a file's synthetic label.

    A file is synthetic only when its first line is exactly ``# `` + the package banner
    (:func:`cst_bayes.core.fileio.write_microdata` writes it), or when the ``manifest.json``
    of its folder lists its SHA-256 as a member. Any other comment, whatever it says about
    "synthetic", leaves the file restricted: a wrong label would switch suppression off.
    """
    path = Path(path)
    if comments:
        with open(path, encoding="utf-8-sig") as fh:
            first = fh.readline().rstrip("\r\n")
        if first == f"# {SYNTHETIC_BANNER}":
            return True
    return _vouched_by_manifest(path)


def load(
    path: str | Path,
    *,
    not_sure: NotSureRule = "no",
    data_class: DataClass | None = None,
    allow_extra: bool = False,
    keep_columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Load and validate an agency-level file (CSV, Parquet, ``.dta``, ``.sav``).

    Parameters
    ----------
    not_sure
        How ``not sure`` answers are coded (see :func:`validate`).
    data_class
        What the file is. ``None`` (default) decides fail-closed: ``synthetic`` when the file
        opens with the package banner line or its folder's manifest vouches for its hash
        (:func:`declares_synthetic`), ``restricted`` otherwise. ``"restricted"`` forces
        suppression even on a synthetic file; ``"public"`` declares the user's own
        unrestricted data (no suppression, labelled PUBLIC); ``"synthetic"`` on a file
        that does not prove it is an error.
    allow_extra
        Keep every column outside the contract (e.g. ``region``, ``pct_rural``).
    keep_columns
        Keep these extra columns (others are still rejected); a name not in the file is an
        error.

    ``attrs``: ``source``, ``comments``, ``data_class``, ``synthetic`` and ``restricted``
    (small-cell suppression applies downstream when True).
    """
    if data_class is not None and data_class not in get_args(DataClass):
        raise InputError(
            f"data class must be one of {list(get_args(DataClass))}, got {data_class!r}"
        )
    raw, comments = read_table(path)
    keep = [str(c) for c in (keep_columns or ())]
    if keep:
        cols = {str(c).strip() for c in raw.columns}
        absent = [c for c in keep if c not in cols]
        if absent:
            raise InputError(
                f"--keep-columns names columns not in the file: {absent}",
                path=path,
                column=absent[0],
            )
        known = set(REQUIRED_COLUMNS + OPTIONAL_COLUMNS) | {COUNT}
        stray = [
            c
            for c in map(lambda c: str(c).strip(), raw.columns)
            if c not in known and c not in keep
        ]
        if stray and not allow_extra:
            raise InputError(
                f"unexpected columns: {stray} (keep them with allow_extra / --keep-columns)",
                path=path,
                column=stray[0],
            )
    df = validate(raw, source=path, not_sure=not_sure, allow_extra=allow_extra or bool(keep))
    proven = declares_synthetic(path, comments)
    if data_class is None:
        data_class = "synthetic" if proven else "restricted"
    elif data_class == "synthetic" and not proven:
        raise InputError(
            "declared synthetic, but the file neither opens with the package's SYNTHETIC banner "
            "line nor is vouched for by a reconstruction manifest",
            path=path,
        )
    df.attrs.update(
        source=str(path),
        comments=comments,
        data_class=data_class,
        synthetic=data_class == "synthetic",
        restricted=data_class == "restricted",
    )
    return df


def is_synthetic(df: pd.DataFrame) -> bool:
    """Whether a loaded frame declares itself synthetic (reconstructed)."""
    return bool(df.attrs.get("synthetic", False))
