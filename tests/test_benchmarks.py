"""The generated benchmark tables (docs/generated/samplers.md, pipeline.md) and what docs quote.

The benchmarks themselves are too slow for the suite (a whole-process fit benchmark is minutes
of MCMC and R); these tests check that the generated files are what the scripts write (dated,
SYNTHETIC, figures consistent with the rows they summarise) and that every timing or size a doc
quotes about them is one of the generated figures. After rerunning a benchmark, update the
quoting sentence; a changed sentence must be registered in QUOTES.
"""

from __future__ import annotations

import importlib.util
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "docs" / "generated"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(
        f"benchmarks_{name.strip('_')}", ROOT / "benchmarks" / f"{name}.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


common = _load("_common")

#: (doc, regex with one group per quoted number, generated file, figure keys). Every timing or
#: size figure in the guarded parts of the docs must fall inside one of these matches.
QUOTES: list[tuple[str, str, str, tuple[str, ...]]] = [
    (
        "docs/models.md",
        r"took a median of (\d+\.\d) s against\s+(\d+\.\d) s for rstanarm \((\d+\.\d) x\)",
        "samplers.md",
        ("whole.cli_median_wall_s", "whole.rstanarm_median_wall_s", "whole.ratio_wall"),
    ),
    (
        "docs/models.md",
        r"this one passed (\d+) of (\d+), twice the draws\s+passed (\d+), and four times the "
        r"draws at the old target acceptance (\d+)",
        "extension.md",
        (
            "standard.pass_x4_0.95",
            "standard.failing",
            "standard.pass_x2_0.95",
            "standard.pass_x4_0.9",
        ),
    ),
    (
        "README.md",
        r"pipeline took (\d+\.\d) s and wrote (\d+\.\d) MB",
        "pipeline.md",
        ("profile-standard.cold_pipeline_s", "profile-standard.output_mb"),
    ),
    (
        "README.md",
        r"`make reproduce` spent (\d+\.\d) s in the pipeline and (\d+\.\d) s in all",
        "pipeline.md",
        ("fresh-clone.pipeline_s", "fresh-clone.make_wall_s"),
    ),
]

#: (doc, heading that opens the guarded part, heading that closes it; None: to the end).
GUARDED: list[tuple[str, str | None, str | None]] = [
    ("README.md", None, None),
    ("docs/pipeline.md", "## Timings and sizes", "\n## "),
    ("docs/models.md", "`benchmarks/samplers.py` measures", "## Checks"),
]

#: A timing, size or speed-up figure: "4.0 s", "13 seconds", "5 min", "35 MB", "32x", "5.4 x".
FIGURE = re.compile(
    r"(?<![\w.])\d+(?:[.,]\d+)?(?:-\d+(?:\.\d+)?)?\s?"
    r"(?:s|sec|seconds|min|minutes|MB|GB|x|×)(?![\w])"
)


def _table(text: str, first_cell: str) -> list[list[str]]:
    """Rows of the Markdown table whose header starts with ``| first_cell |``."""
    rows, inside = [], False
    for line in text.splitlines():
        if line.startswith(f"| {first_cell} |"):
            inside = True
            continue
        if inside and line.startswith("|---"):
            continue
        if inside and line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif inside:
            break
    return rows


# ------------------------------------------------------------------ the parser itself


def test_sections_keep_what_a_run_did_not_measure(tmp_path):
    path = tmp_path / "x.md"
    common.write_sections(
        path,
        "w.py",
        "T",
        ["a", "b"],
        {"a": "A1\n\n| figure | value |\n|---|---:|\n| f | 1.0 |", "b": "B1"},
    )
    common.write_sections(path, "w.py", "T", ["a", "b"], {"b": "B2"})
    secs = common.read_sections(path)
    assert secs == {"a": "A1\n\n| figure | value |\n|---|---:|\n| f | 1.0 |", "b": "B2"}
    assert common.figures(path) == {"a.f": "1.0"}
    assert path.read_text().startswith("<!-- written by w.py; do not edit -->")


def test_run_process_counts_cpu_of_the_whole_process():
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    r = common.run_process([sys.executable, "-c", busy])
    assert r.returncode == 0
    assert r.cpu_s >= 0.3
    assert r.wall_s >= 0.3
    idle = common.run_process([sys.executable, "-c", "import time; time.sleep(0.3)"])
    assert idle.wall_s >= 0.3
    assert idle.cpu_s < 0.25  # sleeping costs no CPU: the two columns measure different things


def test_adopted_orphans_count(tmp_path):
    """A worker that outlives its parent (as R's PSOCK workers can) still counts as CPU."""
    script = tmp_path / "orphan.py"
    script.write_text(
        "import subprocess, sys\n"
        "busy = 'import time\\nt = time.process_time()\\n"
        "while time.process_time() - t < 0.5: pass'\n"
        "subprocess.Popen([sys.executable, '-c', busy])\n"  # not waited for: orphaned
    )
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import _common; "
        "r = _common.run_process([sys.executable, sys.argv[2]], adopt_orphans=True); "
        "print(r.cpu_s)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(ROOT / "benchmarks"), str(script)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert float(out.stdout) >= 0.5


def test_figure_pattern_finds_timings_and_not_other_numbers():
    found = FIGURE.findall("took 4.0 s, 9.0-10.2 s wall, 35 MB, 32x faster, 5.4 x, 5 min")
    assert found == ["4.0 s", "9.0-10.2 s", "35 MB", "32x", "5.4 x", "5 min"]
    assert FIGURE.findall("1,306 agencies, 2 x 2 cells, 4 chains") == ["2 x"]
    assert FIGURE.findall("4 chains x 1000 draws, R-hat <= 1.01") == []


def _fake_run(wall: float, stages: dict[str, float]) -> dict:
    return dict(date="2026-01-02 03:04 UTC", load_before=1.0, load_after=2.0, exit=0,
                wall_s=wall, cpu_s=wall * 1.5, peak_rss_mb=500.0, pipeline_s=sum(stages.values()),
                stages=stages, stage_peak_mb={k: 100.0 for k in stages},
                bytes={k: 2_000_000 for k in stages}, total_bytes=2_000_000 * len(stages),
                du_bytes=3_000_000 * len(stages))  # fmt: skip


def test_pipeline_tables_from_known_runs(tmp_path):
    pipeline = _load("pipeline")
    runs = {1: _fake_run(10.0, {"models": 6.0}), 100: _fake_run(45.0, {"models": 40.0})}
    sec = pipeline.scale_section(runs, "abc")
    assert "x100 / x1 = 4.50 (target <= 4)" in sec
    prof = pipeline.profile_section(
        "full", {"cold": _fake_run(300.0, {"models": 200.0, "ppc": 50.0})}, "abc"
    )
    assert "pipeline 250.0 s cold (target <= 300 s)" in prof
    assert "run folder 6.0 MB on disk" in prof
    path = tmp_path / "p.md"
    common.write_sections(
        path, "benchmarks/pipeline.py", "T", [], {"scale": sec, "profile-full": prof}
    )
    figs = common.figures(path)
    assert figs["scale.x100_ratio"] == "4.50"
    assert figs["profile-full.cold_wall_s"] == "300.0"
    assert figs["profile-full.output_mb"] == "4.0"


# ------------------------------------------------------------------ the generated files


def _generated(name: str) -> Path:
    path = GENERATED / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run python benchmarks/{name[:-3]}.py")
    return path


@pytest.mark.parametrize("name", ["samplers.md", "pipeline.md"])
def test_generated_file_is_dated_synthetic_and_parses(name):
    path = _generated(name)
    text = path.read_text()
    assert text.startswith(f"<!-- written by benchmarks/{name[:-3]}.py; do not edit -->")
    secs = common.read_sections(path)
    assert secs, "no sections"
    for sec, body in secs.items():
        assert re.search(r"Measured \d{4}-\d{2}-\d{2}", body), f"{sec}: no date"
        assert "SYNTHETIC" in body, f"{sec}: data not labelled"
        assert re.search(r"load average \d", body), f"{sec}: no load"
    for value in common.figures(path).values():
        float(value)  # every figure is a number


def test_samplers_figures_are_the_medians_of_the_runs():
    path = _generated("samplers.md")
    secs = common.read_sections(path)
    if "whole" not in secs:
        pytest.skip("whole-process benchmark not run yet")
    figs = common.figures(path)
    rows = _table(secs["whole"], "round")
    assert rows, "no per-run table"
    wall = {t: [float(r[2]) for r in rows if r[1] == t] for t in {r[1] for r in rows}}
    cpu = {t: [float(r[3]) for r in rows if r[1] == t] for t in {r[1] for r in rows}}
    cli, rs = "cst-bayes fit", "Rscript rstanarm"
    # the table rounds each run to 0.1 s, the figures the unrounded medians
    assert float(figs["whole.cli_median_wall_s"]) == pytest.approx(
        statistics.median(wall[cli]), abs=0.06
    )
    assert float(figs["whole.cli_median_cpu_s"]) == pytest.approx(
        statistics.median(cpu[cli]), abs=0.06
    )
    assert int(figs["whole.rounds"]) == len(wall[cli])
    if rs in wall:
        assert len(wall[rs]) == len(wall[cli])  # A B A B: as many of each
        ratio = statistics.median(wall[rs]) / statistics.median(wall[cli])
        assert float(figs["whole.ratio_wall"]) == pytest.approx(ratio, rel=0.02)
        assert f"rstanarm/CLI {figs['whole.ratio_wall']} x" in secs["whole"]


def _header(text: str, first_cell: str) -> list[str]:
    line = next(x for x in text.splitlines() if x.startswith(f"| {first_cell} |"))
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_pipeline_figures_match_their_tables():
    path = _generated("pipeline.md")
    figs = common.figures(path)
    for name, body in common.read_sections(path).items():
        header = _header(body, "stage")
        rows = {r[0]: r for r in _table(body, "stage")}
        process = rows.pop("whole process")
        rows.pop("ratio to x1 (process)", None)
        # a stage's peak memory is the process's while it ran: never above the process's
        for col in (i for i, h in enumerate(header) if h.endswith("peak MB")):
            stage_peak = max(float(r[col]) for r in rows.values() if r[col])
            assert stage_peak <= float(process[col]) + 0.5, f"{name}: {header[col]}"
        if f"{name}.cold_wall_s" in figs:
            assert process[header.index("cold s")] == figs[f"{name}.cold_wall_s"]
            # stages run inside the process: their sum cannot exceed its wall time
            stage_sum = sum(float(r[header.index("cold s")]) for r in rows.values())
            assert stage_sum <= float(figs[f"{name}.cold_wall_s"])
        if name == "fresh-clone":  # stages inside the pipeline, the pipeline inside `make`
            stage_sum = sum(float(r[1]) for r in rows.values())
            assert stage_sum <= float(figs["fresh-clone.pipeline_s"]) + 0.5
            assert float(figs["fresh-clone.pipeline_s"]) <= float(process[1])
            assert process[1] == figs["fresh-clone.make_wall_s"]
        if name == "scale":
            x1 = float(figs["scale.x1_wall_s"])
            for key, value in figs.items():
                if m := re.fullmatch(r"scale\.x(\d+)_ratio", key):
                    wall = float(figs[f"scale.x{m.group(1)}_wall_s"])
                    assert float(value) == pytest.approx(wall / x1, abs=0.01)


# ------------------------------------------------------------------ what the docs quote


def _guarded(doc: str, start: str | None, end: str | None) -> str:
    text = (ROOT / doc).read_text()
    if start is not None:
        i = text.find(start)
        assert i >= 0, f"{doc}: {start!r} not found (update GUARDED)"
        text = text[i:]
        if end is not None:
            j = text.find(end, len(start))
            text = text if j < 0 else text[:j]
    return text


@pytest.mark.parametrize("doc, regex, generated, keys", QUOTES)
def test_quoted_figures_equal_the_generated_ones(doc, regex, generated, keys):
    text = (ROOT / doc).read_text()
    m = re.search(regex, text)
    assert m, f"{doc}: quote {regex!r} not found (the sentence changed: update QUOTES)"
    figs = common.figures(GENERATED / generated)
    for key, quoted in zip(keys, m.groups(), strict=True):
        assert quoted == figs[key], f"{doc} quotes {quoted} for {key}; {generated} says {figs[key]}"


@pytest.mark.parametrize("doc, start, end", GUARDED)
def test_docs_quote_no_timing_that_is_not_generated(doc, start, end):
    text = _guarded(doc, start, end)
    allowed = [m.span() for d, rx, _, _ in QUOTES if d == doc for m in re.finditer(rx, text)]
    stray = [
        m.group(0)
        for m in FIGURE.finditer(text)
        if not any(a <= m.start() and m.end() <= b for a, b in allowed)
        and not _is_design_figure(text, m)
    ]
    assert not stray, f"{doc}: timing/size figures not from docs/generated: {stray}"


def _is_design_figure(text: str, m: re.Match) -> bool:
    """'2 x 2 cells', '4 x 1000 draws', '1 x': counts of things, not measurements."""
    after = text[m.end() : m.end() + 12]
    return m.group(0).rstrip().endswith(("x", "×")) and bool(re.match(r"\s?\d", after))


@pytest.mark.slow
def test_samplers_smoke_run_writes_a_section_the_tests_accept(tmp_path):
    """The whole-process benchmark end to end in its smallest mode (2 x 200 draws, no R)."""
    md = tmp_path / "samplers.md"
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "samplers.py"),
            "--quick",
            "--no-r",
            "--md",
            str(md),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    line = next(x for x in r.stdout.splitlines() if x.startswith("whole-process fit: median"))
    figs = common.figures(md)
    assert f"median {figs['whole.cli_median_wall_s']} s (target <= 5 s)" in line
    assert "rstanarm/CLI not measured" in line
    assert "Quick smoke run: not the benchmark." in common.read_sections(md)["whole"]
    assert float(figs["whole.cli_median_cpu_s"]) > 0


@pytest.mark.slow
def test_extension_smoke_run_writes_a_section_the_tests_accept():
    """benchmarks/extension.py on one spec and member with 50 draws (fails for sure)."""
    ext = _load("extension")
    failing, first = ext.measure(specs=["count_poisson_strata"], n_members=1, draws=50)
    assert len(first) == 1 and len(failing) == 1 and not first[0]["ok"]
    text = ext.page(failing, first, 1.0, 0.5)
    assert "SYNTHETIC" in text and "| K = 4, target 0.95 |" in text
    figs = dict(
        line.strip("|").replace(" ", "").split("|")
        for line in text.splitlines()
        if line.startswith("| fits |") or line.startswith("| failing |")
    )
    assert figs == {"fits": "1", "failing": "1"}
