"""The microdata contract: loaders for the four archive formats and every kind of bad input.

Reference: a small simulated dataset written with pandas/pyarrow/pyreadstat directly; the
loaded frame must equal it value for value, and every malformed copy must raise an
InputError naming the file, the column and the first offending rows (CLI exit status 2).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyreadstat
import pytest

from cst_bayes.cli import main
from cst_bayes.core.config import APPROACHES, COUNT, OUTCOME, STRATA, SYNTHETIC_BANNER
from cst_bayes.core.errors import InputError
from cst_bayes.data import microdata as M
from cst_bayes.data.simulate import simulate

BINARY = [*APPROACHES, OUTCOME]
CODES = {"1000+": 1, "state": 2, "50-999": 3, "1-49": 4}


@pytest.fixture(scope="module")
def small():
    """30 agencies in the contract's raw form (no n_approaches), with ids and weights."""
    df, _ = simulate(11, n_by_stratum={"1-49": 12, "50-999": 8, "state": 5, "1000+": 5})
    df = df.drop(columns=COUNT)
    df[M.STRATUM] = df[M.STRATUM].astype(str)
    df.insert(0, "agency_id", [f"A{i:03d}" for i in range(len(df))])
    df["weight"] = np.linspace(1.0, 5.0, len(df))
    return df


def _same_as(loaded: pd.DataFrame, ref: pd.DataFrame) -> None:
    assert list(loaded.columns) == ["agency_id", "stratum", *BINARY, "weight", COUNT]
    assert loaded["stratum"].dtype == M.stratum_dtype()
    assert loaded["stratum"].astype(str).tolist() == ref["stratum"].tolist()
    for c in BINARY:
        assert loaded[c].dtype == np.int8
        assert loaded[c].tolist() == ref[c].astype(int).tolist(), c
    assert loaded["agency_id"].tolist() == ref["agency_id"].tolist()
    np.testing.assert_allclose(loaded["weight"], ref["weight"])
    assert loaded[COUNT].tolist() == ref[list(APPROACHES)].sum(axis=1).tolist()


# --------------------------------------------------------------------------- the four formats
def test_csv(tmp_path, small):
    p = tmp_path / "d.csv"
    small.to_csv(p, index=False)
    df = M.load(p)
    _same_as(df, small)
    assert df.attrs["synthetic"] is False and df.attrs["restricted"] is True


def test_csv_with_synthetic_banner_and_bom(tmp_path, small):
    p = tmp_path / "d.csv"
    p.write_bytes(
        b"\xef\xbb\xbf# " + SYNTHETIC_BANNER.encode() + b"\n" + small.to_csv(index=False).encode()
    )
    df = M.load(p)
    _same_as(df, small)
    assert df.attrs["synthetic"] is True and df.attrs["restricted"] is False
    assert M.is_synthetic(df)


def test_parquet(tmp_path, small):
    p = tmp_path / "d.parquet"
    small.to_parquet(p)
    _same_as(M.load(p), small)


def test_stata_and_spss_plain(tmp_path, small):
    pyreadstat.write_dta(small, str(tmp_path / "d.dta"))
    pyreadstat.write_sav(small, str(tmp_path / "d.sav"))
    _same_as(M.load(tmp_path / "d.dta"), small)
    _same_as(M.load(tmp_path / "d.sav"), small)


@pytest.mark.parametrize("ext", ["dta", "sav"])
def test_stata_and_spss_with_value_labels(tmp_path, small, ext):
    """Archives ship numeric codes with value labels: 1-4 for the frame, 0/1 no/yes, 8 not sure."""
    coded = small.copy()
    coded["stratum"] = coded["stratum"].map(CODES)
    coded.loc[0, "court"] = 8
    coded["agency_id"] = np.arange(100, 100 + len(coded), dtype=float)
    labels = {c: {0: "no", 1: "yes", 8: "not sure"} for c in BINARY}
    labels["stratum"] = {v: k for k, v in CODES.items()}
    writer = pyreadstat.write_dta if ext == "dta" else pyreadstat.write_sav
    writer(coded, str(tmp_path / f"d.{ext}"), variable_value_labels=labels)
    df = M.load(tmp_path / f"d.{ext}")
    assert df["stratum"].astype(str).tolist() == small["stratum"].tolist()
    assert df.loc[0, "court"] == 0  # "not sure" -> no under the default rule
    assert df["agency_id"].iloc[0] == "100"  # integral doubles are not printed as 100.0
    assert M.load(tmp_path / f"d.{ext}", not_sure="yes").loc[0, "court"] == 1


