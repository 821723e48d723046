"""The architecture as tests: no import cycles, small modules, one home for each shared rule."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path

import grimp
import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "cst_bayes"
MAX_LINES = 600


def _sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_import_cycles():
    graph = grimp.build_graph("cst_bayes", include_external_packages=False)
    cycles = []
    for a in sorted(graph.modules):
        for b in graph.find_modules_directly_imported_by(a):
            if a != b and graph.find_shortest_chain(importer=b, imported=a) is not None:
                cycles.append(f"{a} -> {b}")
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_module_over_the_size_limit():
    sizes = {p.relative_to(SRC).as_posix(): len(p.read_text().splitlines()) for p in _sources()}
    big = {m: n for m, n in sizes.items() if n > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def _code_constants(path: Path) -> list[object]:
    """String and number literals of a module's code (docstrings left out: they describe)."""
    tree = ast.parse(path.read_text())
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and id(n) not in docs]


def _files_where(pred: Callable[[object], bool]) -> set[str]:
    return {
        p.relative_to(SRC).as_posix()
        for p in _sources()
        if any(pred(c) for c in _code_constants(p))
    }


def _files_containing(pattern: str) -> set[str]:
    rx = re.compile(pattern)
    return {p.relative_to(SRC).as_posix() for p in _sources() if rx.search(p.read_text())}


def _starts(prefix: str) -> Callable[[object], bool]:
    return lambda c: isinstance(c, str) and c.startswith(prefix)


@pytest.mark.parametrize(
    ("what", "pred", "home"),
    [
        ("the default seed", lambda c: c == 20240101 and type(c) is int, {"core/options.py"}),
        ("the synthetic banner", _starts("SYNTHETIC DATA:"), {"core/config.py"}),
        ("the restricted banner", _starts("RESTRICTED DATA:"), {"core/provenance.py"}),
        ("the small-cell marker", lambda c: c == "<5", {"core/disclosure.py"}),
    ],
)
def test_one_constant_in_one_place(what, pred, home):
    assert _files_where(pred) <= home, f"{what} is written outside {sorted(home)}"


@pytest.mark.parametrize(
    ("what", "pattern", "home"),
    [
        ("the reader of data/published", r"PUBLISHED_DIR\s*/", {"data/published.py"}),
        ("the ensemble loader", r"\.glob\(\s*[\"']reconstruction-", {"data/ensemble.py"}),
        ("the suppression function", r"def suppress_small", {"core/disclosure.py"}),
        ("the banner writer of microdata", r"def write_microdata", {"core/fileio.py"}),
    ],
)
def test_one_rule_in_one_place(what, pattern, home):
    assert _files_containing(pattern) <= home, f"{what} is written outside {sorted(home)}"


def test_no_probing_of_our_own_modules():
    # a typo must be an ImportError at import time, not "stage not available" at run time
    assert not _files_containing(r"importlib\.import_module\(f?\"cst_bayes\.(?!commands)")
    assert not _files_containing(r"hasattr\((mod|module)\b")
    assert not _files_containing(
        r"except (ModuleNotFoundError|ImportError):\s*#.*written in parallel"
    )


def test_every_module_is_named_in_the_architecture_doc():
    doc = (SRC.parents[1] / "docs" / "ARCHITECTURE.md").read_text()
    missing = [
        p.relative_to(SRC).as_posix()
        for p in _sources()
        if p.name not in ("__init__.py", "__main__.py")
        and p.relative_to(SRC).with_suffix("").as_posix() not in doc
    ]
    assert not missing, f"docs/ARCHITECTURE.md does not name {missing}"
