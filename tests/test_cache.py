"""Cache keys follow the import graph: editing a module refreshes exactly the stages that run it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cst_bayes.run import cache
from cst_bayes.run.stages import ORDER, module_name

PKG = Path(cache.__file__).resolve().parents[1]
STAGE_ENTRIES = {s: (module_name(s),) for s in ORDER}


@pytest.fixture
def pkg_copy(tmp_path):
    dst = tmp_path / "cst_bayes"
    shutil.copytree(PKG, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def _keys(root: Path) -> dict[str, str]:
    cache.code_hash.cache_clear()
    return {s: cache.code_hash(e, root) for s, e in STAGE_ENTRIES.items()}


def _edit(root: Path, module: str) -> None:
    path = cache.module_file(module, root)
    assert path is not None
    path.write_text(path.read_text() + "\n# edited\n")


def test_closure_reaches_imports_inside_functions():
    # the models stage imports the numba density only inside a function: it must still count
    models = cache.import_closure(STAGE_ENTRIES["models"])
    assert any(m.endswith("fastlogp") for m in models)
    assert "cst_bayes.core.config" in models
    # a stage's key does not follow the pipeline's own modules or other stages' code
    run_modules = {m for m in models if m.startswith("cst_bayes.run")}
    stage_pkg = "cst_bayes.run.stages"
    assert run_modules <= {"cst_bayes.run", stage_pkg, f"{stage_pkg}.models", f"{stage_pkg}.common"}
    assert not any(m.startswith("cst_bayes.weighting") for m in models)


def test_editing_a_module_changes_the_keys_of_the_stages_that_import_it(pkg_copy):
    before = _keys(pkg_copy)
    fast = next(m for m in cache.import_closure(STAGE_ENTRIES["models"]) if m.endswith("fastlogp"))
    _edit(pkg_copy, fast)
    after = _keys(pkg_copy)
    changed = {s for s in before if before[s] != after[s]}
    expect = {s for s, e in STAGE_ENTRIES.items() if fast in cache.import_closure(e, pkg_copy)}
    assert "models" in changed and changed == expect
    assert "audit" not in changed and "tables" not in changed


def test_editing_an_unrelated_module_keeps_the_keys(pkg_copy):
    before = _keys(pkg_copy)
    _edit(pkg_copy, "cst_bayes.run.sweep")  # no stage imports the sweep
    _edit(pkg_copy, "cst_bayes.run.context")  # stages import the context only to type it
    assert _keys(pkg_copy) == before


def test_unknown_entry_is_an_error():
    with pytest.raises(ValueError, match="not a module"):
        cache.import_closure(("cst_bayes.no_such_module",))