def test_format_recognised_by_content_not_suffix(tmp_path, small):
    small.to_parquet(tmp_path / "really_parquet.csv")
    pyreadstat.write_sav(small, str(tmp_path / "really_spss.dat"))
    _same_as(M.load(tmp_path / "really_parquet.csv"), small)
    _same_as(M.load(tmp_path / "really_spss.dat"), small)


def test_frame_numbers_and_text_codes(tmp_path, small):
    raw = small.copy()
    raw["stratum"] = raw["stratum"].map(CODES).astype(str)
    for c in BINARY:
        raw[c] = raw[c].map({0: "No", 1: " YES "})
    p = tmp_path / "d.csv"
    raw.to_csv(p, index=False)
    _same_as(M.load(p), small)


# --------------------------------------------------------------------------- the "not sure" rule
@pytest.fixture
def unsure_csv(tmp_path, small):
    raw = small.copy().astype({c: object for c in BINARY})
    raw.loc[[2, 5], "prosecutor"] = "not sure"
    raw.loc[7, "training"] = "Not Sure"
    p = tmp_path / "unsure.csv"
    raw.to_csv(p, index=False)
    return p


def test_not_sure_default_is_no(unsure_csv):
    df = M.load(unsure_csv)
    assert df.loc[[2, 5], "prosecutor"].tolist() == [0, 0] and df.loc[7, "training"] == 0


def test_not_sure_as_yes(unsure_csv, small):
    df = M.load(unsure_csv, not_sure="yes")
    assert df.loc[[2, 5], "prosecutor"].tolist() == [1, 1] and df.loc[7, "training"] == 1
    untouched = [i for i in range(len(small)) if i not in (2, 5)]
    assert df.loc[untouched, "prosecutor"].tolist() == small.loc[untouched, "prosecutor"].tolist()


def test_not_sure_as_error_names_rows(unsure_csv):
    with pytest.raises(InputError) as err:
        M.load(unsure_csv, not_sure="error")
    assert err.value.column == "prosecutor" and err.value.rows == [3, 6]


def test_unknown_not_sure_rule():
    with pytest.raises(InputError, match="not_sure"):
        M.validate(pd.DataFrame({"a": [1]}), not_sure="maybe")


# --------------------------------------------------------------------------- malformed files
def _mutate(small, fn):
    raw = small.copy().astype({c: object for c in [*BINARY, "stratum", "agency_id"]})
    return fn(raw)


def _set(col, rows, value):
    def fn(raw):
        raw.loc[rows, col] = value
        return raw

    return fn


# (case, mutation, column named, data rows named (1-based))
BAD_TABLES = [
    ("missing-column", lambda r: r.drop(columns="mdt"), "mdt", []),
    ("extra-column", lambda r: r.assign(zip_code="03824"), "zip_code", []),
    ("unknown-stratum", _set("stratum", [3, 9], "tribal"), "stratum", [4, 10]),
    ("missing-stratum", _set("stratum", [1], None), "stratum", [2]),
    ("code-outside-set", _set("court", [4], "2"), "court", [5]),
    ("text-code-outside-set", _set("advocates", [0, 6], "sometimes"), "advocates", [1, 7]),
    ("missing-value", _set("any_cst", [8], None), "any_cst", [9]),
    ("duplicate-agency-id", _set("agency_id", [10], "A003"), "agency_id", [4, 11]),
    ("missing-agency-id", _set("agency_id", [12], None), "agency_id", [13]),
    ("bad-weight", _set("weight", [2], -1.0), "weight", [3]),
    ("count-disagrees", lambda r: r.assign(n_approaches=0), "n_approaches", [1]),
]


#: SPSS files need one type per column, so cases that mix text into numeric codes or leave
#: cells empty are written as CSV and Parquet only.
_SAV_OK = {"missing-column", "extra-column", "duplicate-agency-id", "bad-weight", "count-disagrees"}
CASES = [
    (fmt, *b)
    for b in BAD_TABLES
    for fmt in ("csv", "parquet", "sav")
    if fmt != "sav" or b[0] in _SAV_OK
]


