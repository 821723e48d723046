"""Bad input across the whole command line: a clear one-line message naming the file, exit 2,
and nothing written.

Each case builds one broken input in a temporary folder and runs the CLI in-process
(``cst_bayes.cli.main``) with ``--out`` pointing at a folder that must not exist afterwards
(or stay empty). Inputs: microdata files (``reproduce --data``), published-table folders
(``reproduce --published``), model specs (``reproduce --models FILE``), weighting scenario
files (``reproduce --weighting``) and sweep grids (``sweep``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from cst_bayes import cli
from cst_bayes.core import config
from pipeline_support import sim_ensemble, write_sim


@dataclass
class Case:
    """A broken input: ``make(tmp) -> (cli args without --out, file the message must name)``."""

    id: str
    make: Callable[[Path], tuple[list[str], str]]
    words: tuple[str, ...] = ()  # further words the message must contain
    marks: tuple = ()


# --------------------------------------------------------------------------- microdata


def _micro(
    tmp: Path, mutate: Callable[[pd.DataFrame], pd.DataFrame], name: str = "agencies.csv"
) -> tuple[list[str], str]:
    src = write_sim(tmp / "ok.csv", 3, synthetic=False)
    df = pd.read_csv(src, dtype=str)
    p = tmp / name
    mutate(df).to_csv(p, index=False)
    return ["reproduce", "--data", str(p), "--stages", "data", "tables"], name


def _raw(tmp: Path, name: str, content: bytes) -> tuple[list[str], str]:
    p = tmp / name
    p.write_bytes(content)
    return ["reproduce", "--data", str(p)], name


def _set(col: str, row: int, value: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def f(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        df.loc[row, col] = value
        return df

    return f


def _with_ids(df: pd.DataFrame) -> pd.DataFrame:
    ids = [f"A{i}" for i in range(len(df))]
    ids[7] = "A3"
    return df.assign(agency_id=ids)


MICRO = [
    Case(
        "micro-missing-file",
        lambda t: (["reproduce", "--data", str(t / "nope.csv")], "nope.csv"),
        ("not found",),
    ),
    Case("micro-empty-file", lambda t: _raw(t, "empty.csv", b""), ("empty",)),
    Case(
        "micro-folder",
        lambda t: (
            (t / "dir.csv").mkdir() or ["reproduce", "--data", str(t / "dir.csv")],
            "dir.csv",
        ),
        ("folder",),
    ),
    Case("micro-binary", lambda t: _raw(t, "junk.csv", bytes(range(256)) * 20)),
    Case("micro-header-only", lambda t: _raw(t, "header.csv", b"stratum,court\n"), ()),
    Case(
        "micro-missing-column",
        lambda t: _micro(t, lambda d: d.drop(columns=["any_cst"])),
        ("any_cst",),
    ),
    Case(
        "micro-extra-column",
        lambda t: _micro(t, lambda d: d.assign(zip_code="12345")),
        ("zip_code",),
    ),
    Case(
        "micro-unknown-stratum",
        lambda t: _micro(t, _set("stratum", 4, "huge")),
        ("stratum", "huge"),
    ),
    Case("micro-code-outside-set", lambda t: _micro(t, _set("court", 10, "2")), ("court",)),
    Case("micro-missing-value", lambda t: _micro(t, _set("mdt", 12, "")), ("mdt", "13")),
    Case("micro-duplicate-id", lambda t: _micro(t, _with_ids), ("agency_id", "A3")),
    Case(
        "micro-negative-weight",
        lambda t: _micro(t, lambda d: d.assign(weight="1.5").pipe(_set("weight", 2, "-1"))),
        ("weight",),
    ),
    Case("micro-not-parquet", lambda t: _raw(t, "data.parquet", b"PAR1 this is not parquet")),
]

# --------------------------------------------------------------------------- published tables


def _published(tmp: Path, name: str, edit: Callable[[str], str] | None) -> tuple[list[str], str]:
    d = tmp / "published"
    shutil.copytree(config.PUBLISHED_DIR, d)
    p = d / name
    if edit is None:
        p.unlink()
    else:
        p.write_text(edit(p.read_text(encoding="utf-8")), encoding="utf-8")
    recs = sim_ensemble(tmp / "ens", 1)
    return [
        "reproduce",
        "--published",
        str(d),
        "--reconstructions",
        str(recs),
        "--stages",
        "audit",
    ], name


def _replace_line(start: str, new: str) -> Callable[[str], str]:
    def f(text: str) -> str:
        lines = text.splitlines()
        i = next(i for i, line in enumerate(lines) if line.startswith(start))
        lines[i] = new
        return "\n".join(lines) + "\n"

    return f


PUBLISHED = [
    Case(
        "published-folder-missing",
        lambda t: (
            [
                "reproduce",
                "--published",
                str(t / "none"),
                "--reconstructions",
                str(sim_ensemble(t / "ens", 1)),
            ],
            "none",
        ),
        ("not found",),
    ),
    Case(
        "published-table1-missing",
        lambda t: _published(t, "table1_approaches_by_stratum.csv", None),
    ),
    Case(
        "published-count-above-n",
        lambda t: _published(
            t,
            "table1_approaches_by_stratum.csv",
            _replace_line(
                "court,Court-system that specializes in CST,state,",
                "court,Court-system that specializes in CST,state,40,19,21.1,<0.001",
            ),
        ),
        ("n_yes",),
    ),
    Case(
        "published-ci-not-bracketing",
        lambda t: _published(
            t, "table3_odds_ratios.csv", _replace_line("1,court,no,", "1,court,no,0.8,0.9,1.2,0.27")
        ),
        ("ci_low",),
    ),
    Case(
        "published-correlation-above-1",
        lambda t: _published(
            t,
            "table2_phi_correlations.csv",
            _replace_line("prosecutor,court,", "prosecutor,court,1.54,***,yes"),
        ),
        ("r",),
    ),
    Case(
        "published-unknown-term",
        lambda t: _published(
            t,
            "table3_odds_ratios.csv",
            _replace_line("1,court,no,", "1,courts,no,0.8,0.5,1.2,0.27"),
        ),
        ("courts",),
    ),
]

# --------------------------------------------------------------------------- model specs


def _spec(
    tmp: Path, edit: Callable[[str], str], name: str = "bad_model.toml"
) -> tuple[list[str], str]:
    src = (config.MODELS_DIR / "logit_approaches_strata.toml").read_text(encoding="utf-8")
    p = tmp / name
    p.write_text(edit(src), encoding="utf-8")
    recs = sim_ensemble(tmp / "ens", 1)
    return [
        "reproduce",
        "--models",
        str(p),
        "--reconstructions",
        str(recs),
        "--stages",
        "data",
    ], name


SPECS = [
    Case(
        "spec-unknown-family",
        lambda t: _spec(t, lambda s: s.replace('family = "bernoulli"', 'family = "gamma"')),
        ("family",),
    ),
    Case(
        "spec-unknown-predictor",
        lambda t: _spec(t, lambda s: s.replace('"mdt"]', '"mdt", "budget"]')),
        ("budget",),
    ),
    Case(
        "spec-unknown-prior",
        lambda t: _spec(t, lambda s: s.replace('dist = "halfnormal"', 'dist = "weird"')),
        ("weird",),
    ),
    Case("spec-bad-toml", lambda t: _spec(t, lambda s: s + "\n[model\n"), ()),
]

# --------------------------------------------------------------------------- weighting scenarios


def _weighting(tmp: Path, text: str) -> tuple[list[str], str]:
    p = tmp / "weighting_bad.toml"
    p.write_text(text, encoding="utf-8")
    recs = sim_ensemble(tmp / "ens", 1)
    return [
        "reproduce",
        "--weighting",
        str(p),
        "--reconstructions",
        str(recs),
        "--stages",
        "data",
    ], p.name


WEIGHTING = [
    Case("weights-unknown-key", lambda t: _weighting(t, "[scenario.a]\ntrimk = 2\n"), ("trimk",)),
    Case(
        "weights-negative-trim", lambda t: _weighting(t, "[scenario.a]\ntrim_k = -1\n"), ("trim_k",)
    ),
    Case(
        "weights-unknown-stratum",
        lambda t: _weighting(t, '[scenario.a]\nineligible = { "huge" = 3 }\n'),
        ("huge",),
    ),
    Case("weights-bad-toml", lambda t: _weighting(t, "[scenario.a\n"), ("TOML",)),
    Case(
        "weights-bad-allocation",
        lambda t: _weighting(
            t, '[scenario.a]\nineligible_total = 245\nineligible_allocation = "random"\n'
        ),
        ("ineligible_allocation",),
    ),
    Case(
        "weights-file-missing",
        lambda t: (
            [
                "reproduce",
                "--weighting",
                str(t / "w.toml"),
                "--reconstructions",
                str(sim_ensemble(t / "ens", 1)),
            ],
            "w.toml",
        ),
        ("not found",),
    ),
]

# --------------------------------------------------------------------------- sweep grids

GOOD_GRID = """[grid]
reconstructions = [1, 2]
scenarios = ["unweighted", "design"]
prior_scales = [0.5, 2.0]
models = ["logit_approaches_strata"]
[paths]
reconstructions = "ens"
"""


def _grid(tmp: Path, edit: Callable[[str], str]) -> tuple[list[str], str]:
    sim_ensemble(tmp / "ens", 2)
    p = tmp / "grid_bad.toml"
    p.write_text(edit(GOOD_GRID), encoding="utf-8")
    return ["sweep", str(p)], p.name


GRIDS = [
    Case("grid-bad-toml", lambda t: _grid(t, lambda s: s.replace("[grid]", "[grid")), ("TOML",)),
    Case(
        "grid-unknown-axis",
        lambda t: _grid(t, lambda s: s.replace("[grid]", "[grid]\nlinks = [1]")),
        ("links",),
    ),
    Case(
        "grid-empty-axis",
        lambda t: _grid(t, lambda s: s.replace('["unweighted", "design"]', "[]")),
        ("scenarios",),
    ),
    Case(
        "grid-negative-prior-scale",
        lambda t: _grid(t, lambda s: s.replace("[0.5, 2.0]", "[-0.5, 2.0]")),
        ("prior_scales",),
    ),
    Case(
        "grid-unknown-scenario",
        lambda t: _grid(t, lambda s: s.replace('"design"', '"desing"')),
        ("desing",),
    ),
    Case(
        "grid-reconstruction-out-of-range",
        lambda t: _grid(t, lambda s: s.replace("[1, 2]", "[1, 7]")),
        ("[7]",),
    ),
    Case(
        "grid-unknown-sampling-key",
        lambda t: _grid(t, lambda s: s + "[sampling]\nwarmup = 3\n"),
        ("warmup",),
    ),
    Case(
        "grid-missing-axis",
        lambda t: _grid(t, lambda s: s.replace("prior_scales = [0.5, 2.0]\n", "")),
        ("prior_scales",),
    ),
    Case(
        "grid-unknown-model",
        lambda t: _grid(t, lambda s: s.replace('"logit_approaches_strata"', '"no_such_model"')),
        ("no_such_model",),
    ),
    Case(
        "grid-file-missing",
        lambda t: (["sweep", str(t / "nogrid.toml")], "nogrid.toml"),
        ("not found",),
    ),
]

ALL = MICRO + PUBLISHED + SPECS + WEIGHTING + GRIDS


def test_suite_is_large_enough():
    assert len(ALL) >= 25
    kinds = {c.id.split("-")[0] for c in ALL}
    assert kinds == {"micro", "published", "spec", "weights", "grid"}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in ALL])
def test_bad_input_exits_2_with_a_clear_message_and_writes_nothing(case, tmp_path, capsys):
    args, fname = case.make(tmp_path)
    out = tmp_path / "out"
    before = sorted(p for p in tmp_path.rglob("*"))
    rc = cli.main(
        [*args, "--out", str(out)]
        + (["--no-progress"] if args[0] in ("reproduce", "sweep") else [])
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err  # one line, no traceback
    assert lines[0].startswith(f"cst-bayes {args[0]}: error: ")
    assert fname in lines[0], lines[0]
    for w in case.words:
        assert w in lines[0], (w, lines[0])
    assert not out.exists() or not any(out.iterdir())
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written anywhere else either


# --- no reachable traceback: shared checks --------------------------------------------------


def test_sampler_panic_is_a_failed_unit_and_the_run_goes_on(tmp_path):
    """nutpie raises a pyo3 PanicException, a BaseException: recorded, not fatal."""
    from cst_bayes.core.config import PUBLISHED_DIR, WEIGHTING_FILE
    from cst_bayes.run.context import PROFILES, RunContext
    from cst_bayes.run.units import run_unit

    class PanicException(BaseException):  # what pyo3 raises on a Rust panic
        pass

    def panics(_work):
        raise PanicException("called `Result::unwrap()` on an `Err` value")

    ctx = RunContext(
        out=tmp_path,
        profile="quick",
        settings=PROFILES["quick"],
        seed=1,
        published_dir=PUBLISHED_DIR,
        weighting_file=WEIGHTING_FILE,
    )
    r = run_unit(ctx.out, "models/x", {}, panics)
    assert r.status == "failed" and "PanicException" in r.message
    assert not (tmp_path / "models" / "x").exists()
    ok = run_unit(ctx.out, "models/y", {}, lambda w: {"fine": True})
    assert ok.status == "done"
    with pytest.raises(KeyboardInterrupt):
        run_unit(ctx.out, "models/z", {}, lambda w: (_ for _ in ()).throw(KeyboardInterrupt()))


@pytest.mark.parametrize("seed", [0, 2**32 - 1])
def test_seed_bounds_are_accepted(seed):
    from cst_bayes.core.errors import validate_seed

    assert validate_seed(seed) == seed


@pytest.mark.parametrize("seed", [-1, 2**32, True, 1.5, "x"])
def test_seed_out_of_bounds_is_input_error(seed):
    from cst_bayes.core.errors import InputError, validate_seed

    with pytest.raises(InputError, match="2\\*\\*32"):
        validate_seed(seed)


def test_out_dir_checks(tmp_path):
    from cst_bayes.core.errors import InputError, check_out_dir

    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        check_out_dir(f)
    with pytest.raises(InputError, match="is a file"):
        check_out_dir(f / "sub" / "deeper")
    assert check_out_dir(tmp_path / "new" / "run") == tmp_path / "new" / "run"
    assert not (tmp_path / "new").exists()  # nothing created


def test_internal_errors_are_one_line_with_exit_1(monkeypatch, capsys):
    from cst_bayes import cli

    def boom(args):
        raise RuntimeError("a bug\nwith a second line")

    parser = cli.build_parser()
    args = parser.parse_args(["report", "x"])
    monkeypatch.setattr(cli, "build_parser", lambda: _Fixed(parser, args, boom))
    monkeypatch.delenv("CST_BAYES_DEBUG", raising=False)
    assert cli.main(["report", "x"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "internal error: RuntimeError: a bug" in err


class _Fixed:
    def __init__(self, parser, args, run):
        self.parser, self.args, self.run = parser, args, run

    def parse_args(self, argv):
        self.args._run = self.run
        return self.args

    def print_help(self):
        self.parser.print_help()
