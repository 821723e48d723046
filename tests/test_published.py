"""The published tables: provenance sidecars, typed loaders, and rejection of malformed copies.

Expected values come from the article's figures as quoted in STUDY.md (1,306 agencies, 218
with a case, strata 34/19/381/872) and from the CSV bytes read with the csv module, never
from the loader under test.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cst_bayes.cli import main
from cst_bayes.core.config import APPROACHES, PUBLISHED_DIR, ROOT
from cst_bayes.core.errors import InputError
from cst_bayes.data import published as P

STEMS = [Path(f).stem for f in P.FILES.values()]


# --------------------------------------------------------------------------- provenance
@pytest.mark.parametrize("stem", STEMS)
def test_sidecar_sha256_matches_csv(stem):
    meta = json.loads((PUBLISHED_DIR / f"{stem}.meta.json").read_text())
    data = (PUBLISHED_DIR / f"{stem}.csv").read_bytes()
    assert meta["sha256"] == hashlib.sha256(data).hexdigest()
    assert meta["file"] == f"{stem}.csv"


@pytest.mark.parametrize("stem", STEMS)
def test_sidecar_documents_source_and_every_column(stem):
    meta = json.loads((PUBLISHED_DIR / f"{stem}.meta.json").read_text())
    for key in (
        "source",
        "table",
        "location",
        "transcribed",
        "how_transcribed",
        "illegible_cells",
        "columns",
    ):
        assert meta.get(key), key
    assert "CC BY 4.0" in meta["source"]["license"]
    assert meta["source"]["year"] == 2024
    with open(PUBLISHED_DIR / f"{stem}.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert list(meta["columns"]) == header


@pytest.mark.parametrize("stem", STEMS)
def test_published_csv_is_the_shared_transcription(stem):
    shared = ROOT.parent / "shared" / "published" / f"{stem}.csv"
    if not shared.exists():
        pytest.skip("no ../shared/published beside this checkout")
    assert (PUBLISHED_DIR / f"{stem}.csv").read_bytes() == shared.read_bytes()


# --------------------------------------------------------------------------- loaders
def test_table1_typed_and_matches_the_article():
    t1 = P.load_table1()
    assert list(t1.columns) == [
        "variable",
        "label",
        "stratum",
        "n_yes",
        "n_stratum",
        "pct_published",
        "pct_decimals",
        "p_value_printed",
        "p_op",
        "p_value",
        "p_decimals",
    ]
    assert len(t1) == 50
    assert t1["n_yes"].dtype == np.int64 and t1["n_stratum"].dtype == np.int64
    assert t1["pct_published"].dtype == np.float64
    y = t1[t1["variable"] == "any_cst"].set_index("stratum")
    # STUDY.md: 218 of 1,306 said yes; strata of 34, 19, 381, 872 respondents.
    assert (y.loc["all", "n_yes"], y.loc["all", "n_stratum"]) == (218, 1306)
    assert y.loc[["1000+", "state", "50-999", "1-49"], "n_stratum"].tolist() == [34, 19, 381, 872]
    court = t1[(t1["variable"] == "court")].iloc[0]
    assert (court["p_value_printed"], court["p_op"], court["p_value"], court["p_decimals"]) == (
        "<0.001",
        "<",
        0.001,
        3,
    )
    oc = t1[(t1["variable"] == "offense_code")].iloc[0]
    assert (oc["p_op"], oc["p_value"], oc["p_decimals"]) == ("=", 0.95, 2)
    # "50.0" was printed with one decimal even though it is a whole number.
    assert (
        t1.loc[
            (t1["variable"] == "offense_code") & (t1["stratum"] == "1000+"), "pct_decimals"
        ].item()
        == 1
    )
    assert t1["variable"].unique().tolist() == [*APPROACHES, "any_cst"]


def test_table1_counts_equal_the_raw_csv():
    with open(PUBLISHED_DIR / P.FILES["table1"], newline="") as fh:
        raw = {
            (r["variable"], r["stratum"]): (int(r["n_yes"]), int(r["n_stratum"]))
            for r in csv.DictReader(fh)
        }
    t1 = P.load_table1()
    got = {
        (v, s): (a, b)
        for v, s, a, b in zip(t1["variable"], t1["stratum"], t1["n_yes"], t1["n_stratum"])
    }
    assert got == raw


def test_table2_and_phi_matrix():
    t2 = P.load_table2()
    assert len(t2) == 36 and t2["stars_legible"].dtype == bool
    assert (~t2["stars_legible"]).sum() == 3
    assert (
        t2["p_upper"].isna().sum()
        == 3 + (t2["stars"] == "").sum() - (~t2["stars_legible"] & (t2["stars"] == "")).sum()
    )
    m = P.phi_matrix(t2)
    assert m.shape == (9, 9)
    assert np.allclose(m.to_numpy(), m.to_numpy().T)
    assert np.all(np.diag(m) == 1)
    assert m.loc["court", "prosecutor"] == 0.54


def test_table3_and_sampling_frames():
    t3 = P.load_table3()
    assert len(t3) == 26
    row = t3[(t3["term"] == "stratum[1000+]") & (t3["analysis"] == 1)].iloc[0]
    assert (row["or"], row["ci_low"], row["ci_high"]) == (47.5, 17.0, 132.5)
    assert t3["analysis"].dtype == np.int64
    sf = P.load_sampling_frames()
    assert sf["sampled"].sum() == 3591 and sf["respondents"].sum() == 1306
    tabs = P.load_all()
    assert isinstance(tabs, P.PublishedTables) and tabs.published_dir == PUBLISHED_DIR


@pytest.mark.parametrize(
    "printed, expected",
    [
        ("<0.001", ("<", 0.001, 3)),
        (".05", ("=", 0.05, 2)),
        ("0.95", ("=", 0.95, 2)),
        ("0.003", ("=", 0.003, 3)),
        ("< .01", ("<", 0.01, 2)),
        ("1", ("=", 1.0, 0)),
    ],
)
def test_parse_p(printed, expected):
    assert P.parse_p(printed) == expected


@pytest.mark.parametrize("bad", ["", "p<.05", "ns", "0.05*", "-0.1", "1.5"])
def test_parse_p_rejects(bad):
    with pytest.raises(ValueError):
        P.parse_p(bad)


def test_p_interval():
    assert P.p_interval("<", 0.001, 3) == (0.0, 0.001)
    lo, hi = P.p_interval("=", 0.05, 2)
    assert lo == pytest.approx(0.045) and hi == pytest.approx(0.055)


def test_margins():
    m = P.margins(P.load_table1())
    assert m["any_cst"] == pytest.approx(218 / 1306)


# --------------------------------------------------------------------------- malformed copies
@pytest.fixture
def pubcopy(tmp_path):
    d = tmp_path / "published"
    shutil.copytree(PUBLISHED_DIR, d)
    return d


def edit(folder: Path, key: str, fn) -> Path:
    """Rewrite one published CSV through ``fn(header, rows) -> (header, rows)`` (lists of str)."""
    path = folder / P.FILES[key]
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = fn(rows[0], rows[1:])
    with open(path, "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows([header, *body])
    return path


def set_cell(row_index: int, column: str, value: str):
    """An ``edit`` function setting one cell (0-based data row)."""

    def fn(header, body):
        body[row_index][header.index(column)] = value
        return header, body

    return fn


LOADERS = {
    "table1": P.load_table1,
    "table2": P.load_table2,
    "table3": P.load_table3,
    "sampling_frames": P.load_sampling_frames,
}

# (case id, table, edit, column named in the error, data row named (1-based) or None)
MALFORMED = [
    ("t1-count-above-n", "table1", set_cell(1, "n_yes", "40"), "n_yes", 2),
    ("t1-negative-count", "table1", set_cell(4, "n_yes", "-1"), "n_yes", 5),
    ("t1-not-integer", "table1", set_cell(3, "n_yes", "110.5"), "n_yes", 4),
    ("t1-text-count", "table1", set_cell(3, "n_stratum", "many"), "n_stratum", 4),
    ("t1-strata-dont-sum", "table1", set_cell(0, "n_yes", "284"), "n_yes", 1),
    ("t1-wrong-n", "table1", set_cell(2, "n_stratum", "20"), "n_stratum", 3),
    ("t1-pct-far-from-count", "table1", set_cell(3, "pct_published", "29.9"), "pct_published", 4),
    ("t1-unknown-stratum", "table1", set_cell(2, "stratum", "tribal"), "stratum", 3),
    ("t1-unknown-variable", "table1", set_cell(0, "variable", "drones"), "variable", 1),
    ("t1-bad-p", "table1", set_cell(0, "p_value_published", "p<.05"), "p_value_published", 1),
    ("t1-p-differs", "table1", set_cell(1, "p_value_published", "0.02"), "p_value_published", 1),
    (
        "t1-missing-column",
        "table1",
        lambda h, b: (h[:-1], [r[:-1] for r in b]),
        "p_value_published",
        None,
    ),
    (
        "t1-extra-column",
        "table1",
        lambda h, b: ([*h, "note"], [[*r, "x"] for r in b]),
        "note",
        None,
    ),
    ("t1-repeated-row", "table1", lambda h, b: (h, [*b, b[0]]), "stratum", 1),
    ("t2-r-out-of-range", "table2", set_cell(0, "r", "1.54"), "r", 1),
    ("t2-unknown-stars", "table2", set_cell(1, "stars", "****"), "stars", 2),
    ("t2-bad-legible", "table2", set_cell(1, "stars_legible", "maybe"), "stars_legible", 2),
    ("t2-unknown-label", "table2", set_cell(5, "col", "radio"), "col", 6),
    ("t2-diagonal", "table2", set_cell(0, "col", "prosecutor"), "col", 1),
    ("t2-missing-pair", "table2", lambda h, b: (h, b[:-1]), "row", None),
    ("t3-ci-not-bracketing", "table3", set_cell(0, "ci_low", "0.9"), "ci_low", 1),
    ("t3-ci-high-below", "table3", set_cell(2, "ci_high", "1.3"), "ci_high", 3),
    ("t3-nonpositive-or", "table3", set_cell(0, "or", "0"), "or", 1),
    ("t3-unknown-term", "table3", set_cell(5, "term", "canines"), "term", 6),
    (
        "t3-stratum-unadjusted",
        "table3",
        set_cell(18, "adjusted_for_size", "no"),
        "adjusted_for_size",
        19,
    ),
    ("t3-bad-p", "table3", set_cell(0, "p_value", "n.s."), "p_value", 1),
    ("frames-respondents", "sampling_frames", set_cell(3, "respondents", "871"), "respondents", 4),
    ("frames-sampled-above-pop", "sampling_frames", set_cell(2, "sampled", "3000"), "sampled", 3),
]


@pytest.mark.parametrize("case, key, fn, column, row", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_table_names_file_column_and_row(pubcopy, case, key, fn, column, row):
    path = edit(pubcopy, key, fn)
    with pytest.raises(InputError) as err:
        LOADERS[key](pubcopy)
    e = err.value
    assert e.path == str(path)
    assert e.column == column
    if row is not None:
        assert row in e.rows
    assert str(path) in str(e) and repr(column) in str(e)


@pytest.mark.parametrize("key", list(P.FILES))
def test_empty_and_header_only_and_missing_files(pubcopy, key):
    path = pubcopy / P.FILES[key]
    header = path.read_text().splitlines()[0]
    path.write_text(header + "\n")
    with pytest.raises(InputError, match="no rows"):
        LOADERS[key](pubcopy)
    path.write_text("")
    with pytest.raises(InputError, match="empty"):
        LOADERS[key](pubcopy)
    path.unlink()
    with pytest.raises(InputError, match="not found"):
        LOADERS[key](pubcopy)


def test_binary_file_is_rejected(pubcopy):
    (pubcopy / P.FILES["table2"]).write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe" * 20)
    with pytest.raises(InputError) as err:
        P.load_table2(pubcopy)
    assert P.FILES["table2"] in str(err.value)


def test_truncated_percentages_load(pubcopy):
    """A percentage one printed unit off (truncated) is a finding for the audit, not an error."""
    edit(pubcopy, "table1", set_cell(3, "pct_published", "28.8"))  # 110/381 = 28.87 -> 28.9 or 28.8
    assert len(P.load_table1(pubcopy)) == 50


def test_audit_cli_exit_2_on_malformed_table(pubcopy, capsys):
    edit(pubcopy, "table1", set_cell(1, "n_yes", "40"))
    assert main(["audit", "--published", str(pubcopy)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert P.FILES["table1"] in err and "'n_yes'" in err and "rows 2" in err


def test_table1_loader_reorders_rows(pubcopy):
    """Row order in the file is not meaning: the loader returns the article's order."""
    edit(pubcopy, "table1", lambda h, b: (h, b[::-1]))
    a, b = P.load_table1(), P.load_table1(pubcopy)
    pd.testing.assert_frame_equal(
        a.reset_index(drop=True), b.reset_index(drop=True), check_like=False
    )