@pytest.mark.parametrize(
    "fmt, case, fn, column, rows", CASES, ids=[f"{c[1]}-{c[0]}" for c in CASES]
)
def test_malformed_tables_name_file_column_rows(tmp_path, small, fmt, case, fn, column, rows):
    raw = _mutate(small, fn)
    path = tmp_path / f"bad.{fmt}"
    if fmt == "csv":
        raw.to_csv(path, index=False)
    elif fmt == "parquet":
        # Text columns as pandas strings keep None as a missing value (not the text "None").
        raw.astype({c: "string" for c in raw.columns if raw[c].dtype == object}).to_parquet(path)
    else:
        pyreadstat.write_sav(raw.infer_objects(), str(path))
    with pytest.raises(InputError) as err:
        M.load(path)
    e = err.value
    assert e.path == str(path)
    assert e.column == column
    assert e.rows[: len(rows)] == rows
    assert str(path) in str(e) and repr(column) in str(e)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.csv", b"", "empty"),
        ("blank.csv", b"\n\n", "no header"),
        ("header_only.csv", None, "no rows"),
        ("binary.csv", bytes(range(256)) * 8, "binary"),
        ("latin1.csv", "stratum,court\n1-49,s\xed\n".encode("latin-1"), "UTF-8"),
        ("data.json", json.dumps([{"stratum": "1-49", "court": 1}]).encode(), "JSON"),
        ("obj.csv", json.dumps({"stratum": "1-49", "court": 1}).encode(), "JSON"),
        ("sheet.xlsx", b"PK\x03\x04" + b"\x00" * 100, "binary"),
        ("semicolons.csv", b"stratum;court;prosecutor\n1-49;1;0\n", "commas"),
        ("broken.parquet", b"PAR1 truncated", "cannot read"),
        ("broken.dta", b"<stata_dta><header>junk", "cannot read"),
    ],
)
def test_non_tables(tmp_path, small, name, content, message):
    path = tmp_path / name
    path.write_bytes(content if content is not None else (",".join(small.columns) + "\n").encode())
    with pytest.raises(InputError, match=message) as err:
        M.load(path)
    assert err.value.path == str(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="not found"):
        M.load(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="folder"):
        M.load(tmp_path)


def test_validate_rejects_empty_frame_and_duplicate_columns(small):
    with pytest.raises(InputError, match="no rows"):
        M.validate(small.iloc[:0])
    dup = pd.concat([small, small[["court"]]], axis=1)
    with pytest.raises(InputError, match="duplicate column"):
        M.validate(dup)


def test_allow_extra_keeps_unknown_columns(small):
    df = M.validate(small.assign(region="NE"), allow_extra=True)
    assert df["region"].eq("NE").all()


def test_every_stratum_label_accepted(small):
    df = M.validate(small)
    assert set(df["stratum"].astype(str)) == set(STRATA)
    assert list(df["stratum"].cat.categories) == list(STRATA)


