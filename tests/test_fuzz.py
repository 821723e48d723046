"""Property-based bad input: every verb exits 0, or 2 with one line and nothing written.

Hypothesis draws option values (seeds, counts, output paths in the way) and malformed
files; the CLI runs in-process (``cli.main``) on paths that fail validation before any
sampling, so the examples stay fast. A traceback (an exception out of ``main``) or exit
status 1 (an internal error) fails the property.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cst_bayes.cli import main
from pipeline_support import write_sim

FAST = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
#: Verbs with the seed option and a data file, run until their first validation.
SEEDED = ("fit", "ppc", "compare", "weights", "reproduce", "audit")


def _run(argv: list[str], capsys) -> tuple[int, str]:
    rc = main(argv)
    err = capsys.readouterr().err
    return rc, err


def _one_line_exit_2(rc: int, err: str) -> None:
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    return write_sim(tmp_path_factory.mktemp("fuzz") / "sim.csv", 5)


bad_seeds = st.one_of(st.integers(max_value=-1), st.integers(min_value=2**32, max_value=2**80))


@FAST
@given(seed=bad_seeds, verb=st.sampled_from(SEEDED))
def test_out_of_range_seeds_are_one_line(tmp_path, data_file, capsys, verb, seed):
    out = tmp_path / f"out-{verb}"
    argv = {
        "fit": ["fit", "logit_approaches", "--data", str(data_file), "--out", str(out)],
        "ppc": ["ppc", str(data_file), "--data", str(data_file), "--out", str(out)],
        "compare": ["compare", "--data", str(data_file), "--out", str(out)],
        "weights": ["weights", "--data", str(data_file), "--out", str(out)],
        "reproduce": ["reproduce", "--data", str(data_file), "--out", str(out)],
        "audit": ["audit"],
    }[verb]
    try:
        rc, err = _run([*argv, "--seed", str(seed)], capsys)
    except SystemExit as exc:  # argparse rejected it (a typed seed): one usage line + message
        assert exc.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return
    _one_line_exit_2(rc, err)
    assert not out.exists()


@FAST
@given(
    option=st.sampled_from(["--draws", "--tune", "--chains", "--jobs"]),
    value=st.integers(max_value=0),
)
def test_non_positive_counts_are_one_line(tmp_path, data_file, capsys, option, value):
    out = tmp_path / "o"
    rc, err = _run(
        [
            "fit",
            "logit_approaches",
            "--data",
            str(data_file),
            "--out",
            str(out),
            option,
            str(value),
        ],
        capsys,
    )
    _one_line_exit_2(rc, err)
    assert not out.exists()


@FAST
@given(verb=st.sampled_from(["tables", "weights", "fit", "ppc", "compare", "reproduce"]))
def test_out_in_the_way_is_one_line(tmp_path, data_file, capsys, verb):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for out in (blocker, blocker / "below"):
        argv = {
            "tables": ["tables", "--data", str(data_file)],
            "weights": ["weights", "--data", str(data_file)],
            "fit": ["fit", "logit_approaches", "--data", str(data_file)],
            "ppc": ["ppc", str(data_file), "--data", str(data_file)],
            "compare": ["compare", "--data", str(data_file)],
            "reproduce": ["reproduce", "--data", str(data_file)],
        }[verb]
        rc, err = _run([*argv, "--out", str(out)], capsys)
        _one_line_exit_2(rc, err)
    assert blocker.read_text() == "x"


malformed = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300),
    st.lists(
        st.sampled_from(
            ["stratum", "court", "any_cst", "mdt", "1-49", "state", "2", "yes", ",", "\n"]
        ),
        max_size=60,
    ).map("".join),
)


@FAST
@given(content=malformed, suffix=st.sampled_from([".csv", ".dta", ".sav", ".parquet", ""]))
def test_malformed_files_for_tables(tmp_path, capsys, content, suffix):
    data = tmp_path / f"bad{suffix}"
    data.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "replace"))
    out = tmp_path / "o"
    rc, err = _run(["tables", "--data", str(data), "--out", str(out)], capsys)
    _one_line_exit_2(rc, err)
    assert not out.exists()


@FAST
@given(junk=st.dictionaries(st.text(max_size=8), st.integers(), max_size=4))
def test_report_on_tampered_run_folders(tmp_path, capsys, junk):
    import json

    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "run.json").write_text(json.dumps(junk))
    rc, err = _run(["report", str(run)], capsys)
    assert rc in (0, 2), err
    if rc == 2:
        _one_line_exit_2(rc, err)


def test_contradictory_reproduce_options(tmp_path, data_file, capsys):
    out = tmp_path / "o"
    rc, err = _run(
        [
            "reproduce",
            "--data",
            str(data_file),
            "--reconstructions",
            str(tmp_path),
            "--out",
            str(out),
        ],
        capsys,
    )
    _one_line_exit_2(rc, err)
    assert "--reconstructions" in err and not out.exists()
    rc, err = _run(
        ["reproduce", "--n-reconstructions", "999", "--out", str(out), "--stages", "data"], capsys
    )
    _one_line_exit_2(rc, err)
    assert "999" in err and not out.exists()


def test_unreachable_scheduler_is_one_line(tmp_path, capsys):
    from cst_bayes.core.config import ROOT

    grid = next((ROOT / "sweeps").glob("*.toml"))
    out = tmp_path / "sweep"
    rc, err = _run(
        ["sweep", str(grid), "--out", str(out), "--scheduler", "tcp://127.0.0.1:9"], capsys
    )
    _one_line_exit_2(rc, err)
    assert "scheduler" in err and not out.exists()