def test_cli_exits_2_with_one_line_naming_file_column_rows(tmp_path, small, capsys):
    raw = _mutate(small, _set("stratum", [3], "tribal"))
    path = tmp_path / "bad.csv"
    raw.to_csv(path, index=False)
    status = main(["tables", "--data", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and str(path) in err and "'stratum'" in err and "rows 4" in err
    assert not (tmp_path / "out" / "table1.csv").exists()


# --- fail closed: only the exact banner (or a manifest hash) makes a file synthetic ---------


@pytest.mark.parametrize(
    "first_line",
    [
        "# NOT SYNTHETIC",
        "# see synthetic_check.log",
        "# synthetic data: " + SYNTHETIC_BANNER.lower(),
        "#" + SYNTHETIC_BANNER,  # no space: not what write_microdata writes
        "# " + SYNTHETIC_BANNER + " (edited)",
        "# RESTRICTED",
    ],
)
def test_any_other_first_line_is_restricted(tmp_path, small, first_line):
    p = tmp_path / "d.csv"
    p.write_text(first_line + "\n" + small.to_csv(index=False), encoding="utf-8")
    df = M.load(p)
    assert df.attrs["synthetic"] is False and df.attrs["restricted"] is True
    assert df.attrs["data_class"] == "restricted"


def test_banner_on_a_later_line_does_not_count(tmp_path, small):
    p = tmp_path / "d.csv"
    p.write_text(f"# hello\n# {SYNTHETIC_BANNER}\n" + small.to_csv(index=False), encoding="utf-8")
    assert M.load(p).attrs["restricted"] is True


def test_write_microdata_round_trip_is_synthetic(tmp_path, small):
    from cst_bayes.core.fileio import write_microdata

    p = write_microdata(tmp_path / "s.csv", small, synthetic=True, note="member 1")
    assert M.load(p).attrs["synthetic"] is True
    q = write_microdata(tmp_path / "r.csv", small, synthetic=False)
    assert M.load(q).attrs["restricted"] is True


def test_manifest_hash_vouches_for_an_unbannered_member(tmp_path, small):
    from cst_bayes.core.fileio import sha256_file

    p = tmp_path / "reconstruction-001.csv"
    small.to_csv(p, index=False)
    man = {"synthetic": True, "members": [{"file": p.name, "sha256": sha256_file(p)}]}
    (tmp_path / "manifest.json").write_text(json.dumps(man))
    assert M.load(p).attrs["synthetic"] is True
    # one changed byte and the manifest no longer vouches for it
    p.write_text(p.read_text().replace("1-49", "4", 1))
    assert M.load(p).attrs["restricted"] is True
    # a manifest that does not say synthetic vouches for nothing
    man = {"synthetic": False, "members": [{"file": p.name, "sha256": sha256_file(p)}]}
    (tmp_path / "manifest.json").write_text(json.dumps(man))
    assert M.load(p).attrs["restricted"] is True


def test_data_class_public_restricted_and_unproven_synthetic(tmp_path, small):
    p = tmp_path / "mine.csv"
    small.to_csv(p, index=False)
    pub = M.load(p, data_class="public")
    assert pub.attrs["data_class"] == "public"
    assert pub.attrs["restricted"] is False and pub.attrs["synthetic"] is False
    from cst_bayes.core.provenance import status_of

    assert status_of(pub) == "PUBLIC" and status_of(M.load(p)) == "RESTRICTED"
    with pytest.raises(InputError, match="declared synthetic"):
        M.load(p, data_class="synthetic")
    with pytest.raises(InputError, match="data class"):
        M.load(p, data_class="secret")
    s = tmp_path / "syn.csv"
    s.write_text(f"# {SYNTHETIC_BANNER}\n" + small.to_csv(index=False))
    forced = M.load(s, data_class="restricted")
    assert forced.attrs["restricted"] is True and forced.attrs["synthetic"] is False


# --- own data with extra columns ------------------------------------------------------------


@pytest.fixture
def stata_with_extras(tmp_path, small):
    df = small.copy()
    rng = np.random.default_rng(3)
    df["weight"] = rng.uniform(1, 5, len(df))
    df["region"] = rng.choice(["north", "south"], len(df))
    df["pct_rural"] = rng.uniform(0, 100, len(df))
    p = tmp_path / "own.dta"
    pyreadstat.write_dta(df, str(p))
    return p, df


def test_dta_with_extra_columns_refused_by_default_kept_when_asked(stata_with_extras):
    p, ref = stata_with_extras
    with pytest.raises(InputError, match="keep-columns") as err:
        M.load(p)
    assert err.value.column == "region"
    kept = M.load(p, keep_columns=["region", "pct_rural"])
    assert list(kept["region"]) == list(ref["region"])
    np.testing.assert_allclose(kept["pct_rural"], ref["pct_rural"])
    np.testing.assert_allclose(kept["weight"], ref["weight"])
    with pytest.raises(InputError, match="pct_rural"):
        M.load(p, keep_columns=["region"])  # pct_rural neither kept nor allowed
    every = M.load(p, allow_extra=True)
    assert {"region", "pct_rural"} <= set(every.columns)
    with pytest.raises(InputError, match="not in the file") as err:
        M.load(p, keep_columns=["county"])
    assert err.value.column == "county"


def test_unreadable_file_is_one_clear_error(tmp_path, small):
    import os

    p = tmp_path / "locked.csv"
    small.to_csv(p, index=False)
    p.chmod(0)
    try:
        if os.access(p, os.R_OK):
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(InputError, match="cannot read"):
            M.load(p)
    finally:
        p.chmod(0o644)
